"""Relationship matrices K for random terms: a pedigree's A, a user G, or a user G^-1.

Every source is turned into the same small interface, which the fitting code uses:

    rel.labels     numpy array of normalised label strings (``normalize_ids``)
    rel.kinv()     scipy.sparse CSC K^-1 (full symmetric) in the order of ``labels``
    rel.logdet()   log|K|

A user G is inverted once, when the object is built (dense Cholesky, or CHOLMOD for a
sparse G); a G that is not positive definite raises RelmatError naming the label where
the factorisation failed, labels with identical rows (clones, duplicated genotypes) and
labels with a non-positive diagonal.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import scipy.linalg as la
import scipy.sparse as sp

from mvreml.errors import RelmatError
from mvreml.pedigree import Pedigree, _quote, normalize_ids

__all__ = ["RelationshipMatrix", "as_relmat"]


class RelationshipMatrix:
    """A relationship matrix K among labelled levels, kept as K^-1 and log|K|.

    Build it with ``from_matrix`` (G), ``from_inverse`` (G^-1) or ``from_pedigree``.

    Attributes
    ----------
    labels : numpy.ndarray of str
        Level labels, normalised with ``mvreml.pedigree.normalize_ids``.
    kind : str
        "G", "Ginv" or "pedigree".
    name : str
        Name used in error messages (the ``relmat`` key).
    """

    def __init__(self, labels: np.ndarray, kinv: sp.csc_array, logdet: float, kind: str,
                 name: str = "relmat", diagonal: np.ndarray | None = None):
        self.labels = labels
        self._kinv = kinv
        self._logdet = float(logdet)
        self.kind = kind
        self.name = name
        self._diagonal = diagonal

    def diagonal(self) -> np.ndarray | None:
        """diag(K) in ``labels`` order (1 + F for a pedigree), or None when only K^-1 was given.

        Used for reliabilities: 1 - PEV / (K_ii sigma^2)."""
        return self._diagonal

    def kinv(self) -> sp.csc_array:
        """K^-1 as scipy.sparse CSC (full symmetric), rows/columns in ``labels`` order."""
        return self._kinv.copy()

    def logdet(self) -> float:
        """log|K| (for the log-likelihood)."""
        return self._logdet

    def __len__(self) -> int:
        return int(self.labels.size)

    def __repr__(self) -> str:
        return f"RelationshipMatrix({self.name!r}, {self.kind}, {len(self)} levels)"

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_matrix(cls, matrix, labels=None, name: str = "relmat") -> "RelationshipMatrix":
        """From G (DataFrame with index = columns = labels, or matrix plus ``labels``).

        Raises
        ------
        RelmatError
            Unlabelled, non-square, non-symmetric, non-finite or not positive definite G.
        """
        values, labs = _labelled_square(matrix, labels, name)
        inv, logdet = _invert(values, labs, name, what="G")
        diag = values.diagonal() if sp.issparse(values) else np.diag(values)
        return cls(labs, inv, logdet, "G", name, diagonal=np.asarray(diag, float).copy())

    @classmethod
    def from_inverse(cls, matrix, labels=None, name: str = "relmat") -> "RelationshipMatrix":
        """From a precomputed G^-1 (same input forms as ``from_matrix``).

        log|G| = -log|G^-1| is computed from a Cholesky factor of G^-1.
        """
        values, labs = _labelled_square(matrix, labels, name)
        logdet_inv = _factor_logdet(values, labs, name, what="G^-1")
        kinv = sp.csc_array(values)
        kinv.sum_duplicates()
        kinv.sort_indices()
        return cls(labs, kinv, -logdet_inv, "Ginv", name)

    @classmethod
    def from_pedigree(cls, pedigree: Pedigree, name: str = "relmat") -> "RelationshipMatrix":
        """From a Pedigree: K = A; A^-1 and log|A| are built on first use."""
        return _PedigreeRelmat(pedigree, name)


class _PedigreeRelmat(RelationshipMatrix):
    """A from a pedigree; delegates lazily (A^-1 of a million animals is not free)."""

    def __init__(self, pedigree: Pedigree, name: str):
        self.pedigree = pedigree
        self.kind = "pedigree"
        self.name = name
        self._kinv = None
        self._logdet = None

    @property
    def labels(self) -> np.ndarray:
        return self.pedigree.ids

    def kinv(self) -> sp.csc_array:
        return self.pedigree.ainv()

    def diagonal(self) -> np.ndarray:
        """1 + F, the diagonal of A (true inbreeding even when A^-1 ignores it)."""
        return 1.0 + self.pedigree.inbreeding.to_numpy(dtype=float)

    def logdet(self) -> float:
        if self._logdet is None:
            self._logdet = self.pedigree.logdet_a()
        return self._logdet


# ---------------------------------------------------------------------- helpers
def _labelled_square(matrix, labels, name: str):
    """(values as float ndarray or CSC, normalised unique labels) of a labelled square matrix."""
    if isinstance(matrix, pd.DataFrame):
        if labels is not None:
            raise RelmatError(f"relationship matrix {name!r}: give labels either as the "
                              "DataFrame's index/columns or as `labels`, not both")
        rows, cols = normalize_ids(matrix.index), normalize_ids(matrix.columns)
        if matrix.shape[0] != matrix.shape[1] or set(rows) != set(cols):
            raise RelmatError(f"relationship matrix {name!r}: a DataFrame must be square with "
                              "the same labels as index and columns", labels=[])
        _check_labels(rows, name)
        # columns in the order of the index
        values = matrix.to_numpy(dtype=float)[:, pd.Index(cols).get_indexer(rows)]
        labels = rows
    else:
        if labels is None:
            raise RelmatError(f"relationship matrix {name!r} has no labels: pass a DataFrame "
                              "with index = columns = labels, or (matrix, labels)")
        values = matrix
        labels = normalize_ids(labels)
    if sp.issparse(values):
        values = sp.csc_array(values, dtype=float)
    else:
        values = np.asarray(values, dtype=float)
    n = labels.size
    if values.ndim != 2 or values.shape != (n, n):
        raise RelmatError(f"relationship matrix {name!r} has shape {values.shape} but "
                          f"{n} labels")
    _check_labels(labels, name)
    data = values.data if sp.issparse(values) else values
    if not np.all(np.isfinite(data)):
        raise RelmatError(f"relationship matrix {name!r} has non-finite entries")
    asym = abs(values - values.T)
    scale = max(float(abs(values).max()) if n else 0.0, 1.0)
    if (asym.max() if n else 0.0) > 1e-8 * scale:
        i, j = _argmax_2d(asym)
        raise RelmatError(f"relationship matrix {name!r} is not symmetric: entry "
                          f"({labels[i]!r}, {labels[j]!r}) differs from its transpose",
                          labels=[labels[i], labels[j]])
    return values, labels


def _argmax_2d(m) -> tuple[int, int]:
    if sp.issparse(m):
        m = sp.coo_array(m)
        k = int(np.argmax(m.data))
        return int(m.row[k]), int(m.col[k])
    return tuple(int(x) for x in np.unravel_index(np.argmax(m), m.shape))


def _check_labels(labels: np.ndarray, name: str) -> None:
    blank = pd.isna(labels)
    if blank.any():
        raise RelmatError(f"relationship matrix {name!r} has {int(blank.sum())} missing "
                          "labels (NaN, None or '')")
    dup = pd.Index(labels).duplicated()
    if dup.any():
        bad = pd.unique(labels[dup])
        raise RelmatError(f"relationship matrix {name!r} repeats labels {_quote(bad)}",
                          labels=bad)


def _not_pd(values, labels, name: str, what: str, failed: int | None) -> RelmatError:
    """RelmatError naming the pivot, identical rows and non-positive diagonals."""
    dense = values.toarray() if sp.issparse(values) else values
    parts, named = [], []
    if failed is not None:
        parts.append(f"the Cholesky factorisation failed at label {labels[failed]!r}")
        named.append(labels[failed])
    diag = np.diag(dense)
    bad_diag = labels[diag <= 0]
    if bad_diag.size:
        parts.append(f"non-positive diagonal for {_quote(bad_diag)}")
        named.extend(bad_diag)
    _, group, count = np.unique(dense, axis=0, return_inverse=True, return_counts=True)
    dup = count[group] > 1
    if dup.any():
        groups = [np.flatnonzero(group == g) for g in np.unique(group[dup])]
        text = "; ".join("(" + ", ".join(repr(labels[k]) for k in g) + ")" for g in groups[:5])
        parts.append(f"identical rows (duplicated individuals): {text}")
        named.extend(labels[dup])
    return RelmatError(f"{what} of relationship matrix {name!r} is not positive definite: "
                       + "; ".join(parts) + " (add a small value to the diagonal, or drop "
                       "duplicated individuals)", labels=pd.unique(np.asarray(named, object)))


# A pivot below this fraction of the largest diagonal counts as a failure: an exactly
# singular G (a duplicated individual) factorises with pivots of rounding size.
_PIVOT_RTOL = 1e-10


def _tiny_pivot(pivots: np.ndarray, values) -> int | None:
    scale = float(values.diagonal().max()) if pivots.size else 0.0
    tiny = np.flatnonzero(pivots <= _PIVOT_RTOL * max(scale, 0.0))
    return int(tiny[0]) if tiny.size else None


def _dense_chol(values: np.ndarray, labels, name: str, what: str) -> np.ndarray:
    c, info = la.lapack.dpotrf(values, lower=True, clean=True)
    failed = info - 1 if info > 0 else (None if info == 0 else 0)
    if info == 0:
        failed = _tiny_pivot(np.diag(c) ** 2, values)
    if failed is not None:
        raise _not_pd(values, labels, name, what, failed)
    return c


def _sparse_chol(values: sp.csc_array, labels, name: str, what: str):
    from .cholmod import CholmodNotPositiveDefiniteError, cholesky, failed_column
    try:
        factor = cholesky(sp.csc_matrix(values))
    except CholmodNotPositiveDefiniteError as err:
        raise _not_pd(values, labels, name, what, failed_column(err)) from None
    tiny = _tiny_pivot(factor.D(), values)
    if tiny is not None:
        raise _not_pd(values, labels, name, what, int(factor.P()[tiny]))
    return factor


def _invert(values, labels, name: str, what: str) -> tuple[sp.csc_array, float]:
    """(K^-1 as CSC, log|K|) from K, dense or sparse."""
    if sp.issparse(values):
        factor = _sparse_chol(values, labels, name, what)
        inv = sp.csc_array(factor.inv())
        logdet = factor.logdet()
    else:
        c = _dense_chol(values, labels, name, what)
        logdet = 2.0 * float(np.log(np.diag(c)).sum())
        low, info = la.lapack.dpotri(c, lower=True)
        inv = np.tril(low) + np.tril(low, -1).T
        inv = sp.csc_array(inv)
    inv.sum_duplicates()
    inv.sort_indices()
    return inv, logdet


def _factor_logdet(values, labels, name: str, what: str) -> float:
    if sp.issparse(values):
        return float(_sparse_chol(values, labels, name, what).logdet())
    return 2.0 * float(np.log(np.diag(_dense_chol(values, labels, name, what))).sum())


def _is_square_labelled(df: pd.DataFrame) -> bool:
    if df.shape[0] != df.shape[1] or df.shape[0] == 0:
        return False
    return set(normalize_ids(df.index)) == set(normalize_ids(df.columns))


def as_relmat(obj, name: str) -> RelationshipMatrix:
    """Turn what the user passed in ``relmat={name: obj}`` into a RelationshipMatrix.

    Parameters
    ----------
    obj : Pedigree, RelationshipMatrix, pandas.DataFrame, (matrix, labels) or path
        A DataFrame with index = columns = labels is a G; any other DataFrame with at
        least three columns is a pedigree table (animal, sire, dam); a path is a
        pedigree file.
    name : str
        The ``relmat`` key, used in error messages.

    Raises
    ------
    RelmatError
        For anything else (naming ``name``); PedigreeError for a bad pedigree.
    """
    if isinstance(obj, RelationshipMatrix):
        return obj
    if isinstance(obj, Pedigree):
        return RelationshipMatrix.from_pedigree(obj, name)
    if isinstance(obj, pd.DataFrame):
        if _is_square_labelled(obj):
            return RelationshipMatrix.from_matrix(obj, name=name)
        if obj.shape[1] >= 3:
            return RelationshipMatrix.from_pedigree(Pedigree(obj), name)
        raise RelmatError(f"relmat {name!r}: a DataFrame must be a pedigree (animal, sire, "
                          "dam) or a square matrix with index = columns = labels "
                          f"(got shape {obj.shape})")
    if isinstance(obj, tuple) and len(obj) == 2:
        return RelationshipMatrix.from_matrix(obj[0], obj[1], name=name)
    if isinstance(obj, (str, Path)):
        return RelationshipMatrix.from_pedigree(Pedigree(obj), name)
    raise RelmatError(f"relmat {name!r}: cannot use a {type(obj).__name__} as a relationship "
                      "matrix (give a Pedigree, a pedigree DataFrame or file, a labelled "
                      "square DataFrame, (matrix, labels) or a RelationshipMatrix)")
