"""Relationship matrices K for random terms: a pedigree's A, a user G, or a user G^-1.

Every source is turned into the same small interface, which the fitting code uses:

    rel.labels     numpy array of normalised label strings (``normalize_ids``)
    rel.kinv()     scipy.sparse CSC K^-1 (full symmetric) in the order of ``labels``
    rel.logdet()   log|K|

The user says which matrix a table is: ``matrix(G)`` for G, ``inverse(Ginv)`` for G^-1 (or
``RelationshipMatrix.from_matrix`` / ``from_inverse``; ``read_grm`` / ``read_giv`` for
ASReml's three-column files).  A bare labelled matrix in ``relmat=`` is refused, since a
G^-1 taken for G (or the reverse) fits a wrong model without any sign of it.

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

from mvreml import _relmat_io as io
from mvreml.errors import RelmatError
from mvreml.pedigree import Pedigree, _quote, normalize_ids

__all__ = ["RelationshipMatrix", "as_relmat", "matrix", "inverse", "read_grm", "read_giv"]


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
    def from_matrix(cls, matrix, labels=None, name: str | None = None) -> "RelationshipMatrix":
        """From G; see :func:`mvreml.relmat.matrix` for the forms accepted.

        Raises
        ------
        RelmatError
            Unlabelled, non-square, non-symmetric, non-finite or not positive definite G.
        """
        values, labs, name = _values(matrix, labels, name, "G")
        inv, logdet = _invert(values, labs, name, what="G")
        diag = values.diagonal() if sp.issparse(values) else np.diag(values)
        return cls(labs, inv, logdet, "G", name, diagonal=np.asarray(diag, float).copy())

    @classmethod
    def from_inverse(cls, matrix, labels=None, name: str | None = None) -> "RelationshipMatrix":
        """From a precomputed G^-1; see :func:`mvreml.relmat.inverse` for the forms accepted.

        log|G| = -log|G^-1| is computed from a Cholesky factor of G^-1.
        """
        values, labs, name = _values(matrix, labels, name, "G^-1")
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
        if values.nnz < 2 ** 31 - 1 and values.indices.dtype != np.int32:
            # CHOLMOD's int interface: int64 indices make scikit-sparse 0.4 convert (and warn)
            values = sp.csc_array((values.data, values.indices.astype(np.int32),
                                   values.indptr.astype(np.int32)), shape=values.shape)
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


def _identical_rows(values) -> list[np.ndarray]:
    """Groups (index arrays) of two or more identical rows; sparse rows are never densified."""
    if not sp.issparse(values):
        _, group, count = np.unique(values, axis=0, return_inverse=True, return_counts=True)
        group = np.ravel(group)
        return [np.flatnonzero(group == g) for g in np.unique(group[count[group] > 1])]
    m = sp.csr_array(values)
    m.sum_duplicates()
    m.sort_indices()
    seen: dict = {}
    for i in range(m.shape[0]):
        lo, hi = m.indptr[i], m.indptr[i + 1]
        seen.setdefault((m.indices[lo:hi].tobytes(), m.data[lo:hi].tobytes()), []).append(i)
    return [np.array(g) for g in seen.values() if len(g) > 1]


def _not_pd(values, labels, name: str, what: str, failed: int | None) -> RelmatError:
    """RelmatError naming the pivot, identical rows and non-positive diagonals."""
    parts, named = [], []
    if failed is not None:
        parts.append(f"the Cholesky factorisation failed at label {labels[failed]!r}")
        named.append(labels[failed])
    diag = values.diagonal() if sp.issparse(values) else np.diag(values)
    bad_diag = labels[diag <= 0]
    if bad_diag.size:
        parts.append(f"non-positive diagonal for {_quote(bad_diag)}")
        named.extend(bad_diag)
    groups = _identical_rows(values)
    if groups:
        text = "; ".join("(" + ", ".join(repr(labels[k]) for k in g) + ")" for g in groups[:5])
        parts.append(f"identical rows (duplicated individuals): {text}")
        named.extend(labels[np.concatenate(groups)])
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


def _values(obj, labels, name: str | None, what: str):
    """(values as float ndarray or CSC, normalised labels, name) of any form of G or G^-1."""
    if isinstance(obj, (str, Path)):
        path = Path(obj)
        name = name or path.name
        if not path.is_file():
            raise RelmatError(f"relationship matrix {name!r}: file {str(path)!r} not found")
        # the caller said it is a matrix: a file that is not a labelled square one must be
        # three-column (read_triplet_file says so when it is neither)
        if io.file_kind(path) != "square":
            values, labels = io.triplets(io.read_triplet_file(path), labels, name, f"file {str(path)!r}")
            return (*_labelled_square(values, labels, name), name)
        if labels is not None:
            raise RelmatError(f"relationship matrix {name!r}: file {str(path)!r} is a labelled square "
                              "matrix, whose header and first column are its labels; labels= is only "
                              "for three-column (row, column, value) files")
        obj = io.read_square(path, name)
    name = name or "relmat"
    if isinstance(obj, pd.DataFrame) and obj.shape[1] == 3 and not _is_square_labelled(obj):
        if labels is None:
            labels = obj.attrs.get("rowNames")
        values, labels = io.triplets(obj, labels, name)
        return (*_labelled_square(values, labels, name), name)
    return (*_labelled_square(obj, labels, name), name)


_FORMS = """    A square DataFrame with index = columns = labels; a dense or scipy.sparse square
        matrix with ``labels``; a three-column DataFrame (row, column, value) holding one
        triangle (or both) of the nonzeros, row and column being 1-based indices into
        ``labels`` (asreml-R's ``rowNames``, read from ``.attrs["rowNames"]`` when
        ``labels`` is None) or the labels themselves; or the path of a file in either
        layout: a labelled square matrix (header line of labels, first column = labels;
        comma, semicolon, tab or whitespace separated) or ASReml's three-column
        ``.grm`` / ``.giv`` layout."""


def matrix(g, labels=None, name: str | None = None) -> RelationshipMatrix:
    """A relationship matrix given as G (the covariance scale, e.g. a genomic G or A).

    Parameters
    ----------
    g : pandas.DataFrame, numpy.ndarray, scipy.sparse matrix or path
    {forms}
    labels : sequence or path, optional
        Labels of the rows (a path: a file with one label per line, its first field).
    name : str, optional
        Name used in error messages (default: the file name, else "relmat").

    Returns
    -------
    RelationshipMatrix
        ``kind == "G"``; use it as ``relmat={{"G": matrix(g)}}`` with ``vm(factor, G)``.

    Raises
    ------
    RelmatError
        Unlabelled, non-square, non-symmetric, non-finite or not positive definite G,
        a three-column entry listed twice, an index outside the labels.
    """
    return RelationshipMatrix.from_matrix(g, labels, name)


def inverse(ginv, labels=None, name: str | None = None) -> RelationshipMatrix:
    """A relationship matrix given as its inverse G^-1 (asreml-R's ``INVERSE=TRUE``).

    Parameters
    ----------
    ginv : pandas.DataFrame, numpy.ndarray, scipy.sparse matrix or path
    {forms}
    labels : sequence or path, optional
        Labels of the rows (a path: a file with one label per line, its first field).
    name : str, optional
        Name used in error messages (default: the file name, else "relmat").

    Returns
    -------
    RelationshipMatrix
        ``kind == "Ginv"``; log|G| = -log|G^-1| from a Cholesky factor of G^-1.

    Raises
    ------
    RelmatError
        As :func:`matrix`, for G^-1.
    """
    return RelationshipMatrix.from_inverse(ginv, labels, name)


if matrix.__doc__:                     # None under python -OO
    matrix.__doc__ = matrix.__doc__.format(forms=_FORMS)
    inverse.__doc__ = inverse.__doc__.format(forms=_FORMS)


def _three_column(path, labels, name, build) -> RelationshipMatrix:
    path = Path(path)
    name = name or path.name
    if not path.is_file():
        raise RelmatError(f"relationship matrix {name!r}: file {str(path)!r} not found")
    values, labs = io.triplets(io.read_triplet_file(path), labels, name, f"file {str(path)!r}")
    return build(values, labs, name)


def read_giv(path, labels=None, name: str | None = None) -> RelationshipMatrix:
    """Read G^-1 from ASReml's three-column sparse file (``.giv``: row, column, value).

    Parameters
    ----------
    path : str or Path
        One nonzero per line, ``row column value``, separated by whitespace, commas,
        semicolons or tabs (an optional header line is skipped). ASReml writes the lower
        triangle row-wise; the upper triangle, or both with equal values, is read as
        well. The file is symmetric by construction: entry (i, j) is also (j, i).
    labels : sequence or path, optional
        The labels that the 1-based indices count into (asreml-R's ``rowNames``; a path
        is a file with one label per line). Without it, the first two columns are the
        labels themselves (integer labels 1..n are then the same as indices 1..n).
    name : str, optional
        Name used in error messages (default: the file name).

    Returns
    -------
    RelationshipMatrix
        ``kind == "Ginv"``.

    Raises
    ------
    RelmatError
        Not three columns, a non-numeric value, an entry listed twice (or as (i, j) and
        (j, i) with different values), an index outside 1..len(labels), a G^-1 that is
        not positive definite (a label without a diagonal entry among the causes named).
    """
    return _three_column(path, labels, name, RelationshipMatrix.from_inverse)


def read_grm(path, labels=None, name: str | None = None) -> RelationshipMatrix:
    """Read G from a three-column sparse file (ASReml's ``.grm``: row, column, value).

    The layout, ``labels`` and errors are those of :func:`read_giv`; the matrix is G and
    is inverted once here.
    """
    return _three_column(path, labels, name, RelationshipMatrix.from_matrix)


def _stated_kind(df: pd.DataFrame, name: str) -> bool | None:
    """asreml-R's INVERSE attribute, as ``df.attrs["INVERSE"]``: True, False or None (unset)."""
    flag = df.attrs.get("INVERSE")
    if flag is None or isinstance(flag, (bool, np.bool_)):
        return None if flag is None else bool(flag)
    raise RelmatError(f"relmat {name!r}: attrs['INVERSE'] must be True (G^-1) or False (G), got {flag!r}")


def _unstated(name: str, what: str) -> RelmatError:
    return RelmatError(
        f"relmat {name!r}: {what} does not say whether it is G or G^-1 (taking one for the other "
        "fits a wrong model without any error). Say which: mvreml.relmat.matrix(...) for G, "
        "mvreml.relmat.inverse(...) for G^-1 (read_grm / read_giv for a three-column file; a "
        "DataFrame may instead carry attrs['INVERSE'] = False / True, asreml-R's INVERSE attribute)")


def as_relmat(obj, name: str) -> RelationshipMatrix:
    """Turn what the user passed in ``relmat={name: obj}`` into a RelationshipMatrix.

    Parameters
    ----------
    obj : RelationshipMatrix, Pedigree, pandas.DataFrame or path
        A RelationshipMatrix (from :func:`matrix`, :func:`inverse`, :func:`read_grm`,
        :func:`read_giv`); a Pedigree, a pedigree table (animal, sire, dam) or a pedigree
        file. A labelled square DataFrame or a three-column (row, column, value) one is
        used only when its ``.attrs["INVERSE"]`` says whether it is G^-1 (True) or G
        (False), as asreml-R's ``INVERSE`` attribute.
    name : str
        The ``relmat`` key, used in error messages.

    Raises
    ------
    RelmatError
        For a matrix (or matrix file) that does not say whether it is G or G^-1, and for
        anything else that is not a relationship (naming ``name``); PedigreeError for a
        bad pedigree.
    """
    if isinstance(obj, RelationshipMatrix):
        return obj
    if isinstance(obj, Pedigree):
        return RelationshipMatrix.from_pedigree(obj, name)
    if isinstance(obj, pd.DataFrame):
        kind = _stated_kind(obj, name)
        square = _is_square_labelled(obj)
        if square or (obj.shape[1] == 3 and (kind is not None or io.looks_like_triplets(obj))):
            if kind is None:
                raise _unstated(name, "a labelled square DataFrame" if square else
                                "a three-column DataFrame (row, column, value) "
                                f"({io.diagonal_example(obj)})")
            build = RelationshipMatrix.from_inverse if kind else RelationshipMatrix.from_matrix
            return build(obj, name=name)
        if kind is not None:
            raise RelmatError(f"relmat {name!r}: a DataFrame with attrs['INVERSE'] must be a labelled "
                              "square matrix or a three-column (row, column, value) table "
                              f"(got shape {obj.shape})")
        if obj.shape[1] >= 3:
            return RelationshipMatrix.from_pedigree(Pedigree(obj), name)
        raise RelmatError(f"relmat {name!r}: a DataFrame must be a pedigree (animal, sire, "
                          "dam) or a square matrix with index = columns = labels "
                          f"(got shape {obj.shape})")
    if isinstance(obj, tuple) and len(obj) == 2:
        raise _unstated(name, "a (matrix, labels) pair")
    if isinstance(obj, np.ndarray) or sp.issparse(obj):
        raise _unstated(name, f"an unlabelled {type(obj).__name__}")
    if isinstance(obj, (str, Path)):
        path = Path(obj)
        kind = io.file_kind(path) if path.is_file() else "table"
        if kind != "table":
            raise _unstated(name, f"file {str(path)!r} (" + (
                "a labelled square matrix" if kind == "square" else
                f"a three-column (row, column, value) matrix: {io.diagonal_example(path)}") + ")")
        return RelationshipMatrix.from_pedigree(Pedigree(obj), name)
    raise RelmatError(f"relmat {name!r}: cannot use a {type(obj).__name__} as a relationship "
                      "matrix (give a Pedigree, a pedigree DataFrame or file, or "
                      "mvreml.relmat.matrix(G) / mvreml.relmat.inverse(Ginv))")
