"""The AI-REML iteration: evaluate -> step (AI, cut back, or EM) -> converge, inside the parameter space.

Each iteration takes the Newton-type step delta = AI^-1 score on *working* parameters
(:mod:`mvreml._workspace`; the steps themselves are in :mod:`mvreml._steps`):

* a parameter of a box-bounded term is its own working parameter; a variance (or a corv /
  corh correlation) that is small and that the step pushes through its bound is held there
  (bound "B") and the step recomputed without it;
* a us / corgh matrix moves on its elements; one that goes singular is held on the boundary
  at reduced rank and moves on its factor (:mod:`mvreml.boundary`), with the curvature of
  that scale added to the AI matrix; every one of its components is reported "B";
* a direction along which log L is flat (a singular AI matrix with no score along it) is
  named (:mod:`mvreml.diagnose`) and one parameter of it held, so that the rest converge; a
  singular AI matrix with a score along the null direction (fewer levels than traits) gets a
  trust-region step instead.

A step that would still leave the space is shortened: first each bounded parameter and each
matrix on its own ("AIb" in the history), then the whole step ("AI*alpha"); then halved
while log L does not increase; a hold that loses log L is undone; if nothing works an EM
step is taken, which never leaves the space. An AI step that reverses the previous one (the
iterate oscillating about the maximum) is damped to the limit of that sequence when this
gains log L ("AI~", :mod:`mvreml._geometric`). Convergence needs a small change in log L and a
small Newton decrement; then every held parameter is checked (KKT): one whose score points
back inside by a worthwhile amount is released, a fixed number of times at most. A residual
direction along which log L grows without bound stops the fit with that reason. Held
parameters sit at a floor of 1e-6 (relative) while derivatives are needed and at 1e-9 in
the reported fit. Every loop is bounded; the same input gives bit-identical results.

The reported theta is the last accepted one; the factor held by the model is refactorized
there at the end (a rejected candidate may have been factorized last), so that PEVs and the
fixed-effect covariance describe it. With ``checkpoint=`` the state is written before every
iterate (:mod:`mvreml.checkpoint`) and ``resume=`` continues from such a file, bit for bit
as the uninterrupted fit would have.
"""
from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field

import numpy as np

from . import _geometric
from . import checkpoint as ckpt
from ._steps import Iteration
from ._workspace import feasible
from .likelihood import Evaluation, Infeasible, REMLModel

log = logging.getLogger("mvreml")

MAX_HALVINGS = 10      # halvings of a step before EM takes over
STALL = 1e4            # log L changing by less than this many tolerances: stalled ...
STALL_EVERY = 5        # ... and then the holds are checked every this many iterations


@dataclass
class Control:
    """Convergence and step control.

    Attributes
    ----------
    maxiter : int
        Iterations (each one factorization) at most.
    tol_loglik : float
        Change in log L below which the fit may stop; for |log L| above 1000 it is scaled
        by |log L| / 1000 (rounding in log|C| and y'Py grows with the size of the problem,
        and a change of 1e-7 in a log L of 2e6 is noise, not information).
    tol_decrement : float
        Newton decrement score' AI^-1 score below which the fit may stop.
    tol_step : float
        Relative parameter change below which the fit stops as well.
    max_releases : int
        Times a held parameter (or a held matrix direction) may be released.
    """

    maxiter: int = 50
    tol_loglik: float = 1e-7
    tol_decrement: float = 1e-6
    tol_step: float = 1e-9
    verbose: bool = False
    max_releases: int = 3


@dataclass
class FitState:
    """Outcome of the iteration."""

    theta: np.ndarray
    evaluation: Evaluation
    converged: bool
    reason: str
    iterations: int
    history: list = field(default_factory=list)
    bound: np.ndarray | None = None          # parameters held at a boundary (incl. held matrices)
    fixed: np.ndarray | None = None          # parameters held by the user
    ai_inverse: np.ndarray | None = None     # on theta, through the working parameters
    messages: list = field(default_factory=list)
    reduced: np.ndarray | None = None        # parameters of matrices held at reduced rank
    singular: np.ndarray | None = None       # parameters held because the data do not identify them
    warnings: list = field(default_factory=list)   # (warning class name, text)
    constraints: object = None               # mvreml.constraints.Constraints of the fit, if any


