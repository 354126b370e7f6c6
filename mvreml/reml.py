"""The AI-REML iteration: evaluate -> step (AI, halved, or EM) -> converge, with bounds.

A step is the Newton-type AI step delta = AI^-1 score on the free parameters. A step that
leaves the parameter space (a matrix that is not positive definite, a negative variance)
is halved; a variance that wants to be negative is set to its boundary and held there
(bound "B"); if halving does not bring the iterate back inside, an EM step is taken, which
never leaves the space. A step that lowers log L is halved too. Convergence needs both a
small change in log L and a small Newton decrement (score' AI^-1 score); both are reported.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from .likelihood import Evaluation, Infeasible, REMLModel

log = logging.getLogger("mvreml")

BOUND_REL = 1e-8        # a variance at its boundary is held at this fraction of its scale
MAX_HALVINGS = 8
SMALL_REL = 1e-3       # a variance below this fraction of its scale may be set to its boundary


@dataclass
class Control:
    """Convergence and step control.

    Attributes
    ----------
    maxiter : int
        Iterations (each one factorization) at most.
    tol_loglik : float
        Change in log L below which the fit may stop.
    tol_decrement : float
        Newton decrement score' AI^-1 score below which the fit may stop.
    tol_step : float
        Relative parameter change below which the fit stops as well.
    """

    maxiter: int = 50
    tol_loglik: float = 1e-7
    tol_decrement: float = 1e-9
    tol_step: float = 1e-9
    verbose: bool = False


@dataclass
class FitState:
    """Outcome of the iteration."""

    theta: np.ndarray
    evaluation: Evaluation
    converged: bool
    reason: str
    iterations: int
    history: list = field(default_factory=list)
    bound: np.ndarray | None = None          # parameters held at a boundary
    fixed: np.ndarray | None = None          # parameters held by the user
    ai_inverse: np.ndarray | None = None     # on the free parameters, full size with zeros elsewhere
    messages: list = field(default_factory=list)


def _kinds(model: REMLModel) -> list:
    out = []
    for b in model.blocks:
        out.extend(b.structure.kinds())
    return out


def _lower_bounds(model: REMLModel) -> np.ndarray:
    return np.concatenate([np.asarray(b.structure.lower_bounds(), float) for b in model.blocks])


def _upper_bounds(model: REMLModel) -> np.ndarray:
    return np.concatenate([np.asarray(b.structure.upper_bounds(), float) for b in model.blocks])


def _feasible(model: REMLModel, theta: np.ndarray) -> bool:
    return all(b.structure.feasible(theta[b.slice]) for b in model.blocks)


def _safe_solve(A: np.ndarray, g: np.ndarray):
    """AI^-1 g with a check that AI is positive definite; None otherwise."""
    if A.size == 0:
        return np.zeros(0)
    try:
        L = np.linalg.cholesky(A)
    except np.linalg.LinAlgError:
        return None
    z = np.linalg.solve(L, g)
    return np.linalg.solve(L.T, z)


def _em_theta(model: REMLModel, ev: Evaluation, theta: np.ndarray, free: np.ndarray) -> np.ndarray:
    """EM update of every term's matrix, projected on its structure; held parameters kept."""
    new = theta.copy()
    for b, M in zip(model.blocks, ev.em):
        if b.stop == b.start:
            continue
        cand = np.asarray(b.structure.from_matrix(0.5 * (M + M.T)), float)
        sl = b.slice
        keep = ~free[sl]
        cand[keep] = theta[sl][keep]
        if not b.structure.feasible(cand):
            cand = theta[sl]
        new[sl] = cand
    return new


