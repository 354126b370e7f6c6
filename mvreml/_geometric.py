"""Variances that creep to zero: hold them there once their path says so (Aitken).

Near a maximum on the boundary (an fa specific variance psi_s -> 0, a Heywood case) the AI
step is often a fixed fraction of the way to zero: psi shrinks geometrically, every full step
is accepted, and the fit crawls (a 10-site fa(3) MET took 87 iterations, 70 of them moving
three psi's from 1e-2 to 1e-8). When the last values of a box-bounded variance form such a
sequence and Aitken's extrapolation of its limit is (near) zero, the iteration tries it at
the boundary; the hold is kept only if log L does not decrease, and the convergence check
(KKT) releases it later if its score points back inside.
"""
from __future__ import annotations

import numpy as np

#: consecutive decreasing values needed before a hold is tried
WINDOW = 4
#: the common ratio psi_{n+1} / psi_n of the sequence must lie in this range ...
RATIO = (0.2, 0.97)
#: ... and agree along the window to within this much
RATIO_SPREAD = 0.15
#: the variance must already be below this fraction of its scale
BELOW = 0.05
#: Aitken's extrapolated limit must be below this fraction of the current value
LIMIT = 0.2


def creeping(path: list, lower: np.ndarray, scale: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Indices of parameters among `candidates` whose last WINDOW + 1 values (rows of `path`,
    oldest first) fall geometrically towards their lower bound with an extrapolated limit
    (Aitken's delta-squared) at that bound."""
    if len(path) < WINDOW + 1:
        return np.zeros(0, np.intp)
    P = np.asarray(path[-(WINDOW + 1):], float) - lower       # distance to the bound
    out = []
    for i in np.flatnonzero(candidates):
        x = P[:, i]
        if not np.all(x > 0) or not np.all(np.diff(x) < 0) or x[-1] >= BELOW * scale[i]:
            continue
        r = x[1:] / x[:-1]
        if not (RATIO[0] <= r.min() and r.max() <= RATIO[1] and r.max() - r.min() <= RATIO_SPREAD):
            continue
        d1, d2 = x[-1] - x[-2], x[-2] - x[-3]
        denom = d1 - d2
        limit = x[-1] - d1 * d1 / denom if denom != 0 else x[-1]
        if abs(limit) <= LIMIT * x[-1]:
            out.append(i)
    return np.asarray(out, np.intp)


def try_holds(run, model, ev, theta, path, it):
    """Hold the creeping variances at their bound when log L does not decrease.

    Returns (ev, theta, names): the new evaluation and theta, or the old ones and [] when
    nothing was held (no candidate, an infeasible point, or a loss in log L)."""
    from .likelihood import Infeasible

    free = run.box & ~run.holds.box & ~run.holds.ident & ~run.fixed & np.isfinite(run.lower)
    free &= np.array([k == "variance" for k in run.kinds])
    idx = creeping(path, run.lower, run.scale, free)
    if idx.size == 0:
        return ev, theta, []
    cand = theta.copy()
    for i in idx:
        cand[i] = run._at_bound(i, -1.0, _bound_rel())
    try:
        new = model.evaluate(cand)
    except Infeasible:
        return ev, theta, []
    if new.loglik < ev.loglik - 1e-10 * max(1.0, abs(ev.loglik)):
        return ev, theta, []
    run.holds.box[idx] = True
    run.holds.side[idx] = -1.0
    return new, cand, [run.labels[i] for i in idx]


def _bound_rel() -> float:
    from ._steps import BOUND_REL
    return BOUND_REL


#: two successive steps this close to opposite (cosine, on the parameters' scales) oscillate
OSCILLATING = -0.8


def damp_oscillation(run, model, ev, theta, cand, new_ev, path):
    """An AI step that reverses the previous one: the iterate oscillates about the maximum
    (e_{n+1} ~ -rho e_n, the AI matrix underestimating the curvature along that direction);
    the limit theta + delta / (1 + rho), rho = |delta_n| / |delta_{n-1}|, is tried instead
    of the full step and kept when its log L is higher. Returns (cand, new_ev, damped)."""
    from .likelihood import Infeasible

    if len(path) < 2 or new_ev is None:
        return cand, new_ev, False
    d_prev = (path[-1] - path[-2]) / run.scale
    d_now = (cand - theta) / run.scale
    n_prev, n_now = float(np.linalg.norm(d_prev)), float(np.linalg.norm(d_now))
    if n_prev == 0 or n_now == 0 or float(d_prev @ d_now) / (n_prev * n_now) > OSCILLATING:
        return cand, new_ev, False
    rho = min(n_now / n_prev, 1.0)
    damped = theta + (cand - theta) / (1.0 + rho)
    try:
        ev_d = model.evaluate(damped)
    except Infeasible:
        return cand, new_ev, False
    if ev_d.loglik > new_ev.loglik:
        return damped, ev_d, True
    return cand, new_ev, False
