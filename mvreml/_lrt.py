"""Likelihood-ratio tests between nested REML fits (``mvreml.lrt``)."""
from __future__ import annotations  # the Result annotations stay strings

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np  # noqa: F401
from scipy import stats  # noqa: F401

from .errors import ComparisonError, ConvergenceWarning, ModelError, warn  # noqa: F401

if TYPE_CHECKING:
    from .results import Result


# ---------------------------------------------------------------------- likelihood-ratio test
@dataclass(frozen=True)
class LRT:
    """Result of :func:`lrt`: statistic 2 (logL_big - logL_small), df, p value, method."""

    statistic: float
    df: int
    pvalue: float
    method: str

    def __str__(self) -> str:
        return f"LRT: statistic {self.statistic:.4f}, df {self.df}, p = {self.pvalue:.4g} ({self.method})"


# Trait structures as special cases of one another (a -> structures that contain a).
_WIDER = {"id": {"idv"}, "idv": {"diag", "corv"}, "corv": {"corh"}, "diag": {"corh", "fa"},
          "corh": {"corgh"}, "fa": {"us"}, "corgh": {"us"}, "us": {"corgh"}}


def _structure_nested(small: str, big: str) -> bool | None:
    """True if structure ``small`` is a special case of ``big``; None if a name is unknown."""
    def norm(s):
        s = s.strip().lower()
        s = "diag" if s == "idh" else s
        return ("fa", int("".join(c for c in s if c.isdigit()) or 1)) if s.startswith("fa") else (s, 0)
    (a, ka), (b, kb) = norm(small), norm(big)
    if a not in _WIDER or b not in _WIDER:
        return None
    if a == b:
        return ka <= kb
    seen, todo = set(), [a]
    while todo:
        s = todo.pop()
        for w in _WIDER[s] - seen:
            seen.add(w)
            todo.append(w)
    return b in seen


def _check_nested(small: Result, big: Result):
    for term, traits in small.term_traits.items():
        if term not in big.term_traits:
            raise ComparisonError(f"not nested: term {term!r} of the smaller model is not in the bigger one "
                                  f"(its terms: {', '.join(big.term_traits)})")
        if not set(traits) <= set(big.term_traits[term]):
            raise ComparisonError(f"not nested: term {term!r} covers traits {traits} in the smaller "
                                  f"model but {big.term_traits[term]} in the bigger one")
        if len(traits) > 1 and traits == big.term_traits[term] and \
                _structure_nested(small.structures[term], big.structures[term]) is False:
            raise ComparisonError(f"not nested: term {term!r} is {small.structures[term]} in the smaller "
                                  f"model, which is not a special case of {big.structures[term]}")


def lrt(small: Result, big: Result, boundary=None) -> LRT:
    """Likelihood-ratio test of a smaller (nested) REML fit against a bigger one.

    Parameters
    ----------
    small, big : Result
        Fits of the same data with the same fixed effects; ``big`` has more variance
        parameters and contains ``small`` as a special case.
    boundary : None, False, True or "mixture"
        True / "mixture": the tested variance lies on the boundary (zero) under the null, so
        the statistic follows the 50:50 mixture of chi2(df - 1) and chi2(df) (chi2(0) being a
        point mass at zero) rather than chi2(df).

    Returns
    -------
    LRT
        statistic = 2 (logL_big - logL_small), df = difference in variance parameters,
        pvalue, method.

    Raises
    ------
    ComparisonError
        Different data or fixed effects (REML likelihoods are then not comparable), a term or
        structure of ``small`` that ``big`` does not contain, ``big`` without more parameters,
        or ``big`` fitting worse than ``small`` (one fit did not reach its maximum).
    """
    from .results import Result  # noqa: F811  (at run time: results imports this module)

    if not isinstance(small, Result) or not isinstance(big, Result):
        raise ComparisonError("lrt compares two mvreml.Result objects")
    if small.n_obs != big.n_obs:
        raise ComparisonError(f"the fits use different numbers of observations ({small.n_obs} vs {big.n_obs})")
    if small.model["data_signature"] != big.model["data_signature"]:
        raise ComparisonError("the fits are of different data (data signatures differ)")
    fs, fb = (" ".join(str(m.model["fixed"]).split()) for m in (small, big))
    if fs != fb or small.rank_x != big.rank_x:
        what = f"{fs!r} vs {fb!r}" if fs != fb else f"rank of X {small.rank_x} vs {big.rank_x}"
        raise ComparisonError(f"the fixed effects differ ({what}): REML likelihoods of "
                              f"different fixed models are not comparable (test fixed "
                              f"effects with res.wald())")
    df = big.n_varparams - small.n_varparams
    if df <= 0:
        raise ComparisonError(f"the bigger model has {big.n_varparams} variance parameters, not more than "
                              f"the smaller one's {small.n_varparams}: pass the smaller model first")
    _check_nested(small, big)
    stat = 2.0 * (big.loglik - small.loglik)
    if stat < -2e-6:
        raise ComparisonError(
            f"the bigger model's log-likelihood ({big.loglik:.6f}) is below the smaller one's "
            f"({small.loglik:.6f}); a model containing another cannot fit worse, so one fit has not "
            f"reached its maximum: refit the bigger model starting from the smaller one's estimates")
    for m, which in ((small, "smaller"), (big, "bigger")):
        if not m.converged:
            warn(f"the {which} model did not converge ({m.reason}); the test may be wrong",
                 ConvergenceWarning)
    stat = max(stat, 0.0)
    if boundary in (None, False):
        return LRT(stat, df, float(stats.chi2.sf(stat, df)), f"chi2({df})")
    if boundary not in (True, "mixture"):
        raise ComparisonError(f"boundary must be None, False, True or 'mixture', got {boundary!r}")
    lower = float(stats.chi2.sf(stat, df - 1)) if df > 1 else float(stat <= 0.0)
    return LRT(stat, df, 0.5 * lower + 0.5 * float(stats.chi2.sf(stat, df)),
               f"0.5 chi2({df - 1}) + 0.5 chi2({df})")
