"""``mvreml.plan``'s forecast against what the fit measures, on the pedigree problems.

    python -m benchmarks.plan_check [--sizes S M] [--traits U B T] [--threads N]

Each problem runs in its own process: the fit (its own forecast, made before the first
numeric factorization, is ``result.model["forecast"]``), its peak RSS (getrusage), its
evaluations and factorizations timed; then, after the fit, ``mvreml.plan`` for the time
forecast (dgemm calibrated in that process) and a simplicial factorization of C in the
analysis's order for the exact nnz(L). Printed as a markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

from . import problems
from .run import MODELS, _instrument, timed_relationship

HERE = Path(__file__).resolve().parent


def child(size: str, traits: str, threads: int | None) -> dict:
    import numpy as np
    import scipy.sparse as sp

    import mvreml
    from mvreml import _memory, likelihood
    from mvreml.cholmod import cholesky

    spec = MODELS[traits]
    stats = _instrument(likelihood)
    stored = {}
    factorize = likelihood.REMLModel._factorize

    def recorded(self, *a, **kw):
        out = factorize(self, *a, **kw)
        if "nnz" not in stored and self.selinv is not None:
            stored["nnz"] = int(self.selinv.nnz)        # entries of L() (relaxed zeros included)
            stored["indptr"], stored["indices"] = self.pattern.indptr, self.pattern.indices
            stored["perm"] = np.asarray(self.factor.P())
        return out

    likelihood.REMLModel._factorize = recorded
    ped, data = problems.read(size)
    rec = {"size": size, "traits": traits}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, rel = timed_relationship(ped, rec)
        t = time.perf_counter()
        res = mvreml.fit(spec["fixed"], random=spec["random"], residual=spec["residual"], data=data,
                         relmat={"ped": rel}, threads=threads)
        rec["fit"] = time.perf_counter() - t
    rec["peak_rss"] = _memory.peak_rss_bytes()
    rec["forecast"] = res.model["forecast"]
    rec["timings"] = dict(res.model["timings"])
    rec["evaluations"], rec["factorizations"] = stats["evaluations"], stats["factorizations"]
    rec["iterations"] = int(res.iterations)
    rec["threads"] = res.model["blas_threads"]
    rec["nnz_l_stored_real"] = stored["nnz"]
    likelihood.REMLModel._factorize = factorize
    del res
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = mvreml.plan(spec["fixed"], random=spec["random"], residual=spec["residual"], data=data,
                        relmat={"ped": rel}, threads=threads)
    rec["plan_seconds"] = dict(p.seconds)
    rec["gflops"] = [float(x) for x in p.gflops]
    rec["super_lower"] = int(p.sizes.super_lower if p.supernodal else p.nnz_l)
    # exact fill: a simplicial factorization (no relaxation) of a diagonally dominant matrix on
    # the pattern of C, in the analysis's order
    n = len(stored["perm"])
    low = sp.csc_matrix((np.ones(stored["indices"].size), stored["indices"], stored["indptr"]), shape=(n, n))
    full = low + sp.tril(low, -1).T
    full = full + sp.diags(np.asarray(abs(full).sum(axis=1)).ravel() + 1.0)
    perm = stored["perm"]
    A = sp.tril(sp.csc_matrix(full[perm][:, perm]), format="csc")
    rec["nnz_l_real"] = int(cholesky(A, mode="simplicial", ordering_method="natural").L().nnz)
    return rec


def spawn(size, traits, threads) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.plan_check", "--child", size, traits]
    if threads:
        cmd += ["--threads", str(threads)]
    proc = subprocess.run(cmd, cwd=str(HERE.parent), env=dict(os.environ), capture_output=True, text=True)
    if proc.returncode:
        return {"size": size, "traits": traits, "error": proc.stderr.strip().splitlines()[-3:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(recs) -> str:
    gb = 2.0 ** 30
    lines = ["| problem | threads | nnz(L) plan / real | stored plan / real | peak RSS forecast / measured (GB) "
             "| factorization s plan / measured | selinv s plan / measured |",
             "|---|---|---|---|---|---|---|"]
    for r in recs:
        if "error" in r:
            lines.append(f"| {r['traits']}-{r['size']} | error: {r['error']} |")
            continue
        f = r["forecast"]
        nf = max(r["factorizations"], 1)
        ne = max(len(r["evaluations"]), 1)
        lines.append(
            f"| {r['traits']}-{r['size']} | {r['threads']} | {f['nnz_l']:,} / {r['nnz_l_real']:,} "
            f"| {r['super_lower']:,} / {r['nnz_l_stored_real']:,} "
            f"| {f['peak_bytes'] / gb:.2f} / {r['peak_rss'] / gb:.2f} "
            f"| {r['plan_seconds']['factorization']:.3g} / {r['timings'].get('factorize', 0) / nf:.3g} "
            f"| {r['plan_seconds']['selected inverse']:.3g} / {r['timings'].get('selinv', 0) / ne:.3g} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=["S", "M"], choices=problems.SIZES)
    ap.add_argument("--traits", nargs="+", default=["U", "B", "T"], choices=list(MODELS))
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(child(a.child[0], a.child[1], a.threads)))
        return 0
    recs = []
    for size in a.sizes:
        for traits in a.traits:
            recs.append(spawn(size, traits, a.threads))
            print(table(recs[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
    print(table(recs))
    if a.json:
        Path(a.json).write_text(json.dumps(recs, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
