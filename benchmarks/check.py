"""A slower, simpler log L for the "same answer" check of the benchmark runner.

At the variance matrices a fit returned, C is rebuilt by plain scipy products
(W'R^-1W + blockdiag(0, K^-1 (x) G^-1), full symmetric, no MMEPattern maps), log|C| and the
solution come from a fresh simplicial LDL' factor in AMD order (the fit uses one symbolic
analysis, refactorized in place, supernodal where CHOLMOD chooses it), log|K| from an
LDL' factor of K^-1 (instead of the pedigree's Mendelian-sampling variances), and

    log L = -1/2 [ (N - p) log 2pi + log|C| + log|R| + q log|G| + t log|K| + y'R^-1 e ]

(docs/THEORY.md).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from mvreml.cholmod import cholesky


def _ldl(A: sp.spmatrix):
    """(log|A|, the factor) of a symmetric positive definite sparse A: simplicial LDL', AMD."""
    f = cholesky(sp.csc_matrix(A), mode="simplicial", ordering_method="amd")
    return float(np.sum(np.log(f.D()))), f


def _rinv_blocks(design, R0: np.ndarray):
    """Block-diagonal R^-1 (N x N) and log|R| from R0, unit by missing pattern (vectorised)."""
    rows, cols, vals = [], [], []
    logdet = 0.0
    for m, observed in enumerate(design.patterns):
        units = np.flatnonzero(design.unit_pattern == m)
        if not units.size:
            continue
        o = np.flatnonzero(observed)
        n = len(o)
        Rm = R0[np.ix_(o, o)]
        Ri = np.linalg.inv(Rm)
        w = design.weights[units]
        first = design.unit_start[units]
        r = (first[:, None, None] + np.arange(n)[None, :, None]) + np.zeros((1, 1, n), np.int64)
        c = (first[:, None, None] + np.arange(n)[None, None, :]) + np.zeros((1, n, 1), np.int64)
        rows.append(r.ravel())
        cols.append(c.ravel())
        vals.append((w[:, None, None] * Ri[None]).ravel())
        logdet += units.size * np.linalg.slogdet(Rm)[1] - n * np.log(w).sum()
    N = design.n_obs
    Rinv = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(N, N))
    return Rinv, logdet


def _z(design, rd) -> sp.csr_matrix:
    """Incidence of term rd, level-major columns (level a, trait r) -> a t + r."""
    pos = np.full(design.t, -1, dtype=np.int64)
    pos[rd.traits] = np.arange(rd.t)
    tpos = pos[design.obs_trait]
    rows = np.flatnonzero(tpos >= 0)
    cols = rd.level_of_unit[design.obs_unit[rows]] * rd.t + tpos[rows]
    return sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(design.n_obs, rd.q * rd.t))


def loglik(design, covariances: dict) -> float:
    """REML log L of `design` at the given matrices ({term name: G_k}, "units": R0)."""
    Rinv, logdet_r = _rinv_blocks(design, covariances["units"])
    W = sp.hstack([design.X] + [_z(design, rd) for rd in design.random], format="csr")
    p = design.p
    blocks = [sp.csr_matrix((p, p))]
    logdet_g = 0.0
    for rd in design.random:
        G = covariances[rd.name]
        blocks.append(sp.kron(rd.kinv, np.linalg.inv(G), format="csr"))
        logdet_k = -_ldl(rd.kinv)[0]
        logdet_g += rd.q * np.linalg.slogdet(G)[1] + rd.t * logdet_k
    C = (W.T @ Rinv @ W + sp.block_diag(blocks, format="csr")).tocsc()
    logdet_c, factor = _ldl(C)
    y = design.y
    sol = factor(W.T @ (Rinv @ y))
    e = y - W @ sol
    ypy = float(y @ (Rinv @ e))
    N = design.n_obs
    return -0.5 * ((N - p) * np.log(2 * np.pi) + logdet_c + logdet_r + logdet_g + ypy)
