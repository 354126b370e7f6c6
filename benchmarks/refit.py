"""Refits vs fresh fits through the array route (issue 15): the U-S problem with new responses.

    python -m benchmarks.refit [--n 50] [--size S] [--formula-every 10]

The U model of benchmarks.run (``y1 ~ 1 + sex + cg``, ``~ vm(animal, ped)``) is built once as
an :class:`mvreml.Model` from arrays (A^-1 of the pedigree computed once and passed as Kinv),
then fitted to ``n`` new responses (y1 plus independent noise, same missing pattern) two
ways: a fresh Model per response (design, MME pattern, symbolic analysis and fit each time)
and ``model.refit(y)`` (pattern and analysis reused), ``model.refit(y, warm=True)``
(started from the first fit's estimates, a fit of y1), ``rep0.refit(y, warm=True)`` (started
from the fit of the first simulated response: a simulation study's replicates from one model)
and a chain ``res = res.refit(y, warm=True)`` (each refit started from the previous one's
estimates), response by response (the load of a shared machine then weighs on all alike);
every ``--formula-every``-th response is also fitted fresh through the formula route
(``mvreml.fit`` on the data frame with the Pedigree, A^-1 built per fit), what a user without
the array API runs. Prints a Markdown table (seconds per fit); nothing is appended to
RESULTS.md. The GWAS-like loop is benchmarks/gwas.py.
"""
from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp

from . import problems


def arrays(size: str, outdir=problems.DEFAULT_DIR):
    """(y, X, Z, relationship) of the U problem of `size` (X: intercept, sex, cg treatment coded)."""
    import mvreml
    from mvreml.pedigree import normalize_ids

    ped, data = problems.read(size, outdir)
    data = data[data["y1"].notna()].reset_index(drop=True)
    n = len(data)
    rel = mvreml.relmat.as_relmat(mvreml.Pedigree(ped, allow_sire_dam=True), "ped")   # as benchmarks.run
    col = pd.Index(rel.labels).get_indexer(normalize_ids(data["animal"].to_numpy()))
    Z = sp.csr_matrix((np.ones(n), (np.arange(n), col)), shape=(n, len(rel.labels)))
    cols = [sp.csr_matrix(np.ones((n, 1)))]
    for f in ("sex", "cg"):
        codes = data[f].cat.codes.to_numpy()
        k = int(codes.max()) + 1
        D = sp.csr_matrix((np.ones(n), (np.arange(n), codes)), shape=(n, k))
        cols.append(D[:, 1:])
    return data["y1"].to_numpy(float), sp.hstack(cols, format="csr"), Z, rel


def main(argv=None) -> None:
    import mvreml

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--size", default="S", choices=problems.SIZES)
    ap.add_argument("--outdir", default=str(problems.DEFAULT_DIR), help="where the benchmark problems are cached")
    ap.add_argument("--formula-every", type=int, default=10,
                    help="a fresh mvreml.fit (formula, data frame, pedigree) on every k-th response")
    a = ap.parse_args(argv)
    warnings.simplefilter("ignore", mvreml.errors.DataWarning)
    y, X, Z, rel = arrays(a.size, a.outdir)
    ped, data = problems.read(a.size, a.outdir)
    data = data[data["y1"].notna()].reset_index(drop=True)
    pedigree = mvreml.Pedigree(ped, allow_sire_dam=True)
    rng = np.random.default_rng(15)
    ys = [y + rng.normal(scale=1.0, size=len(y)) for _ in range(a.n)]

    def term():
        return [mvreml.Random(Z, K=rel, name="animal")]

    t0 = time.perf_counter()
    base = mvreml.Model(y, X, random=term())
    base.fit()
    t_first = time.perf_counter() - t0
    rep0 = base.with_response(ys[0])
    chain = rep0.fit()
    # interleaved, response by response: the load of a shared machine hits every kind alike
    kinds = ("refit", "warm", "rep0", "chain")
    times = {"fresh": 0.0, "formula": 0.0, **{k: 0.0 for k in kinds}}
    its = {"fresh": [], **{k: [] for k in kinds}}
    worst = {"formula": 0.0, **{k: 0.0 for k in kinds}}
    n_formula = 0
    for i, yi in enumerate(ys):
        t0 = time.perf_counter()
        fresh = mvreml.Model(yi, X, random=term()).fit()
        times["fresh"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        refit = base.refit(yi)
        times["refit"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        warm = base.refit(yi, warm=True)
        times["warm"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        from0 = rep0.refit(yi, warm=True)
        times["rep0"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        chain = chain.refit(yi, warm=True)
        times["chain"] += time.perf_counter() - t0
        done = {"fresh": fresh, "refit": refit, "warm": warm, "rep0": from0, "chain": chain}
        for k, r in done.items():
            its[k].append(r.iterations)
            if k != "fresh":
                worst[k] = max(worst[k], abs(r.loglik - fresh.loglik) / abs(fresh.loglik))
        if a.formula_every and i % a.formula_every == 0:
            t0 = time.perf_counter()
            f = mvreml.fit("y1 ~ 1 + sex + cg", "~ vm(animal, ped)", data=data.assign(y1=yi),
                           relmat={"ped": pedigree})
            times["formula"] += time.perf_counter() - t0
            n_formula += 1
            worst["formula"] = max(worst["formula"], abs(f.loglik - fresh.loglik) / abs(fresh.loglik))
    per = {k: v / a.n for k, v in times.items() if k != "formula"}
    per["formula"] = times["formula"] / max(n_formula, 1)
    head = {"refit": "refit", "warm": "warm (y1 fit)", "rep0": "warm (replicate 0)", "chain": "chain"}
    print("| problem | n | records | first fit (s) | fresh Model fit (s) | fresh mvreml.fit (s) | "
          + " | ".join(f"{head[k]} (s)" for k in kinds) + " | "
          + " | ".join(f"{head[k]} / fresh Model" for k in kinds) + " | refit / fresh mvreml.fit | "
          "iterations fresh / " + " / ".join(head[k] for k in kinds) + " | max rel. diff log L "
          + " / ".join(head[k] for k in kinds) + " / formula |")
    print("|" + "---|" * (9 + 2 * len(kinds)))
    print(f"| U-{a.size} | {a.n} | {len(y)} | {t_first:.3f} | {per['fresh']:.4f} | {per['formula']:.4f} "
          f"({n_formula} fits) | " + " | ".join(f"{per[k]:.4f}" for k in kinds) + " | "
          + " | ".join(f"{per[k] / per['fresh']:.2f}" for k in kinds) + f" | {per['refit'] / per['formula']:.2f} | "
          + " / ".join(f"{np.mean(its[k]):.2f}" for k in ("fresh",) + kinds) + " | "
          + " / ".join(f"{worst[k]:.1e}" for k in kinds + ("formula",)) + " |")

if __name__ == "__main__":
    main()
