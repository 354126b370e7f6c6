"""Identifiability diagnostics: what the data do not inform, named in the user's terms.

Three pieces:

* :func:`newton_step` -- the AI step of the iteration, which tells a flat direction of
  log L (not identified: returned to be constrained) from a mere failure of the AI
  approximation (stepped along with a trust region);
* :func:`null_directions` -- the null space of the average-information matrix scaled to
  correlation form. A (near) zero eigenvalue is a combination of parameters the likelihood
  is flat along; :func:`describe` names the components with the largest loadings
  ("Block and Family are confounded: only their sum is identified").
* :func:`duplicate_traits` -- a response that is an exact (affine) copy of another, or an
  exact linear combination of others, after the fixed effects: such a model has no REML
  estimate (log L is unbounded), so the fit refuses it with the traits named.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SINGULAR = 1e-10          # scaled AI eigenvalue below this: the direction is not identified
ILL_CONDITIONED = 1e-7    # ... below this (at the solution): poorly identified, say so
LOADING = 0.3             # components whose |loading| >= this fraction of the largest are named


@dataclass
class NullDirection:
    """A direction of parameter space along which the data carry (almost) no information.

    Attributes
    ----------
    eigenvalue : float
        Eigenvalue of the AI matrix in correlation form (0 = exactly flat).
    loadings : ndarray
        The direction, one entry per parameter, on the parameters' own scales
        (each divided by its typical magnitude), largest entry +-1.
    """

    eigenvalue: float
    loadings: np.ndarray

    def top(self, share: float = LOADING) -> np.ndarray:
        """Parameters with the largest loadings, largest first."""
        a = np.abs(self.loadings)
        idx = np.flatnonzero(a >= share * a.max())
        return idx[np.argsort(-a[idx], kind="stable")]


def _dead(A: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Parameters without any information: a zero diagonal, judged on the parameters' own
    scales (traits may be 10^4 apart)."""
    sdg = np.diag(A) * scale ** 2
    return sdg <= 1e-30 * max(float(np.max(np.abs(sdg))), 1e-300)


def _direction(v: np.ndarray, eigenvalue: float, s: np.ndarray, scale: np.ndarray) -> NullDirection:
    """NullDirection from an eigenvector v of the correlation-form matrix (s = sqrt diag)."""
    v = v / s * scale                      # back to parameter units, then to their own scales
    v = v / np.max(np.abs(v))
    if v[np.argmax(np.abs(v))] < 0:        # a deterministic sign: the largest loading positive
        v = -v
    return NullDirection(float(max(eigenvalue, 0.0)), v)


def _unit(m: int, i: int) -> NullDirection:
    v = np.zeros(m)
    v[i] = 1.0
    return NullDirection(0.0, v)


def null_directions(ai: np.ndarray, scale: np.ndarray, tol: float = SINGULAR) -> list[NullDirection]:
    """Directions of (near) zero information of an AI matrix.

    Parameters
    ----------
    ai : ndarray (m, m)
        Average-information matrix of the parameters considered.
    scale : ndarray (m,)
        Typical magnitude of each parameter (the loadings are reported on these scales).
    tol : float
        Eigenvalue threshold of the correlation-form matrix diag(ai)^-1/2 ai diag(ai)^-1/2.

    Returns
    -------
    list of NullDirection
        Parameters without any information (zero diagonal) first, each a direction of its
        own; then the others, smallest eigenvalue first.
    """
    m = ai.shape[0]
    if m == 0:
        return []
    A = 0.5 * (ai + ai.T)
    dead = _dead(A, scale)
    out = [_unit(m, i) for i in np.flatnonzero(dead)]
    live = np.flatnonzero(~dead)
    if live.size:
        s = np.sqrt(np.diag(A)[live])
        w, V = np.linalg.eigh(A[np.ix_(live, live)] / np.outer(s, s))
        for k in np.flatnonzero(w < tol):
            v = np.zeros(m)
            v[live] = _direction(V[:, k], w[k], s, scale[live]).loadings
            out.append(NullDirection(float(max(w[k], 0.0)), v))
    return out