def iterate(model: REMLModel, theta0: np.ndarray, fixed: np.ndarray, scale: np.ndarray,
            control: Control, checkpoint=None, resume=None, constraints=None) -> FitState:
    """Run AI-REML from theta0 (or from a checkpoint).

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
    checkpoint : path, optional
        File the iteration state is written to before every iterate (:mod:`mvreml.checkpoint`).
    resume : path, optional
        Checkpoint to continue from instead of theta0; it must have been written for this
        model, these data and these fixed values (else CheckpointError).
    constraints : mvreml.constraints.Constraints, optional
        Equality / ratio constraints: the iteration steps on the reduced parameters (theta =
        M phi); theta0 is first put on them (each group at its members' mean).
    """
    if constraints is not None:
        theta0 = constraints.pool(theta0)
    run = Iteration(model, fixed, scale, control, constraints)
    sig = ckpt.signature(model, fixed, theta0) if (checkpoint is not None or resume is not None) else None
    if sig is not None and constraints is not None:
        sig = hashlib.sha1((sig + repr((constraints.leader.tolist(), constraints.ratio.tolist())))
                                .encode()).hexdigest()
    converged, reason, where = False, "", None
    t0 = time.perf_counter()
    if resume is not None:
        theta, it, history, where = ckpt.restore(run, ckpt.load(resume, sig))
        try:
            ev = model.evaluate(theta)
        except Infeasible as exc:
            raise Infeasible(f"checkpoint {resume}: {exc}")
        log.info("resumed from %s at iteration %d (log L %.6f)", resume, it, ev.loglik)
    else:
        theta = theta0.copy()
        history = []
        it = 0
        try:
            ev = model.evaluate(theta)
        except Infeasible as exc:
            raise Infeasible(f"starting values: {exc}")
        history.append(dict(iteration=0, loglik=ev.loglik, change=np.nan, step="start",
                            seconds=time.perf_counter() - t0, decrement=np.nan))
        _log(control, history[-1])
    while it < control.maxiter:
        if checkpoint is not None:
            # the state after iterate `it`: a fit killed during the next one loses only that one
            ckpt.save(checkpoint, ckpt.state(run, theta, it, history, where, sig))
        it += 1
        t_it = time.perf_counter()
        snapshot = run.holds.copy()
        new_ev, cand, reduced, kind, decrement, held = _ai_iteration(run, ev, theta, hold=True)
        if held and (new_ev is None or new_ev.loglik < ev.loglik - 1e-10 * max(1.0, abs(ev.loglik))):
            # a boundary hold that loses log L was premature: step without new holds instead
            run.holds = snapshot
            new_ev, cand, reduced, kind, decrement, _ = _ai_iteration(run, ev, theta, hold=False)
        if new_ev is not None and kind == "AI" and not held:
            cand, new_ev, damped = _geometric.damp_oscillation(run, model, ev, theta, cand, new_ev, run.path)
            kind = "AI~" if damped else kind
        if new_ev is None:
            cand, reduced = run.em(ev, theta)
            kind = "EM"
            try:
                new_ev = model.evaluate(cand)
            except Infeasible as exc:
                reason = f"no step from iteration {it} stays inside the parameter space ({exc})"
                break
            if new_ev.loglik < ev.loglik - 1e-9 * max(1.0, abs(ev.loglik)):
                if decrement < 1e-5:
                    converged = True
                    reason = (f"converged: no step improves log L any more (Newton decrement {decrement:.2e}, "
                              "numerical precision)")
                else:
                    reason = (f"stopped at iteration {it}: neither the AI step nor an EM step increases log L "
                              f"(Newton decrement {decrement:.3g})")
                break
        # candidates are compared by log L alone; the accepted one gets its derivatives from
        # the factor it left (a rejected candidate costs one factorization, not an evaluation)
        new_ev = model.complete(new_ev)
        change = new_ev.loglik - ev.loglik
        rel_step = float(np.max(np.abs(cand - theta) / np.maximum(np.abs(theta), scale * 1e-6), initial=0.0))
        theta, ev = cand, new_ev
        run.holds.reduced = reduced
        history.append(dict(iteration=it, loglik=ev.loglik, change=change, step=kind,
                            seconds=time.perf_counter() - t_it, decrement=decrement))
        _log(control, history[-1])
        run.path.append(theta.copy())        # the steps taken, for mvreml._geometric
        del run.path[:-2]
        where, confirmed = run.unbounded(ev, theta)
        if confirmed:
            reason = (f"log L is unbounded: it increases without limit as {where} tends to zero (the "
                      "fixed and random effects fit that combination of the data exactly: the model has "
                      "too many parameters for these data, or a trait is a copy of others); no REML "
                      "estimate exists")
            run.messages.append(reason)
            break
        tol_ll = control.tol_loglik * max(1.0, abs(ev.loglik) / 1000.0)
        small = abs(change) < tol_ll
        # a fit that has stalled at a hold (log L barely moving) checks its holds every few
        # iterations instead of only once converged: a premature hold costs iterations, not
        # the answer (fa specific variances held early cost a 50-site MET 15 of 20 minutes)
        stalled = (kind.startswith("AI") and not small and abs(change) < STALL * tol_ll
                   and it % STALL_EVERY == 0 and (run.holds.box.any() or run.holds.ident.any()))
        if stalled:
            theta_r, changed, names = run.release(ev, theta)
            if changed:
                try:
                    ev, theta = model.evaluate(theta_r), theta_r
                    log.info("released from the boundary while stalled (score points inside): %s", names)
                except Infeasible:
                    pass
                continue
        if kind.startswith("AI") and small and (decrement < control.tol_decrement or rel_step < control.tol_step):
            theta_r, changed, names = run.release(ev, theta)
            if changed:
                try:
                    ev, theta = model.evaluate(theta_r), theta_r
                except Infeasible:
                    pass
                log.info("released from the boundary (score points inside): %s", names)
                continue
            converged = True
            reason = (f"change in log L {abs(change):.2e} < {tol_ll:.1e} and "
                      f"Newton decrement {decrement:.2e}")
            break
    if checkpoint is not None:
        ckpt.save(checkpoint, ckpt.state(run, theta, it, history, where, sig, finished=True))
    if not converged and not reason:
        last = history[-1]
        reason = (f"did not converge in {control.maxiter} iterations (last change in log L "
                  f"{last['change']:.3g}, Newton decrement {last['decrement']:.3g}); ")
        if where is not None:
            reason += (f"log L keeps increasing as {where} tends to zero: it is probably unbounded (the model "
                       "fits that combination of the data exactly) and has no REML estimate")
        else:
            reason += "raise maxiter or give better starting values with init="
    ai_inv, bound, reduced, singular = run.finish(ev, theta)
    ev, theta = run.polish(ev, theta)
    # the factor held is that of the last point evaluated, which may be a rejected candidate
    # (a halving, an EM step, an unbounded-direction probe): make it the reported theta's, as
    # MixedModels' fit! does, so that PEVs and fixed-effect covariances describe this theta
    model.refactorize(theta)
    return FitState(theta=theta, evaluation=ev, converged=converged, reason=reason, iterations=it,
                    history=history, bound=bound, fixed=fixed.copy(), ai_inverse=ai_inv,
                    messages=run.messages, reduced=reduced, singular=singular, warnings=run.warnings,
                    constraints=constraints)


