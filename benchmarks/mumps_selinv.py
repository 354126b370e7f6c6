"""MUMPS's selected inverse (ICNTL(30)) alone, against CHOLMOD's, on one problem.

    [mpirun -n R] python -m benchmarks.mumps_selinv --key U-M --outdir DIR [--icntl27 -32 256]
        [--orient engine first] [--repeat 3]

The model's C at its starting values, one MUMPS factorization (the ranks assemble C as in a
fit), then ``selected_inverse()`` on the pattern of C timed per setting: ``--orient engine``
requests each pair as the engine gives it (row >= column in the original order), ``first``
with its column the equation MUMPS eliminates first (what mvreml.backends.mumps does);
``--icntl27`` the block of right-hand sides (MumpsCore.rhs_block). Every value is held
against CHOLMOD's selected inverse of the same C (largest difference / largest entry).
Rank 0 prints one JSON record per setting.
"""
from __future__ import annotations

import argparse
import json
import resource
import time
import warnings

import numpy as np

from mvreml.backends.mumps import SELINV_RHS_BLOCK

from . import machine
from .mumps import _design


def _c_at_start(key: str, outdir: str):
    """(REMLModel, Assembly, C) of problem `key` at its starting values."""
    from mvreml.api import prepare
    from mvreml.backends import Assembly
    from mvreml.formula import parse_fixed, parse_random, parse_residual
    from mvreml.likelihood import REMLModel
    from mvreml.start import starting_values

    spec, data, rel = _design(key, outdir)
    fs = parse_fixed(spec["fixed"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        design, Y, P, blocks = prepare(fs, parse_random(spec["random"], fs.response),
                                       parse_residual(spec["residual"], fs.response), data, relmat={"ped": rel})
        theta, _ = starting_values(design, blocks, None, P, Y)
    model = REMLModel(design, blocks)
    mats = model.matrices(theta)
    nr = model.n_random
    ginv = [np.linalg.inv(G) for G in mats[:nr]]
    rstack, _ = model._residual_parts(mats[nr:])
    rinv = model._pair_values(rstack)
    return model, Assembly(rinv, rstack, ginv), model.pattern.assemble(rinv, ginv)


def run(args, comm) -> None:
    from mvreml.backends.cholmod import CholmodBackend
    from mvreml.backends.mumps import MumpsBackend

    model, parts, C = _c_at_start(args.key, args.outdir)
    pat = model.pattern
    ref = CholmodBackend()
    ref.analyze(C)
    ref.set_pattern(pat.rows, pat.cols)
    ref.factorize(C)
    t = time.perf_counter()
    want = ref.selected_inverse()
    t_cholmod = time.perf_counter() - t

    b = MumpsBackend(comm)
    if args.icntl13 is not None:
        b.core.ctx.set_icntl(13, args.icntl13)
    b.analyze_model(model)
    b.factorize_assembly(parts)
    for orient in args.orient:
        for block in args.icntl27:
            b.core.rhs_block = block
            b.set_pattern(pat.rows, pat.cols, orient=orient == "first")
            times = []
            for _ in range(args.repeat):
                t = time.perf_counter()
                got = b.selected_inverse()
                times.append(time.perf_counter() - t)
            err = float(np.max(np.abs(got - want)) / np.max(np.abs(want)))
            print(json.dumps(dict(key=args.key, ranks=comm.size, n_eq=int(pat.n_eq), nnz=int(pat.nnz), orient=orient,
                                  icntl27=block, icntl13=args.icntl13, seconds=times, cholmod_seconds=t_cholmod,
                                  max_diff_over_max=err,
                                  peak_rss_gb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                                  load=machine.machine().get("load1"))), flush=True)
    b.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--key", default="U-S")
    ap.add_argument("--outdir", required=True)
    ap.add_argument("--icntl27", nargs="+", type=int, default=[SELINV_RHS_BLOCK])
    ap.add_argument("--orient", nargs="+", default=["first"], choices=["engine", "first"])
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--icntl13", type=int, default=None, help="ICNTL(13) of the analysis (the root front)")
    args = ap.parse_args(argv)

    from mvreml.backends import mpi

    comm = mpi.world()
    if comm.rank != 0:
        mpi.serve(comm)
        return 0
    with mpi.session(comm):
        run(args, comm)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
