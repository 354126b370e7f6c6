"""Spatial residuals on a field lattice: ``residual = ~ ar1(col):ar1(row)`` (and ``id(col):ar1(row)``,
one-dimensional ``ar1(row)``, per section with ``dsum(~ ar1(col):ar1(row) | site)``).

R_s = sigma^2 S_1(rho_1) (x) S_2(rho_2) over the complete lattice of a section, S(rho)_ij =
rho^|i - j| (AR1) or I (id), the first dimension slowest (Gilmour, Cullis & Verbyla 1997).
Everything the engine needs is sparse or closed-form:

* S(rho)^-1 is tridiagonal: (1 / (1 - rho^2)) [diagonal 1, 1 + rho^2, ..., 1 + rho^2, 1; off
  diagonal -rho], so R^-1 has at most nine entries per plot, and so has dR^-1 / dtheta;
* log|R_s| = n log sigma^2 + n_2 log|S_1| + n_1 log|S_2|, log|S(rho)| = (n - 1) log(1 - rho^2);
* R v (the working variates of the AI matrix) is sigma^2 S_1 V S_2 with V the n_1 x n_2
  array of v: two small dense products.

Plots of the lattice without a response (holes in the design, missing values) are kept in the
lattice as pseudo-records with a fixed effect each (``mv`` columns of X): the REML likelihood
of that augmented model is exactly the one of the observed records (the error contrasts free
of the ``mv`` effects are those of the observed data), and R^-1 stays sparse.
"""
from __future__ import annotations

import numpy as np

from .errors import DataError, FormulaError
from .structures.base import Structure

#: structures of a lattice dimension
LATTICE_DIMS = ("ar1", "id")
#: asreml's default starting value of an AR1 correlation
RHO_START = 0.1


def ar1_inverse_entries(i, j, n: int, rho: float) -> np.ndarray:
    """Entries (i, j) of S(rho)^-1 for an n x n AR1 correlation matrix (vectorised)."""
    i, j = np.asarray(i), np.asarray(j)
    if n == 1:
        return np.where(i == j, 1.0, 0.0)
    c = 1.0 / (1.0 - rho * rho)
    end = (i == 0) | (i == n - 1)
    diag = np.where(end, 1.0, 1.0 + rho * rho) * c
    return np.where(i == j, diag, np.where(np.abs(i - j) == 1, -rho * c, 0.0))


def ar1_inverse_derivative(i, j, n: int, rho: float) -> np.ndarray:
    """d S(rho)^-1 / d rho at entries (i, j)."""
    i, j = np.asarray(i), np.asarray(j)
    if n == 1:
        return np.zeros(np.broadcast(i, j).shape)
    c = 1.0 / (1.0 - rho * rho)
    dc = 2.0 * rho * c * c
    end = (i == 0) | (i == n - 1)
    diag = np.where(end, dc, 2.0 * rho * c + (1.0 + rho * rho) * dc)
    off = -(c + rho * dc)
    return np.where(i == j, diag, np.where(np.abs(i - j) == 1, off, 0.0))


def ar1_matrix(n: int, rho: float) -> np.ndarray:
    idx = np.arange(n)
    return rho ** np.abs(idx[:, None] - idx[None, :])


