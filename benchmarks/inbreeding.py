#!/usr/bin/env python3
"""Time inbreeding coefficients (and A^-1) on ordinary and on deep inbred pedigrees.

    python benchmarks/inbreeding.py [--bench DIR] [--sizes S M] [--chain 200000] [--repeat 3]

``--bench DIR`` holds the pedigrees written by shared/bench/make_problems.py
(DIR/S/pedigree.csv, ...).  The deep cases are generated here: a full-sib chain
(two animals a generation, each pair the offspring of the previous pair), a selfing line,
and a closed population of 50 animals a generation mated at random.
"""
import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from mvreml.errors import PedigreeError, PedigreeWarning
from mvreml.pedigree import Pedigree


def full_sib_chain(n):
    k = np.arange(n)
    g = k // 2
    sire = np.where(g > 0, 2 * (g - 1), -1)
    dam = np.where(g > 0, 2 * (g - 1) + 1, -1)
    return sire, dam


def closed_population(n, per_gen=50, seed=1):
    rng = np.random.default_rng(seed)
    sire, dam = np.full(n, -1), np.full(n, -1)
    for lo in range(per_gen, n, per_gen):
        hi = min(lo + per_gen, n)
        prev = np.arange(lo - per_gen, lo)
        sire[lo:hi] = rng.choice(prev[: per_gen // 2], hi - lo)
        dam[lo:hi] = rng.choice(prev[per_gen // 2:], hi - lo)
    return sire, dam


def table(sire, dam):
    ids = np.arange(1, len(sire) + 1)
    lab = np.append(ids, 0)
    return pd.DataFrame({"animal": ids, "sire": lab[sire], "dam": lab[dam]})


def timed(tab, repeat, **kw):
    """Best wall and CPU seconds of F (the machine may be shared), seconds of A^-1."""
    best, cpu = np.inf, np.inf
    for _ in range(repeat):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PedigreeWarning)
            ped = Pedigree(tab, **kw)
        t0, c0 = time.perf_counter(), time.process_time()
        F = ped.inbreeding.to_numpy()
        t1 = time.perf_counter()
        cpu = min(cpu, time.process_time() - c0)
        try:
            ped.ainv()
            t2 = time.perf_counter()
        except PedigreeError:           # a deep inbred line: A is singular in doubles
            t2 = np.nan
        best = min(best, t1 - t0)
    return best, cpu, t2 - t1, F


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", default="/tmp/pedbench")
    ap.add_argument("--sizes", nargs="*", default=["S", "M"])
    ap.add_argument("--chain", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    cases = [(f"bench {s}", pd.read_csv(Path(a.bench) / s / "pedigree.csv"),
              {"allow_sire_dam": True})
             for s in a.sizes]
    if a.chain:
        cases += [(f"full-sib chain {a.chain}", table(*full_sib_chain(a.chain)), {}),
                  (f"closed population 50/gen {a.chain}", table(*closed_population(a.chain)),
                   {})]
    for name, tab, kw in cases:
        tf, cpu, ta, F = timed(tab, a.repeat, **kw)
        print(f"{name:36s} n={len(tab):7d}  F {tf:8.4f} s (CPU {cpu:8.4f} s)  A^-1 {ta:6.3f} s  "
              f"mean F {F.mean():.6f}  max F {F.max():.15f}", flush=True)


if __name__ == "__main__":
    main()
