"""Covariance structures for the small matrices of a model: G of a random term's structured
dimensions (the traits, the sites, ...) and R0 of a residual section.

One module per family (:mod:`.linear` id/idv/diag/us, :mod:`.correlated` corgh/corv/corh,
:mod:`.factor` fa, :mod:`.product` direct products) and one registry of asreml names,
:data:`REGISTRY`, used by the parser, the engine and the report.

Parameters, in order (docs/THEORY.md, "Parameterisations and steps"):
id: none, G = I | idv: s, G = s I | diag: v_1..v_t | us: G_ij row-wise lower (j <= i) |
corgh: r_ij (i > j, row-wise) then v_1..v_t, G_ij = r_ij sqrt(v_i v_j) |
corv: r, s; G = s ((1 - r) I + r 11') | corh: r, v_1..v_t; G = D ((1 - r) I + r 11') D,
D = diag(sqrt(v)) | fa(k): loadings L (t x k, L[i, m] = 0 for i < m, factor by factor) then
psi_1..psi_t; G = L L' + diag(psi) | product: the factors' parameters in order.

Public classes for embedding programs (:mod:`.public`): ``US(t)``, ``Diag``, ``Idv``, ``Id``,
``Corgh``, ``Corh``, ``Corv``, ``FA(t, k)``, ``AR1`` (ar1v, not in the formula registry) take a number of levels or their labels;
``Product(a, b, ...)`` is their direct product. Each has ``n_params``, ``matrix(theta)``,
``derivatives(theta)``, ``bounds``, ``labels()``, ``kinds()``, ``feasible(theta)`` and
``from_matrix(G)``. The engine's classes (``Us``, ``FactorAnalytic``, ...) in
:data:`REGISTRY` are their bases.
"""
from __future__ import annotations

import numpy as np

from mvreml.errors import FormulaError, ModelError

from .base import Structure, _mean_variance, _pairs, correlation_matrix, vech_pairs
from .correlated import Corgh, Corh, Corv
from .factor import FactorAnalytic, ReducedRank
from .linear import Diag, Id, Idv, Us
from .product import Product
from .ar1 import Ar1v
from .public import AR1, FA, US, Corgh, Corh, Corv, Diag, Id, Idv  # noqa: F811  (friendlier constructors, same classes)

__all__ = ["Structure", "make_structure", "STRUCTURE_NAMES", "REGISTRY", "nearest_pd", "em_update",
           "jacobian_elements", "correlation_matrix", "vech_pairs", "Id", "Idv", "Diag", "Us", "US",
           "Corgh", "Corv", "Corh", "FactorAnalytic", "FA", "Ar1v", "AR1", "Product"]

#: asreml name -> class: the one table of structure names
REGISTRY = {c.name: c for c in (Id, Idv, Diag, Us, Corgh, Corv, Corh, FactorAnalytic, ReducedRank)}
STRUCTURE_NAMES = tuple(REGISTRY)


def make_structure(name: str, traits: tuple[str, ...], k: int | None = None, dim: str = "trait") -> Structure:
    """Build a covariance structure.

    Parameters
    ----------
    name : str
        One of :data:`STRUCTURE_NAMES`.
    traits : tuple of str
        Distinct labels of the levels of the dimension (t >= 1): the traits, or the levels of
        a factor such as site.
    k : int, optional
        Number of factors, for "fa" only (1 <= k < t).
    dim : str
        The dimension: ``"trait"`` or the factor's column name (labels and messages use it).

    Raises
    ------
    FormulaError
        Unknown name, no or duplicated traits, a correlation structure on one trait, bad k.
    """
    traits = tuple(str(x) for x in traits)
    t = len(traits)
    what = "traits" if dim == "trait" else f"levels of {dim!r}"
    if name not in REGISTRY:
        raise FormulaError(f"unknown covariance structure {name!r}; known structures: "
                           f"{', '.join(STRUCTURE_NAMES)}", term=name)
    if t == 0 or len(set(traits)) != t:
        raise FormulaError(f"{name}({dim}) needs at least one level and distinct labels, "
                           f"got {traits}", term=name)
    if name in ("corgh", "corv", "corh") and t < 2:
        raise FormulaError(f"{name}({dim}) models correlations and needs at least 2 {what}, "
                           f"got only {traits[0]!r}", term=name)
    if name not in ("fa", "rr"):
        if k is not None:
            raise FormulaError(f"{name}({dim}) takes no number of factors (got k={k!r}); only "
                               f"fa and rr do", term=name)
        return REGISTRY[name](traits, dim=dim)
    if name == "rr":
        # rr(k) has no specific variances: k = t is a full-rank (Cholesky) unstructured matrix
        if k is None or int(k) != k or not 1 <= k <= t:
            raise FormulaError(f"rr({dim}, {k}) on {t} {what} needs an integer number of factors k "
                               f"with 1 <= k <= {t}: at most {t} factor(s) are possible", term=name)
        return ReducedRank(traits, int(k), dim=dim)
    if k is None or int(k) != k or not 1 <= k < t:
        raise FormulaError(f"fa({dim}, {k}) on {t} {what} needs an integer number of factors k "
                           f"with 1 <= k <= {t - 1}: at most {t - 1} factor(s) are possible", term=name)
    return FactorAnalytic(traits, int(k), dim=dim)


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
