"""The structure base class and the small matrix helpers every structure shares.

A :class:`Structure` maps a parameter vector ``theta`` to a small matrix ``G(theta)`` over
the levels of one *dimension* of a random term or of the residual (the traits, or the levels
of a factor such as ``site``), and back; it gives the exact derivatives ``dG/dtheta_j`` that
the score and the average-information matrix need, the parameter-space checks and box
bounds of the step control, and the asreml-R 4 style row labels of the variance-component
table. Only small dense matrices: nothing scales with the data.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from mvreml.errors import ModelError, StartingValueError

#: correlations of a matrix that is not positive definite are shrunk to at most this by
#: from_matrix (a positive definite matrix keeps its correlations exactly)
_MAX_COR = 0.999

Param = tuple                   # (kind, (i, j) element of G or None, label suffix)

def vech_pairs(t: int) -> list[tuple[int, int]]:
    """Element order of vech(G) used throughout: row-wise lower triangle, (i, j) with j <= i."""
    return [(i, j) for i in range(t) for j in range(i + 1)]


def _pairs(t: int, strict: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Index arrays (i, j) of the lower triangle, row-wise; strict: i > j (correlations)."""
    ij = [(i, j) for i in range(t) for j in range(i + 1 - strict)]
    return tuple(np.array(ij, dtype=np.intp).reshape(-1, 2).T)


def _mean_variance(G: np.ndarray) -> float:
    """Scale of relative floors: the mean diagonal, or 1 for a zero / negative trace."""
    m = float(np.trace(G)) / G.shape[0]
    return m if m > 0 and np.isfinite(m) else 1.0


def _is_pd(G: np.ndarray) -> bool:
    """Positive definite: the Cholesky factorization succeeds."""
    try:
        return bool(np.all(np.isfinite(np.linalg.cholesky(G))))
    except np.linalg.LinAlgError:
        return False


def correlation_matrix(G: np.ndarray) -> np.ndarray:
    """Correlation matrix ``G_ij / sqrt(G_ii G_jj)``, shape (t, t), of a covariance matrix G.

    Rows and columns of traits whose variance is not positive are NaN (undefined).
    """
    G = np.asarray(G, dtype=float)
    v = np.diag(G)
    sd = np.sqrt(np.where(v > 0, v, np.nan))
    R = G / np.outer(sd, sd)
    np.fill_diagonal(R, np.where(v > 0, 1.0, np.nan))
    return R


def _safe_correlation(G: np.ndarray) -> np.ndarray:
    """The correlation matrix of G when it is positive definite (kept exactly, however close
    to +-1 its correlations are); otherwise a positive-definite one close to it, |r| <= 0.999.

    Traits with zero variance get correlation 0; an indefinite correlation matrix has its
    negative eigenvalues set to 0 (then unit diagonal again). Then R <- s R + (1 - s) I with
    the largest s <= 1 giving |r| <= 0.999 and eigenvalues >= 0.001: unlike clipping single
    entries, one common shrinkage keeps R positive definite.
    """
    R = np.nan_to_num(correlation_matrix(G), nan=0.0)
    np.fill_diagonal(R, 1.0)
    if np.all(np.diag(G) > 0) and _is_pd(R):
        return R
    w, V = np.linalg.eigh(R)
    if w[0] < 0:
        R = (V * np.clip(w, 0, None)) @ V.T
        d = np.sqrt(np.diag(R))
        R = R / np.outer(d, d)
        w = np.linalg.eigvalsh(R)
    off = np.abs(R - np.diag(np.diag(R))).max(initial=0.0)
    s = min(1.0, _MAX_COR / max(off, 1e-300), _MAX_COR / max(1.0 - w[0], 1e-300))
    R = s * R
    np.fill_diagonal(R, 1.0)
    return R


def _bounded_lm(res, jac, x, lower, maxit: int = 500) -> tuple[np.ndarray, float]:
    """Levenberg-Marquardt with lower bounds (active set) for tiny least-squares problems.

    Unlike MINPACK (scipy "lm") it takes bounds and more parameters than residuals, and
    unlike scipy's "trf" it is fast on the rank-deficient Jacobian of an over-parameterised
    fa(k): the damped normal equations are always solvable. Returns (x, sum of squares).
    """
    r = res(x)
    f, J = r @ r, jac(x)
    mu = 1e-3 * max(np.max(np.einsum("ij,ij->j", J, J)), 1e-300)
    for _ in range(maxit):
        g = J.T @ r
        free = ~((x <= lower) & (g > 0))          # at the bound and pushed through it: hold
        if f < 1e-30 or np.max(np.abs(g[free]), initial=0.0) < 1e-15:
            break
        step = np.zeros_like(x)
        A = J[:, free].T @ J[:, free]
        step[free] = np.linalg.solve(A + mu * np.eye(len(A)), -g[free])
        x_new = np.maximum(x + step, lower)
        r_new = res(x_new)
        f_new = r_new @ r_new
        if f_new < f:
            done = np.max(np.abs(x_new - x)) <= 1e-13 * (1.0 + np.max(np.abs(x)))
            x, r, f, J = x_new, r_new, f_new, jac(x_new)
            mu = max(mu / 3.0, 1e-300)
            if done:
                break
        else:
            mu *= 8.0
            if mu > 1e20:
                break
    return x, f


