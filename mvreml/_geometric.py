"""AI steps that oscillate about the maximum: damped to the limit of the sequence.

Near an fa fit with specific variances at zero (a Heywood case) the AI matrix can
underestimate the curvature along some loadings: each full AI step overshoots, the iterate
flips about the maximum with an error shrinking by a steady factor rho < 1, every step is
accepted (log L still rises) and the fit crawls (a 10-site fa(3) MET took 87 iterations, 70
of them such flips of the second factor's loadings). For e_{n+1} = -rho e_n the limit is
theta_n + delta_n / (1 + rho): that point is tried and kept when its log L is higher than
the full step's (one more evaluation on such iterates only).
"""
from __future__ import annotations

import numpy as np

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
        ev_d = model.evaluate(damped, derivatives=False)   # completed by the caller if kept
    except Infeasible:
        return cand, new_ev, False
    if ev_d.loglik > new_ev.loglik:
        return damped, ev_d, True
    return cand, new_ev, False
