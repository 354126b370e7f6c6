"""Wald F statistics for fixed terms and estimable linear combinations of fixed effects.

Everything here works from the fitted fixed effects ``b`` and their covariance
``C = (X' V^-1 X)^-1`` (``Result.fixef_vcov``) at the REML variance parameters; nothing is
refitted.

Incremental (sequential) F
    With ``M = C^-1 = X'V^-1X = U'U`` (``U`` upper triangular, columns in model order),
    ``a = U b`` are the GLS "effects" (``Q'V^-1/2 y`` of a QR of ``V^-1/2 X``); the sum of the
    squared effects of a term's columns is its Wald statistic adjusted for the terms before
    it and ignoring those after it, exactly like the sequential ANOVA of lm.
Conditional F (asreml's ``F.con``)
    Each term is adjusted for every other term that does not *contain* it, where term A is
    contained in term B when A's factors are a proper subset of B's (``sex`` in ``sex:age``,
    ``trait`` in ``at(trait):sex`` -- ``at(trait[, level])`` counts as the factor ``trait`` --
    and ``(Intercept)`` in everything). This is computed as the incremental statistic of the
    term in the order (non-containing terms, the term, containing terms). A term that no
    other term contains gets the usual ``b_k' C_kk^-1 b_k / df``; the intercept's
    conditional F equals its incremental F.
Aliased columns
    Columns whose estimate or variance is not finite, or whose variance is zero (reference
    levels set to zero), carry no information and are left out; a term's ``df`` counts its
    remaining columns.
Denominator df
    By default ``N - p`` (observations minus the rank of X): the residual df of the fixed
    model, an upper bound on asreml's numerical (Kenward-Roger type) denominator df. For
    gryphon model 2 that is 852 against asreml's 831 for ``sex``: at F = 4 the p values are
    0.04582 and 0.04583. With few levels of a random term containing the fixed term (e.g. treatments
    tested against a handful of blocks) it is anti-conservative: ``Result.wald(den_df=
    "satterthwaite")`` or ``"kr"`` computes them (mvreml.dendf, mvreml.kenward_roger), or pass
    ``den_df`` (a number, or a dict term -> df) to use df computed elsewhere.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import linalg, stats

from .errors import ExpressionError, ModelError

__all__ = ["term_factors", "wald_table", "linear_combination"]


def _split_top(label: str) -> list[str]:
    """Split an interaction label on ':' outside parentheses and quotes."""
    parts, depth, quote, cur = [], 0, None, []
    for ch in label:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == ":" and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    parts.append("".join(cur).strip())
    return [p for p in parts if p]


def term_factors(label: str) -> frozenset:
    """The factors of a fixed-term label, for marginality (containment) between terms.

    ``"(Intercept)"`` -> {} ; ``"sex:age"`` -> {sex, age}; ``"at(trait, bwt):sex"`` -> {trait, sex}.
    """
    if label.strip() in ("(Intercept)", "1", "Intercept"):
        return frozenset()
    out = set()
    for f in _split_top(label):
        if f.startswith("at(") and f.endswith(")"):
            f = f[3:-1].split(",")[0].strip()
        out.add(f)
    return frozenset(out)


def _estimable(fixef: pd.DataFrame, vcov: np.ndarray) -> np.ndarray:
    b = fixef["estimate"].to_numpy(dtype=float)
    d = np.diag(vcov)
    return np.isfinite(b) & np.isfinite(d) & (d > 0.0)


def _effects(M: np.ndarray, b: np.ndarray, order: np.ndarray) -> np.ndarray:
    """a = U b in the given column order, with U'U = M (restricted to that order)."""
    U = linalg.cholesky(M[np.ix_(order, order)], lower=False)
    return U @ b[order]


