"""Random-regression test-day model (issue 14): animals with a pedigree, 10 test days each,
``y ~ 1 + leg(dim, 2)``, random ``us(leg(dim, 2)):vm(animal, ped) + diag(leg(dim, 2)):ide(animal)``.

    python -m benchmarks.testday --sizes S M [--no-append]

S: 10,000 animals (100k records), M: 100,000 animals (1M records). Deterministic simulation
(the same as tests/test_random_regression.py at S); records wall time per step (the fit's own
Timer), iterations, peak RSS and the recovery of the simulated matrices, appended to RESULTS.md.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from . import machine

HERE = Path(__file__).resolve().parent
SIZES = {"S": 10_000, "M": 100_000}
G_TRUE = np.array([[4.0, 1.0, -0.3], [1.0, 1.5, 0.2], [-0.3, 0.2, 0.5]])
PE_TRUE = np.diag([2.0, 0.6, 0.3])


def simulate(n: int, n_tests: int = 10, seed: int = 2):
    rng = np.random.default_rng(seed)
    # 10 discrete generations, parents from the previous one: a few sires (even numbers) each
    # mated to many dams (odd numbers), as a breeding programme; random parents among all
    # earlier animals would make the pedigree a random graph whose factor fills in densely
    gen_size = n // 10
    sire = np.zeros(n, np.int64) - 1
    dam = np.zeros(n, np.int64) - 1
    i = np.arange(gen_size, n)
    first = (i // gen_size - 1) * gen_size
    sire[gen_size:] = first + 2 * rng.integers(0, max(25, gen_size // 400), len(i))   # few sires
    dam[gen_size:] = first + 2 * rng.integers(0, gen_size // 2, len(i)) + 1
    L = np.linalg.cholesky(G_TRUE)
    a = np.zeros((n, 3))
    ms = rng.standard_normal((n, 3)) @ L.T
    for k in range(n):                       # parents come first: one pass in order
        if sire[k] >= 0:
            a[k] = 0.5 * (a[sire[k]] + a[dam[k]]) + np.sqrt(0.5) * ms[k]
        else:
            a[k] = ms[k]
    pe = rng.standard_normal((n, 3)) * np.sqrt(np.diag(PE_TRUE))
    dim = np.sort(rng.uniform(5, 305, (n, n_tests)), axis=1)
    z = 2 * (dim - 5) / 300 - 1
    phi = np.stack([np.full_like(z, np.sqrt(0.5)), np.sqrt(1.5) * z, np.sqrt(2.5) * 0.5 * (3 * z * z - 1)], -1)
    y = 20 + np.einsum("ntk,nk->nt", phi, a + pe) + rng.normal(0, 1.0, (n, n_tests))
    ids = np.array([f"A{k}" for k in range(n)])
    ped = pd.DataFrame({"animal": ids, "sire": np.where(sire >= 0, ids[np.maximum(sire, 0)], "0"),
                        "dam": np.where(dam >= 0, ids[np.maximum(dam, 0)], "0")})
    data = pd.DataFrame({"animal": np.repeat(ids, n_tests), "dim": dim.ravel(), "y": y.ravel()})
    return ped, data


def child(size: str) -> dict:
    import mvreml

    t = time.perf_counter()
    ped, data = simulate(SIZES[size])
    rec = {"size": size, "simulate": time.perf_counter() - t}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        P = mvreml.Pedigree(ped)
        rec["pedigree"] = time.perf_counter() - t
        t = time.perf_counter()
        res = mvreml.fit("y ~ 1 + leg(dim, 2)", random="~ us(leg(dim, 2)):vm(animal, ped) + "
                         "diag(leg(dim, 2)):ide(animal)", data=data, relmat={"ped": P})
        rec["fit"] = time.perf_counter() - t
    G = res.covariance("leg(dim, 2):animal").to_numpy()
    PE = res.covariance("leg(dim, 2):ide(animal)").to_numpy()
    rec.update(iterations=res.iterations, converged=res.converged, loglik=res.loglik,
               timings=res.model["timings"], blas_threads=res.model.get("blas_threads"),
               G_max_abs_err=float(np.abs(G - G_TRUE).max()), PE_max_abs_err=float(np.abs(np.diag(PE - PE_TRUE)).max()),
               residual=float(res.covariance("units").iloc[0, 0]), n_records=len(data),
               peak_rss_gb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
    return rec


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", nargs="+", default=["S"])
    ap.add_argument("--child")
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child)))
        return
    recs = []
    for size in args.sizes:
        out = subprocess.run([sys.executable, "-m", "benchmarks.testday", "--child", size],
                             capture_output=True, text=True, cwd=HERE.parent)
        if out.returncode:
            print(out.stderr[-2000:])
            continue
        recs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    m = machine.machine()
    lines = [f"## Test-day random regression ({dt.datetime.now():%Y-%m-%d %H:%M}, commit {machine.git_commit()})",
             "", f"{m['cpu']}, {m['cores']} cores, {m['ram_gb']} GB, load {m['load1']} at the start; "
             "us(leg(dim, 2)):vm(animal, ped) + diag(leg(dim, 2)):ide(animal), 10 test days per animal.", "",
             "| size | animals / records | fit (s) | iterations | per-step seconds | peak RSS (GB) | max abs error G / PE | residual (true 1) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in recs:
        steps = ", ".join(f"{k} {v:.1f}" for k, v in r["timings"].items())
        lines.append(f"| {r['size']} | {SIZES[r['size']]:,} / {r['n_records']:,} | {r['fit']:.1f} | {r['iterations']}"
                     f"{'' if r['converged'] else ' (not converged)'} | {steps} | {r['peak_rss_gb']:.2f} | "
                     f"{r['G_max_abs_err']:.3f} / {r['PE_max_abs_err']:.3f} | {r['residual']:.3f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_append:
        with open(HERE / "RESULTS.md", "a") as fh:
            fh.write("\n" + text)


if __name__ == "__main__":
    main()
