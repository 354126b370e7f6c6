"""Refits vs fresh fits through the array route (issue 15): the U-S problem with new responses.

    python -m benchmarks.refit [--n 50] [--size S] [--snps 0]

The U model of benchmarks.run (``y1 ~ 1 + sex + cg``, ``~ vm(animal, ped)``) is built once as
an :class:`mvreml.Model` from arrays (A^-1 of the pedigree computed once and passed as Kinv),
then fitted to ``n`` new responses (y1 plus independent noise, same missing pattern) two
ways: a fresh Model per response (design, MME pattern, symbolic analysis and fit each time)
and ``model.refit(y)`` (pattern and analysis reused). Both fits of a response must agree
(log L to 1e-9 relative); a third run refits from the first fit's estimates (``init=theta``).
``--snps K`` times ``with_fixed`` over K random SNP columns as
well (a GWAS-like loop). Prints a Markdown table; nothing is appended to RESULTS.md.
"""
from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp

from . import problems


def arrays(size: str):
    """(y, X, Z, relationship) of the U problem of `size` (X: intercept, sex, cg treatment coded)."""
    import mvreml
    from mvreml.pedigree import normalize_ids

    ped, data = problems.read(size)
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
    ap.add_argument("--snps", type=int, default=0)
    a = ap.parse_args(argv)
    warnings.simplefilter("ignore", mvreml.errors.DataWarning)
    y, X, Z, rel = arrays(a.size)
    rng = np.random.default_rng(15)
    ys = [y + rng.normal(scale=1.0, size=len(y)) for _ in range(a.n)]

    def term():
        return [mvreml.Random(Z, K=rel, name="animal")]

    t0 = time.perf_counter()
    base = mvreml.Model(y, X, random=term())
    theta = base.fit().varcomp["estimate"].to_numpy()
    t_first = time.perf_counter() - t0

    t0 = time.perf_counter()
    fresh = [mvreml.Model(yi, X, random=term()).fit() for yi in ys]
    t_fresh = time.perf_counter() - t0
    t0 = time.perf_counter()
    refit = [base.refit(yi) for yi in ys]
    t_refit = time.perf_counter() - t0
    t0 = time.perf_counter()
    warm = [base.refit(yi, init=theta) for yi in ys]         # started from the first fit's estimates
    t_warm = time.perf_counter() - t0
    worst = max(abs(f.loglik - r.loglik) / abs(f.loglik) for f, r in zip(fresh, refit))
    worst_warm = max(abs(f.loglik - r.loglik) / abs(f.loglik) for f, r in zip(fresh, warm))
    its = np.mean([r.iterations for r in refit])
    print("| problem | n | records | first fit (s) | fresh fits (s) | refits (s) | refit / fresh | "
          "mean iterations | max rel. diff log L | warm refits (s) | warm / fresh | warm iterations | "
          "warm max rel. diff |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    print(f"| U-{a.size} | {a.n} | {len(y)} | {t_first:.3f} | {t_fresh:.2f} | {t_refit:.2f} | "
          f"{t_refit / t_fresh:.2f} | {its:.1f} | {worst:.1e} | {t_warm:.2f} | {t_warm / t_fresh:.2f} | "
          f"{np.mean([r.iterations for r in warm]):.1f} | {worst_warm:.1e} |")
    if a.snps:
        snp = rng.integers(0, 3, (len(y), a.snps)).astype(float)
        t0 = time.perf_counter()
        for k in range(a.snps):
            base.with_fixed(sp.hstack([X, sp.csr_matrix(snp[:, k:k + 1])], format="csr")).fit()
        t_gwas = time.perf_counter() - t0
        print(f"\nwith_fixed over {a.snps} SNP columns: {t_gwas:.2f} s ({t_gwas / a.snps:.3f} s per SNP)")


if __name__ == "__main__":
    main()
