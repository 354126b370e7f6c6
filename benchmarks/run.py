"""Benchmark runner: fit the pedigree trials of make_problems.py and log where the time goes.

    python -m benchmarks.run --sizes S M --traits U B T [--repeat 1] [--threads N]
                             [--baseline DIR] [--label TEXT] [--no-append]

U fits y1, B (y1, y2), T (y1, y2, y3), with the model the problems were simulated from:
fixed ``cbind(...) ~ trait + at(trait):sex + at(trait):cg`` (univariate ``y1 ~ 1 + sex + cg``),
random ``~ us(trait):vm(animal, ped)`` (univariate ``~ vm(animal, ped)``), residual
``~ units:us(trait)``. Each problem runs in its own process (its own peak RSS) and reports
wall time split into reading, A^-1, design, MME pattern, symbolic analysis and, per
evaluation, numeric factorization / selected inverse / the rest; iterations, log L, peak
RSS; the runner adds the machine, the BLAS in use and the git commit, and appends a dated
section to ``benchmarks/RESULTS.md``. On S the fit's log L is checked against a slower,
simpler computation (benchmarks.check) to 1e-4. ``--baseline DIR`` times a second copy
of the package (DIR holds its ``mvreml/``) on the same problems, for before/after ratios.

``--met S M`` adds the multi-environment trials of benchmarks.met (S: 10 sites x 200 genotypes,
M: 50 x 2,000, 200k plots; ``yield ~ site``, ``~ fa(site, 3):vm(gen, ped)``,
``~ dsum(~ units | site)``), keys MET-S / MET-M; ``--met-maxiter N`` caps their iterations.
On MET-S the fit is checked against a dense log L and the simulated truth (benchmarks.met_run).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from . import machine, met, problems

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"

MODELS = {
    "U": dict(traits=["y1"], fixed="y1 ~ 1 + sex + cg", random="~ vm(animal, ped)", residual=None),
    "B": dict(traits=["y1", "y2"], fixed="cbind(y1, y2) ~ trait + at(trait):sex + at(trait):cg",
              random="~ us(trait):vm(animal, ped)", residual="~ units:us(trait)"),
    "T": dict(traits=["y1", "y2", "y3"], fixed="cbind(y1, y2, y3) ~ trait + at(trait):sex + at(trait):cg",
              random="~ us(trait):vm(animal, ped)", residual="~ units:us(trait)"),
}
# whole-fit seconds and peak GB on a 2-core machine (issue 8); None = no target
TARGETS = {("S", "U"): (0.3, None), ("M", "U"): (5.0, 2.0), ("M", "B"): (15.0, None),
           ("M", "T"): (45.0, None), ("L", "U"): (240.0, 12.0)}
MAX_ITERATIONS = 8          # from default starting values, M problems
MAX_ITERATE_RATIO = 3.0     # one evaluation <= 3 numeric factorizations
CHECK_TOL = 1e-4
STEPS = ("assemble", "factorize", "solve", "selinv", "score", "ai")


# ---------------------------------------------------------------------------- child
def _instrument(likelihood, log=None, classes=None) -> dict:
    """Count evaluations, factorizations and computations of the derivatives, and time each
    evaluation (benchmark-only wrappers) of REMLModel and `classes` (other REMLModels with an
    evaluate of their own, e.g. mvreml.fa_sparse.FactorREMLModel). With `log` (a path; default
    the environment's MVREML_BENCH_LOG) a JSON line per evaluation is appended: the time, its
    seconds, log L, factorizations so far, peak RSS and the timer (progress of a long fit).
    MVREML_BENCH_CHECKPOINT and MVREML_BENCH_MAXITER (read by run_problem) give a long fit a
    checkpoint file and a maxiter (a memory check of its first iterations)."""
    stats = {"evaluations": [], "factorizations": 0, "derivatives": 0}
    model = likelihood.REMLModel
    factorize = getattr(model, "_factorize", None)
    log = log or os.environ.get("MVREML_BENCH_LOG")

    def timed(evaluate):
        def timed_evaluate(self, *a, **kw):
            t0 = time.perf_counter()
            stats["derivatives"] += int(bool(a[1] if len(a) > 1 else kw.get("derivatives", True)))
            ev = None
            try:
                ev = evaluate(self, *a, **kw)
                return ev
            finally:
                stats["evaluations"].append(time.perf_counter() - t0)
                if log:
                    _log_evaluation(log, self, ev, stats)
        return timed_evaluate

    for cls in (model, *(classes or ())):
        cls.evaluate = timed(cls.evaluate)

    def counted_factorize(self, *a, **kw):
        stats["factorizations"] += 1
        return factorize(self, *a, **kw)

    if factorize is not None:
        model._factorize = counted_factorize
    time_completions(model, stats)
    return stats


def _log_evaluation(log, model, ev, stats: dict) -> None:
    import resource

    line = {"utc": dt.datetime.now(dt.timezone.utc).strftime("%H:%M:%S"),
            "seconds": round(stats["evaluations"][-1], 3), "loglik": getattr(ev, "loglik", None),
            "factorizations": stats["factorizations"],
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
            "timer": {k: round(v, 3) for k, v in (getattr(getattr(model, "timer", None), "seconds", None) or {}).items()}}
    with open(log, "a") as f:
        f.write(json.dumps(line) + "\n")


def time_completions(model, stats: dict) -> None:
    """Time REMLModel.complete (the derivatives of a line-search candidate, computed after it
    was accepted) into stats["completions"]; engines without it are left as they are."""
    complete = getattr(model, "complete", None)
    stats.setdefault("completions", [])
    if complete is None:
        return

    def timed_complete(self, ev):
        if ev.score is not None:
            return ev
        t0 = time.perf_counter()
        stats["derivatives"] += 1
        try:
            return complete(self, ev)
        finally:
            stats["completions"].append(time.perf_counter() - t0)

    model.complete = timed_complete


def timed_relationship(ped, rec: dict):
    """Pedigree, inbreeding and A^-1 of a problem, each step's seconds written into ``rec``."""
    import mvreml
    from mvreml.relmat import RelationshipMatrix

    t = time.perf_counter()
    pedigree = mvreml.Pedigree(ped, allow_sire_dam=True)
    rec["pedigree"] = time.perf_counter() - t
    t = time.perf_counter()
    pedigree.inbreeding
    rec["inbreeding"] = time.perf_counter() - t
    t = time.perf_counter()
    rel = RelationshipMatrix(pedigree.ids, pedigree.ainv(), pedigree.logdet_a(), "pedigree", "ped")
    rec["ainv"] = time.perf_counter() - t
    return pedigree, rel


def run_problem(size: str, traits: str, outdir: str, check: bool, threads: int | None = None) -> dict:
    """Time one fit in this process (the child); returns the record printed as JSON."""
    t0 = time.perf_counter()
    import warnings

    import numpy as np
    import scipy.stats  # noqa: F401  (imported by the result tables: import time is not fit time)

    import mvreml
    from mvreml import api, likelihood, report  # noqa: F401

    imports = time.perf_counter() - t0
    spec = MODELS[traits]
    stats = _instrument(likelihood)
    rec = {"size": size, "traits": traits, "imports": imports, "engine": str(Path(mvreml.__file__).parent)}

    t = time.perf_counter()
    ped, data = problems.read(size, outdir)
    rec["read"] = time.perf_counter() - t
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")        # the simulated sires are also dams; founders added
        pedigree, rel = timed_relationship(ped, rec)
        t, c = time.perf_counter(), time.process_time()
        res = mvreml.fit(spec["fixed"], random=spec["random"], residual=spec["residual"], data=data,
                         relmat={"ped": rel}, threads=threads,
                         checkpoint=os.environ.get("MVREML_BENCH_CHECKPOINT") or None,
                         maxiter=int(os.environ.get("MVREML_BENCH_MAXITER") or 50))
        rec["fit"] = time.perf_counter() - t
        rec["fit_cpu"] = time.process_time() - c     # all threads' CPU: less noisy on a shared machine
    rec["total"] = rec["read"] + rec["pedigree"] + rec["inbreeding"] + rec["ainv"] + rec["fit"]
    rec["timings"] = dict(res.model.get("timings", {}))
    rec["evaluations"] = stats["evaluations"]
    rec["completions"] = stats["completions"]
    rec["derivatives"] = stats.get("derivatives")
    rec["factorizations"] = stats["factorizations"] or len(stats["evaluations"])
    rec.update(loglik=float(res.loglik), iterations=int(res.iterations), converged=bool(res.converged),
               n_obs=int(res.n_obs), rank_x=int(res.rank_x), n_animals=len(pedigree.ids),
               history=[float(x) for x in np.asarray(res.history["loglik"])],
               n_eq=int(res.rank_x) + len(pedigree.ids) * len(spec["traits"]))
    import resource

    rec["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    fc = res.model.get("forecast")
    if fc:      # the fit's own forecast (mvreml.plan's), made before its first factorization
        rec["forecast_peak_gb"] = fc["peak_bytes"] / 2**30
    rec["blas"] = machine.blas()
    if check:
        rec["check"] = _same_answer(res, spec, data, rel)
    return rec


def _same_answer(res, spec, data, rel) -> dict:
    """log L of the fitted matrices by benchmarks.check's independent computation."""
    from mvreml.design import build_design
    from mvreml.formula import parse_fixed, parse_random, parse_residual

    from . import check

    fs = parse_fixed(spec["fixed"])
    design = build_design(data, fs, parse_random(spec["random"], fs.response),
                          parse_residual(spec["residual"], fs.response), relmat={"ped": rel})
    covs = {name: res.covariance(name).to_numpy() for name in ("animal", "units")}
    t = time.perf_counter()
    ref = check.loglik(design, covs)
    return {"loglik_fit": float(res.loglik), "loglik_check": ref, "diff": float(res.loglik) - ref,
            "seconds": time.perf_counter() - t, "method": "C by scipy products, simplicial LDL' in AMD order"}


# ---------------------------------------------------------------------------- parent
def spawn(size: str, traits: str, args, engine: str | None) -> dict:
    """Run one problem in a fresh interpreter; returns its record (or the error)."""
    cmd = [sys.executable, "-m", "benchmarks.run", "--child", size, traits, "--outdir", args.outdir]
    if traits == "MET":
        cmd += ["--met-maxiter", str(args.met_maxiter)]
    if engine:
        cmd += ["--engine", engine]
    if args.check and size == "S" and not engine:
        cmd += ["--check"]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    env = dict(os.environ)         # the user's environment: the engine sets its own BLAS threads
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=str(HERE.parent), env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-6:])
        return {"size": size, "traits": traits, "error": f"exit {proc.returncode}: {tail}", "process": wall}
    rec = json.loads(lines[-1])
    rec["process"] = wall
    return rec