def iterate(model: REMLModel, theta0: np.ndarray, fixed: np.ndarray, scale: np.ndarray,
            control: Control) -> FitState:
    """Run AI-REML from theta0.

    Parameters
    ----------
    model : REMLModel
    theta0 : ndarray
        Starting values (feasible).
    fixed : ndarray of bool
        Parameters held at their starting values.
    scale : ndarray
        A typical magnitude per parameter (for boundary values and relative steps).
    control : Control
    """
    kinds = _kinds(model)
    is_var = np.array([k == "variance" for k in kinds])
    lower = _lower_bounds(model)
    upper = _upper_bounds(model)
    theta = theta0.copy()
    bound = np.zeros(len(theta), bool)
    released = np.zeros(len(theta), int)
    history = []
    messages = []
    t0 = time.perf_counter()
    try:
        ev = model.evaluate(theta)
    except Infeasible as exc:
        raise Infeasible(f"starting values: {exc}")
    history.append(dict(iteration=0, loglik=ev.loglik, change=np.nan, step="start",
                        seconds=time.perf_counter() - t0, decrement=np.nan))
    _log(control, history[-1])
    converged, reason = False, ""
    it = 0
    prev_ll = ev.loglik
    while it < control.maxiter:
        it += 1
        t_it = time.perf_counter()
        delta, decrement, newly = _ai_step(model, ev, theta, fixed, bound, is_var, lower, scale)
        free = ~fixed & ~bound
        kind = "AI"
        cand = None
        if delta is not None:
            if newly.any():
                bound |= newly
                theta = theta.copy()
                theta[newly] = lower[newly] + BOUND_REL * scale[newly]
                names = [_param_name(model, i) for i in np.flatnonzero(newly)]
                messages.append(f"iteration {it}: {', '.join(names)} reached the boundary and is held there")
            cand, kind = _ai_candidate(model, theta, delta, lower, upper)
        new_ev = None
        if cand is not None:
            new_ev, cand, kind = _evaluate_with_halving(model, ev, theta, cand, kind)
        if new_ev is None:
            cand = _em_theta(model, ev, theta, free)
            kind = "EM"
            try:
                new_ev = model.evaluate(cand)
            except Infeasible as exc:
                reason = f"no step from iteration {it} stays inside the parameter space ({exc})"
                break
        change = new_ev.loglik - ev.loglik
        rel_step = np.max(np.abs(cand - theta) / np.maximum(np.abs(theta), scale * 1e-6)) if len(theta) else 0.0
        theta, ev = cand, new_ev
        history.append(dict(iteration=it, loglik=ev.loglik, change=change, step=kind,
                            seconds=time.perf_counter() - t_it, decrement=decrement))
        _log(control, history[-1])
        small_change = abs(change) < control.tol_loglik
        if kind.startswith("AI") and ((small_change and decrement < control.tol_decrement)
                                      or (small_change and rel_step < control.tol_step)):
            # a held boundary parameter whose score points inside is released (once or twice)
            back = np.flatnonzero(bound & (ev.score > 0) & (released < 2))
            if back.size:
                bound[back] = False
                released[back] += 1
                messages.append(", ".join(_param_name(model, i) for i in back)
                                + " released from the boundary (score points inside)")
                continue
            converged = True
            reason = (f"converged: change in log L {abs(change):.2e} < {control.tol_loglik:.0e} and "
                      f"Newton decrement {decrement:.2e}")
            break
        prev_ll = ev.loglik
    if not converged and not reason:
        reason = (f"did not converge in {control.maxiter} iterations (last change in log L "
                  f"{history[-1]['change']:.3g}, Newton decrement {history[-1]['decrement']:.3g}); "
                  f"raise maxiter or give better starting values with init=")
    del prev_ll
    # final derivatives at the returned theta (ev is already at theta)
    free = ~fixed & ~bound
    fi = np.flatnonzero(free)
    ai_inv = np.zeros((len(theta), len(theta)))
    if fi.size:
        sub = ev.ai[np.ix_(fi, fi)]
        try:
            ai_inv[np.ix_(fi, fi)] = np.linalg.inv(sub)
        except np.linalg.LinAlgError:
            ai_inv[np.ix_(fi, fi)] = np.linalg.pinv(sub)
            messages.append("the average-information matrix is singular at the solution: standard errors "
                            "of some components are not identified")
    return FitState(theta=theta, evaluation=ev, converged=converged, reason=reason, iterations=it,
                    history=history, bound=bound, fixed=fixed.copy(), ai_inverse=ai_inv, messages=messages)


