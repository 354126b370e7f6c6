"""corgh, corv, corh: G = D R D with R a correlation matrix and D = diag(sqrt(v))."""
from __future__ import annotations

from abc import abstractmethod

import numpy as np

from .base import _MAX_COR, Structure, _is_pd, _pairs, _safe_correlation


class _Correlated(Structure):
    """corgh, corv, corh: G = D R D, R a correlation matrix, D = diag(sqrt(v))."""

    @abstractmethod
    def _split(self, theta) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(R, v, dR): correlation matrix, trait variances, dR/d(correlation parameters)."""

    def matrix(self, theta):
        R, v, _ = self._split(self._theta(theta))
        sd = np.sqrt(v)
        return R * np.outer(sd, sd)

    def derivatives(self, theta):
        R, v, dR = self._split(self._theta(theta))
        sd = np.sqrt(v)
        if self.name == "corv":                     # one variance s: dG/ds = R
            return np.concatenate([dR * v[0], R[None]])
        # dG/dv_k is row and column k of A: A_kj = R_kj sd_j / (2 sd_k), A_kk = 1/2
        with np.errstate(divide="ignore", invalid="ignore"):
            A = R * sd[None, :] / (2.0 * sd[:, None])
        np.fill_diagonal(A, 0.5)
        r = np.arange(self.t)
        dv = np.zeros((self.t, self.t, self.t))
        dv[r, r, :] = A
        dv[r, :, r] += A
        return np.concatenate([dR * np.outer(sd, sd), dv])

    def _feasible(self, theta):
        R, v, _ = self._split(theta)
        off = R[~np.eye(self.t, dtype=bool)]
        return bool(np.all(v > 0) and np.all(np.abs(off) < 1) and _is_pd(self.matrix(theta)))

    def _common_rho(self, G) -> float:
        """corv, corh: the mean correlation, kept where R is PD (-1/(t-1) < r < 1)."""
        i, j = _pairs(self.t, strict=True)
        r = float(np.mean(_safe_correlation(G)[i, j]))
        if -1.0 / (self.t - 1) < r < 1.0:
            return r          # inside the parameter space: kept exactly
        return float(np.clip(r, -_MAX_COR / (self.t - 1), _MAX_COR))

    def _common_split(self, theta, v):
        off = np.ones((self.t, self.t)) - np.eye(self.t)
        return np.eye(self.t) + theta[0] * off, v, off[None]


class Corgh(_Correlated):
    """Correlations and heterogeneous variances: G_ij = r_ij sqrt(v_i v_j)."""

    name = "corgh"

    def _describe(self):
        cors = [("correlation", None, self._sfx_cor(i, j)) for i, j in zip(*_pairs(self.t, strict=True))]
        return cors + [("variance", (i, i), self._sfx_var(i)) for i in range(self.t)]

    def _split(self, theta):
        nc = self.n_params - self.t
        i, j = _pairs(self.t, strict=True)
        p = np.arange(nc)
        R, dR = np.eye(self.t), np.zeros((nc, self.t, self.t))
        R[i, j] = R[j, i] = theta[:nc]
        dR[p, i, j] = dR[p, j, i] = 1.0
        return R, theta[nc:], dR

    def from_matrix(self, G):
        G = self._G(G)
        i, j = _pairs(self.t, strict=True)
        return np.concatenate([_safe_correlation(G)[i, j], np.diag(G)])


class Corv(_Correlated):
    """G = s ((1 - r) I + r 11'): common variance and common correlation."""

    name = "corv"

    def _describe(self):
        return [("correlation", None, self._sfx_common_cor()), ("variance", (0, 0), self._sfx_scalar())]

    def _split(self, theta):
        return self._common_split(theta, np.full(self.t, theta[1]))

    def from_matrix(self, G):
        G = self._G(G)
        return np.array([self._common_rho(G), np.mean(np.diag(G))])


class Corh(_Correlated):
    """G = D ((1 - r) I + r 11') D: heterogeneous variances, common correlation."""

    name = "corh"

    def _describe(self):
        return [("correlation", None, self._sfx_common_cor())] + [
            ("variance", (i, i), self._sfx_var(i)) for i in range(self.t)]

    def _split(self, theta):
        return self._common_split(theta, theta[1:])

    def from_matrix(self, G):
        G = self._G(G)
        return np.concatenate([[self._common_rho(G)], np.diag(G)])