def _best(records: list) -> dict:
    ok = [r for r in records if "error" not in r]
    return min(ok, key=lambda r: r["fit"]) if ok else records[0]


def derived(rec: dict) -> dict:
    """Per-evaluation figures and the targets' verdicts of one record."""
    tm = rec["timings"]
    nev = max(len(rec["evaluations"]), 1)
    nfact = max(rec["factorizations"], 1)
    fact = tm.get("factorize", 0.0) / nfact
    # an iterate: the evaluations after the first (which also pays the symbolic analysis and
    # set-up) and the derivatives of accepted candidates, per iteration; candidates evaluated
    # and rejected count against the iteration that tried them
    steady = rec["evaluations"][1:] or rec["evaluations"] or [0.0]
    iterate = (sum(steady) + sum(rec.get("completions", []))) / max(rec["iterations"], 1)
    nder = max(rec.get("derivatives") or nev, 1)     # the selected inverse runs once per derivatives
    out = {"fact": fact, "selinv": tm.get("selinv", 0.0) / nder, "iterate": iterate,
           "rest": iterate - fact - tm.get("selinv", 0.0) / nder, "ratio": iterate / fact if fact else float("nan")}
    target = TARGETS.get((rec["size"], rec["traits"]))
    verdict = []
    if target:
        secs, gb = target
        verdict.append(("fit < %gs" % secs, rec["fit"] < secs))
        if gb:
            verdict.append(("RSS < %g GB" % gb, rec["peak_rss_gb"] < gb))
    if rec["size"] == "M" and rec["traits"] != "MET":
        verdict.append((f"<= {MAX_ITERATIONS} it", rec["iterations"] <= MAX_ITERATIONS))
    if rec["traits"] == "MET":     # issue 11's only target: an iterate within 3 factorizations
        verdict = []
    if rec["size"] != "S" or rec["traits"] == "MET":
        verdict.append((f"iterate <= {MAX_ITERATE_RATIO:g} fact", out["ratio"] <= MAX_ITERATE_RATIO))
    out["verdict"] = verdict
    return out