class Structure(ABC):
    """A covariance structure for a t x t trait matrix G.

    Attributes
    ----------
    name : str
        One of :data:`STRUCTURE_NAMES`.
    traits : tuple of str
        Trait labels, ``t = len(traits)``.
    n_params : int
        Length of ``theta``.
    k : int or None
        Number of factors (``fa`` only).
    """

    name = ""

    def __init__(self, traits: tuple[str, ...], k: int | None = None, dim: str = "trait"):
        self.traits = tuple(str(x) for x in traits)
        self.t = len(self.traits)
        self.k = k
        self.dim = str(dim)
        self._params: list[Param] = self._describe()
        self.n_params = len(self._params)

    @property
    def levels(self) -> tuple[str, ...]:
        """Labels of the levels of the dimension (the traits, or the factor's levels)."""
        return self.traits

    def __str__(self) -> str:
        return f"{self.name}({self.dim}, {self.k})" if self.k is not None else f"{self.name}({self.dim})"

    # label suffixes, asreml-R 4 style: the traits as today (":trait!a:b"), another factor as
    # asreml prints it ("!site_S1:S2", "!site!S2:!site!S1.cor", "!S1!fa1")
    def _sfx_scalar(self) -> str:
        return ":trait" if self.dim == "trait" else f"!{self.dim}"

    def _sfx_var(self, i: int) -> str:
        x = self.traits[i]
        return f":trait!{x}" if self.dim == "trait" else f"!{self.dim}_{x}"

    def _sfx_el(self, i: int, j: int) -> str:
        a, b = self.traits[i], self.traits[j]
        return f":trait!{a}:{b}" if self.dim == "trait" else f"!{self.dim}_{a}:{b}"

    def _sfx_cor(self, i: int, j: int) -> str:
        a, b = self.traits[i], self.traits[j]
        return f":trait!{a}:!{b}.cor" if self.dim == "trait" else f"!{self.dim}!{a}:!{self.dim}!{b}.cor"

    def _sfx_common_cor(self) -> str:
        return ":trait!cor" if self.dim == "trait" else f"!{self.dim}!cor"

    def _sfx_fa(self, i: int, what: str) -> str:
        x = self.traits[i]
        return f":trait!{x}!{what}" if self.dim == "trait" else f"!{x}!{what}"

    def fixed_params(self) -> np.ndarray:
        """Parameters the structure itself holds (a scale fixed for identifiability in a
        direct product); none by default."""
        return np.zeros(self.n_params, bool)

    @abstractmethod
    def _describe(self) -> list[Param]:
        """Per parameter: (kind, (i, j) element of G or None, label suffix)."""

    def labels(self, term: str = "", multivariate: bool = True) -> list[str]:
        """Row labels of the variance-component table, asreml-R 4 style, starting with ``term``.

        A univariate model (``multivariate=False``) labels its single variance ``term`` alone.
        Without ``term`` the labels are the parameters' own names (``"trait!a:b"``), as an
        embedding program shows them.
        """
        if not multivariate and self.t == 1 and self.n_params == 1:
            return [term]
        if not term:
            return [suffix.lstrip(":!") for _, _, suffix in self._params]
        return [term + suffix for _, _, suffix in self._params]

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(lower, upper) box bounds of theta: :meth:`lower_bounds`, :meth:`upper_bounds`."""
        return self.lower_bounds(), self.upper_bounds()

    def kinds(self) -> list[str]:
        """Per parameter: "variance", "covariance", "correlation" or "loading"."""
        return [kind for kind, _, _ in self._params]

    def trait_pairs(self) -> list[tuple[int, int] | None]:
        """Per parameter, the (i, j) element of G it is (i >= j); None for correlations and
        loadings. A common variance (idv, corv) is reported as (0, 0)."""
        return [pair for _, pair, _ in self._params]

    def lower_bounds(self) -> np.ndarray:
        """Box lower bounds: 0 for variances, -1 for correlations, -inf otherwise."""
        lo = {"variance": 0.0, "correlation": -1.0}
        return np.array([lo.get(k, -np.inf) for k in self.kinds()], dtype=float)

    def upper_bounds(self) -> np.ndarray:
        """Box upper bounds: 1 for correlations, inf otherwise."""
        return np.array([1.0 if k == "correlation" else np.inf for k in self.kinds()], dtype=float)

    def _theta(self, theta) -> np.ndarray:
        theta = np.asarray(theta, dtype=float).reshape(-1)
        if theta.shape[0] != self.n_params:
            raise ModelError(f"{self} on levels {self.traits} has {self.n_params} parameters, "
                             f"got a vector of length {theta.shape[0]}")
        return theta

    def _G(self, G) -> np.ndarray:
        G = np.asarray(G, dtype=float)
        if G.shape != (self.t, self.t) or not np.all(np.isfinite(G)):
            raise StartingValueError(f"{self} on levels {self.traits} needs a finite {self.t} x "
                                     f"{self.t} matrix, got shape {G.shape}")
        return (G + G.T) / 2

    @abstractmethod
    def matrix(self, theta: np.ndarray) -> np.ndarray:
        """G(theta), shape (t, t)."""

    @abstractmethod
    def derivatives(self, theta: np.ndarray) -> np.ndarray:
        """Exact dG/dtheta_j, shape (n_params, t, t)."""

    @abstractmethod
    def from_matrix(self, G: np.ndarray) -> np.ndarray:
        """theta whose G(theta) is the closest member of the structure to a symmetric PSD G."""

    def feasible(self, theta: np.ndarray) -> bool:
        """True inside the parameter space: G positive definite (fa: psi > 0)."""
        theta = self._theta(theta)
        return bool(np.all(np.isfinite(theta))) and self._feasible(theta)

    def _feasible(self, theta: np.ndarray) -> bool:
        # id, idv, diag, us: "variances > 0 and G positive definite" is "G positive definite"
        return _is_pd(self.matrix(theta))

