"""Covariate bases of random regressions: ``pol(x, k)``, ``leg(x, k)`` and lme4's raw (1, x).

A basis turns a covariate into k + 1 columns (coefficients); a random term on it, e.g.
``us(leg(dim, 2)):vm(animal, ped)``, has one t x t block of coefficients per level and Z values
equal to the basis columns. Each basis is fitted on the records of its term (``fit``) and can
then be evaluated anywhere (``evaluate``), for the random curves of ``Result.predict_curve``.

* ``leg(x, k)``: Legendre polynomials of x scaled to [-1, 1] over the records (min -> -1,
  max -> 1), normalised as in test-day models (Kirkpatrick et al. 1990):
  phi_j(z) = sqrt((2j + 1) / 2) P_j(z).
* ``pol(x, k)``: orthogonal polynomials over the records (R's ``poly()`` three-term
  recurrence), each column scaled to mean square 1, with the constant column 1 first.
* ``raw``: the columns 1 (if there is an intercept) and the covariates themselves.
"""
from __future__ import annotations

import numpy as np

from .errors import DataError


def fit(kind: str, order, x: np.ndarray, what: str, column: str) -> dict:
    """Parameters of a basis from the covariate values ``x`` of the records (NaN-free)."""
    x = np.asarray(x, dtype=float)
    if kind == "raw":
        return {"kind": "raw", "intercept": bool(order)}
    distinct = np.unique(x)
    if len(distinct) < 2:
        raise DataError(f"{what}: covariate {column!r} is constant ({distinct[0] if len(distinct) else 'no value'})"
                        " over the records of the term: no polynomial in it can be fitted", column=column)
    if len(distinct) < order + 1:
        raise DataError(f"{what}: a polynomial of order {order} needs at least {order + 1} distinct values of "
                        f"{column!r}, which has {len(distinct)}", column=column)
    if kind == "leg":
        return {"kind": "leg", "order": int(order), "lo": float(x.min()), "hi": float(x.max())}
    # pol: p_0 = 1, p_1 = x - a_0, p_{j+1} = (x - a_j) p_j - (n_j / n_{j-1}) p_{j-1}
    a, norms = [], [float(len(x))]
    p_prev, p = np.zeros_like(x), np.ones_like(x)
    for j in range(order):
        a.append(float(np.sum(x * p * p) / norms[j]))
        beta = norms[j] / norms[j - 1] if j else 0.0
        p_prev, p = p, (x - a[j]) * p - beta * p_prev
        norms.append(float(np.sum(p * p)))
    return {"kind": "pol", "order": int(order), "alpha": a, "norms": norms, "n": float(len(x))}


def evaluate(params: dict, x: np.ndarray) -> np.ndarray:
    """Basis columns at x: shape (len(x), k + 1) (``raw``: x is n x covariates)."""
    kind = params["kind"]
    if kind == "raw":
        X = np.asarray(x, dtype=float)
        X = X.reshape(len(X), -1)
        return np.column_stack([np.ones(len(X))] + [X]) if params["intercept"] else X
    x = np.asarray(x, dtype=float).ravel()
    k = params["order"]
    out = np.empty((len(x), k + 1))
    if kind == "leg":
        z = 2.0 * (x - params["lo"]) / (params["hi"] - params["lo"]) - 1.0
        P = [np.ones_like(z), z]
        for j in range(1, k):
            P.append(((2 * j + 1) * z * P[j] - j * P[j - 1]) / (j + 1))
        for j in range(k + 1):
            out[:, j] = np.sqrt((2 * j + 1) / 2.0) * P[j]
        return out
    a, norms, n = params["alpha"], params["norms"], params["n"]
    p_prev, p = np.zeros_like(x), np.ones_like(x)
    out[:, 0] = 1.0
    for j in range(k):
        beta = norms[j] / norms[j - 1] if j else 0.0
        p_prev, p = p, (x - a[j]) * p - beta * p_prev
        out[:, j + 1] = p * np.sqrt(n / norms[j + 1])
    return out


def level_names(params: dict, columns) -> tuple[str, ...]:
    """Labels of the coefficients: (Intercept) and the covariates (raw), or 0..k."""
    if params["kind"] == "raw":
        return (("(Intercept)",) if params["intercept"] else ()) + tuple(columns)
    return tuple(str(j) for j in range(params["order"] + 1))
