"""Kenward-Roger (1997) adjusted covariance of the fixed effects and denominator df.

With V = sum_i theta_i G_i (variance parameters entering V linearly), Phi = (X'V^-1X)^-1,
P_i = -X'V^-1 G_i V^-1 X, Q_ij = X'V^-1 G_i V^-1 G_j V^-1 X and W the inverse expected
information of theta (W = 2 I^-1, I_ij = tr(P G_i P G_j) with P the REML projection):

    Phi_A = Phi + 2 Phi [sum_ij W_ij (Q_ij - P_i Phi P_j)] Phi.

For a hypothesis with rows L (q of them), Theta = L'(L Phi L')^-1 L,
A1 = sum_ij W_ij tr(Theta Phi P_i Phi) tr(Theta Phi P_j Phi), A2 = sum_ij W_ij
tr(Theta Phi P_i Phi Theta Phi P_j Phi), and the denominator df m follows K&R's equations
(B, g, c1..c3, E*, V*, rho; m = 4 + (q + 2) / (q rho - 1)), as pbkrtest's ``Lb_ddf`` and
lmerTest's ``ddf = "Kenward-Roger"`` compute them; the statistic is K&R's scaled
F* = lambda (Lb)'(L Phi_A L')^-1 (Lb) / q, lambda = m (1 - A2 / q) / (m - 2), on (q, m) df (what
pbkrtest's KRmodcomp and lmerTest's anova report). The df depend on the row space of L only.

The computation is dense in the observations (V is N x N), so it is offered for N up to
``MAX_N``; and only for structures whose matrix is linear in its parameters (the second
derivatives R_ij of K&R vanish): variance components, id/diag/us on traits or sites. For
correlation or factor-analytic parametrizations, or a spatial residual, it is refused rather
than approximated; Satterthwaite's df work for every model.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .errors import ModelError

__all__ = ["KenwardRoger", "MAX_N", "wald_kenward_roger"]

MAX_N = 6000


def _linear(structure, theta) -> bool:
    """True when the structure's matrix is sum_i theta_i dM/dtheta_i with constant derivatives."""
    M = structure.matrix(theta)
    D = np.asarray(structure.derivatives(theta))
    if not np.allclose(np.tensordot(theta, D, axes=1), M, rtol=1e-10, atol=1e-12 * max(1.0, np.abs(M).max())):
        return False
    D2 = np.asarray(structure.derivatives(1.5 * theta + 0.1))
    return bool(np.allclose(D, D2, rtol=1e-10, atol=1e-12))