class Lattice(Structure):
    """sigma^2 S_1 (x) S_2 (x) ... on the lattice of a residual section.

    Parameters
    ----------
    dims : sequence of (name, kind, size)
        The lattice dimensions in order (the first slowest): column name, "ar1" or "id", and
        the number of positions.
    term : str
        The label stem, e.g. ``"col:row"`` or ``"site_S1"``.

    The "matrix" of the structure is the 1 x 1 residual variance sigma^2 (what the component
    table and ``Result.covariance`` show); the correlations are its other parameters.
    """

    name = "lattice"

    def __init__(self, dims, stem: str):
        self.dims = [(str(n), str(k), int(s)) for n, k, s in dims]
        for n, k, s in self.dims:
            if k not in LATTICE_DIMS:
                raise FormulaError(f"{k}({n}) is not a lattice structure; use ar1() or id()", term=k)
        self.stem = stem
        super().__init__(("R",), None, dim=":".join(n for n, _, _ in self.dims))

    def __str__(self) -> str:
        return ":".join(f"{k}({n})" for n, k, _ in self.dims)

    def _describe(self):
        out = [("variance", (0, 0), "!R")]
        out += [("correlation", None, f"!{n}!cor") for n, k, _ in self.dims if k == "ar1"]
        return out

    def labels(self, term: str, multivariate: bool) -> list[str]:
        return [self.stem + sfx for _, _, sfx in self._params]

    def _rhos(self, theta) -> list:
        theta = self._theta(theta)
        it = iter(theta[1:])
        return [next(it) if k == "ar1" else None for _, k, _ in self.dims]

    def matrix(self, theta):
        return np.array([[self._theta(theta)[0]]])

    def derivatives(self, theta):
        D = np.zeros((self.n_params, 1, 1))
        D[0, 0, 0] = 1.0
        return D

    def from_matrix(self, G):
        return np.concatenate([[float(np.asarray(G, float).reshape(-1)[0])],
                               np.full(self.n_params - 1, RHO_START)])

    def _feasible(self, theta):
        return bool(theta[0] > 0 and np.all(np.abs(theta[1:]) < 1))

    # ----------------------------------------------------------------- the lattice itself
    def rinv_values(self, theta, pos_a: np.ndarray, pos_b: np.ndarray) -> np.ndarray:
        """R^-1 at pairs of plots given by their positions (n_pairs x n_dims)."""
        sigma2, out = self._theta(theta)[0], np.full(len(pos_a), 1.0)
        for d, ((_, kind, size), rho) in enumerate(zip(self.dims, self._rhos(theta))):
            i, j = pos_a[:, d], pos_b[:, d]
            out = out * (ar1_inverse_entries(i, j, size, rho) if kind == "ar1" else (i == j))
        return out / sigma2

    def rinv_derivatives(self, theta, pos_a, pos_b) -> np.ndarray:
        """d R^-1 / d theta_j at the pairs: shape (n_params, n_pairs)."""
        theta = self._theta(theta)
        sigma2, rhos = theta[0], self._rhos(theta)
        parts = []
        for d, ((_, kind, size), rho) in enumerate(zip(self.dims, rhos)):
            i, j = pos_a[:, d], pos_b[:, d]
            parts.append(ar1_inverse_entries(i, j, size, rho) if kind == "ar1" else (i == j) * 1.0)
        base = np.prod(parts, axis=0) if parts else np.ones(len(pos_a))
        out = [-base / sigma2 ** 2]
        for d, ((_, kind, size), rho) in enumerate(zip(self.dims, rhos)):
            if kind != "ar1":
                continue
            i, j = pos_a[:, d], pos_b[:, d]
            other = np.prod([p for e, p in enumerate(parts) if e != d], axis=0) if len(parts) > 1 else 1.0
            out.append(ar1_inverse_derivative(i, j, size, rho) * other / sigma2)
        return np.array(out)

    def logdet(self, theta) -> float:
        """log|R_s| of the whole lattice."""
        theta = self._theta(theta)
        sizes = [s for _, _, s in self.dims]
        n = int(np.prod(sizes))
        out = n * np.log(theta[0])
        for (_, kind, size), rho in zip(self.dims, self._rhos(theta)):
            if kind == "ar1" and size > 1:
                out += (n // size) * (size - 1) * np.log(1.0 - rho * rho)
        return float(out)

    def dlogdet(self, theta) -> np.ndarray:
        """tr(R^-1 dR/dtheta_j) = d log|R_s| / d theta_j."""
        theta = self._theta(theta)
        sizes = [s for _, _, s in self.dims]
        n = int(np.prod(sizes))
        out = [n / theta[0]]
        for (_, kind, size), rho in zip(self.dims, self._rhos(theta)):
            if kind == "ar1":
                out.append(-(n // size) * (size - 1) * 2.0 * rho / (1.0 - rho * rho) if size > 1 else 0.0)
        return np.array(out)

    def apply(self, theta, V: np.ndarray) -> np.ndarray:
        """R V for V shaped like the lattice (n_1 x n_2 x ...): sigma^2 S_1 V S_2 ..."""
        theta = self._theta(theta)
        out = V * theta[0]
        for d, ((_, kind, size), rho) in enumerate(zip(self.dims, self._rhos(theta))):
            if kind == "ar1":
                out = np.moveaxis(np.tensordot(ar1_matrix(size, rho), out, axes=([1], [d])), 0, d)
        return out


#: a dimension's span may exceed its distinct values this many times (beyond MAX_SPAN_FREE)
MAX_SPAN_RATIO = 10
MAX_SPAN_FREE = 1000


def lattice_positions(values: np.ndarray, column: str, section: str) -> tuple[np.ndarray, int]:
    """(position index of every plot, number of positions) of one lattice dimension.

    Positions are the numeric values of the factor: integers from the smallest to the largest
    (a gap is a row or column of missing plots, not an adjacency), or, for non-integral
    values, their sorted distinct values.

    Raises
    ------
    DataError
        A value that is not a number.
    """
    try:
        x = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        bad = next((v for v in values if not _is_number(v)), values[0])
        raise DataError(f"lattice dimension {column!r}{section}: the positions must be numbers "
                        f"(row / column numbers), got {bad!r}; give the row / column number of every "
                        f"plot as a numeric column (or labels that are numbers, '3'), e.g. "
                        f"data[{column!r}] = data[{column!r}].str.extract(r'(\\d+)')[0].astype(int) for "
                        f"labels such as 'R3'", column=column) from None
    if not np.all(np.isfinite(x)):
        raise DataError(f"lattice dimension {column!r}{section} has a missing position", column=column)
    if np.all(x == np.round(x)):
        lo = int(x.min())
        size = int(x.max()) - lo + 1
        distinct = np.unique(x).size
        # gaps are missing rows / columns, exact but not free: a span far wider than the values
        # present (identifiers, plot numbers across sites) would build a lattice of mostly holes
        if size > MAX_SPAN_RATIO * distinct and size > MAX_SPAN_FREE:
            raise DataError(f"lattice dimension {column!r}{section}: its positions run from {lo} to "
                            f"{int(x.max())} ({size} positions) but only {distinct} distinct values occur; "
                            f"gaps are treated as missing rows / columns, so this would be a lattice of "
                            f"mostly holes. Are these identifiers rather than row / column numbers? Give "
                            f"the row or column number of every plot (e.g. renumber with "
                            f"data[{column!r}].rank(method='dense'))", column=column)
        return (x - lo).astype(np.int64), size
    uniq, inv = np.unique(x, return_inverse=True)
    return inv.astype(np.int64), len(uniq)


def neighbour_pairs(grid: np.ndarray, kinds) -> tuple[np.ndarray, np.ndarray]:
    """All ordered pairs (a, b) of plots where R^-1 can be nonzero, a and b observation indices.

    ``grid`` holds the observation of every lattice position (n_1 x n_2 x ...); an AR1 dimension
    links positions one apart, an id dimension none.
    """
    shape = grid.shape
    offsets = [(-1, 0, 1) if k == "ar1" else (0,) for k in kinds]
    idx = np.indices(shape).reshape(len(shape), -1).T
    A, B = [], []
    for off in np.array(np.meshgrid(*offsets, indexing="ij")).reshape(len(shape), -1).T:
        nb = idx + off
        ok = np.all((nb >= 0) & (nb < np.array(shape)), axis=1)
        A.append(grid[tuple(idx[ok].T)])
        B.append(grid[tuple(nb[ok].T)])
    return np.concatenate(A), np.concatenate(B)


def _is_number(v) -> bool:
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False
