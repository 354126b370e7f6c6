"""Covariance structures for the trait part G (t x t) of a random term or of the residual R0.

A :class:`Structure` maps a parameter vector ``theta`` to ``G(theta)`` and back, gives the exact
derivatives ``dG/dtheta_j`` that the score and the average-information matrix need, the
parameter-space checks and box bounds of the step control, and the asreml-R 4 style row
labels of the variance-component table. Only small dense t x t matrices: nothing scales with
the data.

Parameters, in order (docs/THEORY.md, "Parameterisations and steps"):
id: none, G = I | idv: s, G = s I | diag: v_1..v_t | us: G_ij row-wise lower (j <= i) |
corgh: r_ij (i > j, row-wise) then v_1..v_t, G_ij = r_ij sqrt(v_i v_j) |
corv: r, s; G = s ((1 - r) I + r 11') | corh: r, v_1..v_t; G = D ((1 - r) I + r 11') D,
D = diag(sqrt(v)) | fa(k): loadings L (t x k, L[i, m] = 0 for i < m, factor by factor) then
psi_1..psi_t; G = L L' + diag(psi).
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from mvreml.errors import FormulaError, ModelError, StartingValueError

__all__ = ["Structure", "make_structure", "STRUCTURE_NAMES", "nearest_pd", "em_update",
           "jacobian_elements", "correlation_matrix", "vech_pairs"]

STRUCTURE_NAMES = ("id", "idv", "diag", "us", "corgh", "corv", "corh", "fa")

_MAX_COR = 0.999                # from_matrix keeps correlations strictly inside (-1, 1)
_PSI_FLOOR = 1e-4               # fa: smallest psi from from_matrix, relative to its variance
_FA_PA_ITER = 20                # fa: principal-axis iterations of the first least-squares start
_FA_RESTARTS = (0.5, 0.9, 0.2)  # fa: psi / variance of the further starts

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
    """A positive-definite correlation matrix close to that of G, with |r| <= 0.999.

    Traits with zero variance get correlation 0; an indefinite correlation matrix has its
    negative eigenvalues set to 0 (then unit diagonal again). Then R <- s R + (1 - s) I with
    the largest s <= 1 giving |r| <= 0.999 and eigenvalues >= 0.001: unlike clipping single
    entries, one common shrinkage keeps R positive definite.
    """
    R = np.nan_to_num(correlation_matrix(G), nan=0.0)
    np.fill_diagonal(R, 1.0)
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

    def __init__(self, traits: tuple[str, ...], k: int | None = None):
        self.traits = tuple(str(x) for x in traits)
        self.t = len(self.traits)
        self.k = k
        self._params: list[Param] = self._describe()
        self.n_params = len(self._params)

    def __str__(self) -> str:
        return f"fa(trait, {self.k})" if self.name == "fa" else f"{self.name}(trait)"

    @abstractmethod
    def _describe(self) -> list[Param]:
        """Per parameter: (kind, (i, j) element of G or None, label suffix)."""

    def labels(self, term: str, multivariate: bool) -> list[str]:
        """Row labels of the variance-component table, asreml-R 4 style, starting with ``term``.

        A univariate model (``multivariate=False``) labels its single variance ``term`` alone.
        """
        if not multivariate and self.t == 1 and self.n_params == 1:
            return [term]
        return [term + suffix for _, _, suffix in self._params]

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
            raise ModelError(f"{self} on traits {self.traits} has {self.n_params} parameters, "
                             f"got a vector of length {theta.shape[0]}")
        return theta

    def _G(self, G) -> np.ndarray:
        G = np.asarray(G, dtype=float)
        if G.shape != (self.t, self.t) or not np.all(np.isfinite(G)):
            raise StartingValueError(f"{self} on traits {self.traits} needs a finite {self.t} x "
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


class _Linear(Structure):
    """id, idv, diag, us: G = sum_j theta_j B_j (+ I for id), B_j constant."""

    def _describe(self):
        tr = self.traits
        return {"id": [], "idv": [("variance", (0, 0), ":trait")],
                "diag": [("variance", (i, i), f":trait!{x}") for i, x in enumerate(tr)],
                "us": [("variance" if i == j else "covariance", (i, j), f":trait!{tr[i]}:{tr[j]}")
                       for i, j in vech_pairs(self.t)]}[self.name]

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
        r = np.mean(_safe_correlation(G)[i, j])
        return float(np.clip(r, -_MAX_COR / (self.t - 1), _MAX_COR))

    def _common_split(self, theta, v):
        off = np.ones((self.t, self.t)) - np.eye(self.t)
        return np.eye(self.t) + theta[0] * off, v, off[None]


class Corgh(_Correlated):
    """Correlations and heterogeneous variances: G_ij = r_ij sqrt(v_i v_j)."""

    name = "corgh"

    def _describe(self):
        tr = self.traits
        cors = [("correlation", None, f":trait!{tr[i]}:!{tr[j]}.cor")
                for i, j in zip(*_pairs(self.t, strict=True))]
        return cors + [("variance", (i, i), f":trait!{x}") for i, x in enumerate(tr)]

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
        return [("correlation", None, ":trait!cor"), ("variance", (0, 0), ":trait")]

    def _split(self, theta):
        return self._common_split(theta, np.full(self.t, theta[1]))

    def from_matrix(self, G):
        G = self._G(G)
        return np.array([self._common_rho(G), np.mean(np.diag(G))])


class Corh(_Correlated):
    """G = D ((1 - r) I + r 11') D: heterogeneous variances, common correlation."""

    name = "corh"

    def _describe(self):
        return [("correlation", None, ":trait!cor")] + [
            ("variance", (i, i), f":trait!{x}") for i, x in enumerate(self.traits)]

    def _split(self, theta):
        return self._common_split(theta, theta[1:])

    def from_matrix(self, G):
        G = self._G(G)
        return np.concatenate([[self._common_rho(G)], np.diag(G)])


class FactorAnalytic(Structure):
    """fa(k): G = L L' + diag(psi), L t x k lower trapezoidal (L[i, m] = 0 for i < m)."""

    name = "fa"

    def _describe(self):
        tr = self.traits
        i, m = self._loading_index()
        load = [("loading", None, f":trait!{tr[a]}!fa{b + 1}") for a, b in zip(i, m)]
        return load + [("variance", (a, a), f":trait!{x}!var") for a, x in enumerate(tr)]

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


_CLASSES = {c.name: c for c in (Id, Idv, Diag, Us, Corgh, Corv, Corh, FactorAnalytic)}


def make_structure(name: str, traits: tuple[str, ...], k: int | None = None) -> Structure:
    """Build a covariance structure.

    Parameters
    ----------
    name : str
        One of :data:`STRUCTURE_NAMES`.
    traits : tuple of str
        Distinct trait labels (t >= 1).
    k : int, optional
        Number of factors, for "fa" only (1 <= k < t).

    Raises
    ------
    FormulaError
        Unknown name, no or duplicated traits, a correlation structure on one trait, bad k.
    """
    traits = tuple(str(x) for x in traits)
    t = len(traits)
    if name not in _CLASSES:
        raise FormulaError(f"unknown covariance structure {name!r}; known structures: "
                           f"{', '.join(STRUCTURE_NAMES)}", term=name)
    if t == 0 or len(set(traits)) != t:
        raise FormulaError(f"{name}(trait) needs at least one trait and distinct trait labels, "
                           f"got {traits}", term=name)
    if name in ("corgh", "corv", "corh") and t < 2:
        raise FormulaError(f"{name}(trait) models correlations between traits and needs at "
                           f"least 2 traits, got only {traits[0]!r}", term=name)
    if name != "fa":
        if k is not None:
            raise FormulaError(f"{name}(trait) takes no number of factors (got k={k!r}); only "
                               f"fa does", term=name)
        return _CLASSES[name](traits)
    if k is None or int(k) != k or not 1 <= k < t:
        raise FormulaError(f"fa(trait, k) on the {t} traits {traits} needs an integer k with "
                           f"1 <= k < {t}, got k={k!r}", term=name)
    return FactorAnalytic(traits, int(k))


def nearest_pd(G: np.ndarray, floor: float = 1e-8) -> tuple[np.ndarray, bool, np.ndarray]:
    """Raise the eigenvalues of a symmetric matrix to at least ``floor * trace(G) / t``.

    Parameters
    ----------
    G : ndarray, shape (t, t)
        Symmetric (it is symmetrised first).
    floor : float
        Smallest eigenvalue, relative to the mean variance (absolute if the trace is <= 0).

    Returns
    -------
    G_pd : ndarray, shape (t, t)
        The clipped matrix (G itself, symmetrised, if nothing was clipped).
    rank_deficient : bool
        True if any eigenvalue was clipped.
    clipped : ndarray of int
        Indices of the clipped eigen-directions, in the ascending order of
        ``numpy.linalg.eigh(G)`` (recompute it for the vectors).
    """
    G = np.asarray(G, dtype=float)
    G = (G + G.T) / 2
    w, V = np.linalg.eigh(G)
    lo = floor * _mean_variance(G)
    clipped = np.flatnonzero(w < lo)
    if clipped.size == 0:
        return G, False, clipped
    G_pd = (V * np.maximum(w, lo)) @ V.T
    return (G_pd + G_pd.T) / 2, True, clipped


def em_update(structure: Structure, S: np.ndarray, q: float, floor: float = 1e-8) -> np.ndarray:
    """EM step of a trait structure: theta = from_matrix(nearest_pd(S / q)).

    ``S`` (t x t) is ``sum_ab (K^-1)_ab (u_b u_a' + C^{b,a})`` (docs/THEORY.md) or its residual
    analogue, ``q`` the number of levels (of units, for the residual), ``floor`` the relative
    eigenvalue floor of :func:`nearest_pd`.
    """
    if not q > 0:
        raise ModelError(f"EM update of {structure} needs a positive number of levels, got {q}")
    return structure.from_matrix(nearest_pd(np.asarray(S, dtype=float) / q, floor)[0])


def jacobian_elements(structure: Structure, theta: np.ndarray) -> np.ndarray:
    """d vech(G) / d theta, shape (t(t+1)/2, n_params), vech row-wise lower (i, j <= i).

    For delta-method standard errors of the covariance elements.
    """
    i, j = _pairs(structure.t)
    return structure.derivatives(theta)[:, i, j].T.copy()