class KenwardRoger:
    """Phi, Phi_A, the P_i and W of a fitted model at its REML estimate (see the module docstring).

    Parameters
    ----------
    model : mvreml.likelihood.REMLModel
    theta : ndarray
        The reported variance parameters.
    free : ndarray of bool
        Parameters estimated (held or boundary parameters count as known).
    """

    def __init__(self, model, theta, free):
        d = model.design
        theta = np.asarray(theta, float)
        if d.lattice is not None:
            raise ModelError("Kenward-Roger df are not available with a spatial residual; use "
                             "den_df='satterthwaite'")
        if d.n_obs > MAX_N:
            raise ModelError(f"Kenward-Roger df are computed densely in the observations (N = {d.n_obs} > "
                             f"{MAX_N}); use den_df='satterthwaite'")
        for b in model.blocks:
            # an AR1 random term's correlations are in K, outside its G (mvreml.ar1_levels)
            if b.structure.name == "ar1term" or not _linear(b.structure, theta[b.slice]):
                raise ModelError(f"Kenward-Roger df need variance parameters that enter V linearly; "
                                 f"{b.name!r} ({b.structure.name}) does not: use den_df='satterthwaite'")
        N = d.n_obs
        nr = model.n_random
        V = np.zeros((N, N))
        dV = []
        for b, rd, Z in zip(model.blocks[:nr], d.random, model.Z):
            Zd = Z.toarray() if sp.issparse(Z) else np.asarray(Z)
            K = np.linalg.inv(rd.kinv.toarray()) if not rd.identity else np.eye(rd.q)
            th = theta[b.slice]
            V += Zd @ np.kron(K, b.structure.matrix(th)) @ Zd.T
            for j, D in enumerate(b.structure.derivatives(th)):
                if free[b.start + j]:
                    dV.append(Zd @ np.kron(K, D) @ Zd.T)
        sec = np.zeros(d.n_units, np.int64) if d.unit_section is None else d.unit_section
        for rb in model.res_blocks:
            th = theta[rb.slice]
            R0 = rb.structure.matrix(th)
            Ds = [D for j, D in enumerate(rb.structure.derivatives(th)) if free[rb.start + j]]
            acc = [np.zeros((N, N)) for _ in Ds]
            for i in np.flatnonzero(sec == (rb.section or 0)):
                a, e = d.unit_start[i], d.unit_start[i + 1]
                tr = d.obs_trait[a:e]
                V[a:e, a:e] += R0[np.ix_(tr, tr)] / d.weights[i]
                for A, D in zip(acc, Ds):
                    A[a:e, a:e] += D[np.ix_(tr, tr)] / d.weights[i]
            dV.extend(acc)
        if not dV:
            raise ModelError("every variance parameter is held fixed or at the boundary: no Kenward-Roger "
                             "df (the variances are known)")
        X = d.X.toarray()
        Vi = np.linalg.inv(V)
        Vi = 0.5 * (Vi + Vi.T)
        TT = Vi @ X
        Phi = np.linalg.inv(X.T @ TT)
        Phi = 0.5 * (Phi + Phi.T)
        H = [G @ Vi for G in dV]              # G_i V^-1
        O = [h @ X for h in H]                # G_i V^-1 X
        P = [-(o.T @ TT) for o in O]          # -X'V^-1 G_i V^-1 X
        P = [0.5 * (p + p.T) for p in P]
        n = len(dV)
        Q = [[O[r].T @ Vi @ O[s] for s in range(n)] for r in range(n)]
        IE = np.zeros((n, n))
        for r in range(n):
            for s in range(r, n):
                k = np.sum(H[r] * H[s].T)
                IE[r, s] = IE[s, r] = (k - 2.0 * np.sum(Phi * Q[r][s].T)
                                       + np.sum((Phi @ P[r]) * (Phi @ P[s]).T))
        try:
            W = 2.0 * np.linalg.inv(IE)
        except np.linalg.LinAlgError:
            raise ModelError("the expected information of the variance parameters is singular: no "
                             "Kenward-Roger df") from None
        U = np.zeros_like(Phi)
        for r in range(n):
            for s in range(n):
                U += W[r, s] * (Q[r][s] - P[r] @ Phi @ P[s])
        adj = Phi + 2.0 * Phi @ U @ Phi
        self.phi, self.phi_adj, self.P, self.W = Phi, 0.5 * (adj + adj.T), P, W

    def ddf(self, L: np.ndarray) -> float:
        """Kenward-Roger denominator df of the hypothesis L b = 0 (q x p)."""
        return self.test(L)[0]

    def test(self, L: np.ndarray) -> tuple[float, float]:
        """(denominator df m, F scale lambda) of the hypothesis L b = 0 (q x p): the K&R statistic
        is lambda (Lb)'(L Phi_A L')^-1 (Lb) / q on (q, m) df (lambda = 1 when m is within 0.01
        of 2, as pbkrtest)."""
        L = np.atleast_2d(np.asarray(L, float))
        Phi = self.phi
        q = np.linalg.matrix_rank(L @ Phi @ L.T)
        Theta = L.T @ np.linalg.pinv(L @ Phi @ L.T) @ L
        u = [Theta @ Phi @ p @ Phi for p in self.P]
        tr = np.array([np.trace(x) for x in u])
        n = len(u)
        A1 = float(tr @ self.W @ tr)
        A2 = float(sum(self.W[i, j] * np.sum(u[i] * u[j].T) for i in range(n) for j in range(n)))
        B = (A1 + 6.0 * A2) / (2.0 * q)
        g = ((q + 1) * A1 - (q + 4) * A2) / ((q + 2) * A2)
        den = 3.0 * q + 2.0 * (1.0 - g)
        c1, c2, c3 = g / den, (q - g) / den, (q + 2 - g) / den
        v0, v1, v2 = 1.0 + c1 * B, 1.0 - c2 * B, 1.0 - c3 * B
        rho = (1.0 / q) * ((1.0 - A2 / q) / v1) ** 2 * v0 / v2
        m = 4.0 + (q + 2.0) / (q * rho - 1.0)
        scale = 1.0 if abs(m - 2.0) < 0.01 else m * (1.0 - A2 / q) / (m - 2.0)
        return m, scale


def wald_kenward_roger(fixef, fixed_terms: dict, kr: KenwardRoger) -> tuple[dict, dict]:
    """Kenward-Roger (df, F scale) of each fixed term's incremental and conditional hypothesis,
    the hypotheses built from Phi_A (:func:`mvreml.dendf.term_hypotheses`).

    Returns
    -------
    (incremental, conditional) : dict term -> (df, lambda)
    """
    from .dendf import term_hypotheses

    keep, hyps = term_hypotheses(fixef, kr.phi_adj, fixed_terms)
    p = kr.phi.shape[0]

    def full(L):
        out = np.zeros((L.shape[0], p))
        out[:, keep] = L
        return out
    inc = {t: (np.nan, np.nan) if a is None else kr.test(full(a)) for t, (a, _) in hyps.items()}
    con = {t: (np.nan, np.nan) if c is None else kr.test(full(c)) for t, (_, c) in hyps.items()}
    return inc, con
