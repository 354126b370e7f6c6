"""Spatial field-trial benchmarks (issue 12).

    python -m benchmarks.spatial [--problems trial met] [--no-append]

* ``trial``: one 100 x 100 lattice (10,000 plots, 1% of them without a record), 1,000 genotypes
  of 10 plots each in random positions, ``y ~ 1``, ``random = ~ gen + units`` (the nugget),
  ``residual = ~ ar1(col):ar1(row)``; simulated field sigma^2 = 1, rho_col = 0.6, rho_row = 0.4,
  nugget 0.3, genotype variance 0.5.
* ``trend``: the same data with the field as a random term, ``random = ~ gen + ar1(col):ar1(row)``
  and an iid residual (the nugget): the AR1 random term's K(rho) on 10,000 levels.
* ``met``: 20 sites, each a 20 x 25 lattice (500 plots, 10,000 in all), 400 genotypes of which
  each site tests 250 (2 plots each), ``y ~ site``, ``random = ~ gen + gen:site``,
  ``residual = ~ dsum(~ ar1(col):ar1(row) | site)`` (62 variance parameters); per-site
  sigma^2 U(0.5, 2), rho U(0.2, 0.7) in each direction.

Each problem runs in a child process (its own peak RSS): wall time per step (the fit's Timer),
iterations, peak RSS and the recovered parameters, appended to RESULTS.md with the load.
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


def _ar1_field(n_col: int, n_row: int, sigma2: float, rho_c: float, rho_r: float, rng) -> np.ndarray:
    """sigma^2 AR1(rho_c) (x) AR1(rho_r) draw as an n_col x n_row array (column slowest)."""
    def chol(n, rho):
        i = np.arange(n)
        return np.linalg.cholesky(rho ** np.abs(i[:, None] - i[None, :]))
    Z = rng.standard_normal((n_col, n_row))
    return np.sqrt(sigma2) * chol(n_col, rho_c) @ Z @ chol(n_row, rho_r).T


def simulate_trial(seed: int = 12):
    rng = np.random.default_rng(seed)
    n_col = n_row = 100
    col, row = np.meshgrid(np.arange(1, n_col + 1), np.arange(1, n_row + 1), indexing="ij")
    gen = rng.permutation(np.repeat(np.arange(1000), 10))
    g = rng.normal(0, np.sqrt(0.5), 1000)
    e = _ar1_field(n_col, n_row, 1.0, 0.6, 0.4, rng).ravel()
    y = 10 + g[gen] + e + rng.normal(0, np.sqrt(0.3), n_col * n_row)
    df = pd.DataFrame({"col": col.ravel(), "row": row.ravel(), "gen": [f"G{i:04d}" for i in gen], "y": y})
    df.loc[rng.choice(len(df), 100, replace=False), "y"] = np.nan
    truth = {"gen": 0.5, "units": 0.3, "col:row!R": 1.0, "col:row!col!cor": 0.6, "col:row!row!cor": 0.4}
    return df, truth


def simulate_met(seed: int = 13):
    rng = np.random.default_rng(seed)
    n_site, n_col, n_row, n_gen, per_site = 20, 20, 25, 400, 250
    g = rng.normal(0, np.sqrt(0.5), n_gen)
    gs = rng.normal(0, np.sqrt(0.2), (n_gen, n_site))
    parts, truth = [], {"gen": 0.5, "gen:site": 0.2}
    for s in range(n_site):
        sigma2, rc, rr = rng.uniform(0.5, 2.0), rng.uniform(0.2, 0.7), rng.uniform(0.2, 0.7)
        name = f"S{s + 1:02d}"
        truth.update({f"site_{name}!R": sigma2, f"site_{name}!col!cor": rc, f"site_{name}!row!cor": rr})
        col, row = np.meshgrid(np.arange(1, n_col + 1), np.arange(1, n_row + 1), indexing="ij")
        gens = rng.permutation(np.repeat(rng.choice(n_gen, per_site, replace=False), 2))
        e = _ar1_field(n_col, n_row, sigma2, rc, rr, rng).ravel()
        y = 5 + rng.uniform(-2, 2) + g[gens] + gs[gens, s] + e
        parts.append(pd.DataFrame({"site": name, "col": col.ravel(), "row": row.ravel(),
                                   "gen": [f"G{i:03d}" for i in gens], "y": y}))
    return pd.concat(parts, ignore_index=True), truth


PROBLEMS = {
    "trial": (simulate_trial, dict(fixed="y ~ 1", random="~ gen + units", residual="~ ar1(col):ar1(row)"),
              "100 x 100 lattice (10,000 plots, 100 missing), 1,000 genotypes; ~ gen + units, ar1(col):ar1(row)"),
    "trend": (simulate_trial, dict(fixed="y ~ 1", random="~ gen + ar1(col):ar1(row)", residual=None),
              "the same trial with the field as a random AR1 x AR1 trend (10,000 levels, K^-1 nine "
              "entries a row) beside an iid residual; ~ gen + ar1(col):ar1(row)"),
    "met": (simulate_met, dict(fixed="y ~ site", random="~ gen + gen:site",
                               residual="~ dsum(~ ar1(col):ar1(row) | site)"),
            "20 sites x 20 x 25 lattices (10,000 plots), 400 genotypes; ~ gen + gen:site, "
            "dsum(~ ar1(col):ar1(row) | site)"),
}


def child(name: str) -> dict:
    import mvreml

    sim, model, _ = PROBLEMS[name]
    t = time.perf_counter()
    df, truth = sim()
    rec = {"problem": name, "simulate": time.perf_counter() - t, "load_before": machine.machine()["load1"]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        res = mvreml.fit(model["fixed"], random=model["random"], residual=model["residual"], data=df)
        rec["fit"] = time.perf_counter() - t
    est = res.varcomp["estimate"]
    if name == "trend":     # the field is the random term, the nugget the residual
        truth = {"gen": 0.5, "col:row": 1.0, "col:row!col!cor": 0.6, "col:row!row!cor": 0.4, "units": 0.3}
    err = {k: float(est[k] - v) for k, v in truth.items() if k in est.index}
    rec.update(iterations=res.iterations, converged=res.converged, loglik=res.loglik,
               timings=res.model["timings"], n_plots=len(df), n_records=res.n_obs,
               n_params=len(res.varcomp), max_abs_err=float(np.max(np.abs(list(err.values())))),
               errors={k: round(v, 4) for k, v in list(err.items())[:5]},
               peak_rss_gb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
               load_after=machine.machine()["load1"])
    return rec


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--problems", nargs="+", default=list(PROBLEMS))
    ap.add_argument("--child")
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child)))
        return
    recs = []
    for name in args.problems:
        out = subprocess.run([sys.executable, "-m", "benchmarks.spatial", "--child", name],
                             capture_output=True, text=True, cwd=HERE.parent)
        if out.returncode:
            print(out.stderr[-3000:])
            continue
        recs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    m = machine.machine()
    lines = [f"## Spatial field trials, issue 12 ({dt.datetime.now():%Y-%m-%d %H:%M}, commit {machine.git_commit()})",
             "", f"{m['cpu']}, {m['cores']} cores, {m['ram_gb']} GB, **shared with the other sessions** "
             "(load1 before / after each fit in the table: the times are upper bounds).", ""]
    for r in recs:
        lines.append(f"* `{r['problem']}`: {PROBLEMS[r['problem']][2]}")
    lines += ["", "| problem | plots / records | parameters | fit (s) | iterations | per-step seconds | peak RSS (GB) "
              "| max abs error of the estimates | load1 before / after |", "|---|---|---|---|---|---|---|---|---|"]
    for r in recs:
        steps = ", ".join(f"{k} {v:.1f}" for k, v in r["timings"].items())
        lines.append(f"| {r['problem']} | {r['n_plots']:,} / {r['n_records']:,} | {r['n_params']} | {r['fit']:.1f} | "
                     f"{r['iterations']}{'' if r['converged'] else ' (not converged)'} | {steps} | "
                     f"{r['peak_rss_gb']:.2f} | {r['max_abs_err']:.3f} ({', '.join(f'{k} {v:+.3f}' for k, v in r['errors'].items())}) | "
                     f"{r['load_before']} / {r['load_after']} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_append:
        with open(HERE / "RESULTS.md", "a") as fh:
            fh.write("\n" + text)


if __name__ == "__main__":
    main()
