"""Satterthwaite denominator degrees of freedom for Wald F tests of fixed effects.

For a hypothesis L b = 0 (q rows) with Phi(theta) = (X'V^-1X)^-1, the single-row
Satterthwaite df is ``nu = 2 (l Phi l')^2 / (g' A g)``, ``g_j = l (dPhi / dtheta_j) l'``,
``A`` the asymptotic covariance of the variance parameters. A q-row hypothesis is rotated
into q independent contrasts (eigenvectors of L Phi L'), each with its nu_m, and combined as
lmerTest does (Kuznetsova, Brockhoff & Christensen 2017; Fai & Cornelius 1996):
``E = sum nu_m / (nu_m - 2)``, ``nu = 2 E / (E - q)`` (nu = 2 when some nu_m <= 2; nu_1 when
all are equal).

``A`` is the inverse of the *observed* information, -d^2 log L / dtheta^2, by central
differences of the analytic score; ``dPhi / dtheta`` by central differences of Phi (one
factorization each). At the REML maximum the score is zero, so g' A g (and nu) does not depend
on how theta is parametrized: the numbers are lmerTest's, whose Hessian is that of its own
parameters. Variance parameters held fixed or on the boundary are treated as known (left out of
theta), as in lmerTest. Each step is relative (1e-4 of the parameter, or of 1e-2 for values near
zero), small against the curvature of log L and large against its rounding.
"""
from __future__ import annotations

import numpy as np
from scipy import linalg

from .errors import ModelError

__all__ = ["SatterthwaiteParts", "satterthwaite_df"]


def _steps(theta: np.ndarray) -> np.ndarray:
    return 1e-4 * np.maximum(np.abs(theta), 1e-2)


class SatterthwaiteParts:
    """A (covariance of the free variance parameters) and dPhi / dtheta at the REML estimate.

    Parameters
    ----------
    model : mvreml.likelihood.REMLModel
    theta : ndarray
        The reported variance parameters.
    free : ndarray of bool
        Parameters estimated (not held fixed, not on the boundary).
    """

    def __init__(self, model, theta, free):
        theta = np.asarray(theta, float)
        J = np.flatnonzero(free)
        if J.size == 0:
            raise ModelError("every variance parameter is held fixed or at the boundary: no "
                             "Satterthwaite df (the variances are known; use den_df=N - p or a number)")
        h = _steps(theta[J])
        H = np.zeros((J.size, J.size))
        dphi = []
        for c, (j, hj) in enumerate(zip(J, h)):
            plus, minus = theta.copy(), theta.copy()
            plus[j] += hj
            minus[j] -= hj
            s_plus = model.evaluate(plus).score[J]
            phi_plus = model.fixed_vcov(theta=plus)
            s_minus = model.evaluate(minus).score[J]
            phi_minus = model.fixed_vcov(theta=minus)
            if phi_plus is None or phi_minus is None:
                raise ModelError("the fixed effects' covariance matrix is not available (too many "
                                 "fixed effects) for Satterthwaite df")
            H[:, c] = -(s_plus - s_minus) / (2.0 * hj)
            dphi.append((phi_plus - phi_minus) / (2.0 * hj))
        H = 0.5 * (H + H.T)
        try:
            self.A = linalg.inv(H)
        except linalg.LinAlgError:
            raise ModelError("the observed information of the variance parameters is singular: no "
                             "Satterthwaite df") from None
        if np.any(np.linalg.eigvalsh(H) <= 0):
            raise ModelError("the observed information of the variance parameters is not positive "
                             "definite (not at a REML maximum?): no Satterthwaite df")
        self.dphi = np.array(dphi)               # (n_free, p, p)
        model.refactorize(theta)                 # leave the factor at the reported theta
        self.phi = model.fixed_vcov(theta=theta)


def _single(l: np.ndarray, parts: SatterthwaiteParts, phi: np.ndarray) -> float:
    v = float(l @ phi @ l)
    g = np.einsum("i,kij,j->k", l, parts.dphi, l)
    den = float(g @ parts.A @ g)
    return 2.0 * v * v / den if den > 0 else np.inf