def newton_step(ai: np.ndarray, score: np.ndarray, scale: np.ndarray, tol: float = SINGULAR,
                flat_tol: float = 1e-6):
    """Newton-type step ai^-1 score that copes with a singular AI matrix.

    A null direction of the AI matrix (correlation form) along which the score vanishes is a
    flat direction of log L: not identified, returned for the caller to constrain. One along
    which the score does not vanish is a failure of the AI approximation (e.g. fewer levels
    than traits make the BLUP matrix rank deficient), not of the data: its eigenvalue is
    raised so that the step along it is one unit of the correlation scale (a trust region),
    and the step-length control takes it from there.

    Returns
    -------
    (delta, decrement, flat) : delta None when ``flat`` (list of NullDirection) is not empty.
    """
    m = len(score)
    if m == 0:
        return np.zeros(0), 0.0, []
    A = 0.5 * (ai + ai.T)
    dead = _dead(A, scale)
    if dead.any():
        return None, np.inf, [_unit(m, i) for i in np.flatnonzero(dead)]
    s = np.sqrt(np.diag(A))
    w, V = np.linalg.eigh(A / np.outer(s, s))
    gt = score / s
    proj = V.T @ gt
    null = w < tol
    level = flat_tol * max(float(np.linalg.norm(gt)), 1.0)
    flat = [_direction(V[:, k], w[k], s, scale) for k in np.flatnonzero(null & (np.abs(proj) <= level))]
    if flat:
        return None, np.inf, flat
    w = np.where(null, np.maximum(np.maximum(w, np.abs(proj)), 1e-12), w)
    delta = (V @ (proj / w)) / s
    return delta, float(score @ delta), []


def describe(direction: NullDirection, labels: list, kinds: list, what: str = "not identified") -> str:
    """Plain words for a null direction, naming the components with the largest loadings.

    Two variances loading with opposite signs: "X and Y are confounded: only their sum is
    identified"; with equal signs: "... only their difference ..."; otherwise the combination
    is written out.
    """
    top = direction.top()
    v = direction.loadings
    names = [labels[i] for i in top]
    if len(top) == 1:
        none = " (no information on it)" if direction.eigenvalue == 0.0 else ""
        return f"{names[0]} is {what} by the data{none}"
    if len(top) == 2 and all(kinds[i] == "variance" for i in top):
        kind = "sum" if v[top[0]] * v[top[1]] < 0 else "difference"
        return f"{names[0]} and {names[1]} are confounded: only their {kind} is identified"
    terms = " ".join(f"{'+' if v[i] >= 0 else '-'} {abs(v[i]):.2g} {labels[i]}" for i in top)
    return f"the combination {terms.lstrip('+ ')} is {what}: {', '.join(names)} are confounded"


def duplicate_traits(Y: np.ndarray, traits: list, tol: float = 1e-10) -> tuple[list, str] | None:
    """Traits that are exact linear combinations of others on the units observing them.

    Parameters
    ----------
    Y : ndarray (n_units, t)
        Residuals after the fixed effects, NaN where a trait is missing.
    traits : list of str
    tol : float
        Relative size of a singular value counted as zero.

    Returns
    -------
    (traits involved, message) or None
    """
    t = Y.shape[1]
    for a in range(t):
        for b in range(a):
            both = ~np.isnan(Y[:, a]) & ~np.isnan(Y[:, b])
            if both.sum() < 3:
                continue
            x, y = Y[both, b], Y[both, a]
            x = x - x.mean()
            y = y - y.mean()
            nx, ny = np.linalg.norm(x), np.linalg.norm(y)
            if nx == 0 or ny == 0:
                continue
            r = float(x @ y / (nx * ny))
            if 1.0 - abs(r) < tol:
                return [traits[b], traits[a]], (
                    f"traits {traits[b]!r} and {traits[a]!r} are exact copies of each other (correlation "
                    f"{r:+.12f} on the {int(both.sum())} units observing both, after the fixed effects): "
                    f"their joint model has no REML estimate; drop one of them")
    if t < 3:
        return None
    full = ~np.isnan(Y).any(axis=1)
    if full.sum() <= t + 1:
        return None
    Z = Y[full] - Y[full].mean(axis=0)
    norms = np.linalg.norm(Z, axis=0)
    if np.any(norms == 0):
        return None
    _, s, Vt = np.linalg.svd(Z / norms, full_matrices=False)
    if s[-1] >= tol ** 0.5 * s[0]:
        return None
    v = Vt[-1]
    involved = [traits[i] for i in np.flatnonzero(np.abs(v) > 1e-6 * np.abs(v).max())]
    return involved, (f"traits {', '.join(map(repr, involved))} are linearly dependent on the "
                      f"{int(full.sum())} units observing all traits (after the fixed effects): one is "
                      f"an exact combination of the others; drop one of them")
