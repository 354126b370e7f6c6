"""Reading relationship matrices: labelled square CSV files and three-column sparse tables.

The three-column form is ASReml's ``.giv`` (G^-1) / ``.grm`` (G) file and asreml-R's sparse
``ginverse`` data frame: one line ``row column value`` per nonzero of one triangle, indices
counted from 1 into a list of labels (asreml-R's ``rowNames`` attribute), or labels written in
the first two columns themselves.  Which matrix it is (G or G^-1) is never guessed here: the
caller says so (``mvreml.relmat.matrix`` / ``mvreml.relmat.inverse``).
"""
from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from mvreml.errors import RelmatError
from mvreml.pedigree import normalize_ids

_CANDIDATE_SEPS = ("\t", ",", ";", "|")
_SAMPLE_LINES = 200


def _sample(path: Path, n: int = _SAMPLE_LINES) -> list[str]:
    lines = []
    with open(path, errors="replace") as fh:
        for line in fh:
            if line.strip():
                lines.append(line.rstrip("\r\n"))
                if len(lines) >= n:
                    break
    return lines


def sniff_sep(path) -> str:
    """The field separator of a text table: tab, comma, semicolon, bar, or whitespace.

    A candidate wins when it appears the same (nonzero) number of times on every sampled
    line, quoted text left out; tab is tried first because a comma inside a text field of a
    tab-separated file is more common than the reverse.  Otherwise the candidate most
    frequent on the first line, otherwise runs of whitespace (``r"\\s+"``).
    """
    lines = [re.sub(r'"[^"]*"', "", ln) for ln in _sample(Path(path), 50)]
    if not lines:
        return ","
    for c in _CANDIDATE_SEPS:
        counts = {ln.count(c) for ln in lines}
        if len(counts) == 1 and counts.pop() > 0:
            return c
    best = max(_CANDIDATE_SEPS, key=lines[0].count)
    if lines[0].count(best) > 0:
        return best
    return r"\s+" if any(len(ln.split()) > 1 for ln in lines) else ","


def _numeric(values) -> np.ndarray:
    return pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float)


def _diagonal_rows(a, b) -> np.ndarray:
    """Rows whose first two fields are the same label (a diagonal entry (i, i))."""
    na, nb = normalize_ids(pd.Series(a)), normalize_ids(pd.Series(b))
    return np.asarray(na == nb, dtype=bool) & ~pd.isna(na)


def looks_like_triplets(table: pd.DataFrame) -> bool:
    """True when a 3-column table reads as (row, column, value): a numeric third column and at
    least one diagonal row (i, i).  A pedigree has no row whose animal is its own sire."""
    if table.shape[1] != 3 or len(table) == 0:
        return False
    value = _numeric(table.iloc[:, 2])
    if not np.isfinite(value).all():
        return False
    return bool(_diagonal_rows(table.iloc[:, 0], table.iloc[:, 1]).any())


def _raw_table(path: Path, nrows: int | None = None) -> pd.DataFrame:
    """All fields as text, no header (a header line is the caller's business)."""
    sep = sniff_sep(path)
    try:
        return pd.read_csv(path, sep=sep, header=None, dtype=str, keep_default_na=False,
                           nrows=nrows, skipinitialspace=True)
    except (ValueError, UnicodeDecodeError, OSError) as exc:
        raise RelmatError(f"cannot read relationship file {str(path)!r}: {exc}") from None


def _drop_header(table: pd.DataFrame) -> pd.DataFrame:
    """A first line whose value field is not a number is a header (row, col, value)."""
    if len(table) and np.isnan(_numeric(table.iloc[:1, 2])).all():
        return table.iloc[1:].reset_index(drop=True)
    return table


def _tokens(path: Path) -> list[list[str]]:
    sep = sniff_sep(path)
    lines = _sample(path)
    if sep == r"\s+":
        return [ln.split() for ln in lines]
    return [[f.strip().strip('"') for f in row] for row in csv.reader(lines, delimiter=sep)]


