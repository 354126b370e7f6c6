"""Benchmark of mvreml.pairwise on dask: 2 workers against 1 on a problem's pairwise set.

The S pedigree trial (10k animals, y1..y3, the model of ``benchmarks/run.py``'s "T") has 3
univariate and 3 bivariate sub-models. They are fitted serially in this process, then on a
LocalCluster of 1 and of 2 worker processes (one BLAS thread each; the cluster is started and
warmed up before the clock starts: its start-up is reported apart), the three interleaved
repeat after repeat. Every run must give the
same log L per sub-model. A dated section is appended to benchmarks/RESULTS.md.

    python -m benchmarks.many [--size S] [--repeats 2] [--json FILE] [--no-append]
"""
from __future__ import annotations

import argparse
import datetime
import json
import time
import warnings
from pathlib import Path

from benchmarks import machine, problems
from benchmarks.run import MODELS

HERE = Path(__file__).resolve().parent


def _warm(client) -> float:
    t = time.perf_counter()
    client.run(lambda: __import__("mvreml.api") and None)
    return time.perf_counter() - t


def run(size: str = "S", repeats: int = 2) -> dict:
    import mvreml
    from mvreml.many import local_client
    from mvreml.relmat import RelationshipMatrix

    spec = MODELS["T"]
    ped, data = problems.read(size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pedigree = mvreml.Pedigree(ped, allow_sire_dam=True)
        rel = RelationshipMatrix(pedigree.ids, pedigree.ainv(), pedigree.logdet_a(), "pedigree", "ped")
    args = dict(fixed=spec["fixed"], random=spec["random"], residual=spec["residual"], data=data,
                relmat={"ped": rel}, progress=False)
    rec = {"size": size, "model": {k: spec[k] for k in ("fixed", "random", "residual")},
           "machine": machine.machine(), "commit": machine.git_commit(), "runs": []}
    logliks = {}

    def timed(label, client, r, startup=None):
        load = machine.machine()["load1"]
        t = time.perf_counter()
        pw = mvreml.pairwise(client=client, **args)
        wall = time.perf_counter() - t
        assert not pw.fits.failed, pw.fits.summary()
        ll = [x.result.loglik for x in pw.fits]
        logliks.setdefault("ref", ll)
        rec["runs"].append(dict(label=label, repeat=r, wall=wall, load1_before=load, startup=startup,
                                fit_seconds=sum(x.seconds for x in pw.fits),
                                max_dloglik=max(abs(a - b) for a, b in zip(ll, logliks["ref"])),
                                fits=[dict(name=x.name, seconds=x.seconds, loglik=x.result.loglik,
                                           iterations=x.result.iterations) for x in pw.fits]))
        print(f"{label} run {r}: {wall:.2f} s (load {load})", flush=True)

    clients, startup = {}, {}
    try:
        for n in (1, 2):
            t = time.perf_counter()
            clients[n] = local_client(n)
            startup[n] = time.perf_counter() - t + _warm(clients[n])
        # the runs interleaved (serial, 1 worker, 2 workers, again ...): a change in the load
        # of the shared machine falls on all three alike
        for r in range(repeats):
            timed("serial (this process)", "serial", r)
            timed("1 worker", clients[1], r, startup[1])
            timed("2 workers", clients[2], r, startup[2])
    finally:
        for c in clients.values():
            cluster = c.cluster
            c.close()
            cluster.close()
    return rec


def best(rec: dict, label: str) -> float:
    return min(r["wall"] for r in rec["runs"] if r["label"] == label)


def render(rec: dict) -> str:
    m = rec["machine"]
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    one, two = best(rec, "1 worker"), best(rec, "2 workers")
    fits = rec["runs"][0]["fits"]
    lines = [f"## {when} — issue 17: pairwise on dask, 2 workers against 1 ({rec['size']}-T pairwise set)", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gb']} GB, shared with other jobs; commit "
             f"{rec['commit']}. Model: `{rec['model']['fixed']}`, `{rec['model']['random']}`, "
             f"`{rec['model']['residual']}`; {len(fits)} sub-models (3 univariate, 3 bivariate) of "
             "`mvreml.pairwise`, A^-1 built once and sent to the cluster once. One BLAS thread per "
             "process; the clusters' start-up (and warm-up import) is outside the clock; the runs are "
             "interleaved (serial, 1 worker, 2 workers, repeated).", "",
             "| run | wall (s) per repeat | best (s) | sum of fit times (s) | load1 before | start-up (s) |",
             "|---|---|---|---|---|---|"]
    for label in dict.fromkeys(r["label"] for r in rec["runs"]):
        rs = [r for r in rec["runs"] if r["label"] == label]
        su = rs[0]["startup"]
        walls = " / ".join(f"{r['wall']:.2f}" for r in rs)
        loads = " / ".join(str(r["load1_before"]) for r in rs)
        startup = "" if su is None else f"{su:.1f}"
        lines.append(f"| {label} | {walls} | {min(r['wall'] for r in rs):.2f} "
                     f"| {min(r['fit_seconds'] for r in rs):.2f} | {loads} | {startup} |")
    dmax = max(r["max_dloglik"] for r in rec["runs"])
    lines += ["", f"**Speed-up, 2 workers against 1: {one / two:.2f}x** (best runs, {one:.2f} s -> {two:.2f} s). "
              f"Same log L in every run for every sub-model (max |delta| {dmax:.1e}).", "",
              "Per sub-model (first serial run): " + ", ".join(
                  f"{f['name']} {f['seconds']:.2f} s ({f['iterations']} it.)" for f in fits) + ".", ""]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="S", choices=problems.SIZES)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json", help="also write the raw records here")
    ap.add_argument("--no-append", action="store_true", help="print the section, do not append it")
    a = ap.parse_args(argv)
    rec = run(a.size, a.repeats)
    text = render(rec)
    print(text)
    if a.json:
        Path(a.json).write_text(json.dumps(rec, indent=1))
    if not a.no_append:
        with open(HERE / "RESULTS.md", "a") as fh:
            fh.write("\n" + text)


if __name__ == "__main__":
    main()
