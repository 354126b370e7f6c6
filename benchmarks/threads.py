"""BLAS threads under contention: a small fit (gryphon bivariate animal model) and U-M (the
100k-animal univariate trial of benchmarks.problems) with the engine's default threads and
with 2 threads, on an otherwise quiet machine and while another process holds a core.

    python -m benchmarks.threads [--repeat 5] [--um-repeat 2] [--outdir DIR] [--no-um]

Prints a markdown table (best of --repeat, seconds) and appends it to benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing as mp
import time
import warnings
from pathlib import Path

import pandas as pd

from . import machine

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "tests" / "data" / "gryphon_wam"


def _hog(stop):
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def _fit(threads):
    import mvreml

    g = pd.read_csv(DATA / "gryphon.csv")
    ped = pd.read_csv(DATA / "gryphonped.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        P = mvreml.Pedigree(ped)
        t0 = time.perf_counter()
        mvreml.fit("cbind(bwt, tarsus) ~ trait + at(trait):sex", random="~ us(trait):vm(animal, ped)",
                   residual="~ units:us(trait)", data=g, relmat={"ped": P}, threads=threads)
    return time.perf_counter() - t0


def _um_fit(outdir):
    """A fit of U-M (its A^-1 built once, outside the timing), as benchmarks.run fits it."""
    from . import problems
    from .run import MODELS, timed_relationship

    spec = MODELS["U"]
    ped, data = problems.read("M", outdir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, rel = timed_relationship(ped, {})

    def fit(threads):
        import mvreml

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            mvreml.fit(spec["fixed"], random=spec["random"], residual=spec["residual"], data=data,
                       relmat={"ped": rel}, threads=threads)
        return time.perf_counter() - t0
    return fit


def _quiet_and_busy(fit, threads, repeat):
    quiet = min(fit(threads) for _ in range(repeat))
    stop = mp.Event()
    hog = mp.Process(target=_hog, args=(stop,))
    hog.start()
    try:
        busy = min(fit(threads) for _ in range(repeat))
    finally:
        stop.set()
        hog.join()
    return quiet, busy


def main(argv=None):
    import os

    from . import problems

    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--um-repeat", type=int, default=2)
    ap.add_argument("--outdir", default=str(problems.DEFAULT_DIR))
    ap.add_argument("--no-um", dest="um", action="store_false")
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args(argv)
    load = os.getloadavg()[0]
    _fit(None)                                     # warm-up: imports, first-call costs
    rows = []
    for threads in (None, 2):
        rows.append(("gryphon bivariate", threads, *_quiet_and_busy(_fit, threads, args.repeat)))
    if args.um:
        um = _um_fit(args.outdir)
        for threads in (None, 2):
            rows.append(("U-M", threads, *_quiet_and_busy(um, threads, args.um_repeat)))
    lines = [f"## BLAS threads under contention ({dt.datetime.now():%Y-%m-%d %H:%M}, commit {machine.git_commit()})",
             "", f"{machine.machine()}", "",
             "gryphon bivariate animal model (us(trait):vm(animal, ped), 1,084 animals), best of "
             f"{args.repeat}; U-M (101,801 equations), best of {args.um_repeat}; 'busy': another process "
             f"spinning on one core; load average {load:.2f} at the start (other jobs count as busy too).", "",
             "| fit | threads | quiet (s) | busy (s) | busy / quiet |", "|---|---|---|---|---|"]
    for what, threads, quiet, busy in rows:
        name = "default" if threads is None else str(threads)
        lines.append(f"| {what} | {name} | {quiet:.3f} | {busy:.3f} | {busy / quiet:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_append:
        with open(HERE / "RESULTS.md", "a") as fh:
            fh.write("\n" + text)


if __name__ == "__main__":
    main()
