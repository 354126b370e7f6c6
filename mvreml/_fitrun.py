"""The fit engine shared by the formula route (:func:`mvreml.fit`) and the array route
(:meth:`mvreml.Model.fit`): what is held (``fix=`` by term or by component label), the
constraints, the AI-REML iteration, and the warnings of a finished fit. Both routes build a
:class:`mvreml.likelihood.REMLModel` and its starting values their own way, then call
:func:`run` and :func:`warn_fit`: one engine.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import errors
from ._workspace import is_psd_block
from .constraints import parse_constraints
from .errors import ArgumentError, StartingValueError, warn
from .likelihood import Infeasible
from .reml import Control, FitState, iterate

ALL_FIXED = "all variance parameters fixed: BLUP with known variances"


def fix_mask(blocks, names: Sequence[str], fix, given: np.ndarray, error=ArgumentError) -> np.ndarray:
    """Parameters held at their starting values.

    Parameters
    ----------
    blocks : list of ParamBlock
    names : sequence of str
        Component labels of theta (``Result.varcomp.index``).
    fix : str or sequence of str or None
        Term names ("units": every residual block) or component labels
        (``"Family:trait!velocity:velocity"``).
    given : ndarray of bool
        Parameters whose starting value the user gave (a fixed one must have been given).
    error : exception class
        Raised for a name that is neither a term nor a label (the formula route keeps its
        ModelError).

    Raises
    ------
    error
        Unknown name.
    StartingValueError
        A held parameter without a value from ``init=``.
    ArgumentError
        A single element of a us / corgh matrix (those move as a whole).
    """
    names = list(names)
    n = len(names)
    mask = np.zeros(n, bool)
    fix = [fix] if isinstance(fix, str) else list(fix or [])
    terms = [b.name for b in blocks]
    for name in fix:
        sel = np.zeros(n, bool)
        for b in blocks:
            if b.name == name or (name == "units" and b.k is None):
                sel[b.slice] = True
        if name in names:
            sel[names.index(name)] = True
        if not sel.any():
            if error is ArgumentError:
                raise ArgumentError(f"fix= names {name!r}, neither a term ({terms}) nor a parameter ({names})",
                                    argument="fix")
            raise error(f"fix= names term {name!r}, which is not in the model (terms: {terms}; or a "
                        f"component label: {names})")
        if not given[sel].all():
            raise StartingValueError(f"fix= holds {name!r} but init= gives no value for it", term=name)
        for b in blocks:
            part = sel[b.slice]
            if part.any() and not part.all() and is_psd_block(b):
                # the iteration moves a us / corgh matrix on its elements as a whole
                raise ArgumentError(f"fix= holds {name!r}, one parameter of the {b.structure} matrix of "
                                    f"{b.name!r}; single parameters can be held in diag, idv, corv, corh, "
                                    f"fa and products, a {b.structure.name} matrix only as a whole term",
                                    argument="fix")
        mask |= sel
    for b in blocks:
        mask[b.slice] |= b.structure.fixed_params()   # scales held in a direct product (reported "F")
    return mask


def run(model, theta0: np.ndarray, scale: np.ndarray, mask: np.ndarray, *, maxiter: int, tol: float,
        verbose: bool = False, constraints=None, checkpoint=None, resume=None) -> FitState:
    """The AI-REML iteration of a fit (``constraints`` as given to the fit, parsed here).

    Returns the FitState; a fit with every parameter held is a BLUP with known variances.
    """
    from ._workspace import labels

    names = labels(model)
    con = parse_constraints(constraints, model.blocks, names, mask)
    if con is not None:
        for g in con.groups:
            g = list(g)
            if mask[g].all() and not np.allclose(theta0[g] / con.ratio[g], theta0[g[0]], rtol=1e-12, atol=0.0):
                # held values are never moved: pooling them would change what the user fixed
                raise ArgumentError(f"fix= holds the constraint group {[names[i] for i in g]} at values that break "
                                    f"it ({', '.join(f'{theta0[i]:.6g}' for i in g)}): give init= values that "
                                    "satisfy the constraint", argument="constraints")
    control = Control(maxiter=0 if mask.all() else maxiter, tol_loglik=tol, verbose=verbose)
    try:
        state = iterate(model, theta0, mask, scale, control, checkpoint=checkpoint, resume=resume,
                        constraints=con)
    except Infeasible as exc:
        raise StartingValueError(f"cannot start the fit: {exc}") from None
    if mask.all():
        state.converged = True
        state.reason = ALL_FIXED
    return state


def warn_fit(result, state: FitState) -> None:
    """The warnings of a finished fit, to the caller: not converged, the iteration's own
    (identifiability ...), components at a boundary."""
    if not state.converged:
        warn(state.reason, errors.ConvergenceWarning)
    for category, text in state.warnings:
        warn(text, getattr(errors, category))
    if state.bound is not None and state.bound.any():
        warn("; ".join(m for m in result.diagnostics if "boundary" in m) or "a component is at its boundary",
             errors.BoundaryWarning)