def satterthwaite_df(L: np.ndarray, parts: SatterthwaiteParts, keep: np.ndarray | None = None,
                     tol: float = 1e-8) -> float:
    """Satterthwaite denominator df of the hypothesis L b = 0 (L: q x p, in fixef's columns).

    Parameters
    ----------
    L : ndarray
        Hypothesis rows over all fixed effects (aliased columns must have zero coefficients).
    parts : SatterthwaiteParts
    keep : ndarray of int, optional
        The estimable columns of fixef; L's other columns are ignored.
    """
    phi, dphi = parts.phi, parts.dphi
    L = np.atleast_2d(np.asarray(L, float))
    if keep is not None:
        L = L[:, keep]
        phi = phi[np.ix_(keep, keep)]
        sub = SatterthwaiteParts.__new__(SatterthwaiteParts)
        sub.A, sub.dphi, sub.phi = parts.A, dphi[:, keep][:, :, keep], phi
        parts = sub
    VL = L @ phi @ L.T
    d, P = np.linalg.eigh(0.5 * (VL + VL.T))
    pos = d > tol * max(d.max(initial=0.0), 1e-300)
    nus = np.array([_single(P[:, m] @ L, parts, phi) for m in np.flatnonzero(pos)])
    if nus.size == 0:
        return np.nan
    if nus.size == 1 or np.all(np.abs(nus - nus[0]) < tol):
        return float(nus[0])
    if np.any(nus <= 2):
        return 2.0
    E = float(np.sum(nus / (nus - 2.0)))
    return 2.0 * E / (E - nus.size)


def _rows(M: np.ndarray, order: np.ndarray, start: int, size: int, n: int) -> np.ndarray:
    """One term's Wald hypothesis over n columns: the rows of U (U'U = M in the given column
    order) whose effects a = U b make the term's statistic, rewritten with the identity on the
    term's own columns.

    The multi-row Satterthwaite df depends on the basis of the hypothesis (not only on its row
    space): the whitened rows have L Phi L' = I, whose eigenvectors are arbitrary. The basis
    with the identity on the term's columns is unique, and for a term that no other contains it
    is "the term's coefficients are zero", lmerTest's type 3 hypothesis.
    """
    U = linalg.cholesky(M[np.ix_(order, order)], lower=False)
    R = U[start:start + size]
    R = linalg.solve_triangular(R[:, start:start + size], R, lower=False)
    L = np.zeros((size, n))
    L[:, order] = R
    return L


def term_hypotheses(fixef, C: np.ndarray, fixed_terms: dict):
    """Each fixed term's incremental and conditional Wald hypothesis (rows over fixef's
    estimable columns), with the column orders and containment of :func:`mvreml.wald.wald_table`,
    built from M = C^-1 at the REML estimate.

    Returns
    -------
    keep : ndarray of int
        The estimable columns of fixef the rows are over.
    hyps : dict term -> (L_inc, L_con), each None for a term without estimable columns.
    """
    from .wald import _estimable, term_factors

    C = np.asarray(C, float)
    keep = np.flatnonzero(_estimable(fixef, C))
    new_pos = -np.ones(C.shape[0], dtype=int)
    new_pos[keep] = np.arange(keep.size)
    M = linalg.cho_solve(linalg.cho_factor(C[np.ix_(keep, keep)]), np.eye(keep.size))
    labels = list(fixed_terms)
    kept = set(keep.tolist())
    cols = {t: new_pos[[p for p in fixed_terms[t] if p in kept]] for t in labels}
    factors = {t: term_factors(t) for t in labels}
    n = keep.size
    order = np.concatenate([cols[t] for t in labels]).astype(int)
    hyps, start = {}, 0
    for t in labels:
        size = cols[t].size
        if not size:
            hyps[t] = (None, None)
            continue
        containing = [u for u in labels if u != t and factors[t] < factors[u]]
        before = [u for u in labels if u != t and u not in containing]
        order_k = np.concatenate([cols[u] for u in before + [t] + containing]).astype(int)
        s = sum(cols[u].size for u in before)
        hyps[t] = (_rows(M, order, start, size, n), _rows(M, order_k, s, size, n))
        start += size
    return keep, hyps


def wald_satterthwaite(fixef, fixed_terms: dict, parts: SatterthwaiteParts) -> tuple[dict, dict]:
    """Satterthwaite df of each fixed term's incremental and conditional Wald hypothesis
    (:func:`term_hypotheses`), held fixed while Phi varies with theta.

    Returns
    -------
    (incremental, conditional) : dict term -> df
    """
    keep, hyps = term_hypotheses(fixef, parts.phi, fixed_terms)
    inc = {t: np.nan if a is None else satterthwaite_df(a, parts, keep) for t, (a, _) in hyps.items()}
    con = {t: np.nan if c is None else satterthwaite_df(c, parts, keep) for t, (_, c) in hyps.items()}
    return inc, con
