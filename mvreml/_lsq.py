"""Least squares on a fixed X, factorized once: the residuals after the fixed effects that
the starting values and the estimability checks of every refit need (:meth:`mvreml.Model.refit`).

A fresh fit computes them with LSQR (:func:`mvreml.start.unit_residuals`); a model that only
changes y keeps a Cholesky factor of X'X (X has full column rank: the design dropped aliased
columns) and solves with it, which is exact where LSQR stops at its tolerance, so the two
agree to rounding (1e-12 relative), not bit for bit.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg as la

#: X'X is factorized densely up to this many columns; wider X keeps LSQR
MAX_DENSE_P = 3000


class FixedLeastSquares:
    """b = (X'X)^-1 X'y for the long-format X of a Design, with X'X factorized once.

    Parameters
    ----------
    X : scipy.sparse matrix (n_obs x p)
    """

    def __init__(self, X):
        self.X = X
        self.factor = None
        p = X.shape[1]
        if 0 < p <= MAX_DENSE_P:
            XtX = (X.T @ X).toarray() if hasattr(X, "toarray") else X.T @ X
            try:
                self.factor = la.cho_factor(XtX, lower=True, check_finite=False)
            except la.LinAlgError:
                self.factor = None       # numerically rank deficient: LSQR handles it
            else:
                d = np.diag(self.factor[0])
                if not np.all(np.isfinite(d)) or d.min() <= 1e-8 * d.max():
                    self.factor = None

    def unit_residuals(self, design) -> np.ndarray:
        """As :func:`mvreml.start.unit_residuals`: n_units x t residuals, NaN where missing."""
        from .start import unit_residuals

        if self.factor is None:
            return unit_residuals(design)
        b = la.cho_solve(self.factor, self.X.T @ design.y, check_finite=False)
        r = design.y - self.X @ b
        Y = np.full((design.n_units, design.t), np.nan)
        Y[design.obs_unit, design.obs_trait] = r
        return Y
