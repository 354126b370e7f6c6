"""MUMPS over MPI against CHOLMOD: fit time and peak memory per rank; MUMPS's memory forecast.

    python -m benchmarks.mumps [--fits U-M B-M] [--ranks 1 2] [--analyse T-L] [--analysis-ranks 2 4 8]

Every fit runs in a fresh process (CHOLMOD: ``python -m benchmarks.mumps --child``; MUMPS:
``mpirun -n R python -m benchmarks.mumps --child``), the same model and data as
benchmarks/run.py. Each rank reports its own peak RSS (``ru_maxrss``), so "memory per
rank" is measured, not estimated; the ranks assemble C as in a fit (rank 0 sends each
the rows of the design of its records; mvreml.backends.share). ``--analyse`` runs MUMPS's
analysis alone (no factorization) on R ranks and reports its forecasts: INFO(15) per rank (MB for the in-core
factorization), INFOG(16) / INFOG(17) (largest rank, all ranks), and the factor's entries.
Ranks beyond the cores are oversubscribed (``--oversubscribe``): the forecasts do not
depend on where the ranks run, the timings do. ``--timeout`` stops a run (mpirun and its
ranks, by process group) that takes longer, and says so in its record.

Prints one JSON record per run and, with ``--markdown``, a table for benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from . import machine, problems
from .run import MODELS, timed_relationship

REPO = Path(__file__).resolve().parent.parent


def _design(key: str, outdir: str):
    traits, size = key.split("-")
    spec = MODELS[traits]
    ped, data = problems.read(size, outdir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, rel = timed_relationship(ped, {})
    return spec, data, rel


def child(args) -> None:
    """One run in this process (rank 0 prints the record; every rank gives its peak RSS)."""
    import mvreml

    comm = None
    if args.backend == "mumps":
        from mvreml.backends.mpi import world

        comm = world()
    rank = comm.rank if comm is not None else 0
    rec = {"key": args.key, "backend": args.backend, "ranks": comm.size if comm is not None else 1}
    t0 = time.perf_counter()
    if args.analysis_only:
        rec.update(_analysis(args, comm))
    elif rank != 0:          # the serving ranks get their rows of the design from rank 0 in the fit
        from mvreml.backends import mpi

        mpi.serve(comm)
    else:
        spec, data, rel = _design(args.key, args.outdir)
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = mvreml.fit(spec["fixed"], random=spec["random"], residual=spec["residual"], data=data,
                             relmat={"ped": rel}, backend=args.backend, threads=1)
        if rank == 0:
            rec.update(fit=time.perf_counter() - t, loglik=float(res.loglik), iterations=int(res.iterations),
                       converged=bool(res.converged), timings=dict(res.model.get("timings", {})),
                       n_eq=int(res.rank_x) + len(rel.labels) * len(spec["traits"]),
                       mumps=res.model.get("mumps"))
    rec["seconds"] = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    rec["peak_rss_gb_per_rank"] = comm.gather(rss, root=0) if comm is not None else [rss]
    if rank == 0:
        rec["load"] = machine.machine().get("load1")
        print(json.dumps(rec), flush=True)


def _analysis(args, comm) -> dict:
    """MUMPS's analysis of the model's C on comm's ranks, each given its share as in a fit
    (rank 0 builds the design and sends the rows), nothing more."""
    import numpy as np

    from mvreml.backends import mpi

    if comm.rank != 0:
        mpi.serve(comm)
        return {}
    with mpi.session(comm):
        model, t_pattern = _model(args)
        from mvreml.backends.mumps import MumpsBackend, pivot_order

        pat = model.pattern
        # the pivot order (CHOLMOD's AMD, minutes on T-L) is the same for any number of ranks:
        # computed by the first run, read by the others
        # (read from the problems' directory if an earlier run left it there, else kept in /tmp:
        # the problems' directory is read-only to a benchmark)
        cache = Path(args.outdir) / f"{args.key}.perm.npy"
        if not cache.is_file():
            cache = Path(tempfile.gettempdir()) / f"mvreml-{args.key}.perm.npy"
        t = time.perf_counter()
        if cache.is_file():
            perm = np.load(cache)
        else:
            import scipy.sparse as sp

            perm = pivot_order(sp.csc_matrix((np.ones(pat.nnz), pat.indices, pat.indptr), shape=(pat.n_eq,) * 2))
            np.save(cache, perm)
        t_order = time.perf_counter() - t
        b = MumpsBackend(comm, ordering=perm)
        t = time.perf_counter()
        b.analyze_model(model)
        est = b.memory_estimate()
        b.close()
    return dict(n_eq=int(pat.n_eq), nnz=int(pat.nnz), pattern_seconds=t_pattern, ordering_seconds=t_order,
                analysis_seconds=time.perf_counter() - t, mumps=est)


def _model(args):
    """The engine's REMLModel of the problem (its design and C's pattern), and the seconds they took."""
    from mvreml.api import prepare
    from mvreml.formula import parse_fixed, parse_random, parse_residual
    from mvreml.likelihood import REMLModel

    spec, data, rel = _design(args.key, args.outdir)
    fs = parse_fixed(spec["fixed"])
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        design, _, _, blocks = prepare(fs, parse_random(spec["random"], fs.response),
                                       parse_residual(spec["residual"], fs.response), data, relmat={"ped": rel})
    model = REMLModel(design, blocks)
    return model, time.perf_counter() - t


def _mpirun(ranks: int) -> list:
    env_root = hasattr(os, "geteuid") and os.geteuid() == 0
    return ["mpirun", *(["--allow-run-as-root"] if env_root else []), "--oversubscribe", "-n", str(ranks)]


def spawn(key: str, backend: str, ranks: int, outdir: str, analysis_only=False, timeout=7200) -> dict:
    base = [sys.executable, "-m", "benchmarks.mumps", "--child", "--key", key, "--backend", backend,
            "--outdir", outdir] + (["--analysis-only"] if analysis_only else [])
    cmd = base if backend == "cholmod" else _mpirun(ranks) + base
    env = dict(os.environ, PYTHONPATH=str(REPO))     # the default environment: the engine owns its threads
    # a session of its own: a run past `timeout` is ended whole (mpirun and its ranks), by its group
    p = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.communicate()
        return {"key": key, "backend": backend, "ranks": ranks, "error": f"stopped after {timeout:g} s (--timeout)"}
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if p.returncode or not lines:
        return {"key": key, "backend": backend, "ranks": ranks, "error": (err or out)[-2000:]}
    return json.loads(lines[-1])


def markdown(records: list) -> str:
    rows = ["| problem | backend | ranks | fit s | iterations | log L | per-step seconds | peak RSS per rank (GB) "
            "| MUMPS forecast per rank (MB) | entries of C given per rank | load |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        if "error" in r:
            last = (r["error"].strip().splitlines() or ["(no output: killed)"])[-1][:120]
            rows.append(f"| {r['key']} | {r['backend']} | {r['ranks']} | failed: {last} | | | | | | | |")
            continue
        est = r.get("mumps") or {}
        fc = ", ".join(str(m) for m in est.get("mb_per_rank", [])) or "-"
        fit = r.get("fit", r.get("analysis_seconds"))
        steps = ", ".join(f"{k} {v:.1f}" for k, v in (r.get("timings") or {}).items()
                          if k in ("assemble", "symbolic", "factorize", "solve", "selinv", "ai")) or "-"
        entries = ", ".join(f"{e:,}" for e in est.get("entries_per_rank", [])) or "-"
        rows.append(f"| {r['key']} | {r['backend']}{' (analysis only)' if 'analysis_seconds' in r else ''} | "
                    f"{r['ranks']} | {fit:.1f} | {r.get('iterations', '-')} | {r.get('loglik', float('nan')):.8f} | "
                    f"{steps} | {', '.join(f'{x:.2f}' for x in r['peak_rss_gb_per_rank'])} | {fc} | {entries} | "
                    f"{r.get('load')} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fits", nargs="*", default=["U-M", "B-M"])
    ap.add_argument("--ranks", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--analyse", nargs="*", default=["T-L"])
    ap.add_argument("--analysis-ranks", nargs="+", type=int, default=[2, 4, 8])
    ap.add_argument("--outdir", default=str(problems.DEFAULT_DIR))
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--timeout", type=float, default=7200, help="seconds a run may take before it is stopped")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--key", help=argparse.SUPPRESS)
    ap.add_argument("--backend", default="cholmod", help=argparse.SUPPRESS)
    ap.add_argument("--analysis-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args)
        return 0
    records = []
    for key in args.fits:
        for backend, ranks in [("cholmod", 1)] + [("mumps", r) for r in args.ranks]:
            records.append(spawn(key, backend, ranks, args.outdir, timeout=args.timeout))
            print(json.dumps(records[-1]), flush=True)
    for key in args.analyse:
        for ranks in args.analysis_ranks:
            records.append(spawn(key, "mumps", ranks, args.outdir, analysis_only=True, timeout=args.timeout))
            print(json.dumps(records[-1]), flush=True)
    if args.markdown:
        print(markdown(records))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