def wald_table(fixef: pd.DataFrame, fixef_vcov: np.ndarray, fixed_terms: dict,
               n_obs: int, rank_x: int, den_df=None) -> pd.DataFrame:
    """Incremental and conditional Wald F tests of the fixed terms (see the module docstring).

    Parameters
    ----------
    fixef : DataFrame
        Fixed effects, column ``estimate``.
    fixef_vcov : ndarray
        Their covariance matrix, in fixef's order.
    fixed_terms : dict
        Term label -> positions of its columns in fixef, in model order.
    n_obs, rank_x : int
        N and p, for the default denominator df N - p.
    den_df : None, float or dict, optional
        Denominator df: None -> N - p for every term; a number for every term; a dict
        term -> df (terms not in it get N - p).

    Returns
    -------
    DataFrame
        Indexed by term, columns df, denDF, F_inc, F_con, p_inc, p_con.
    """
    if fixef_vcov is None:
        raise ModelError("the fixed effects' covariance matrix was not stored (too many fixed "
                         "effects, or a fit with fixef_vcov=False), so Wald tests are not available")
    C = np.asarray(fixef_vcov, dtype=float)
    b = fixef["estimate"].to_numpy(dtype=float)
    keep = _estimable(fixef, C)
    kept = np.flatnonzero(keep)
    new_pos = -np.ones(b.size, dtype=int)
    new_pos[kept] = np.arange(kept.size)
    b, C = b[kept], C[np.ix_(kept, kept)]
    try:
        M = linalg.cho_solve(linalg.cho_factor(C), np.eye(kept.size)) if kept.size else C
    except linalg.LinAlgError:
        raise ModelError("the fixed effects' covariance matrix is not positive definite on its "
                         "estimable columns; Wald tests are undefined") from None
    labels = list(fixed_terms)
    cols = {t: new_pos[[p for p in fixed_terms[t] if keep[p]]] for t in labels}
    factors = {t: term_factors(t) for t in labels}
    n_df = np.array([cols[t].size for t in labels], dtype=float)

    order = np.concatenate([cols[t] for t in labels]) if labels else np.zeros(0, int)
    a = _effects(M, b, order) if order.size else order.astype(float)
    ends = np.cumsum([cols[t].size for t in labels])
    f_inc = np.array([np.sum(a[e - cols[t].size:e] ** 2) for t, e in zip(labels, ends)])

    f_con = np.empty(len(labels))
    for k, t in enumerate(labels):
        containing = [u for u in labels if u != t and factors[t] < factors[u]]
        before = [u for u in labels if u != t and u not in containing]
        order_k = np.concatenate([cols[u] for u in before + [t] + containing])
        start = sum(cols[u].size for u in before)
        a_k = _effects(M, b, order_k) if order_k.size else order_k.astype(float)
        f_con[k] = np.sum(a_k[start:start + cols[t].size] ** 2)

    with np.errstate(invalid="ignore", divide="ignore"):
        f_inc = np.where(n_df > 0, f_inc / n_df, np.nan)
        f_con = np.where(n_df > 0, f_con / n_df, np.nan)
    resid = float(n_obs - rank_x)
    if den_df is None:
        den = np.full(len(labels), resid)
    elif isinstance(den_df, dict):
        unknown = [t for t in den_df if t not in fixed_terms]
        if unknown:
            raise ModelError(f"den_df names fixed terms that the model does not have: {unknown}; "
                             f"terms: {labels}")
        den = np.array([float(den_df.get(t, resid)) for t in labels])
    else:
        den = np.full(len(labels), float(den_df))
    return pd.DataFrame(
        {"df": n_df.astype(int), "denDF": den, "F_inc": f_inc, "F_con": f_con,
         "p_inc": stats.f.sf(f_inc, n_df, den), "p_con": stats.f.sf(f_con, n_df, den)},
        index=pd.Index(labels, name="term"))


def _as_matrix(L, names: list[str]) -> tuple[np.ndarray, pd.Index]:
    if isinstance(L, pd.Series):
        L = L.to_frame().T
    if isinstance(L, pd.DataFrame):
        unknown = [c for c in L.columns if c not in names]
        if unknown:
            raise ExpressionError(f"L names fixed effects that the model does not have: {unknown}; "
                                  f"fixed effects: {names}")
        return L.reindex(columns=names, fill_value=0.0).to_numpy(dtype=float), L.index
    A = np.atleast_2d(np.asarray(L, dtype=float))
    if A.ndim != 2 or A.shape[1] != len(names):
        raise ExpressionError(f"L must have one column per fixed effect ({len(names)}: {names}); "
                              f"got shape {np.shape(L)}")
    return A, pd.RangeIndex(A.shape[0])


def linear_combination(L, fixef: pd.DataFrame, fixef_vcov: np.ndarray) -> pd.DataFrame:
    """Estimates and standard errors of the linear combinations ``L b``.

    Parameters
    ----------
    L : array-like (k x p), DataFrame or Series
        Coefficients; a DataFrame/Series is labelled by fixed-effect names (missing names
        count as 0) and its index names the rows.
    fixef, fixef_vcov
        Fixed effects and their covariance.

    Returns
    -------
    DataFrame
        Columns estimate, std_error.
    """
    if fixef_vcov is None:
        raise ModelError("the fixed effects' covariance matrix was not stored (too many fixed "
                         "effects), so standard errors of predictions are not available")
    names = [str(n) for n in fixef.index]
    A, index = _as_matrix(L, names)
    C = np.asarray(fixef_vcov, dtype=float)
    keep = _estimable(fixef, C)
    bad = np.flatnonzero((A[:, ~keep] != 0.0).any(axis=0))
    if bad.size:
        aliased = [names[i] for i in np.flatnonzero(~keep)[bad]]
        raise ExpressionError(f"the combination uses aliased (not estimable) fixed effects: {aliased}")
    b = fixef["estimate"].to_numpy(dtype=float)
    A, b, C = A[:, keep], b[keep], C[np.ix_(keep, keep)]
    var = np.einsum("ij,jk,ik->i", A, C, A)
    return pd.DataFrame({"estimate": A @ b, "std_error": np.sqrt(np.clip(var, 0.0, None))}, index=index)
