"""Checks of the options of :func:`mvreml.fit`, before any work is done.

A wrong option must fail at once with an :class:`~mvreml.errors.ArgumentError` that names
it, not as a TypeError from deep inside the iteration (``maxiter="10"``), a raw CHOLMOD
error (``ordering="nope"``), or not at all (``maxiter=-5``, ``tol=nan``, ``relmat=[1, 2]``).
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

import numpy as np

from .errors import ArgumentError

#: Fill-reducing orderings CHOLMOD knows (scikit-sparse 0.4 and 0.5 alike).
ORDERINGS = ("default", "best", "natural", "amd", "metis", "nesdis", "colamd")
MISSING_ANIMALS = ("error", "founders")


def _integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def fit_options(*, relmat=None, fix=None, weights=None, maxiter=50, verbose=False,
                ordering="default", tol=1e-7, missing_animals="error") -> dict:
    """Check the options of ``fit`` and return them normalised.

    Parameters
    ----------
    relmat, fix, weights, maxiter, verbose, ordering, tol, missing_animals
        As in :func:`mvreml.fit`.

    Returns
    -------
    dict
        The same keys; ``maxiter`` an int, ``tol`` a float, ``fix`` a tuple of term names
        (a single string is one term, not a sequence of letters) or None.

    Raises
    ------
    ArgumentError
        With ``.argument`` the option at fault.
    """
    if not _integer(maxiter) or maxiter < 0:
        raise ArgumentError(f"maxiter= takes a whole number of iterations >= 0, not {maxiter!r} "
                            f"({type(maxiter).__name__})", argument="maxiter")
    if (not isinstance(tol, numbers.Real) or isinstance(tol, bool) or not math.isfinite(tol)
            or tol <= 0):
        raise ArgumentError(f"tol= takes a finite number > 0 (a change in log L, e.g. 1e-7), not "
                            f"{tol!r} ({type(tol).__name__})", argument="tol")
    if not isinstance(ordering, str) or ordering not in ORDERINGS:
        raise ArgumentError(f"ordering={ordering!r} is not a CHOLMOD ordering; known: "
                            f"{', '.join(ORDERINGS)}", argument="ordering")
    if not isinstance(missing_animals, str) or missing_animals not in MISSING_ANIMALS:
        raise ArgumentError(f"missing_animals={missing_animals!r}: use 'error' or 'founders'",
                            argument="missing_animals")
    if relmat is not None and not isinstance(relmat, Mapping):
        raise ArgumentError(f"relmat= takes a dict {{name: pedigree or matrix}} matching the names in "
                            f"vm(animal, name), not a {type(relmat).__name__}", argument="relmat")
    if relmat is not None and not all(isinstance(k, str) for k in relmat):
        bad = next(k for k in relmat if not isinstance(k, str))
        raise ArgumentError(f"relmat= keys are the names used in vm(animal, name); {bad!r} is not a "
                            "string", argument="relmat")
    if isinstance(fix, str):
        fix = (fix,)
    elif fix is not None:
        if isinstance(fix, Mapping) or not hasattr(fix, "__iter__"):
            raise ArgumentError(f"fix= takes a term name or component label, or a list of them, not "
                                f"{type(fix).__name__}", argument="fix")
        fix = tuple(fix)
        bad = [f for f in fix if not isinstance(f, str)]
        if bad:
            raise ArgumentError(f"fix= takes term names or component labels (strings); {bad[0]!r} is not one",
                                argument="fix")
    if weights is not None and not isinstance(weights, str):
        raise ArgumentError(f"weights= takes the name of a data column, not {type(weights).__name__}",
                            argument="weights")
    if not isinstance(verbose, (bool, np.bool_, numbers.Integral)):
        raise ArgumentError(f"verbose= takes True or False, not {verbose!r}", argument="verbose")
    return dict(relmat=relmat, fix=fix, weights=weights, maxiter=int(maxiter), verbose=bool(verbose),
                ordering=ordering, tol=float(tol), missing_animals=missing_animals)
