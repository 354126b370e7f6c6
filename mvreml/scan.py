"""Testing many extra fixed-effect columns with the variance components held (GWAS-like scans).

For a column x (a SNP's genotypes, one value per unit) added to the fixed effects with a
trait-specific effect, the mixed-model equations at fixed variance parameters theta grow by
t equations: [[C, B], [B', D]] with B = W'R^-1 X_s, D = X_s'R^-1 X_s (X_s the N x t long
columns of x). Block elimination with the factor of C that the model already holds gives
the generalized-least-squares estimate and its covariance without a new factorization:

    S = D - B' C^-1 B,    b_s = S^-1 X_s'R^-1 e,    Var(b_s) = S^-1,

with e = y - W C^-1 W'R^-1 y the model's residuals (X_s'R^-1 y - B' sol = X_s'R^-1 e). This is
exactly the fit of ``model.with_fixed([X, x])`` with every variance parameter fixed at theta
(tests/test_scan.py), at the cost of one solve with t right-hand sides per column (done in
blocks of columns) instead of a new design, pattern, symbolic analysis and factorization.
As GWAS programs with precomputed variance components do (EMMAX, GCTA's --mlma with a
given GRM variance), theta is not re-estimated per column.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from .errors import ArgumentError, DataError

__all__ = ["scan_columns"]

#: columns whose S is below this share of D are aliased with the model's fixed effects
ALIASED = 1e-9


def _long_columns(design, G: np.ndarray) -> np.ndarray:
    """N x (m t) long-format columns: column s * t + j holds G[:, s] on the records of trait j."""
    rows = design.unit_rows[design.obs_unit] if design.unit_rows is not None else design.obs_unit
    t = design.t
    m = G.shape[1]
    out = np.zeros((design.n_obs, m * t))
    vals = G[rows]                                   # N x m
    for j in range(t):
        on = design.obs_trait == j
        out[np.ix_(on, np.arange(m) * t + j)] = vals[on]
    return out


def scan_columns(reml, theta: np.ndarray, G, n_rows: int, names, traits, block: int = 64) -> pd.DataFrame:
    """Estimates, standard errors and Wald tests of extra fixed columns at fixed theta.

    Parameters
    ----------
    reml : mvreml.likelihood.REMLModel
    theta : ndarray
        Variance parameters held fixed.
    G : array (n_rows x m)
        The columns (one value per row of the model's y); NaN is not allowed.
    n_rows : int
        Rows of the model's y.
    names : sequence of str or None
        Column names (default "c0", "c1", ...).
    traits : list of str
    block : int
        Columns solved together.

    Returns
    -------
    pandas.DataFrame
        Index (column, trait); estimate, std_error, z_ratio, pvalue (two-sided, normal), and
        per column wald (joint over the traits) and wald_pvalue (chi-square, t df). Columns
        aliased with the fixed effects have NaN and aliased True.
    """
    try:
        G = np.asarray(G, dtype=float)
    except (TypeError, ValueError):
        raise ArgumentError("the columns to scan must be numbers (n x m)", argument="columns") from None
    if G.ndim == 1:
        G = G[:, None]
    if G.ndim != 2 or G.shape[0] != n_rows:
        raise ArgumentError(f"the columns to scan have shape {G.shape} but y has {n_rows} rows: give an "
                            f"{n_rows} x m array", argument="columns")
    bad = ~np.isfinite(G)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise DataError(f"the columns to scan have a non-finite value at row {r}, column {c} (impute missing "
                        "genotypes first)")
    m = G.shape[1]
    names = [f"c{k}" for k in range(m)] if names is None else [str(x) for x in names]
    if len(names) != m:
        raise ArgumentError(f"names has {len(names)} entries for {m} columns", argument="names")
    d, pat = reml.design, reml.pattern
    ev = reml.evaluate(np.asarray(theta, dtype=float), derivatives=False)   # the factor at theta
    if d.lattice is None:
        nr = reml.n_random
        rstack, _ = reml._residual_parts(reml.matrices(theta)[nr:])
        rinv_pairs = reml._pair_values(rstack)
    else:
        rinv_pairs, _ = reml._lattice_parts(theta)
    Rinv = pat.rinv_matrix(rinv_pairs)
    re = Rinv @ ev.residuals
    t = d.t
    est = np.full((m, t), np.nan)
    cov = np.full((m, t, t), np.nan)
    wald = np.full(m, np.nan)
    aliased = np.zeros(m, bool)
    for lo in range(0, m, block):
        hi = min(lo + block, m)
        Xs = _long_columns(d, G[:, lo:hi])              # N x (k t)
        RX = np.asarray(Rinv @ Xs)
        B = np.asarray(pat.W.T @ RX)                   # n_eq x (k t)
        Q = np.asarray(reml.factor(B))
        r = Xs.T @ re
        for s in range(hi - lo):
            sl = slice(s * t, (s + 1) * t)
            D = Xs[:, sl].T @ RX[:, sl]
            S = D - B[:, sl].T @ Q[:, sl]
            S = 0.5 * (S + S.T)
            k = lo + s
            if np.any(np.diag(S) <= ALIASED * np.maximum(np.diag(D), 1e-300)):
                aliased[k] = True
                continue
            try:
                Sinv = np.linalg.inv(S)
            except np.linalg.LinAlgError:
                aliased[k] = True
                continue
            b = Sinv @ r[sl]
            est[k], cov[k] = b, 0.5 * (Sinv + Sinv.T)
            wald[k] = float(b @ S @ b)
    se = np.sqrt(np.einsum("kjj->kj", cov))
    z = est / se
    rows = []
    for k, name in enumerate(names):
        for j, trait in enumerate(traits):
            rows.append((name, trait))
    index = pd.MultiIndex.from_tuples(rows, names=["column", "trait"])
    out = pd.DataFrame({"estimate": est.ravel(), "std_error": se.ravel(), "z_ratio": z.ravel(),
                        "pvalue": 2.0 * stats.norm.sf(np.abs(z.ravel())),
                        "wald": np.repeat(wald, t), "wald_pvalue": np.repeat(stats.chi2.sf(wald, t), t),
                        "aliased": np.repeat(aliased, t)}, index=index)
    return out
