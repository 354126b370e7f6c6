"""Independent dense REML for small problems: V = Z G Z' + R built directly.

Used by the tests as the reference the sparse MME engine must match:
logL = -1/2 [(N-p) log 2pi + log|V| + log|X'V^-1X| + y'Py].
"""
from __future__ import annotations

import numpy as np


def dense_parts(design):
    """Dense X, per-term Z_k (N x q t_k) and K_k, from a Design (no MME code involved)."""
    N = design.n_obs
    X = design.X.toarray()
    Zs, Ks = [], []
    for rd in design.random:
        Z = np.zeros((N, rd.q * rd.t))
        if not rd.dims and not rd.term.at and len(rd.term.factors) < 2:
            pos = {int(tr): i for i, tr in enumerate(rd.traits)}
            for n in range(N):
                tr = int(design.obs_trait[n])
                if tr in pos:
                    Z[n, rd.level_of_unit[design.obs_unit[n]] * rd.t + pos[tr]] = 1.0
        else:
            # terms on structured factors: the design's (observation, column) pairs, which
            # tests/test_met.py checks against the data directly
            Z[rd.obs_rows, rd.obs_cols] = 1.0 if rd.obs_vals is None else rd.obs_vals
        Zs.append(Z)
        Ks.append(np.linalg.inv(rd.kinv.toarray()))
    return X, Zs, Ks


def _section(design, i):
    return 0 if design.unit_section is None else int(design.unit_section[i])


def dense_V(design, mats, parts=None):
    """V = sum_k Z_k (K_k (x) G_k) Z_k' + R for the matrices [G_1, ..., G_K, R0 per section]."""
    X, Zs, Ks = parts if parts is not None else dense_parts(design)
    N = design.n_obs
    V = np.zeros((N, N))
    nr = len(design.random)
    for Z, K, G in zip(Zs, Ks, mats[:nr]):
        V += Z @ np.kron(K, G) @ Z.T
    R0s = mats[nr:]
    for i in range(design.n_units):
        a, b = design.unit_start[i], design.unit_start[i + 1]
        tr = design.obs_trait[a:b]
        V[a:b, a:b] += R0s[_section(design, i)][np.ix_(tr, tr)] / design.weights[i]
    return V


def dense_loglik(design, mats, parts=None):
    X = (parts or dense_parts(design))[0]
    V = dense_V(design, mats, parts)
    y = design.y
    N, p = X.shape
    Vi = np.linalg.inv(V)
    XtViX = X.T @ Vi @ X
    P = Vi - Vi @ X @ np.linalg.solve(XtViX, X.T @ Vi)
    return -0.5 * ((N - p) * np.log(2 * np.pi) + np.linalg.slogdet(V)[1]
                   + np.linalg.slogdet(XtViX)[1] + y @ P @ y)


def dense_P(design, mats, parts=None):
    X = (parts or dense_parts(design))[0]
    Vi = np.linalg.inv(dense_V(design, mats, parts))
    return Vi - Vi @ X @ np.linalg.solve(X.T @ Vi @ X, X.T @ Vi)


def dense_dV(design, blocks, theta, parts=None):
    """dV/dtheta_j for every parameter (list of N x N)."""
    X, Zs, Ks = parts if parts is not None else dense_parts(design)
    out = []
    for b in blocks:
        dG = b.structure.derivatives(theta[b.slice])
        for j in range(b.stop - b.start):
            if b.k is not None:
                Z, K = Zs[b.k], Ks[b.k]
                out.append(Z @ np.kron(K, dG[j]) @ Z.T)
            else:
                N = design.n_obs
                D = np.zeros((N, N))
                for i in range(design.n_units):
                    if b.section is not None and _section(design, i) != b.section:
                        continue
                    a, c = design.unit_start[i], design.unit_start[i + 1]
                    tr = design.obs_trait[a:c]
                    D[a:c, a:c] = dG[j][np.ix_(tr, tr)] / design.weights[i]
                out.append(D)
    return out


def dense_score_ai(design, blocks, theta):
    """Analytic dense score -1/2[tr(P dV) - y'P dV P y] and AI 1/2 y'P dVi P dVj P y."""
    parts = dense_parts(design)
    mats = [b.structure.matrix(theta[b.slice]) for b in blocks]
    P = dense_P(design, mats, parts)
    dVs = dense_dV(design, blocks, theta, parts)
    Py = P @ design.y
    score = np.array([-0.5 * (np.trace(P @ dV) - Py @ dV @ Py) for dV in dVs])
    F = np.column_stack([dV @ Py for dV in dVs])
    ai = 0.5 * F.T @ P @ F
    return score, ai


def assert_engine_matches_dense(design, blocks, model, theta):
    """The sparse engine at theta against this module's dense computation: log L to 1e-8
    relative, the score against its dense form and against central differences of the dense
    log L, the AI matrix against 1/2 y'P V_i P V_j P y."""
    import pytest

    ev = model.evaluate(theta)
    mats = [b.structure.matrix(theta[b.slice]) for b in blocks]
    parts = dense_parts(design)
    assert ev.loglik == pytest.approx(dense_loglik(design, mats, parts), rel=1e-8)
    score, ai = dense_score_ai(design, blocks, theta)
    np.testing.assert_allclose(ev.score, score, rtol=1e-6, atol=1e-8 * np.abs(score).max())
    np.testing.assert_allclose(ev.ai, ai, rtol=1e-6, atol=1e-8 * np.abs(ai).max())
    fd = np.zeros_like(theta)
    for i in range(len(theta)):
        h = 1e-5 * max(abs(theta[i]), 1e-3)
        tp, tm = theta.copy(), theta.copy()
        tp[i] += h
        tm[i] -= h
        lp = dense_loglik(design, [b.structure.matrix(tp[b.slice]) for b in blocks], parts)
        lm = dense_loglik(design, [b.structure.matrix(tm[b.slice]) for b in blocks], parts)
        fd[i] = (lp - lm) / (2 * h)
    np.testing.assert_allclose(ev.score, fd, rtol=1e-4, atol=1e-6 * np.abs(fd).max())
    return ev
