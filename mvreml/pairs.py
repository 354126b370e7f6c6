"""``mvreml.pairwise``: every univariate and bivariate sub-model of a multi-trait model, fitted
with :func:`mvreml.fit_many` and combined into full trait matrices (starting values of the
full fit, or estimates in their own right when the full fit is out of reach)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ._validate import fit_options
from .combine import Combined, combine, sub_trait_sets
from .errors import ArgumentError, DataError, FormulaError
from .formula import parse_fixed, parse_random, parse_residual
from .many import Fits, fit_many
from .start import check_trait_model, model_terms, sub_model

__all__ = ["pairwise", "Pairwise"]

_NOT_FOR_SUBMODELS = ("init", "fix", "checkpoint", "resume")


@dataclass
class Pairwise:
    """The sub-model fits of :func:`pairwise` and their combination.

    Attributes
    ----------
    traits : tuple of str
    sets : list of tuple
        The trait sets fitted: each trait alone, then every pair.
    fits : Fits
        One record per set (``fits.summary()`` lists them, failures included).
    combined : mvreml.combine.Combined
        Per term: ``covariance`` (positive definite, for ``init=``), ``estimate`` and ``se``
        (before bending), ``correlation``, ``correlation_se``, ``bending``, ``notes``.
    """

    traits: tuple
    sets: list
    fits: Fits
    combined: Combined

    @property
    def init(self) -> dict:
        """Term -> positive definite trait matrix: ``mvreml.fit(..., init=pw.init)``."""
        return self.combined.init

    @property
    def covariance(self) -> dict:
        return self.combined.covariance

    @property
    def estimate(self) -> dict:
        return self.combined.estimate

    @property
    def se(self) -> dict:
        return self.combined.se

    @property
    def notes(self) -> list:
        return self.combined.notes

    def result(self, *traits) -> "object":
        """The Result of the sub-model on these traits (one or two), or None if it failed."""
        key = tuple(traits)
        for s, rec in zip(self.sets, self.fits):
            if s == key or (len(s) == 2 and s[::-1] == key):
                return rec.result
        raise ArgumentError(f"no sub-model on {key} (sub-models: {self.sets})", argument="traits")


def _counts(data: pd.DataFrame, traits) -> np.ndarray:
    """Records per trait (diagonal) and with both traits observed (off-diagonal)."""
    seen = data[list(traits)].notna().to_numpy(dtype=float)
    return seen.T @ seen


def pairwise(fixed: str, random: str | None = None, residual: str | None = None, *, data: pd.DataFrame,
             traits=None, client=None, store=None, bend_weights: str = "variance", n_workers: int | None = None,
             retry_failed: bool = False, progress: bool = True, **options) -> Pairwise:
    """Fit every univariate and bivariate sub-model of a multi-trait model and combine them.

    The sub-models are those of ``init="pairwise"`` (:func:`mvreml.start.sub_model`: the
    model restricted to the traits, us() becoming diag() on one trait); they run through
    :func:`mvreml.fit_many` (in parallel on dask, resumable with ``store``). Per term the
    variances are pooled over the fits that estimate them and the correlations come from
    the bivariate fits, then the correlation matrix is bent to positive definite by weighted
    bending (Jorjani, Klei & Emanuelson 2003; :func:`mvreml.combine.combine`).

    Parameters
    ----------
    fixed, random, residual : str
        The full model, as in :func:`mvreml.fit` (``cbind(T1, ..., Tk) ~ ...``).
    data : DataFrame
    traits : list of str, optional
        The traits to cover (default: all the response's); the model is restricted to them.
    client, store, n_workers, retry_failed, progress
        As in :func:`mvreml.fit_many`.
    bend_weights : {"variance", "records"}
        Weights of bending: the correlations' sampling variances, or 1 / records shared.
    **options
        Options of :func:`mvreml.fit` for every sub-model (``relmat``, ``weights``, ``maxiter``,
        ``tol``, ...); not ``init``, ``fix``, ``checkpoint``, ``resume``.

    Returns
    -------
    Pairwise
        ``.init`` starts the full fit: ``mvreml.fit(fixed, random, residual, data=data,
        init=pw.init)``.

    Raises
    ------
    ArgumentError
        Traits not in the response, or options that do not apply to sub-models.
    DataError
        ``data`` is not a DataFrame.
    FormulaError
        A trait that is not a column of the data, or a formula that cannot be parsed.
    StartingValueError
        Structures on factors other than trait, or a variance no sub-model gave.
    """
    if bend_weights not in ("variance", "records"):
        raise ArgumentError(f"bend_weights={bend_weights!r}: use 'variance' or 'records'", argument="bend_weights")
    bad = [k for k in _NOT_FOR_SUBMODELS if k in options]
    if bad:
        raise ArgumentError(f"pairwise() fits sub-models from their own starting values; {bad[0]}= does not "
                            "apply", argument=bad[0])
    fit_options(**options)                       # a bad option fails here, not 21 times
    fspec = parse_fixed(fixed)
    rspec = parse_random(random, fspec.response)
    resid = parse_residual(residual, fspec.response)
    check_trait_model(rspec, resid, "pairwise()")
    every = tuple(fspec.response.traits)
    traits = every if traits is None else tuple(traits)
    unknown = [x for x in traits if x not in every]
    if unknown or len(set(traits)) != len(traits) or not traits:
        raise ArgumentError(f"traits={list(traits)}: give distinct traits of the response {list(every)}"
                            + (f" ({unknown} are not)" if unknown else ""), argument="traits")
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data= takes a pandas DataFrame, not {type(data).__name__}")
    absent = [x for x in traits if x not in data.columns]
    if absent:
        raise FormulaError(f"the response names columns {absent}, which are not in the data (columns: "
                           f"{', '.join(map(str, data.columns[:20]))})", term=absent[0])
    if traits != every:
        fspec, rspec, resid = sub_model(fspec, rspec, resid, traits)
    sets = sub_trait_sets(traits, bivariate=True)
    jobs = []
    for s in sets:
        f, r, e = sub_model(fspec, rspec, resid, s)
        jobs.append(dict(name=",".join(s), fixed=f, random=r, residual=e, data=data, **options))
    # the bivariate fits (the longest) go first, so that no worker is left with one at the end
    order = sorted(range(len(sets)), key=lambda i: -len(sets[i]))
    done = fit_many([jobs[i] for i in order], client=client, store=store, n_workers=n_workers,
                    retry_failed=retry_failed, progress=progress)
    records = [None] * len(sets)
    for rec, i in zip(done, order):
        rec.index = i
        records[i] = rec
    fits = Fits(records)
    combined = combine({s: rec.result for s, rec in zip(sets, fits)}, traits, model_terms(fspec, rspec),
                       counts=_counts(data, traits), weights=bend_weights)
    # the reasons of the failures instead of combine's bare "failed"
    combined.notes[:] = ([f"the sub-model on {rec.name} failed ({rec.error['type']}: {rec.error['message']}): "
                          "its estimates were filled in" for rec in fits.failed]
                         + [n for n in combined.notes if not n.startswith("the sub-model on ")])
    return Pairwise(traits, sets, fits, combined)
