"""`mvreml.fit`: formula strings + data -> a fitted :class:`mvreml.Result`.

The pipeline, lme4-style: parse (formula) -> design (data) -> REML model (likelihood) ->
iterate (reml) -> report (results). This module only wires the pieces together and
turns user inputs (init=, fix=) into parameter vectors.
"""
from __future__ import annotations

import hashlib
import logging
import time
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from .design import Design, build_design
from .errors import BoundaryWarning, ConvergenceWarning, ModelError, StartingValueError
from .formula import parse_fixed, parse_random, parse_residual
from .likelihood import Infeasible, ParamBlock, REMLModel
from .reml import Control, FitState, iterate
from .report import build_result
from .structures import make_structure

log = logging.getLogger("mvreml")


def fit(fixed: str, random: str | None = None, residual: str | None = None, *, data: pd.DataFrame,
        relmat: Mapping | None = None, init=None, fix: Sequence[str] | None = None,
        weights: str | None = None, maxiter: int = 50, verbose: bool = False,
        ordering: str = "default", tol: float = 1e-7):
    """Fit a (multivariate) linear mixed model by AI-REML.

    Parameters
    ----------
    fixed : str
        Response and fixed effects, asreml-R style: ``"bwt ~ 1 + sex"`` or
        ``"cbind(velocity, density) ~ trait + at(trait):sex"``.
    random : str, optional
        Random terms: ``"~ us(trait):Family + diag(trait):Block"``, ``"~ vm(animal, ped)"``.
    residual : str, optional
        Residual structure; default ``idv(units)`` (univariate) or ``units:us(trait)``.
    data : pandas.DataFrame
        One row per unit (wide format); missing trait values are NaN.
    relmat : dict, optional
        Names used in ``vm(factor, name)`` -> a :class:`mvreml.Pedigree`, a pedigree table,
        or a labelled relationship matrix (see :func:`mvreml.relmat.as_relmat`).
    init : dict, optional
        Starting values per term name ("units" for the residual): a float (univariate),
        a t x t array, or a trait-labelled DataFrame.
    fix : list of str, optional
        Terms held at their `init` values (BLUP with known variances).
    weights : str, optional
        Column of weights: the residual covariance of a unit is R0 / w.
    maxiter : int
        Maximum number of AI-REML iterations.
    verbose : bool
        Print the iteration log.
    ordering : str
        CHOLMOD fill-reducing ordering.
    tol : float
        Convergence tolerance on the change in log L.

    Returns
    -------
    mvreml.Result
    """
    t_start = time.perf_counter()
    timer = Timer()
    fspec = parse_fixed(fixed)
    rspec = parse_random(random, fspec.response)
    resid = parse_residual(residual, fspec.response)
    with timer("design"):
        design = build_design(data, fspec, rspec, resid, relmat=relmat, weights=weights)
    blocks = _blocks(design, resid)
    terms = [b.name for b in blocks]
    theta0, scale = _starting_values(design, blocks, init)
    fixed_mask = _fixed_mask(blocks, fix, init, terms)
    if fixed_mask.all() and maxiter > 0:
        maxiter_eff = 0
    else:
        maxiter_eff = maxiter
    model = REMLModel(design, blocks, ordering=ordering, timer=timer)
    control = Control(maxiter=maxiter_eff, tol_loglik=tol, verbose=verbose)
    try:
        state = iterate(model, theta0, fixed_mask, scale, control)
    except Infeasible as exc:
        raise StartingValueError(f"cannot start the fit: {exc}") from None
    if fixed_mask.all():
        state.converged = True
        state.reason = "all variance parameters fixed: BLUP with known variances"
    result = build_result(model, state, fixed, random, resid.label if residual is None else residual,
                          timer=timer, seconds=time.perf_counter() - t_start)
    if not state.converged:
        warnings.warn(state.reason, ConvergenceWarning, stacklevel=2)
    if state.bound is not None and state.bound.any():
        warnings.warn("; ".join(m for m in result.diagnostics if "boundary" in m) or "a component is at its boundary",
                      BoundaryWarning, stacklevel=2)
    return result


def _blocks(design: Design, resid) -> list:
    blocks = []
    start = 0
    for k, rd in enumerate(design.random):
        traits = tuple(design.traits[i] for i in rd.traits)
        st = make_structure(rd.term.structure, traits, k=rd.term.fa_k)
        blocks.append(ParamBlock(name=rd.name, structure=st, start=start, stop=start + st.n_params, k=k))
        start += st.n_params
    st = make_structure(resid.structure, tuple(design.traits), k=resid.fa_k)
    blocks.append(ParamBlock(name="units", structure=st, start=start, stop=start + st.n_params, k=None))
    return blocks