def file_kind(path) -> str:
    """'square' (a labelled square matrix: a header line of labels, then one line per label),
    'triplets' (row, column, value, with a diagonal entry (i, i) somewhere) or 'table'
    (anything else: a pedigree, for the caller to read)."""
    path = Path(path)
    rows = _tokens(path)
    if len(rows) >= 2 and len(rows[0]) == len(rows[1]) - 1:
        rows[0] = [""] + rows[0]                    # R's write.table: no corner field
    complete = len(rows) < _SAMPLE_LINES
    if len(rows) >= 2 and len(rows[0]) >= 2 and all(len(r) == len(rows[0]) for r in rows):
        cols = normalize_ids(rows[0][1:])
        labels = normalize_ids([r[0] for r in rows[1:]])
        values = _numeric([v for r in rows[1:] for v in r[1:]])
        unique = len(set(cols)) == cols.size and len(set(labels)) == labels.size
        fits = set(labels) == set(cols) if complete else set(labels) <= set(cols)
        if unique and fits and np.isfinite(values).all():
            return "square"
    if rows and all(len(r) == 3 for r in rows):
        table = _drop_header(pd.DataFrame(rows, dtype=str))
        if looks_like_triplets(table):
            return "triplets"
    return "table"


def diagonal_example(source) -> str:
    """'line k: "i i value"' (a file) or 'row k: (i, i, value)' (a DataFrame): the first
    diagonal entry of a three-column table, to show why it is not read as a pedigree."""
    if isinstance(source, pd.DataFrame):
        rows = source.iloc[:, :3].astype(str).to_numpy().tolist()
        what = "row"
    else:
        rows, what = _tokens(Path(source)), "line"
    for k, row in enumerate(rows, start=1):
        if len(row) == 3 and _diagonal_rows([row[0]], [row[1]]).all():
            return f"{what} {k}: {' '.join(row)!r} is a diagonal entry (i, i), which a pedigree cannot have"
    return "no diagonal entry among its first lines"


def read_square(path, name: str) -> pd.DataFrame:
    """A labelled square matrix file: a header line of labels, then label, values per line."""
    path = Path(path)
    try:
        mat = pd.read_csv(path, sep=sniff_sep(path), index_col=0)
    except (ValueError, UnicodeDecodeError, OSError) as exc:
        raise RelmatError(f"cannot read relationship file {str(path)!r}: {exc}") from None
    if mat.shape[0] != mat.shape[1]:
        raise RelmatError(f"relationship matrix {name!r}: file {str(path)!r} is neither a labelled square "
                          f"matrix (it is {mat.shape[0]} x {mat.shape[1]} after the label column) nor a "
                          "three-column (row, column, value) file")
    mat.index = normalize_ids(mat.index)
    mat.columns = normalize_ids(mat.columns)
    return mat


def read_labels(labels, name: str) -> np.ndarray:
    """Labels as given (list-like) or read from a file (first field of each line)."""
    if isinstance(labels, (str, Path)):
        path = Path(labels)
        if not path.is_file():
            raise RelmatError(f"relationship matrix {name!r}: labels file {str(path)!r} not found")
        labels = _raw_table(path).iloc[:, 0]
    return normalize_ids(labels)


def read_triplet_file(path) -> pd.DataFrame:
    """The (row, column, value) lines of a three-column file, as text."""
    table = _raw_table(Path(path))
    if table.shape[1] != 3:
        raise RelmatError(f"relationship file {str(path)!r} has {table.shape[1]} columns: neither a labelled "
                          "square matrix (a header line of labels, then one line per label) nor the three "
                          "(row, column, value) of a sparse matrix file")
    return _drop_header(table)


