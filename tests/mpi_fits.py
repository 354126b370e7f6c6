"""Fits with backend="mumps", run by tests/test_mumps.py under ``mpirun -n N``.

    mpirun -n 2 python tests/mpi_fits.py OUT.json CASE [CASE ...]

Every rank calls the same ``mvreml.fit`` (rank 0 fits, the others serve MUMPS); rank 0 writes,
per case, log L, the variance components and the fixed effects (or the error's type and
message) into OUT.json. Cases: the models of :data:`MODELS`, and two faults:

- ``notpd``: C given a negative diagonal at one animal's equation (rank 0's share of the
  assembly patched), so that the fit cannot start and must say which term and level;
- ``die``: rank 1 kills itself (SIGKILL) when the second factorization starts;
- ``hang``: rank 1 sleeps instead of joining the second factorization (run with
  MVREML_MPI_TIMEOUT set: rank 0 must abort the run);
- ``predict``: the gryphon-U fit, then ``predict(classify="sex")`` on rank 0 alone (on more
  than one rank a typed error) and inside ``mvreml.backends.collective`` on every rank;
- ``selinv``: no fit: the MUMPS backend given the gryphon C whole, and asked for C^-1 at
  :func:`shuffled_pairs` (both triangles, shuffled, repeated); rank 0 writes the values and
  the request MUMPS was given.

Run without mpirun, it is one process (MPI's singleton): rank 0 alone.
"""
import json
import logging
import os
import signal
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import mvreml  # noqa: E402
from mvreml.errors import MvremlError  # noqa: E402

BENCH = dict(
    U=dict(fixed="y1 ~ 1 + sex + cg", random="~ vm(animal, ped)", residual=None),
    B=dict(fixed="cbind(y1, y2) ~ trait + at(trait):sex + at(trait):cg", random="~ us(trait):vm(animal, ped)",
           residual="~ units:us(trait)"),
)
#: the level whose equation the `notpd` case spoils, and the term it belongs to
NOTPD_LEVEL = "1005"


def gryphon():
    d = HERE / "data" / "gryphon_wam"
    ped = mvreml.Pedigree(pd.read_csv(d / "gryphonped.csv"))
    g = pd.read_csv(d / "gryphon.csv")
    g["sex"] = g["sex"].astype(str)
    return g, ped


def bench_s():
    d = HERE / "data" / "bench_S"
    ped = pd.read_csv(d / "pedigree.csv.gz")
    data = pd.read_csv(d / "data.csv.gz")
    for col in ("sex", "cg"):
        data[col] = data[col].astype(str).astype("category")
    return mvreml.Pedigree(ped, allow_sire_dam=True), data


def slatehall():
    df = pd.read_csv(HERE / "data" / "agridat" / "gilmour.slatehall.csv")
    return df.assign(xf=df["col"], yf=df["row"], rowf=df["row"].astype(str), colf=df["col"].astype(str))


def model(case):
    """(fixed, dict of fit keywords) of a case."""
    if case == "slatehall":      # a spatial residual: the pairs' R^-1 entries are scattered, not read by pattern
        return "yield ~ gen + row", dict(data=slatehall(), random="~ rowf + colf", residual="~ ar1(xf):ar1(yf)")
    if case.startswith("gryphon") or case in ("notpd", "die", "hang", "predict"):
        g, ped = gryphon()
        kw = dict(data=g, relmat={"ped": ped}, random="~ vm(animal, ped)")
        if case == "gryphon-B":
            kw.update(random="~ us(trait):vm(animal, ped)", residual="~ units:us(trait)")
            return "cbind(bwt, tarsus) ~ trait + at(trait):sex", kw
        return "bwt ~ 1 + sex", kw
    size = case.split("-")[1]
    assert size == "S", case
    ped, data = bench_s()
    spec = BENCH[case.split("-")[0]]
    return spec["fixed"], dict(data=data, relmat={"ped": ped}, random=spec["random"], residual=spec["residual"])


def fit(case, backend):
    fixed, kw = model(case)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mvreml.fit(fixed, backend=backend, **kw)


def spoil_assembly():
    """Rank 0's share of C (the G^-1 part, which every animal's diagonal has) gets -1e6 at the
    diagonal of the animal NOTPD_LEVEL's equation: C, summed over the ranks, is negative there."""
    from mvreml.backends import mumps

    where = {}
    analyze_model, assemble = mumps.MumpsBackend.analyze_model, mumps.MumpsCore.assemble

    def analyze(self, model):
        rd = model.design.random[0]
        where["j"] = model.pattern.offsets[0] + int(np.flatnonzero(rd.levels.astype(str) == NOTPD_LEVEL)[0]) * rd.t
        return analyze_model(self, model)

    def spoiled(self, data):
        assemble(self, data)
        self.a_loc[(self.irn_loc == where["j"] + 1) & (self.jcn_loc == where["j"] + 1)] = -1e6

    mumps.MumpsBackend.analyze_model = analyze
    mumps.MumpsCore.assemble = spoiled


