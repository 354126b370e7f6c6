"""BLAS threads under contention: a small fit (gryphon bivariate animal model) with the
engine's default (one thread for small equations) and with 2 threads, on an otherwise quiet
machine and while another process holds a core.

    python -m benchmarks.threads [--repeat 5]

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


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args(argv)
    _fit(None)                                     # warm-up: imports, first-call costs
    rows = []
    for threads in (None, 2):
        quiet = min(_fit(threads) for _ in range(args.repeat))
        stop = mp.Event()
        hog = mp.Process(target=_hog, args=(stop,))
        hog.start()
        try:
            busy = min(_fit(threads) for _ in range(args.repeat))
        finally:
            stop.set()
            hog.join()
        rows.append((threads, quiet, busy))
    lines = [f"## BLAS threads under contention ({dt.datetime.now():%Y-%m-%d %H:%M}, commit {machine.git_commit()})",
             "", f"{machine.machine()}", "",
             "gryphon bivariate animal model (us(trait):vm(animal, ped), 1,084 animals), best of "
             f"{args.repeat}; 'busy': another process spinning on one core.", "",
             "| threads | quiet (s) | busy (s) | busy / quiet |", "|---|---|---|---|"]
    for threads, quiet, busy in rows:
        name = "default (1 for small MME)" if threads is None else str(threads)
        lines.append(f"| {name} | {quiet:.3f} | {busy:.3f} | {busy / quiet:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_append:
        with open(HERE / "RESULTS.md", "a") as fh:
            fh.write("\n" + text)


if __name__ == "__main__":
    main()