def _fmt(x, nd=2):
    return "-" if x is None else f"{x:.{nd}f}"


def markdown(records: dict, baseline: dict, info: dict) -> str:
    """The dated RESULTS.md section for one run (`info` as saved by ``--json``)."""
    m = info["machine"]
    lines = [f"## {info['date']}" + (f" — {info['label']}" if info.get("label") else ""), "",
             f"- commit {info['commit']}; engine `{info.get('engine', 'mvreml')}`"
             + (f"; baseline `{info['baseline']}`" if info.get("baseline") else ""),
             f"- machine: {m['cpu']}, {m['cores']} cores, {m['ram_gb']} GB RAM, {m['os']}, Python {m['python']}; "
             f"load average at start {m['load1']} (other jobs share the cores)",
             f"- BLAS ({info['blas']['source']}): " + "; ".join(map(str, info["blas"]["libraries"]))
             + f"; thread settings {info['blas']['env'] or 'default'}",
             f"- best of {info['repeat']} run(s) per problem; times in seconds; `it` = iterations, `ev` = "
             "evaluations (factorizations); fact is per factorization, selinv per computation of the derivatives; iterate = the evaluations after "
             "the first (which also pays the symbolic analysis) and the derivatives of accepted candidates, "
             "per iteration; ratio = iterate / fact",
             "",
             "| problem | records | equations | it | ev | log L | read | A^-1 | design | pattern | symbolic "
             "| fact | selinv | iterate | ratio | fit | total | peak GB | targets |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for key, rec in records.items():
        if "error" in rec:
            lines.append(f"| {key} | error: {rec['error'].splitlines()[-1]} |" + " |" * 17)
            continue
        d = derived(rec)
        tm = rec["timings"]
        verdict = ", ".join(f"{name} {'ok' if ok else 'MISSED'}" for name, ok in d["verdict"]) or "-"
        conv = "" if rec["converged"] else " (not converged)"
        lines.append(
            f"| {key} | {rec['n_obs']} | {rec['n_eq']} | {rec['iterations']}{conv} | {len(rec['evaluations'])} "
            f"| {rec['loglik']:.4f} | {_fmt(rec['read'])} | {_fmt(rec['pedigree'] + rec['inbreeding'] + rec['ainv'])} "
            f"| {_fmt(tm.get('design'))} | {_fmt(tm.get('mme_pattern'))} | {_fmt(tm.get('symbolic'))} "
            f"| {_fmt(d['fact'], 3)} | {_fmt(d['selinv'], 3)} | {_fmt(d['iterate'], 3)} | {_fmt(d['ratio'], 1)} "
            f"| {_fmt(rec['fit'])} | {_fmt(rec['total'])} | {_fmt(rec['peak_rss_gb'])} | {verdict} |")
    checks = [(k, r["check"]) for k, r in records.items() if "check" in r]
    if checks:
        lines += ["", f"Same answer (|log L fit - log L check| <= {CHECK_TOL:g}; check = "
                      f"{checks[0][1]['method']}):", "",
                  "| problem | log L fit | log L check | difference | check s | ok |", "|---|---|---|---|---|---|"]
        for k, c in checks:
            ok = abs(c["diff"]) <= CHECK_TOL
            lines.append(f"| {k} | {c['loglik_fit']:.6f} | {c['loglik_check']:.6f} | {c['diff']:.2e} "
                         f"| {_fmt(c['seconds'])} | {'ok' if ok else 'FAILED'} |")
    lines += _met_lines(records)
    if baseline:
        lines += ["", "Before (baseline) / after (this engine), same run:", "",
                  "| problem | it before | it after | fit before | fit after | speed-up | pattern before "
                  "| pattern after | design before | design after | peak GB before | peak GB after "
                  "| log L before | log L after |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for key, b in baseline.items():
            a = records.get(key, {})
            if "error" in b or "error" in a:
                lines.append(f"| {key} | error |" + " |" * 12)
                continue
            tb, ta = b["timings"], a["timings"]
            lines.append(
                f"| {key} | {b['iterations']}{'' if b['converged'] else ' (not converged)'} "
                f"| {a['iterations']}{'' if a['converged'] else ' (not converged)'} | {_fmt(b['fit'])} | {_fmt(a['fit'])} "
                f"| {b['fit'] / a['fit']:.1f}x | {_fmt(tb.get('mme_pattern'))} | {_fmt(ta.get('mme_pattern'))} "
                f"| {_fmt(tb.get('design'))} | {_fmt(ta.get('design'))} | {_fmt(b['peak_rss_gb'])} "
                f"| {_fmt(a['peak_rss_gb'])} | {b['loglik']:.4f} | {a['loglik']:.4f} |")
    return "\n".join(lines) + "\n"


def _met_lines(records: dict) -> list:
    """MET records: per-step totals, parameters, truth recovery, dense check."""
    mets = [(k, r) for k, r in records.items() if r.get("traits") == "MET" and "error" not in r]
    if not mets:
        return []
    lines = ["", "MET fits: step totals over the fit (s); `n par` = variance parameters; boundary = held at 0:", "",
             "| problem | n par | maxiter | converged | evaluations | factorizations | derivatives | assemble "
             "| factorize | solve | selinv | score | ai | boundary |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for k, r in mets:
        tm = r["timings"]
        lines.append(f"| {k} | {r['n_params']} | {r['maxiter']} | {r['converged']} | {len(r['evaluations'])} "
                     f"| {r['factorizations']} | {r.get('derivatives', '-')} | " + " | ".join(_fmt(tm.get(s)) for s in STEPS)
                     + f" | {', '.join(r['boundary']) or '-'} |")
    lines += ["", "MET truth recovery (Procrustes = truth rotated onto the fitted loadings):", "",
              "| problem | G rel. Frobenius | corr(G entries) | LL' rel. Frobenius | loadings RMSE (RMS truth) "
              "| psi MAE (mean truth) | corr(psi) | residual rel. err. mean / max |",
              "|---|---|---|---|---|---|---|---|"]
    for k, r in mets:
        v = r["recovery"]
        lines.append(f"| {k} | {v['G_rel_frobenius']:.3f} | {v['G_entry_corr']:.3f} | {v['LLt_rel_frobenius']:.3f} "
                     f"| {v['loadings_rmse_procrustes']:.3f} ({v['loadings_rms_truth']:.3f}) "
                     f"| {v['psi_mae']:.3f} ({v['psi_mean_truth']:.3f}) | {v['psi_corr']:.3f} "
                     f"| {v['residual_mean_rel_err']:.3f} / {v['residual_max_rel_err']:.3f} |")
    checks = [(k, r["met_check"]) for k, r in mets if "met_check" in r]
    if checks:
        lines += ["", f"MET same answer ({checks[0][1]['method']}; ok = |diff| <= {CHECK_TOL:g}):", "",
                  "| problem | log L fit | log L dense | difference | dense log L at the truth | ok |",
                  "|---|---|---|---|---|---|"]
        for k, c in checks:
            lines.append(f"| {k} | {c['loglik_fit']:.6f} | {c['loglik_dense']:.6f} | {c['diff']:.2e} "
                         f"| {c['loglik_dense_at_truth']:.4f} | {'ok' if abs(c['diff']) <= CHECK_TOL else 'FAILED'} |")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="mvreml benchmarks (issue 8)")
    ap.add_argument("--sizes", nargs="+", default=None, choices=problems.SIZES,
                    help="pedigree problem sizes (default S M; none when only --met is given)")
    ap.add_argument("--traits", nargs="+", default=["U", "B", "T"], choices=list(MODELS))
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--outdir", default=str(problems.DEFAULT_DIR))
    ap.add_argument("--threads", type=int, default=None,
                    help="fit(threads=N) in the problem processes (default: the engine's own choice)")
    ap.add_argument("--met", nargs="*", default=[], choices=sorted(met.SIZES),
                    help="also run the MET problems of these sizes (keys MET-S, MET-M)")
    ap.add_argument("--met-maxiter", type=int, default=50, help="maxiter of the MET fits")
    ap.add_argument("--baseline", default=None, help="directory holding another mvreml/ to compare")
    ap.add_argument("--baseline-sizes", nargs="+", default=None, choices=problems.SIZES)
    ap.add_argument("--met-baseline", action="store_true", help="time the baseline on the MET problems too")
    ap.add_argument("--no-check", dest="check", action="store_false")
    ap.add_argument("--label", default="")
    ap.add_argument("--results", default=str(RESULTS))
    ap.add_argument("--no-append", dest="append", action="store_false")
    ap.add_argument("--json", default=None, help="also write the raw records (and baseline) to this file")
    ap.add_argument("--render", nargs="+", default=None, metavar="JSON",
                    help="print the RESULTS.md sections of files written by --json, and exit")
    ap.add_argument("--child", nargs=2, metavar=("SIZE", "TRAITS"), help=argparse.SUPPRESS)
    ap.add_argument("--engine", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--check", dest="check_child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        if args.engine:
            sys.path.insert(0, args.engine)
        if args.child[1] == "MET":
            from .met_run import run_met
            rec = run_met(args.child[0], args.outdir, args.check_child, args.met_maxiter, args.threads)
        else:
            rec = run_problem(args.child[0], args.child[1], args.outdir, args.check_child, args.threads)
        print(json.dumps(rec))
        return 0

    if args.render:
        for path in args.render:
            saved = json.loads(Path(path).read_text())
            print(markdown(saved["records"], saved["baseline"], saved["info"]))
        return 0
    if args.sizes is None:
        args.sizes = [] if args.met else ["S", "M"]
    info = {"machine": machine.machine(), "commit": machine.git_commit(), "label": args.label,
            "repeat": args.repeat, "baseline": args.baseline,
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    for size in args.sizes:
        problems.ensure(size, args.outdir)          # generation is not benchmark time
    for size in args.met:
        met.ensure(size, args.outdir)
    records, baseline = {}, {}
    for size in args.sizes:
        for traits in args.traits:
            key = f"{traits}-{size}"
            runs = [spawn(size, traits, args, None) for _ in range(args.repeat)]
            records[key] = _best(runs)
            _progress(key, records[key])
            if args.baseline and (args.baseline_sizes is None or size in args.baseline_sizes):
                baseline[key] = _best([spawn(size, traits, args, args.baseline) for _ in range(args.repeat)])
                _progress(key + " (baseline)", baseline[key])
    for size in args.met:
        key = f"MET-{size}"
        records[key] = _best([spawn(size, "MET", args, None) for _ in range(args.repeat)])
        _progress(key, records[key])
        if args.baseline and args.met_baseline:
            baseline[key] = _best([spawn(size, "MET", args, args.baseline) for _ in range(args.repeat)])
            _progress(key + " (baseline)", baseline[key])
    first = next((r for r in records.values() if "error" not in r), None)
    info["blas"] = first["blas"] if first else machine.blas()
    info["engine"] = first["engine"] if first else "mvreml"
    text = markdown(records, baseline, info)
    print(text)
    if args.append:
        path = Path(args.results)
        head = "" if path.exists() else "# mvreml benchmark results\n\nAppended by `python -m benchmarks.run`.\n\n"
        with open(path, "a") as f:
            f.write(head + text + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps({"info": info, "records": records, "baseline": baseline}, indent=1))
    failed = [k for k, r in records.items() if "error" in r]
    failed += [k for k, r in records.items() if "check" in r and abs(r["check"]["diff"]) > CHECK_TOL]
    failed += [k for k, r in records.items() if "met_check" in r and abs(r["met_check"]["diff"]) > CHECK_TOL]
    return 1 if failed else 0


def _progress(key: str, rec: dict) -> None:
    if "error" in rec:
        print(f"{key}: ERROR {rec['error']}", file=sys.stderr, flush=True)
    else:
        print(f"{key}: fit {rec['fit']:.2f} s, {rec['iterations']} iterations, log L {rec['loglik']:.4f}, "
              f"peak {rec['peak_rss_gb']:.2f} GB", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