def _ai_step(model, ev, theta, fixed, bound, is_var, lower, scale):
    """The AI step on the free parameters. A box-bounded variance that is already small and
    that the step would push below its bound is held at the boundary instead, and the step
    of the others recomputed without it. Returns (delta or None, decrement, newly bound)."""
    box = is_var & _box_only(model)
    newly = np.zeros(len(theta), bool)
    for _ in range(len(theta) + 1):
        free = ~fixed & ~bound & ~newly
        fi = np.flatnonzero(free)
        g = ev.score[fi]
        delta_f = _safe_solve(ev.ai[np.ix_(fi, fi)], g)
        if delta_f is None:
            return None, np.inf, np.zeros(len(theta), bool)
        delta = np.zeros_like(theta)
        delta[fi] = delta_f
        small = (theta - lower) < SMALL_REL * scale
        hit = free & box & small & (theta + delta < lower)
        if not hit.any():
            return delta, float(g @ delta_f), newly
        newly |= hit
    return None, np.inf, np.zeros(len(theta), bool)


def _ai_candidate(model, theta, delta, lower, upper):
    """theta + alpha delta with alpha <= 1 kept a fraction away from the box bounds, then halved
    until every matrix is positive definite. Returns (candidate or None, step kind)."""
    alpha = 1.0
    down = delta < 0
    with np.errstate(divide="ignore", invalid="ignore"):
        room = np.where(down & np.isfinite(lower), (theta - lower) / -delta, np.inf)
        room_up = np.where(~down & np.isfinite(upper) & (delta > 0), (upper - theta) / delta, np.inf)
    amax = min(np.min(room, initial=np.inf), np.min(room_up, initial=np.inf))
    if amax < 1.0:
        alpha = 0.9 * amax
    for h in range(MAX_HALVINGS + 1):
        c = theta + alpha * delta
        if _feasible(model, c):
            tag = "AI" if alpha == 1.0 else f"AI*{alpha:.2g}"
            return c, tag
        alpha *= 0.5
    return None, "EM"


def _box_only(model) -> np.ndarray:
    """Parameters whose only constraint is their own box (variances of idv/diag/corgh/corh...)."""
    out = []
    for b in model.blocks:
        name = b.structure.name
        out.extend([name in ("idv", "diag", "corgh", "corh", "corv", "fa")] * (b.stop - b.start))
    return np.array(out, bool)


def _evaluate_with_halving(model, ev, theta, cand, kind):
    """Evaluate the candidate; halve towards theta while it is infeasible or lowers log L."""
    for h in range(MAX_HALVINGS):
        try:
            new_ev = model.evaluate(cand)
        except Infeasible:
            new_ev = None
        if new_ev is not None and new_ev.loglik >= ev.loglik - 1e-8 * max(1.0, abs(ev.loglik)):
            return new_ev, cand, kind
        cand = theta + 0.5 * (cand - theta)
        kind = f"AI/{2 ** (h + 1)}"
    return None, cand, "EM"


def _param_name(model, i) -> str:
    for b in model.blocks:
        if b.start <= i < b.stop:
            labels = b.structure.labels(b.name, len(model.design.traits) > 1)
            return labels[i - b.start]
    return str(i)


def _log(control: Control, row: dict) -> None:
    text = (f"{row['iteration']:4d}  logL {row['loglik']:16.6f}  change {row['change']:11.3e}  "
            f"{row['step']:6s}  {row['seconds']:8.3f} s")
    log.info(text)
    if control.verbose:
        print(text, flush=True)
