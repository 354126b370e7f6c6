"""The formula route's side of :class:`mvreml.Model`: a model built from formula strings and a
data frame (:meth:`mvreml.Model.from_formula`, and :func:`mvreml.fit`, which builds one and
fits it), what it keeps of its formulas to rebuild itself on new responses or new fixed
effects, and its ``init="pairwise"``.

The formula route's Model holds the same engine objects as the array route's (a Design, the
parameter blocks, a REML model); what differs is where the Design came from, so only that is
here.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from .design import _response_matrix
from .errors import ArgumentError, DataError


@dataclass(frozen=True)
class FormulaSource:
    """What a formula-built Model was made of: the parsed formulas, the data and the options
    of its design, and the formulas' text for ``Result.model`` (fixed, random, residual)."""

    fspec: object
    rspec: object
    resid: object
    data: pd.DataFrame
    relmat: object
    weights: str | None
    missing_animals: str
    labels: tuple | None

    @property
    def traits(self) -> list:
        return [str(t) for t in self.fspec.response.traits]


def build(source: FormulaSource, *, ordering: str = "default", timer=None, backend=None):
    """(Model, Y, P) of a formula source: the design and the checks of :func:`mvreml.api.prepare`
    (unit residuals Y and phenotypic covariance P, which the first fit reuses)."""
    from ._timing import Timer
    from .api import prepare
    from .model import Model

    timer = timer if timer is not None else Timer()
    design, Y, P, blocks = prepare(source.fspec, source.rspec, source.resid, source.data, relmat=source.relmat,
                                   weights=source.weights, missing_animals=source.missing_animals, timer=timer)
    model = Model._from_design(design, blocks, source, ordering=ordering, timer=timer, backend=backend)
    return model, Y, P


def from_formula(fixed: str, random: str | None, residual: str | None, *, data: pd.DataFrame, relmat=None,
                 weights: str | None = None, missing_animals: str = "error", ordering: str = "default"):
    """:meth:`mvreml.Model.from_formula` (its docstring says what the arguments are)."""
    from ._validate import fit_options
    from .formula import parse_fixed, parse_random, parse_residual

    opts = fit_options(relmat=relmat, weights=weights, ordering=ordering, missing_animals=missing_animals)
    if not isinstance(data, pd.DataFrame):
        raise ArgumentError(f"data= takes a pandas DataFrame, not {type(data).__name__}", argument="data")
    fspec = parse_fixed(fixed)
    rspec = parse_random(random, fspec.response)
    resid = parse_residual(residual, fspec.response)
    label = resid.label if residual is None else residual
    source = FormulaSource(fspec, rspec, resid, data, opts["relmat"], opts["weights"], opts["missing_animals"],
                           (fixed, random, label))
    return build(source, ordering=opts["ordering"])[0]


def response_matrix(source: FormulaSource) -> np.ndarray:
    """The responses of the source's data, one row per data row (NaN where missing)."""
    return _response_matrix(source.data, source.traits)


def new_response(source: FormulaSource, y) -> np.ndarray:
    """New responses for a formula model as a (rows of data) x t array: an array, or a data
    frame / series holding the response columns (by name) on the data's rows."""
    traits, n = source.traits, len(source.data)
    if isinstance(y, pd.Series):
        y = y.to_frame(name=traits[0] if y.name is None and len(traits) == 1 else y.name)
    if isinstance(y, pd.DataFrame):
        missing = [t for t in traits if t not in y.columns]
        if missing:
            raise ArgumentError(f"y lacks the response columns {missing} (the model's responses are {traits})",
                                argument="y")
        if len(y) != n or not y.index.equals(source.data.index):
            raise ArgumentError(f"y has {len(y)} rows on another index than the model's data ({n} rows): give "
                                "the responses on the data's rows", argument="y")
        Y = _response_matrix(y, traits)
    else:
        try:
            Y = np.asarray(y, dtype=float)
        except (TypeError, ValueError):
            raise ArgumentError("y must be numbers (rows of the data x traits)", argument="y") from None
        if Y.ndim == 1:
            Y = Y[:, None]
        if Y.shape != (n, len(traits)):
            raise ArgumentError(f"y has shape {Y.shape} but the model has {n} data rows and {len(traits)} "
                                f"response(s) {traits}: give an array of shape {(n, len(traits))}", argument="y")
        bad = np.isinf(Y)
        if bad.any():
            i, j = map(int, np.argwhere(bad)[0])
            raise DataError(f"y has an infinite value (row {i}, response {traits[j]!r})", column=traits[j])
        for j, t in enumerate(traits):
            if np.isnan(Y[:, j]).all():
                raise DataError(f"response column {t!r} has no observed value", column=t)
    return Y


def with_data_response(source: FormulaSource, Y: np.ndarray) -> FormulaSource:
    """The source with its data's response columns replaced by Y (for a rebuilt design and for
    the sub-models of init="pairwise")."""
    data = source.data.assign(**{t: Y[:, j] for j, t in enumerate(source.traits)})
    return replace(source, data=data)


def with_fixed(model, fixed: str, data: pd.DataFrame | None = None):
    """A formula model with another fixed formula (and optionally other data with the same
    meaning): the design is built afresh."""
    from .formula import parse_fixed

    src = model._formula
    if not isinstance(fixed, str):
        raise ArgumentError("a model built from formulas takes a new fixed formula in with_fixed "
                            "('y ~ 1 + sex + snp'), with data= holding any new column", argument="X")
    fspec = parse_fixed(fixed)
    if [str(t) for t in fspec.response.traits] != src.traits:
        raise ArgumentError(f"with_fixed: the formula's responses {list(fspec.response.traits)} are not the "
                            f"model's {src.traits}", argument="fixed")
    data = src.data if data is None else data
    labels = None if src.labels is None else (fixed,) + tuple(src.labels[1:])
    return build(replace(src, fspec=fspec, data=data, labels=labels), ordering=model._ordering)[0]


def pairwise(model, P: np.ndarray, *, maxiter: int, tol: float) -> dict:
    """init="pairwise" of a formula model: starting values from the fits of its univariate
    (and bivariate) sub-models on the model's current responses."""
    from .api import _fit_parsed
    from .start import pairwise_init

    src = model._formula
    if not np.array_equal(np.nan_to_num(model._Y, nan=np.inf), np.nan_to_num(response_matrix(src), nan=np.inf)):
        src = with_data_response(src, model._Y)       # a refit: the sub-models fit its responses
    options = dict(relmat=src.relmat, weights=src.weights, maxiter=maxiter, ordering=model._ordering, tol=tol,
                   missing_animals=src.missing_animals)
    traits = model.design.traits
    return pairwise_init(src.fspec, src.rspec, src.resid, src.data,
                         lambda f, r, e: _fit_parsed(f, r, e, src.data, **options)[0],
                         pd.DataFrame(P, index=traits, columns=traits))
