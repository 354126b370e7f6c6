"""Public covariance-structure classes with friendly constructors, for embedding programs.

The engine's classes (:mod:`.linear`, :mod:`.correlated`, :mod:`.factor`) take the labels of
the levels of their dimension; these subclasses also take a number of levels, so that a
program can write ``US(3)``, ``FA(6, k=2)`` or ``Corgh(["y1", "y2"])``. They are the same
structures (``isinstance(US(2), Us)``) with the same parameterisation (see the package
notes), and every one of them gives

* ``n_params`` and ``t`` (the number of levels),
* ``matrix(theta)`` -> G (t x t) and ``derivatives(theta)`` -> dG/dtheta (n_params x t x t),
* ``bounds`` -> (lower, upper) box bounds of theta, ``feasible(theta)``,
* ``labels()`` -> the parameters' names, ``kinds()``, ``from_matrix(G)`` -> theta.

A structure built from a number has levels "1", "2", ...; :class:`mvreml.Model` gives a
trait structure built that way the names of the model's traits.
"""
from __future__ import annotations

from collections.abc import Sequence

from mvreml.errors import ArgumentError

from .ar1 import Ar1v
from .correlated import Corgh as _Corgh
from .correlated import Corh as _Corh
from .correlated import Corv as _Corv
from .factor import FactorAnalytic
from .linear import Diag as _Diag
from .linear import Id as _Id
from .linear import Idv as _Idv
from .linear import Us
from .product import Product

__all__ = ["US", "Diag", "Idv", "Id", "Corgh", "Corh", "Corv", "FA", "AR1", "Product", "Levels"]

Levels = int | Sequence[str]


def _levels(cls_name: str, levels, minimum: int) -> tuple[tuple[str, ...], bool]:
    """(labels, built from a number) of a constructor's ``levels`` argument."""
    if isinstance(levels, bool):
        raise ArgumentError(f"{cls_name}(levels): give a number of levels or their labels, not {levels!r}",
                            argument="levels")
    if isinstance(levels, int) or (hasattr(levels, "__index__") and not isinstance(levels, str)):
        n = int(levels)
        labels, auto = tuple(str(i + 1) for i in range(n)), True
    elif isinstance(levels, str):
        raise ArgumentError(f"{cls_name}(levels): got the string {levels!r}; give a number of levels "
                            f"or a list of labels", argument="levels")
    else:
        labels, auto = tuple(str(x) for x in levels), False
    if len(labels) < minimum:
        raise ArgumentError(f"{cls_name} needs at least {minimum} level{'s' if minimum > 1 else ''}, "
                            f"got {len(labels)}", argument="levels")
    if len(set(labels)) != len(labels):
        raise ArgumentError(f"{cls_name}: the labels of the levels repeat ({list(labels)})", argument="levels")
    return labels, auto


def _init(self, base, levels, dim, minimum=1, k=None):
    labels, self.auto_levels = _levels(type(self).__name__, levels, minimum)
    base.__init__(self, labels, k=k, dim=dim)


class US(Us):
    """Unstructured G: its t(t+1)/2 distinct elements, row-wise lower order (G11, G21, G22, ...).

    Parameters
    ----------
    levels : int or sequence of str
        The number of levels (traits) or their labels.
    dim : str
        The dimension's name ("trait", or a factor such as "site"); labels use it.
    """

    def __init__(self, levels: Levels, *, dim: str = "trait"):
        _init(self, Us, levels, dim)


class Diag(_Diag):
    """G = diag(v_1, ..., v_t): heterogeneous variances, no covariance (see :class:`US`)."""

    def __init__(self, levels: Levels, *, dim: str = "trait"):
        _init(self, _Diag, levels, dim)


class Idv(_Idv):
    """G = s I: one common variance (see :class:`US`)."""

    def __init__(self, levels: Levels = 1, *, dim: str = "trait"):
        _init(self, _Idv, levels, dim)


class Id(_Id):
    """G = I: no parameter (a relative matrix in a product; see :class:`US`)."""

    def __init__(self, levels: Levels = 1, *, dim: str = "trait"):
        _init(self, _Id, levels, dim)


class Corgh(_Corgh):
    """G_ij = r_ij sqrt(v_i v_j): the correlations (i > j, row-wise), then v_1..v_t (t >= 2)."""

    def __init__(self, levels: Levels, *, dim: str = "trait"):
        _init(self, _Corgh, levels, dim, minimum=2)


class Corh(_Corh):
    """G = D ((1 - r) I + r 11') D, D = diag(sqrt(v)): r, then v_1..v_t (t >= 2)."""

    def __init__(self, levels: Levels, *, dim: str = "trait"):
        _init(self, _Corh, levels, dim, minimum=2)


class Corv(_Corv):
    """G = s ((1 - r) I + r 11'): r, then s (t >= 2)."""

    def __init__(self, levels: Levels, *, dim: str = "trait"):
        _init(self, _Corv, levels, dim, minimum=2)


class FA(FactorAnalytic):
    """Factor-analytic G = L L' + diag(psi): the loadings factor by factor (L[i, m], i >= m),
    then psi_1..psi_t.

    Parameters
    ----------
    levels : int or sequence of str
        The number of levels or their labels (t >= 2).
    k : int
        Number of factors, 1 <= k < t.
    dim : str
        The dimension's name.
    """

    def __init__(self, levels: Levels, k: int = 1, *, dim: str = "trait"):
        labels, _ = _levels("FA", levels, 2)
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k < len(labels):
            raise ArgumentError(f"FA on {len(labels)} levels needs an integer number of factors k with "
                                f"1 <= k <= {len(labels) - 1}, got {k!r}", argument="k")
        _init(self, FactorAnalytic, levels, dim, minimum=2, k=int(k))


class AR1(Ar1v):
    """First-order autoregressive G_ij = s rho^|i-j| over ordered levels: rho (|rho| < 1), then s
    (see :class:`US`; the levels' order is the order of the series)."""

    def __init__(self, levels: Levels, *, dim: str = "trait"):
        _init(self, Ar1v, levels, dim, minimum=2)


def relabel(structure, labels: Sequence[str]):
    """The same structure on levels named ``labels`` (a structure built from a number of levels
    gets the model's trait names); a product relabels nothing (its factors name their own)."""
    labels = tuple(str(x) for x in labels)
    if not getattr(structure, "auto_levels", False) or tuple(structure.traits) == labels:
        return structure
    if len(labels) != structure.t:
        return structure
    new = object.__new__(type(structure))
    new.auto_levels = False
    base = next(c for c in type(structure).__mro__ if c.__module__ != __name__)
    base.__init__(new, labels, k=structure.k, dim=structure.dim)
    return new
