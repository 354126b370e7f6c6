"""Direct products of structures: G = G_1 (x) G_2 (x) ... for a term on several dimensions.

``us(trait):diag(site):gen`` has two structured dimensions, trait and site; its compound
matrix is G = G_trait (x) G_site, ordered as written (the compound index runs over trait
levels slowest). The inverse, the log-determinant and the derivatives follow from the
factors: dG/dtheta_j = G_1 (x) ... (x) dG_f/dtheta_j (x) ... for a parameter of factor f.

A product of two matrices that both carry a scale is not identified (c G_1 (x) G_2 / c is the
same matrix), so the first factor that carries a scale keeps it and every later one has its
first variance held at 1 (reported with bound "F"), as asreml does when it makes the later
models correlation models.
"""
from __future__ import annotations

import itertools

import numpy as np

from mvreml.errors import FormulaError

from .base import Structure


def _carries_scale(s: Structure) -> bool:
    return s.n_params > 0 and s.name != "id"


class Product(Structure):
    """G = G_1 (x) G_2 (x) ... over the product of the factors' levels.

    Parameters
    ----------
    *factors : Structure, or one sequence of them
        Two or more structures, each on its own dimension, in the order of the product:
        ``Product(US(2), Diag(3, dim="site"))`` or ``Product([...])``.
    """

    name = "product"

    def __init__(self, *factors):
        if len(factors) == 1 and not isinstance(factors[0], Structure):
            factors = tuple(factors[0])          # Product([a, b]) as well as Product(a, b)
        self.factors = tuple(factors)
        if len(self.factors) < 2:
            raise FormulaError("a direct product needs at least two structures")
        dims = [f.dim for f in self.factors]
        if len(set(dims)) != len(dims):
            raise FormulaError(f"a dimension appears twice in the product {':'.join(map(str, self.factors))}")
        self.sizes = [f.t for f in self.factors]
        self.bounds_ = np.cumsum([0] + [f.n_params for f in self.factors])
        levels = [":".join(p) for p in itertools.product(*(f.traits for f in self.factors))]
        super().__init__(levels, None, dim=":".join(dims))
        self._fixed = np.zeros(self.n_params, bool)
        self._free = None
        for i, f in enumerate(self.factors):
            if not _carries_scale(f):
                continue
            if self._free is None:
                self._free = i
                continue
            kinds = f.kinds()
            j = next((j for j, k in enumerate(kinds) if k == "variance"), None)
            if j is None:
                raise FormulaError(f"{f} in the product {self} has no variance to hold for identifiability")
            self._fixed[self.bounds_[i] + j] = True
        if self._free is None:
            raise FormulaError(f"the product {self} has no variance parameter")

    def __str__(self) -> str:
        return ":".join(str(f) for f in self.factors)

    def _describe(self):
        # a factor's (i, j) element is not an element of the compound matrix: no pair
        return [(kind, None, sfx) for f in self.factors for kind, _, sfx in f._params]

    def fixed_params(self) -> np.ndarray:
        return self._fixed.copy()

    def _parts(self, theta):
        theta = self._theta(theta)
        return [theta[self.bounds_[i]:self.bounds_[i + 1]] for i in range(len(self.factors))]

    def factor_matrices(self, theta) -> list[np.ndarray]:
        """The factors' matrices G_1, G_2, ... at theta."""
        return [f.matrix(p) for f, p in zip(self.factors, self._parts(theta))]

    def matrix(self, theta):
        out = np.ones((1, 1))
        for M in self.factor_matrices(theta):
            out = np.kron(out, M)
        return out

    def derivatives(self, theta):
        mats = self.factor_matrices(theta)
        D = np.zeros((self.n_params, self.t, self.t))
        for f, (st, p) in enumerate(zip(self.factors, self._parts(theta))):
            before = np.ones((1, 1))
            for M in mats[:f]:
                before = np.kron(before, M)
            after = np.ones((1, 1))
            for M in mats[f + 1:]:
                after = np.kron(after, M)
            for j, dG in enumerate(st.derivatives(p)):
                D[self.bounds_[f] + j] = np.kron(np.kron(before, dG), after)
        return D

    def marginals(self, G) -> list[np.ndarray]:
        """Partial traces of G over all dimensions but one, per factor (for a Kronecker product
        G = A (x) B they are A tr(B) and tr(A) B)."""
        G = self._G(G)
        n = len(self.sizes)
        T = G.reshape(self.sizes + self.sizes)
        letters = "abcdefghijklmnop"[:n]
        out = []
        for f in range(n):
            cols = list(letters)
            cols[f] = "z"
            out.append(np.einsum(f"{letters}{''.join(cols)}->{letters[f]}z", T))
        return out

    def from_matrix(self, G):
        """theta of the Kronecker product closest (through partial traces) to G; exact when G
        is a Kronecker product of members of the factors' structures."""
        G = self._G(G)
        mats = [0.5 * (M + M.T) for M in self.marginals(G)]
        for i, f in enumerate(self.factors):
            if _carries_scale(f) and i != self._free and mats[i][0, 0] > 0:
                mats[i] = mats[i] / mats[i][0, 0]
            elif not _carries_scale(f):
                mats[i] = np.eye(f.t)
        prod_tr = np.prod([np.trace(M) for M in mats])
        if prod_tr > 0 and np.trace(G) > 0:
            mats[self._free] = mats[self._free] * (np.trace(G) / prod_tr)
        parts = [f.from_matrix(M) if f.n_params else np.zeros(0) for f, M in zip(self.factors, mats)]
        # the held scales exactly 1: move what the projection left there into the free factor
        for i, f in enumerate(self.factors):
            fixed = self._fixed[self.bounds_[i]:self.bounds_[i + 1]]
            if not fixed.any():
                continue
            v = float(parts[i][fixed][0])
            if v > 0 and v != 1.0:
                parts[i] = np.asarray(f.from_matrix(f.matrix(parts[i]) / v), float)
                free = self.factors[self._free]
                parts[self._free] = np.asarray(free.from_matrix(free.matrix(parts[self._free]) * v), float)
            parts[i] = np.asarray(parts[i], float).copy()
            parts[i][fixed] = 1.0
        return np.concatenate(parts)

    def _feasible(self, theta):
        return all(f.feasible(p) for f, p in zip(self.factors, self._parts(theta)) if f.n_params)
