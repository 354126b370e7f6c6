"""ar1v: first-order autoregressive G over ordered levels (times, positions), G_ij = s rho^|i-j|.

Not in the formula registry (asreml's ar1 on a trait dimension is not parsed yet; the
spatial residual ar1(col):ar1(row) is :mod:`mvreml.lattice`): it is for programs that
build a :class:`mvreml.Model` from arrays, e.g. a residual over repeated measures.
"""
from __future__ import annotations

import numpy as np

from .base import _MAX_COR, Structure, _safe_correlation


class Ar1v(Structure):
    """G_ij = s rho^|i-j|: the correlation rho (|rho| < 1), then the variance s."""

    name = "ar1v"

    def _describe(self):
        return [("correlation", None, self._sfx_common_cor()), ("variance", (0, 0), self._sfx_scalar())]

    def _lags(self) -> np.ndarray:
        i = np.arange(self.t)
        return np.abs(i[:, None] - i[None, :])

    def matrix(self, theta):
        rho, s = self._theta(theta)
        return s * np.power(rho, self._lags())

    def derivatives(self, theta):
        rho, s = self._theta(theta)
        lag = self._lags()
        dR = np.where(lag > 0, lag * np.power(rho, np.maximum(lag - 1, 0)), 0.0)
        return np.stack([s * dR, np.power(rho, lag)])

    def from_matrix(self, G):
        """rho: the mean lag-1 correlation (kept exactly when |rho| < 1, else +-0.999); s: the
        mean variance."""
        G = self._G(G)
        if self.t < 2:
            return np.array([0.0, float(G[0, 0])])
        R = _safe_correlation(G)
        rho = float(np.mean(np.diag(R, -1)))
        if not -1.0 < rho < 1.0:
            rho = float(np.clip(rho, -_MAX_COR, _MAX_COR))
        return np.array([rho, float(np.mean(np.diag(G)))])

    def _feasible(self, theta):
        rho, s = theta
        return bool(s > 0 and -1.0 < rho < 1.0)
