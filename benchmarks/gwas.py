"""A GWAS-like loop over SNP columns on the U-S problem (issue 15): three ways.

    python -m benchmarks.gwas [--snps 1000] [--reestimate 1000] [--size S]

The U model of benchmarks.refit (``y1 ~ 1 + sex + cg``, ``~ vm(animal, ped)``, from arrays)
is fitted once; then every SNP column (genotypes 0 / 1 / 2 drawn per record with a random
allele frequency in [0.05, 0.5]) is tested as an extra fixed effect:

* ``scan``: :meth:`mvreml.Model.scan`, variance components held at the first fit's
  estimates, by block elimination on the model's factor (what EMMAX / GCTA --mlma with
  given variance components do);
* ``fixed VC``: ``model.with_fixed([X, snp]).fit(init=theta, fix=<all terms>)``, the same
  test through the general API (new design, MME pattern, symbolic analysis, one
  factorization per SNP);
* ``re-estimated``: ``model.with_fixed([X, snp]).fit()``, variance components re-estimated
  per SNP (on the first ``--reestimate`` SNPs).

The scan and the fixed-VC fits must agree (the table gives the largest difference of an
estimate in standard errors and of a standard error relative to it). Prints a Markdown table (seconds in all, per SNP); nothing is appended to RESULTS.md.
"""
from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import scipy.sparse as sp

from . import problems
from .refit import arrays


def main(argv=None) -> None:
    import mvreml

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--snps", type=int, default=1000)
    ap.add_argument("--reestimate", type=int, default=1000, help="SNPs fitted with re-estimated components")
    ap.add_argument("--size", default="S", choices=problems.SIZES)
    a = ap.parse_args(argv)
    warnings.simplefilter("ignore", mvreml.errors.DataWarning)
    warnings.simplefilter("ignore", mvreml.errors.PedigreeWarning)
    y, X, Z, rel = arrays(a.size)
    n = len(y)
    rng = np.random.default_rng(20)
    maf = rng.uniform(0.05, 0.5, a.snps)
    G = rng.binomial(2, maf, size=(n, a.snps)).astype(float)

    t0 = time.perf_counter()
    model = mvreml.Model(y, X, random=[mvreml.Random(Z, K=rel, name="animal")])
    first = model.fit()
    t_first = time.perf_counter() - t0
    theta = first.varcomp["estimate"].to_numpy()

    t0 = time.perf_counter()
    scan = model.scan(G, names=[f"snp{k}" for k in range(a.snps)])
    t_scan = time.perf_counter() - t0

    def with_snp(k):
        return model.with_fixed(sp.hstack([X, sp.csr_matrix(G[:, k:k + 1])], format="csr"))

    est = np.zeros((a.snps, 2))
    t0 = time.perf_counter()
    for k in range(a.snps):
        mk = with_snp(k)
        fx = mk.fit(init=theta, fix=mk.terms).fixef
        est[k] = fx.iloc[-1][["estimate", "std_error"]].to_numpy(float)
    t_fixed = time.perf_counter() - t0
    diff_b = np.max(np.abs(scan["estimate"].to_numpy() - est[:, 0]) / est[:, 1])    # in SEs
    diff_se = np.max(np.abs(scan["std_error"].to_numpy() - est[:, 1]) / est[:, 1])

    n_re = min(a.reestimate, a.snps)
    z_re = np.zeros(n_re)
    its = []
    t0 = time.perf_counter()
    for k in range(n_re):
        res = with_snp(k).fit()
        z_re[k] = res.fixef["estimate"].iloc[-1] / res.fixef["std_error"].iloc[-1]
        its.append(res.iterations)
    t_re = time.perf_counter() - t0
    dz = np.max(np.abs(z_re - scan["z_ratio"].to_numpy()[:n_re])) if n_re else np.nan

    print("| problem | records | SNPs | first fit (s) | scan (s) | scan per SNP (ms) | fixed-VC fits (s) | "
          "per SNP (ms) | max diff scan / fixed-VC (b in SEs, rel. SE) | re-estimated fits | re-estimated (s) | "
          "per SNP (ms) | mean iterations | max abs diff z scan / re-estimated |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    per_re = 1e3 * t_re / n_re if n_re else float("nan")
    print(f"| U-{a.size} | {n} | {a.snps} | {t_first:.3f} | {t_scan:.3f} | {1e3 * t_scan / a.snps:.2f} | "
          f"{t_fixed:.1f} | {1e3 * t_fixed / a.snps:.1f} | {diff_b:.1e}, {diff_se:.1e} | {n_re} | {t_re:.1f} | "
          f"{per_re:.1f} | {np.mean(its) if its else float('nan'):.2f} | {dz:.2e} |")


if __name__ == "__main__":
    main()