def at_second_factorization(action):
    from mvreml.backends import mumps

    original = mumps.MumpsCore.factorize
    count = [0]

    def factorize(self, data):
        count[0] += 1
        if count[0] == 2:
            action()
        return original(self, data)

    mumps.MumpsCore.factorize = factorize


def gryphon_c():
    """(design, MMEPattern, C) of the gryphon-U model at fixed variances (R^-1 = 0.5, G^-1 = 2)."""
    from mvreml import api
    from mvreml.formula import parse_fixed, parse_random, parse_residual
    from mvreml.mme import MMEPattern

    fixed, kw = model("gryphon-U")
    fs = parse_fixed(fixed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        design = api.build_design(kw["data"], fs, parse_random(kw["random"], fs.response),
                                  parse_residual(None, fs.response), relmat=kw["relmat"])
    pattern = MMEPattern(design)
    C = pattern.assemble(np.full(len(pattern.pair_a), 0.5), [np.array([[2.0]])])
    return design, pattern, C


def shuffled_pairs(pattern):
    """C's pairs in both triangles, a random half of them twice, in a random order."""
    rng = np.random.default_rng(19)
    rows = np.concatenate([pattern.rows, pattern.cols])
    cols = np.concatenate([pattern.cols, pattern.rows])
    twice = rng.random(len(rows)) < 0.5
    rows, cols = np.concatenate([rows, rows[twice]]), np.concatenate([cols, cols[twice]])
    order = rng.permutation(len(rows))
    return rows[order], cols[order]


def selected_inverse(rank):
    """Rank 0: C^-1 at shuffled_pairs from the MUMPS backend, and its request (ptr, rows, the
    pivot positions); the other ranks serve."""
    from mvreml.backends import mpi
    from mvreml.backends.mumps import MumpsBackend

    comm = mpi.world()
    if rank != 0:
        mpi.serve(comm)
        return None
    _, pattern, C = gryphon_c()
    with mpi.session(comm):
        b = MumpsBackend(comm)
        b.analyze(C)
        b.factorize(C)
        b.set_pattern(*shuffled_pairs(pattern))
        values = b.selected_inverse()
        ptr, rows = b._pattern
        out = dict(values=values.tolist(), ptr=ptr.tolist(), rows=rows.tolist(), position=b.core.position.tolist())
        b.close()
    return out


def record(res):
    return dict(loglik=float(res.loglik), iterations=int(res.iterations), converged=bool(res.converged),
                varcomp=[float(x) for x in res.varcomp["estimate"]],
                fixef=[float(x) for x in res.fixef["estimate"]], mumps=res.model.get("mumps"))


def predict_after(res, rank):
    """predict() after the fit: on rank 0 alone (the ranks have returned: a typed error), then on
    every rank inside mvreml.backends.collective (rank 0 predicts, the others serve)."""
    from mvreml.backends import collective

    def table(pred):
        return dict(value=[float(x) for x in pred["predicted_value"]], std_error=[float(x) for x in pred["std_error"]])

    out = {}
    if rank == 0:
        try:
            out["alone"] = table(res.predict(classify="sex"))
        except MvremlError as exc:
            out["alone"] = dict(error=type(exc).__name__, message=str(exc))
    pred = collective(lambda: res.predict(classify="sex"))
    if rank == 0:
        out["predict"] = table(pred)
    return out


def main(out, cases):
    from mpi4py import MPI

    rank = MPI.COMM_WORLD.rank
    if rank == 0:        # the fit's log lines (MUMPS's memory forecast among them) on stderr
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    results = {}
    for case in cases:
        if case == "notpd" and rank == 0:
            spoil_assembly()
        if case == "die" and rank == 1:
            at_second_factorization(lambda: os.kill(os.getpid(), signal.SIGKILL))
        if case == "hang" and rank == 1:
            at_second_factorization(lambda: time.sleep(600))
        if case == "selinv":
            got = selected_inverse(rank)
            if rank == 0:
                results[case] = got
            continue
        try:
            res = fit(case, "mumps")
            if rank == 0:
                results[case] = record(res)
        except MvremlError as exc:
            results[case] = dict(error=type(exc).__name__, message=str(exc))
        if case == "predict":
            results.setdefault(case, {}).update(predict_after(res, rank))
    if rank == 0:
        Path(out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