def _residual_variances(design: Design) -> np.ndarray:
    """Per-trait variance of y after the fixed effects (least squares), the scale of everything."""
    import scipy.sparse.linalg as spla

    X = design.X
    if X.shape[1]:
        b = spla.lsqr(X, design.y, atol=1e-10, btol=1e-10)[0]
        r = design.y - X @ b
    else:
        r = design.y
    out = np.zeros(design.t)
    for j in range(design.t):
        rj = r[design.obs_trait == j]
        v = float(np.var(rj)) if len(rj) > 1 else 0.0
        if not np.isfinite(v) or v <= 0:
            v = float(np.var(design.y[design.obs_trait == j])) or 1.0
        out[j] = v
    return out


def _as_matrix(value, traits, term) -> np.ndarray:
    t = len(traits)
    if isinstance(value, pd.DataFrame):
        missing = [x for x in traits if x not in value.index or x not in value.columns]
        if missing:
            raise StartingValueError(f"init for {term!r} lacks traits {missing} (it has {list(value.index)})",
                                     term=term)
        M = value.loc[list(traits), list(traits)].to_numpy(dtype=float)
    elif np.isscalar(value):
        if t != 1:
            raise StartingValueError(f"init for {term!r} is a number but the term covers {t} traits: "
                                     f"give a {t} x {t} matrix", term=term)
        M = np.array([[float(value)]])
    else:
        M = np.asarray(value, dtype=float)
        if M.ndim == 1 and M.size == 1:
            M = M.reshape(1, 1)
        if M.shape != (t, t):
            raise StartingValueError(f"init for {term!r} has shape {M.shape}, expected ({t}, {t}) for "
                                     f"traits {list(traits)}", term=term)
    if not np.allclose(M, M.T, rtol=1e-8, atol=0):
        raise StartingValueError(f"init for {term!r} is not symmetric", term=term)
    try:
        np.linalg.cholesky(M)
    except np.linalg.LinAlgError:
        ev = np.linalg.eigvalsh(M)
        raise StartingValueError(f"init for {term!r} is not positive definite (smallest eigenvalue "
                                 f"{ev.min():.3g})", term=term) from None
    return M


def _starting_values(design: Design, blocks, init):
    """Default: the residual variance of each trait split half to the residual, half among the
    random terms; user values (init=) replace those of the terms they name."""
    init = dict(init or {})
    names = {b.name for b in blocks}
    unknown = [k for k in init if k not in names]
    if unknown:
        raise StartingValueError(f"init names terms {unknown} that are not in the model "
                                 f"(terms: {sorted(names)})", term=unknown[0])
    v = _residual_variances(design)
    n_rand = max(len(blocks) - 1, 1)
    theta = np.zeros(blocks[-1].stop)
    scale = np.zeros(blocks[-1].stop)
    for b in blocks:
        if b.k is None:
            idx = np.arange(design.t)
            share = 0.5 if len(blocks) > 1 else 1.0
        else:
            idx = design.random[b.k].traits
            share = 0.5 / n_rand
        traits = tuple(design.traits[i] for i in idx)
        vd = v[idx]
        if b.name in init:
            M = _as_matrix(init[b.name], traits, b.name)
        else:
            M = np.diag(vd * share)
        if b.stop > b.start:
            th = np.asarray(b.structure.from_matrix(M), float)
            if not b.structure.feasible(th):
                raise StartingValueError(f"starting values of {b.name!r} are outside the parameter space of "
                                         f"{b.structure.name}()", term=b.name)
            theta[b.slice] = th
            sc = []
            for kind, pair in zip(b.structure.kinds(), b.structure.trait_pairs()):
                if kind == "correlation":
                    sc.append(1.0)
                elif pair is not None:
                    sc.append(float(np.sqrt(vd[pair[0]] * vd[pair[1]])))
                else:
                    sc.append(float(np.sqrt(vd.mean())))
            scale[b.slice] = sc
    return theta, scale


def _fixed_mask(blocks, fix, init, terms) -> np.ndarray:
    mask = np.zeros(blocks[-1].stop, bool)
    for name in fix or []:
        if name not in terms:
            raise ModelError(f"fix= names term {name!r}, which is not in the model (terms: {terms})")
        if not init or name not in init:
            raise StartingValueError(f"fix= holds {name!r} but init= gives no value for it", term=name)
        b = next(b for b in blocks if b.name == name)
        mask[b.slice] = True
    return mask


class Timer:
    """Accumulates wall time by step name (A^-1, symbolic, factorize, selinv, ai...)."""

    def __init__(self):
        self.seconds: dict = {}
        self.counts: dict = {}

    def __call__(self, name):
        return _Section(self, name)


class _Section:
    def __init__(self, timer, name):
        self.timer, self.name = timer, name

    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        dt = time.perf_counter() - self.t0
        self.timer.seconds[self.name] = self.timer.seconds.get(self.name, 0.0) + dt
        self.timer.counts[self.name] = self.timer.counts.get(self.name, 0) + 1
        return False


def data_signature(design: Design) -> str:
    """Hash of what REML depends on besides the variance model: y, its trait/unit layout, X."""
    h = hashlib.sha1()
    for arr in (design.y, design.obs_trait, design.obs_unit, design.weights):
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()[:16]
