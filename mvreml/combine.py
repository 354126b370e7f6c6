"""Full trait matrices from univariate and bivariate sub-model fits (``mvreml.pairwise``,
``init="pairwise"``).

For every term: the variance of a trait is pooled over the fits that estimate it (its
univariate fit and its bivariate fits), weighted by the inverse of their sampling variances;
the correlation of two traits is that of their bivariate fit. The correlation matrices so put
together need not be positive definite: they are bent by weighted bending
(:func:`mvreml.bending.bend`; weights from the correlations' sampling variances, or from the
numbers of records the traits share), which moves the best-estimated correlations least.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .bending import bend
from .errors import ArgumentError, StartingValueError

__all__ = ["Combined", "combine", "sub_trait_sets"]

MAX_START_COR = 0.95      # |correlation| of a starting matrix at most this
MIN_START_VAR = 1e-3      # a starting variance at least this share of the phenotypic variance
_BEND_FLOOR = 1e-3        # smallest eigenvalue of a bent correlation matrix


def sub_trait_sets(traits, bivariate: bool = True) -> list[tuple]:
    """The trait sets of the sub-models: each trait alone, then (``bivariate``) every pair."""
    out = [(x,) for x in traits]
    if bivariate:
        out += list(itertools.combinations(traits, 2))
    return out


@dataclass
class Combined:
    """Trait matrices per term combined from sub-model fits.

    Attributes
    ----------
    covariance : dict
        Term -> trait-labelled positive definite covariance matrix (the bent combination,
        |correlations| <= 0.95, variances above a small floor): pass it as ``init=`` to
        :func:`mvreml.fit` (see :attr:`init`).
    estimate : dict
        Term -> the combination before bending (pooled variances, bivariate covariances
        rescaled to them); not necessarily positive definite. NaN where no fit gave a value.
    se : dict
        Term -> standard errors of ``estimate``: of a covariance, from its bivariate fit; of a
        pooled variance, the weighted mean of the fits' standard errors (an upper bound:
        the fits share records, so their estimates are positively correlated). NaN where
        not available.
    correlation, correlation_se : dict
        Term -> the correlations before bending and their standard errors (delta method).
    bending : dict
        Term -> :class:`mvreml.bending.Bent` of its correlation matrix.
    notes : list of str
        What was filled in or changed (failed fits, missing pairs, capped correlations).
    """

    covariance: dict
    estimate: dict
    se: dict
    correlation: dict
    correlation_se: dict
    bending: dict
    notes: list = field(default_factory=list)

    @property
    def init(self) -> dict:
        """Term -> starting matrix, ready for ``mvreml.fit(..., init=...)``."""
        return {term: m.copy() for term, m in self.covariance.items()}


def _element_se(res, term: str, a: str, b: str) -> float:
    """Standard error of element (a, b) of a term's covariance matrix in a fit (NaN if none)."""
    comp = res.components
    hit = np.flatnonzero((comp["term"].to_numpy() == term)
                         & (((comp["trait_1"].to_numpy() == a) & (comp["trait_2"].to_numpy() == b))
                            | ((comp["trait_1"].to_numpy() == b) & (comp["trait_2"].to_numpy() == a))))
    if hit.size == 0:
        return np.nan
    v = float(res.components_vcov[hit[0], hit[0]])
    return float(np.sqrt(v)) if np.isfinite(v) and v >= 0 else np.nan


def _pool(values: list) -> tuple[float, float]:
    """(pooled estimate, its standard error bound) from (estimate, se) pairs."""
    est = np.array([v for v, _ in values], float)
    se = np.array([s for _, s in values], float)
    ok = np.isfinite(se) & (se > 0)
    if ok.all():
        w = 1.0 / se ** 2
        w /= w.sum()
        return float(w @ est), float(w @ se)
    return float(est.mean()), (float(se[ok].mean()) if ok.any() else np.nan)


def _phenotypic(fits: dict, traits) -> np.ndarray:
    """Phenotypic covariance from the fits: the sum of each fit's term matrices; a variance
    from the univariate fit if it succeeded, else the mean over the bivariate ones (NaN if none)."""
    pos = {x: i for i, x in enumerate(traits)}
    uni: dict = {}
    bi: dict = {}
    for sub, res in fits.items():
        if res is None:
            continue
        tot = sum(res.covariance(term).reindex(index=list(sub), columns=list(sub)).fillna(0.0).to_numpy()
                  for term in res.term_traits)
        for i, a in enumerate(sub):
            for j, b in enumerate(sub):
                (uni if len(sub) == 1 else bi).setdefault((pos[a], pos[b]), []).append(tot[i, j])
    P = np.full((len(traits), len(traits)), np.nan)
    for key in set(uni) | set(bi):
        P[key] = float(np.mean(uni.get(key) or bi[key]))
    return P


