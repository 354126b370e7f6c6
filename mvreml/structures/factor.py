"""fa(k): factor-analytic G = L L' + diag(psi), loadings and specific variances."""
from __future__ import annotations

import numpy as np

from .base import Structure, _bounded_lm, _mean_variance, _pairs

_PSI_FLOOR = 1e-4               # smallest psi from from_matrix, relative to its variance
_FA_PA_ITER = 20                # principal-axis iterations of the first least-squares start
_FA_RESTARTS = (0.5, 0.9, 0.2)  # psi / variance of the further starts


class FactorAnalytic(Structure):
    """fa(k): G = L L' + diag(psi), L t x k lower trapezoidal (L[i, m] = 0 for i < m)."""

    name = "fa"

    def _describe(self):
        i, m = self._loading_index()
        load = [("loading", None, self._sfx_fa(a, f"fa{b + 1}")) for a, b in zip(i, m)]
        return load + [("variance", (a, a), self._sfx_fa(a, "var")) for a in range(self.t)]

    def _loading_index(self) -> tuple[np.ndarray, np.ndarray]:
        """(i, m) of the free loadings, factor by factor: the lower trapezoid of L."""
        im = [(i, m) for m in range(self.k) for i in range(m, self.t)]
        return tuple(np.array(im, dtype=np.intp).T)

    def loadings(self, theta: np.ndarray) -> np.ndarray:
        """The t x k loading matrix L of theta."""
        theta = self._theta(theta)
        L = np.zeros((self.t, self.k))
        L[self._loading_index()] = theta[: self.n_params - self.t]
        return L

    def matrix(self, theta):
        L = self.loadings(theta)
        return L @ L.T + np.diag(self._theta(theta)[-self.t:])

    def derivatives(self, theta):
        L = self.loadings(theta)
        nl = self.n_params - self.t
        i, m = self._loading_index()
        p, r = np.arange(nl), np.arange(self.t)
        D = np.zeros((self.n_params, self.t, self.t))
        D[p, i, :] += L[:, m].T                      # d(L L')/dL_im = e_i l_m' + l_m e_i'
        D[p, :, i] += L[:, m].T
        D[nl + r, r, r] = 1.0
        return D

    def from_matrix(self, G):
        """Least-squares fa(k) fit, on the correlation scale (fa is scale-equivariant, so
        traits on scales 10^4 apart weigh alike).

        First start: the leading-k eigen decomposition with psi = diagonal residual and a few
        principal-axis iterations; then bounded Levenberg-Marquardt on ||G - L L' - diag(psi)||_F
        with psi >= 1e-4 times each variance, restarted from psi = c diag(G), c = 0.5, 0.9, 0.2,
        while the fit is not exact. A G of fa(k) form is fitted exactly and identified fa
        parameters are recovered. L is rotated to a lower trapezoid with non-negative diagonal.
        """
        G = self._G(G)
        d = np.sqrt(np.maximum(np.diag(G), 1e-12 * _mean_variance(G)))
        Gs = G / np.outer(d, d)
        i, j = _pairs(self.t)
        w = np.where(i == j, 1.0, np.sqrt(2.0))      # the Frobenius norm counts G_ij twice
        lower = np.where(np.array(self.kinds()) == "variance", _PSI_FLOOR, -np.inf)
        best_x, best_f = None, np.inf
        starts = [(np.zeros(self.t), _FA_PA_ITER)] + [(np.full(self.t, c), 0) for c in _FA_RESTARTS]
        for psi0, n_iter in starts:
            x, f = _bounded_lm(lambda x: w * (self.matrix(x)[i, j] - Gs[i, j]),
                               lambda x: w[:, None] * self.derivatives(x)[:, i, j].T,
                               self._principal_axes(Gs, psi0, n_iter), lower)
            if f < best_f * (1 - 1e-9):                 # a tie keeps the earlier start
                best_x, best_f = x, f
            if best_f < 1e-24:
                break
        return self._identified(self.loadings(best_x) * d[:, None], best_x[-self.t:] * d * d)

    def _principal_axes(self, Gs: np.ndarray, psi: np.ndarray, n_iter: int) -> np.ndarray:
        """theta of the leading-k eigen part of Gs - diag(psi), after n_iter updates of psi."""
        for it in range(n_iter + 1):
            w, V = np.linalg.eigh(Gs - np.diag(psi))
            L = V[:, -self.k:] * np.sqrt(np.clip(w[-self.k:], 0, None))
            psi = np.clip(np.diag(Gs) - np.sum(L * L, axis=1) if it < n_iter else psi,
                          _PSI_FLOOR, None)
        return self._identified(L, psi)

    def _identified(self, L: np.ndarray, psi: np.ndarray) -> np.ndarray:
        """theta of L L' + diag(psi), L rotated to a lower trapezoid with diagonal >= 0."""
        R = np.linalg.qr(L.T, mode="r")               # L' = Q R  =>  L Q = R'
        L = R.T * np.where(np.diag(R) < 0, -1.0, 1.0)
        return np.concatenate([L[self._loading_index()], psi])

    def _feasible(self, theta):
        return bool(np.all(theta[-self.t:] > 0))


class ReducedRank(FactorAnalytic):
    """rr(k): reduced rank G = L L' (no specific variances), L t x k lower trapezoidal.

    G is singular (rank k < t), so it has no dense formulation in the mixed-model equations:
    a term with it is fitted in the factor formulation (:mod:`mvreml.fa_sparse`), k factor
    scores per level; V stays positive definite through the residual. 1 <= k <= t (k = t is
    a full-rank unstructured matrix in Cholesky form).
    """

    name = "rr"

    def _describe(self):
        i, m = self._loading_index()
        return [("loading", None, self._sfx_fa(a, f"fa{b + 1}")) for a, b in zip(i, m)]

    def loadings(self, theta: np.ndarray) -> np.ndarray:
        theta = self._theta(theta)
        L = np.zeros((self.t, self.k))
        L[self._loading_index()] = theta
        return L

    def matrix(self, theta):
        L = self.loadings(theta)
        return L @ L.T

    def derivatives(self, theta):
        L = self.loadings(theta)
        i, m = self._loading_index()
        p = np.arange(self.n_params)
        D = np.zeros((self.n_params, self.t, self.t))
        D[p, i, :] += L[:, m].T
        D[p, :, i] += L[:, m].T
        return D

    def from_matrix(self, G):
        """theta of the best rank-k approximation of G (its leading k eigenpairs), rotated to
        a lower trapezoid with non-negative diagonal; a zero loading on the diagonal is
        lifted to a small positive value so that no factor starts degenerate."""
        G = self._G(G)
        w, V = np.linalg.eigh(G)
        scale = max(float(np.mean(np.abs(np.diag(G)))), 1e-300)
        L = V[:, -self.k:] * np.sqrt(np.clip(w[-self.k:], 1e-4 * scale, None))
        R = np.linalg.qr(L.T, mode="r")
        L = R.T * np.where(np.diag(R) < 0, -1.0, 1.0)
        return L[self._loading_index()]

    def _feasible(self, theta):
        return True
