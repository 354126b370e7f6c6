"""Starting values of a :class:`mvreml.Model` from ``init=``: {term: matrix}, {parameter label:
value}, both, or a whole theta vector; the rest from a share of the phenotypic covariance."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from . import estimable
from .errors import ArgumentError, StartingValueError
from .start import starting_values


def model_start(model, init, P, Y=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(theta0, scale, given) of `model` for ``init`` (as :meth:`mvreml.Model.fit` takes it), P the
    phenotypic covariance and Y the unit residuals; ``given`` marks the parameters init set.

    Raises
    ------
    StartingValueError
        init names something not in the model, is not a finite number, or puts a term outside
        its parameter space.
    """
    d, blocks = model.design, model.blocks
    terms = {b.name for b in blocks} | {"units"}
    vector = init is not None and not isinstance(init, Mapping)
    if vector:
        try:
            theta_init = model.theta(init)
        except ArgumentError as exc:
            raise StartingValueError(f"init: {exc}", term="init") from None
        term_init, label_init = {}, {}
    else:
        init = dict(init or {})
        term_init = {k: v for k, v in init.items() if k in terms}
        label_init = {k: v for k, v in init.items() if k not in terms}
        unknown = [k for k in label_init if k not in model._names]
        if unknown:
            raise StartingValueError(f"init names {unknown}, which are not in the model: neither terms "
                                     f"({sorted(terms)}) nor parameters ({model._names})", term=unknown[0])
    theta0, scale = starting_values(d, blocks, term_init, P, Y)
    w = float(np.median(d.weights)) if model._weighted else 1.0
    for b in blocks:
        if b.k is None:
            estimable.scale_residual(b, theta0, scale, w,
                                     from_init=b.name in term_init or "units" in term_init)
    if vector:
        theta0 = theta_init
    for k, v in label_init.items():
        if isinstance(v, str) or not np.isscalar(v) or not np.isfinite(float(v)):
            raise StartingValueError(f"init for parameter {k!r} must be a finite number, got {v!r}", term=k)
        theta0[model._names.index(k)] = float(v)
    for b in blocks:
        if b.stop > b.start and not b.structure.feasible(theta0[b.slice]):
            raise StartingValueError(f"starting values of {b.name!r} are outside the parameter space of "
                                     f"{b.structure} (not positive definite)", term=b.name)
    given = np.zeros(model.n_params, bool)
    if vector:
        given[:] = True
    for b in blocks:
        if b.name in term_init or (b.k is None and "units" in term_init):
            given[b.slice] = True
    for k in label_init:
        given[model._names.index(k)] = True
    return theta0, scale, given