def _component(res, term: str, a: str, b: str) -> bool:
    """Whether element (a, b) of the term is estimated in the fit (False: a structural zero,
    e.g. the covariance of a diag() term)."""
    comp = res.components
    t1, t2 = comp["trait_1"].to_numpy(), comp["trait_2"].to_numpy()
    return bool(np.any((comp["term"].to_numpy() == term) & (((t1 == a) & (t2 == b)) | ((t1 == b) & (t2 == a)))))


def combine(fits: dict, traits, terms: dict, *, P=None, counts=None, weights: str = "variance") -> Combined:
    """Combine univariate and bivariate sub-model fits into full trait matrices per term.

    Parameters
    ----------
    fits : dict
        Trait tuple ``(a,)`` or ``(a, b)`` -> :class:`mvreml.Result` of that sub-model, or None
        for a fit that failed (its share is filled in; see ``notes``).
    traits : sequence of str
        All traits, in the order of the full model.
    terms : dict
        Term name -> the traits it covers (the residual is "units").
    P : array_like, optional
        Phenotypic covariance of ``traits`` (fills variances and correlations no fit gave);
        default: from the fits (the sum of their term matrices).
    counts : array_like, optional
        Records per trait (diagonal) and shared by each pair of traits (t x t), for
        ``weights="records"`` and as the fallback of missing standard errors.
    weights : {"variance", "records"}
        Weights of change in bending: the correlations' sampling variances, or the
        reciprocals of the numbers of records shared.

    Returns
    -------
    Combined

    Raises
    ------
    StartingValueError
        A variance that no fit gave and ``P`` cannot fill.
    ArgumentError
        ``weights`` not one of the above, or ``records`` without ``counts``.
    """
    if weights not in ("variance", "records"):
        raise ArgumentError(f"weights={weights!r}: use 'variance' or 'records'", argument="weights")
    if weights == "records" and counts is None:
        raise ArgumentError("weights='records' needs the numbers of records (counts=)", argument="weights")
    traits = tuple(traits)
    notes = [f"the sub-model on {', '.join(sub)} failed: its estimates were filled in"
             for sub, res in fits.items() if res is None]
    Pm = _phenotypic(fits, traits) if P is None else np.asarray(P, float)
    out = Combined({}, {}, {}, {}, {}, {}, notes)
    for term, ttr in terms.items():
        ttr = tuple(ttr)
        idx = [traits.index(x) for x in ttr]
        k = len(ttr)
        var, var_se = np.full(k, np.nan), np.full(k, np.nan)
        R, R_se = np.eye(k), np.zeros((k, k))
        for i, a in enumerate(ttr):
            vals = [(float(res.covariance(term).loc[a, a]), _element_se(res, term, a, a))
                    for sub, res in fits.items()
                    if res is not None and a in sub and term in res.term_traits and a in res.term_traits[term]]
            vals = [v for v in vals if np.isfinite(v[0])]
            if vals:
                var[i], var_se[i] = _pool(vals)
        missing, held = [], []
        for (i, a), (j, b) in itertools.combinations(list(enumerate(ttr)), 2):
            res = fits.get((a, b), fits.get((b, a)))
            r = r_se = np.nan
            if (res is not None and term in res.term_traits and {a, b} <= set(res.term_traits[term])
                    and not _component(res, term, a, b)):
                r = r_se = 0.0                # a structural zero (diag): held at 0
                held.append((i, j))
            elif res is not None and term in res.term_traits and {a, b} <= set(res.term_traits[term]):
                C = res.correlation(term, se=True)
                row = C[((C["trait_1"] == a) & (C["trait_2"] == b)) | ((C["trait_1"] == b) & (C["trait_2"] == a))]
                if len(row):
                    r, r_se = float(row["estimate"].iloc[0]), float(row["std_error"].iloc[0])
            R[i, j] = R[j, i] = r
            R_se[i, j] = R_se[j, i] = r_se
            if not np.isfinite(r):
                missing.append((i, j))
        se = np.diag(var_se)
        for i, a in enumerate(ttr):
            for j, b in enumerate(ttr[:i]):
                res = fits.get((a, b), fits.get((b, a)))
                se[i, j] = se[j, i] = _element_se(res, term, a, b) if res is not None else np.nan
        sd_raw = np.sqrt(np.where(var >= 0, var, np.nan))
        lab = dict(index=list(ttr), columns=list(ttr))
        out.estimate[term] = pd.DataFrame(R * np.outer(sd_raw, sd_raw), **lab)
        out.se[term] = pd.DataFrame(se, **lab)
        out.correlation[term] = pd.DataFrame(R, **lab)
        out.correlation_se[term] = pd.DataFrame(np.where(np.eye(k, dtype=bool), 0.0, R_se), **lab)
        # starting matrix: fill what is missing, floor the variances, bend, cap
        Pt = Pm[np.ix_(idx, idx)]
        n_terms = len(terms)
        for i, a in enumerate(ttr):
            p_ii = Pt[i, i]
            if not np.isfinite(var[i]):
                if not np.isfinite(p_ii):
                    raise StartingValueError(f"no sub-model fit gave the variance of {a!r} for term {term!r} "
                                             "(its univariate and bivariate fits all failed)", term=term)
                var[i] = p_ii / n_terms
                notes.append(f"{term}: the variance of {a} is 1/{n_terms} of its phenotypic variance "
                             "(no fit gave it)")
            if np.isfinite(p_ii) and p_ii > 0:
                var[i] = max(var[i], MIN_START_VAR * p_ii)
            elif var[i] <= 0:
                raise StartingValueError(f"the variance of {a!r} for term {term!r} is {var[i]:.3g} and there "
                                         "is no phenotypic variance to start it from", term=term)
        Rs = R.copy()
        for i, j in missing:
            den = np.sqrt(Pt[i, i] * Pt[j, j])
            fill = Pt[i, j] / den if np.isfinite(Pt[i, j]) and den > 0 else 0.0
            Rs[i, j] = Rs[j, i] = fill
        if missing:
            notes.append(f"{term}: {len(missing)} correlation(s) no fit gave start from the phenotypic "
                         "correlation (or 0)")
        W = _weights(R_se, missing, held, ttr, traits, counts, weights)
        bent = bend(Rs, W, floor=_BEND_FLOOR)
        B = bent.matrix
        d = np.sqrt(np.diag(B))
        B = B / np.outer(d, d)
        off = np.max(np.abs(B - np.eye(k)), initial=0.0)
        if off > MAX_START_COR:
            B = np.eye(k) + (B - np.eye(k)) * (MAX_START_COR / off)
            notes.append(f"{term}: correlations scaled by {MAX_START_COR / off:.3f} so that none exceeds "
                         f"{MAX_START_COR} in the starting matrix")
        if bent.changed:
            notes.append(f"{term}: the correlation matrix was not positive definite (smallest eigenvalue "
                         f"{bent.min_eigenvalue:.3g}); bent ({bent.method}, {bent.iterations} iterations)")
        out.bending[term] = bent
        sd = np.sqrt(var)
        out.covariance[term] = pd.DataFrame(B * np.outer(sd, sd), **lab)
    return out