def _ai_iteration(run, ev, theta, hold):
    """Step, hold what must be held, line search. Returns (ev, theta, reduced, kind, decrement,
    held); ev None when no AI step increases log L, held True when theta had to move to a hold."""
    held_theta, space, delta, decrement = run.step(ev, theta, hold)
    held = held_theta is not None and not np.array_equal(held_theta, theta)
    if delta is None:
        return None, theta, run.holds.reduced, "EM", decrement, held
    if held:
        try:
            ev = run.model.evaluate(held_theta, derivatives=False)
        except Infeasible:
            return None, theta, run.holds.reduced, "EM", decrement, held
        theta = held_theta
    if not len(delta):
        return ev, theta, dict(run.holds.reduced), "AI", decrement, held
    new_ev, cand, reduced, kind = _line_search(run, ev, theta, space, delta)
    return new_ev, cand, reduced, kind, decrement, held


def _line_search(run, ev, theta, space, delta):
    """Evaluate a shortened step and halve it while it is infeasible or does not increase log L.

    First the "bent" step (each bounded parameter, each matrix shortened on its own), then
    the plain Newton direction shortened as a whole. Returns (ev, theta, reduced, kind) with
    ev None when neither works.
    """
    alphas = run.step_lengths(theta, space, delta)
    tol = 1e-10 * max(1.0, abs(ev.loglik))
    directions = [(alphas * delta, "AI", 1.0)]
    if np.any(alphas < 1.0):
        directions[0] = (alphas * delta, "AIb", float(alphas.min()))
        directions.append((float(alphas.min()) * delta, "AI", float(alphas.min())))
    for step, tag, share in directions:
        for h in range(MAX_HALVINGS):
            a = 0.5 ** h
            cand, reduced = space.apply(run.model, theta, run.holds, a * step)
            if not feasible(run.model, cand):
                continue
            try:
                new_ev = run.model.evaluate(cand, derivatives=False)
            except Infeasible:
                continue
            if new_ev.loglik >= ev.loglik - tol:
                if tag == "AIb":
                    kind = tag if h == 0 else f"{tag}/{2 ** h}"
                else:
                    kind = tag if a * share == 1.0 else f"{tag}*{a * share:.2g}"
                return new_ev, cand, reduced, kind
    return None, theta, run.holds.reduced, "EM"


def _log(control: Control, row: dict) -> None:
    text = (f"{row['iteration']:4d}  logL {row['loglik']:16.6f}  change {row['change']:11.3e}  "
            f"{row['step']:6s}  {row['seconds']:8.3f} s")
    log.info(text)
    if control.verbose:
        print(text, flush=True)