def triplets(table: pd.DataFrame, labels, name: str, source: str = "table"):
    """(symmetric CSC matrix, labels) from a (row, column, value) table.

    With ``labels`` the first two columns are 1-based indices into them; without, they are
    the labels themselves (integers are sorted numerically, other labels kept in order of
    first appearance).  Each unordered pair may be given once (either triangle) or twice
    as (i, j) and (j, i) with the same value; anything else is a RelmatError.
    """
    if table.shape[1] != 3:
        raise RelmatError(f"relationship matrix {name!r}: a sparse {source} needs three columns "
                          f"(row, column, value), got {table.shape[1]}")
    line = np.arange(len(table)) + 1
    value = _numeric(table.iloc[:, 2])
    bad = ~np.isfinite(value)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise RelmatError(f"relationship matrix {name!r}: value {table.iloc[k, 2]!r} of entry {line[k]} "
                          f"of the {source} is not a finite number")
    if labels is not None:
        labels = read_labels(labels, name)
        idx = [_numeric(table.iloc[:, c]) for c in (0, 1)]
        for c in (0, 1):
            ok = np.isfinite(idx[c]) & (idx[c] == np.floor(idx[c])) & (idx[c] >= 1) & (idx[c] <= labels.size)
            if not ok.all():
                k = int(np.flatnonzero(~ok)[0])
                raise RelmatError(f"relationship matrix {name!r}: entry {line[k]} of the {source} has index "
                                  f"{table.iloc[k, c]!r}, but the indices count 1..{labels.size} into the "
                                  f"{labels.size} labels given")
        row, col = (x.astype(np.int64) - 1 for x in idx)
    else:
        a, b = normalize_ids(table.iloc[:, 0]), normalize_ids(table.iloc[:, 1])
        both = np.concatenate([a, b])
        if pd.isna(both).any():
            k = int(np.flatnonzero(pd.isna(both))[0]) % len(table)
            raise RelmatError(f"relationship matrix {name!r}: entry {line[k]} of the {source} has no label")
        uniq = pd.unique(both)
        num = _numeric(uniq)
        if np.isfinite(num).all():
            uniq = uniq[np.argsort(num, kind="stable")]
        labels = np.asarray(uniq, dtype=object)
        index = pd.Index(labels)
        row, col = index.get_indexer(a), index.get_indexer(b)
    return _symmetric(row, col, value, labels, name, source, line), labels


def _symmetric(row, col, value, labels, name, source, line):
    lo, hi = np.minimum(row, col), np.maximum(row, col)
    n = labels.size
    key = lo * n + hi
    order = np.lexsort((row > col, key))      # per pair: (i<=j) first, then (i>j)
    key, r, c, v, ln = key[order], row[order], col[order], value[order], line[order]
    same = key[1:] == key[:-1]
    if same.any():
        # a pair listed twice is the same entry only as (i, j) and (j, i) with the same value
        k = np.flatnonzero(same)
        mirrored = (r[k] != r[k + 1]) & (r[k] == c[k + 1])
        if not mirrored.all():
            j = int(k[~mirrored][0])
            raise RelmatError(f"relationship matrix {name!r}: entry ({labels[r[j]]!r}, {labels[c[j]]!r}) is "
                              f"listed twice in the {source} (entries {ln[j]} and {ln[j + 1]})",
                              labels=[labels[r[j]], labels[c[j]]])
        differ = v[k] != v[k + 1]
        if differ.any():
            j = int(k[differ][0])
            first, second = sorted((j, j + 1), key=lambda t: ln[t])
            raise RelmatError(f"relationship matrix {name!r} is not symmetric: entries {ln[first]} and "
                              f"{ln[second]} of the {source} give ({labels[r[j]]!r}, {labels[c[j]]!r}) the "
                              f"values {float(v[first])!r} and {float(v[second])!r}",
                              labels=[labels[r[j]], labels[c[j]]])
        keep = np.ones(key.size, bool)
        keep[k + 1] = False
        r, c, v = r[keep], c[keep], v[keep]
    off = r != c
    rows = np.concatenate([r, c[off]])
    cols = np.concatenate([c, r[off]])
    vals = np.concatenate([v, v[off]])
    m = sp.csc_array((vals, (rows, cols)), shape=(n, n))
    m.sort_indices()
    return m