def _weights(R_se, missing, held, ttr, traits, counts, how) -> np.ndarray:
    """Weights of change of a correlation matrix's elements (the unit diagonal is held).

    ``"variance"``: the correlations' sampling variances (one without a standard error gets
    the largest weight: it may move most); ``"records"``, or no standard error at all:
    1 / (records the two traits share). A correlation no fit gave is free to move; a
    structural zero (``held``) does not move."""
    k = len(ttr)
    W = None
    off = ~np.eye(k, dtype=bool)
    if how == "variance":
        V = R_se ** 2
        ok = np.isfinite(V) & (V > 0) & off
        for i, j in held:
            ok[i, j] = ok[j, i] = False
        if ok.any():
            W = np.where(ok, V, V[ok].max())
    if W is None and counts is not None:
        idx = [tuple(traits).index(x) for x in ttr]
        n = np.asarray(counts, float)[np.ix_(idx, idx)]
        ok = (n > 0) & off
        if ok.any():
            W = np.where(ok, 1.0 / np.where(ok, n, 1.0), 0.0)
            W = np.where(ok, W, W[ok].max())
    if W is None:
        W = np.ones((k, k))
    W = np.array(W, float)
    for i, j in missing:
        W[i, j] = W[j, i] = W.max()
    for i, j in held:
        W[i, j] = W[j, i] = 0.0
    np.fill_diagonal(W, 0.0)
    return W
