"""id, idv, diag, us: G linear in its parameters (G = sum_j theta_j B_j, plus I for id)."""
from __future__ import annotations

import numpy as np

from .base import Structure, vech_pairs


class _Linear(Structure):
    """id, idv, diag, us: G = sum_j theta_j B_j (+ I for id), B_j constant."""

    def _describe(self):
        if self.name == "id":
            return []
        if self.name == "idv":
            return [("variance", (0, 0), self._sfx_scalar())]
        if self.name == "diag":
            return [("variance", (i, i), self._sfx_var(i)) for i in range(self.t)]
        return [("variance" if i == j else "covariance", (i, j), self._sfx_el(i, j))
                for i, j in vech_pairs(self.t)]

    def _basis(self) -> np.ndarray:
        """B_j, shape (n_params, t, t): E_ij + E_ji for the element (i, j) of parameter j."""
        B = np.zeros((self.n_params, self.t, self.t))
        if self.name == "idv":
            B[0] = np.eye(self.t)
        elif self.n_params:
            i, j = np.array(self.trait_pairs()).T
            p = np.arange(self.n_params)
            B[p, i, j] = B[p, j, i] = 1.0
        return B

    def matrix(self, theta):
        G = np.tensordot(self._theta(theta), self._basis(), axes=1)
        return G + np.eye(self.t) if self.name == "id" else G

    def derivatives(self, theta):
        self._theta(theta)
        return self._basis()

    def from_matrix(self, G):
        # Frobenius projection on the span of the B_j (disjoint supports): the elements (us),
        # the diagonal (diag), the mean of the diagonal (idv)
        B = self._basis().reshape(self.n_params, self.t * self.t)
        return B @ self._G(G).reshape(-1) / np.sum(B * B, axis=1)


class Id(_Linear):
    """G = I, no parameter."""
    name = "id"


class Idv(_Linear):
    """G = s I: one common variance."""
    name = "idv"


class Diag(_Linear):
    """G = diag(v): heterogeneous variances, no covariance."""
    name = "diag"


class Us(_Linear):
    """Unstructured G: its distinct elements, row-wise lower order."""
    name = "us"

