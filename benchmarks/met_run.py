"""Child side of the MET benchmark (``python -m benchmarks.run --met S M``).

Fits ``yield ~ site``, ``~ fa(site, 3):vm(gen, ped)``, ``~ dsum(~ units | site)`` to a problem
of benchmarks.met, with the same instrumentation as the pedigree problems (per-step timer,
evaluations and factorizations counted). Each evaluation also appends one line to
``<problem dir>/progress.log`` (benchmarks.run's line: the time, seconds, log L when known,
factorizations so far, peak RSS, the timer's totals) so that a run stopped from outside still leaves its split per step.

On S, ``check`` adds (i) log L at the fitted matrices by a dense V = Z (K (x) G) Z' + R
computation (no MME code), (ii) the same dense log L at the simulated truth, and (iii) how
close the fitted G = L L' + Psi, Psi, L L' and residual variances are to the truth.
"""
from __future__ import annotations

import resource
import time
import warnings
from pathlib import Path

import numpy as np

from . import machine, met
from .run import _instrument, timed_relationship


def run_met(size: str, outdir: str, check: bool, maxiter: int = 50, threads: int | None = None) -> dict:
    """Time one MET fit in this process; returns the record run.py prints as JSON."""
    t0 = time.perf_counter()
    import scipy.stats  # noqa: F401  (import time is not fit time)

    import mvreml
    from mvreml import api, likelihood, report  # noqa: F401

    rec = {"size": size, "traits": "MET", "imports": time.perf_counter() - t0,
           "engine": str(Path(mvreml.__file__).parent), "maxiter": maxiter}
    t = time.perf_counter()
    d = met.ensure(size, outdir)
    ped, data, truth = met.read(size, outdir)
    rec["read"] = time.perf_counter() - t
    log = d / "progress.log"
    log.write_text("")
    from mvreml import fa_sparse

    stats = _instrument(likelihood, log=str(log), classes=(fa_sparse.FactorREMLModel,))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")        # founders used as sire and dam; boundary notes
        pedigree, rel = timed_relationship(ped, rec)
        t = time.perf_counter()
        res = mvreml.fit(met.MODEL["fixed"], random=met.MODEL["random"], residual=met.MODEL["residual"],
                         data=data, relmat={"ped": rel}, maxiter=maxiter, threads=threads)
        rec["fit"] = time.perf_counter() - t
    rec["total"] = rec["read"] + rec["pedigree"] + rec["inbreeding"] + rec["ainv"] + rec["fit"]
    rec["timings"] = dict(res.model.get("timings", {}))
    rec["evaluations"] = stats["evaluations"]
    rec["completions"] = stats["completions"]
    rec["derivatives"] = stats["derivatives"]
    rec["factorizations"] = stats["factorizations"] or len(stats["evaluations"])
    n_site = truth["n_site"]
    rec.update(loglik=float(res.loglik), iterations=int(res.iterations), converged=bool(res.converged),
               n_obs=int(res.n_obs), rank_x=int(res.rank_x), n_animals=len(pedigree.ids),
               history=[float(x) for x in np.asarray(res.history["loglik"])],
               n_eq=int(res.rank_x) + len(pedigree.ids) * n_site,
               n_params=int(len(res.varcomp)), steps=[str(x) for x in res.history["step"]],
               reason=str(res.reason),
               boundary=[str(c) for c in res.varcomp.index[res.varcomp["bound"] == "B"]])
    rec["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    rec["blas"] = machine.blas()
    rec["recovery"] = recovery(res, truth)
    if check:
        rec["met_check"] = dense_check(res, data, rel, truth)
    return rec


def _fitted(res, truth):
    term = met.MODEL["term"].replace("vm(gen, ped)", "gen")      # the term's name in the results
    sites = [f"S{s + 1:02d}" for s in range(truth["n_site"])]
    G = res.covariance(term).loc[sites, sites].to_numpy()
    L = res.loadings(term).loc[sites].to_numpy()
    psi = np.array([res.varcomp.loc[f"{term}!{s}!var", "estimate"] for s in sites])
    r = np.array([res.varcomp.loc[f"site_{s}!R", "estimate"] for s in sites])
    return sites, G, L, psi, r


def recovery(res, truth) -> dict:
    """How close the fit is to the simulated truth (rotation-free summaries and loadings)."""
    _, G, L, psi, r = _fitted(res, truth)
    G0, L0 = np.array(truth["G"]), np.array(truth["loadings"])
    psi0, r0 = np.array(truth["psi"]), np.array(truth["residual"])
    C, C0 = L @ L.T, L0 @ L0.T
    # loadings: truth rotated onto the fit (orthogonal Procrustes), so the comparison does not
    # depend on the rotation constraint
    U, _, Vt = np.linalg.svd(L0.T @ L)
    L0r = L0 @ (U @ Vt)
    return {"G_rel_frobenius": float(np.linalg.norm(G - G0) / np.linalg.norm(G0)),
            "G_entry_corr": float(np.corrcoef(G.ravel(), G0.ravel())[0, 1]),
            "LLt_rel_frobenius": float(np.linalg.norm(C - C0) / np.linalg.norm(C0)),
            "loadings_rmse_procrustes": float(np.sqrt(np.mean((L - L0r) ** 2))),
            "loadings_rms_truth": float(np.sqrt(np.mean(L0 ** 2))),
            "psi_mae": float(np.mean(np.abs(psi - psi0))), "psi_mean_truth": float(psi0.mean()),
            "psi_corr": float(np.corrcoef(psi, psi0)[0, 1]),
            "residual_max_rel_err": float(np.max(np.abs(r / r0 - 1))),
            "residual_mean_rel_err": float(np.mean(np.abs(r / r0 - 1)))}


def _dense_loglik(design, Z, K, G, rvar_of_obs):
    """REML log L = -1/2 [(N-p) log 2pi + log|V| + log|X'V^-1X| + y'Py], V built densely."""
    X = design.X.toarray()
    V = Z @ np.kron(K, G) @ Z.T + np.diag(rvar_of_obs)
    y = design.y
    N, p = X.shape
    cV = np.linalg.cholesky(V)
    Vi = np.linalg.inv(V)
    XtViX = X.T @ Vi @ X
    Py = Vi @ y - Vi @ X @ np.linalg.solve(XtViX, X.T @ (Vi @ y))
    return -0.5 * ((N - p) * np.log(2 * np.pi) + 2 * np.sum(np.log(np.diag(cV)))
                   + np.linalg.slogdet(XtViX)[1] + float(y @ Py))


def dense_check(res, data, rel, truth) -> dict:
    """Dense log L at the fit and at the truth (S only: V is N x N)."""
    from mvreml.design import build_design
    from mvreml.formula import parse_fixed, parse_random, parse_residual

    t = time.perf_counter()
    fs = parse_fixed(met.MODEL["fixed"])
    design = build_design(data, fs, parse_random(met.MODEL["random"], fs.response),
                          parse_residual(met.MODEL["residual"], fs.response), relmat={"ped": rel})
    (rd,) = design.random
    Z = np.zeros((design.n_obs, rd.q * rd.t if not rd.dims else rd.q * int(np.prod([len(v) for _, v in rd.dims]))))
    Z[rd.obs_rows, rd.obs_cols] = 1.0
    K = np.linalg.inv(rd.kinv.toarray())
    sites, G, _, _, r = _fitted(res, truth)
    order = [sites.index(str(s)) for s in design.sections]      # section index -> site
    sec = design.unit_section[design.obs_unit]
    dims_sites = [str(x) for x in rd.dims[0][1]] if rd.dims else sites
    perm = [sites.index(s) for s in dims_sites]
    Gd = G[np.ix_(perm, perm)]
    G0 = np.array(truth["G"])[np.ix_(perm, perm)]
    r0 = np.array(truth["residual"])
    fit = _dense_loglik(design, Z, K, Gd, r[order][sec] / design.weights[design.obs_unit])
    at_truth = _dense_loglik(design, Z, K, G0, r0[order][sec] / design.weights[design.obs_unit])
    return {"loglik_fit": float(res.loglik), "loglik_dense": fit, "diff": float(res.loglik) - fit,
            "loglik_dense_at_truth": at_truth, "seconds": time.perf_counter() - t,
            "method": "dense V = Z (K (x) G) Z' + R, Cholesky; fitted G = L L' + Psi"}
