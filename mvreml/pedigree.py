"""Pedigree: read, validate, sort and renumber an animal-sire-dam table; F, A^-1, log|A|.

Labels
------
Animal labels are always kept as **strings** (``normalize_ids``): an integer 1097, a float
1097.0 (pandas reads integer IDs as floats when a column has missing values), and the
strings "1097" / "1097.0" are the same animal "1097".  Other strings are kept verbatim
apart from surrounding blanks ("007" stays "007").  In a pedigree table 0, NaN, None, "",
"0", "NA", "nan" and "." mean *unknown*.  Data columns must be mapped to animals with the
same function (``Pedigree.index_of`` does it), so the type the user happened to read
never matters.

Internal order
--------------
Animals are numbered 0..n-1 with parents before offspring.  If the table already lists
parents first, its order is kept (parents missing from the animal column are put in
front, in order of first appearance); otherwise animals are sorted by generation number
(0 = no known parent, else 1 + the older parent's generation), ties in table order.

A^-1
----
Henderson's rules with Quaas' Mendelian-sampling variances d_i = 1/2 - (F_s + F_d)/4
(F = -1 for an unknown parent).  ``inbreeding=False`` builds A^-1 and log|A| with
d_i = 1/2, 3/4 or 1 (both, one or no parent known), ignoring inbreeding as BLUPF90 does
by default; ``.inbreeding`` still reports the true F.  An animal whose parents both have
F = 1 to double precision (a long line of selfing or sib mating) has d_i = 0 within rounding:
A is then singular and ``ainv`` / ``logdet_a`` raise a PedigreeError naming the animals
(a PedigreeWarning when d_i < 1e-8).

Labels of unsigned 64-bit integer IDs above 2^63 are their exact decimal strings.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from mvreml._core import ainv as _kern
from mvreml._inbreeding import inbreeding_coefficients
from mvreml.errors import PedigreeError, PedigreeWarning, warn

__all__ = ["Pedigree", "normalize_ids"]

log = logging.getLogger("mvreml")

UNKNOWN = ""    # internal code of an unknown parent in the string path
_UNKNOWN_TEXT = ["", "0", "NA", "na", "N/A", "NaN", "nan", "None", "."]
_HEADER_NAMES = {"animal", "id", "ind", "individual", "calf", "pig", "tree", "plant", "progeny",
                 "sire", "dam", "father", "mother", "dad", "mum", "mom", "male", "female"}
_SHOWN = 10  # labels quoted in an error message before "..."
_TINY_D = 1e-8  # d_i below this: A is near singular (condition number above ~1 / d_i)
# d_i below this are within ~1000 rounding errors of 0 (d = 1/2 - (F_s + F_d)/4 with F near
# 1 has an absolute error of a few eps): no correct digits left, A is singular in doubles
_SINGULAR_D = 1000 * np.finfo(float).eps
_LOG_MIN = 100_000  # animals; A^-1 of smaller pedigrees is not logged


def _quote(labels, limit: int = _SHOWN) -> str:
    labels = list(labels)
    text = ", ".join(repr(str(x)) for x in labels[:limit])
    return text + (f", ... ({len(labels)} in all)" if len(labels) > limit else "")


def _integer_ids(values: pd.Series) -> np.ndarray | None:
    """int64 IDs (0 = unknown) when ``values`` is numeric and integral, else None."""
    dtype = values.dtype
    if pd.api.types.is_bool_dtype(dtype) or not pd.api.types.is_numeric_dtype(dtype):
        return None
    if pd.api.types.is_unsigned_integer_dtype(dtype) and values.size \
            and int(values.max()) >= 2 ** 63:
        return None                 # beyond int64: kept exact as decimal strings instead
    if pd.api.types.is_integer_dtype(dtype) and not values.hasnans:
        return values.to_numpy(dtype=np.int64)
    v = values.to_numpy(dtype=np.float64, na_value=np.nan)
    known = np.isfinite(v)
    if np.any(np.isinf(v)) or not np.array_equal(v[known], np.floor(v[known])) \
            or (known.any() and np.abs(v[known]).max() >= 2.0 ** 53):
        return None
    return np.where(known, v, 0.0).astype(np.int64)


def normalize_ids(values) -> np.ndarray:
    """Normalise animal or level labels to strings, the way a Pedigree stores them.

    Parameters
    ----------
    values : array-like or scalar
        Integers, floats, strings or a mixture (e.g. a data column).

    Returns
    -------
    numpy.ndarray of object
        str labels: integral numbers as decimal integers (1097.0 -> "1097"), strings
        stripped with a trailing ".0..." removed from integral numerals ("1097.0" ->
        "1097"); missing values (NaN, None, pd.NA, "") are ``np.nan``.  0 is a label
        here ("0"); only a pedigree reads it as an unknown parent.
    """
    if np.ndim(values) == 0:
        values = [values]
    s = values if isinstance(values, pd.Series) else pd.Series(list(values) if isinstance(
        values, (list, tuple)) else np.asarray(values))
    s = s.reset_index(drop=True)
    missing = np.array(s.isna(), dtype=bool)
    ints = None if missing.all() and s.dtype == object else _integer_ids(s)
    if ints is not None:
        out = ints.astype(str).astype(object)
    else:
        text = s.astype(object).where(~missing, "").astype(str).str.strip()
        # "1097.0" -> "1097"; the regex only runs on the few candidates (it is slow)
        cand = np.flatnonzero(np.array(text.str.endswith((".", "0")), dtype=bool))
        out = np.array(text, dtype=object)
        if cand.size:
            out[cand] = np.array(text.iloc[cand].str.replace(r"^([+-]?\d+)\.0*$", r"\1",
                                                             regex=True), dtype=object)
        missing |= out == ""
    out[missing] = np.nan
    return out


def _has_header(path: Path, sep: str) -> bool:
    """Guess whether a pedigree file starts with a header line."""
    head = pd.read_csv(path, sep=sep, header=None, dtype=str, keep_default_na=False, nrows=50,
                       skip_blank_lines=True)
    first = [str(x).strip().strip('"').lower() for x in head.iloc[0, :3]]
    if any(f in _HEADER_NAMES for f in first):
        return True
    numeric = pd.to_numeric(head.iloc[:, 0], errors="coerce").notna().to_numpy()
    return len(numeric) > 1 and not numeric[0] and bool(numeric[1:].all())


def _read_table(path, header: bool | None = None) -> pd.DataFrame:
    """Read a CSV (comma, semicolon or tab) or whitespace-separated pedigree file."""
    path = Path(path)
    if not path.is_file():
        raise PedigreeError(f"pedigree file {str(path)!r} not found")
    with open(path) as fh:
        first = next((line for line in fh if line.strip()), "")
    sep = next((c for c in ",;\t" if c in first), r"\s+")
    if header is None:
        header = _has_header(path, sep)
    # IDs are inferred like pd.read_csv does for data files, so that both sides agree
    return pd.read_csv(path, sep=sep, header=0 if header else None, na_values=[".", "NA"],
                       skipinitialspace=True)


def _encode(columns: list[pd.Series]) -> tuple[np.ndarray, "_Labels"]:
    """Codes (3, m) with -1 for unknown, and the labels of codes 0..n-1.

    Codes follow the first appearance in animal, then sire, then dam column, so the
    animals of column 1 come first.
    """
    ints = [_integer_ids(c) for c in columns]
    if all(x is not None for x in ints):
        flat, unknown = np.concatenate(ints), 0          # fast path: numeric IDs
    else:
        flat, unknown = np.concatenate([normalize_ids(c) for c in columns]), UNKNOWN
        flat[pd.isna(flat) | pd.Series(flat).isin(_UNKNOWN_TEXT).to_numpy()] = UNKNOWN
    codes, uniq = pd.factorize(flat)
    uniq = np.asarray(uniq)
    hit = np.flatnonzero(uniq == unknown)
    if hit.size:
        u = hit[0]
        codes = np.where(codes == u, -1, codes - (codes > u))
        uniq = np.delete(uniq, u)
    return codes.astype(np.int64).reshape(3, -1), _Labels(uniq)


class _Labels:
    """Labels as int64 IDs or normalised strings; strings are made only when asked for
    (converting a million integers to Python strings costs more than sorting them)."""

    def __init__(self, raw: np.ndarray):
        self.raw = raw

    @property
    def size(self) -> int:
        return int(self.raw.size)

    def __getitem__(self, key) -> np.ndarray:
        part = self.raw[key]
        if part.dtype.kind not in "iu":
            return part
        # str of Python ints: the same text as numpy's astype(str), made in one pass
        return np.fromiter(map(str, part.tolist()), dtype=object, count=part.size)

    def take(self, order: np.ndarray) -> "_Labels":
        return _Labels(self.raw[order])

    def append(self, labels: np.ndarray) -> "_Labels":
        base = self.raw if self.raw.dtype == object else self[:]
        return _Labels(np.concatenate([base, labels.astype(object)]))


def _cycle_message(sire, dam, gen, labels) -> PedigreeError:
    """Error naming one cycle (every unplaced animal has an unplaced parent, so walking
    up through unplaced parents must revisit an animal)."""
    bad = np.flatnonzero(gen < 0)
    seen: dict[int, int] = {}
    path: list[int] = []
    v = int(bad[0])
    while v not in seen:
        seen[v] = len(path)
        path.append(v)
        s = sire[v]
        v = int(s) if s >= 0 and gen[s] < 0 else int(dam[v])
    cycle = list(labels[np.array(path[seen[v]:])])
    steps = ", ".join(f"{a!r} is a child of {b!r}" for a, b in zip(cycle, cycle[1:] + cycle[:1]))
    return PedigreeError(
        f"animal {cycle[0]!r} is its own ancestor: {steps} "
        f"({bad.size} animals are on or below a pedigree cycle)", animals=cycle)


class Pedigree:
    """A validated pedigree with inbreeding coefficients and the inverse relationship matrix.

    Parameters
    ----------
    table : pandas.DataFrame or path
        First three columns animal, sire, dam (any names); a file is CSV (, ; or tab) or
        whitespace-separated, with or without a header line (guessed; see ``header``).
    inbreeding : bool
        Build A^-1 and log|A| accounting for inbreeding (Quaas 1976).  False ignores F
        there (BLUPF90's default); ``.inbreeding`` is the true F either way.
    add_founders : bool
        Parents absent from the animal column are added as founders (PedigreeWarning);
        False makes them a PedigreeError.
    allow_sire_dam : bool
        An animal used both as sire and as dam is a PedigreeError unless this is True
        (then a PedigreeWarning; selfing plants, hermaphrodites).
    header : bool, optional
        For a file only: whether its first line is a header (default: guessed).

    Raises
    ------
    PedigreeError
        Cycles (an animal its own ancestor, the cycle named), an animal listed twice with
        different parents, an animal its own parent, sire/dam conflicts, a row without an
        animal ID; ``.animals`` holds the animals at fault.
    """

    def __init__(self, table, inbreeding: bool = True, add_founders: bool = True,
                 allow_sire_dam: bool = False, *, header: bool | None = None):
        if isinstance(table, (str, Path)):
            table = _read_table(table, header)
        if not isinstance(table, pd.DataFrame) or table.shape[1] < 3:
            raise PedigreeError("a pedigree needs a table with three columns animal, sire, dam "
                                f"(got {type(table).__name__} of shape {np.shape(table)})")
        (a, s, d), labels = _encode([table.iloc[:, k] for k in range(3)])
        if np.any(a < 0):
            rows = np.flatnonzero(a < 0)
            raise PedigreeError(f"{rows.size} pedigree rows have no animal ID "
                                f"(rows {_quote(rows + 1)}, counting from 1)")
        self._check_rows(a, s, d, labels)
        n_listed = int(a.max()) + 1 if a.size else 0
        n = labels.size
        # first occurrence of each listed animal; conflicting duplicates are an error. Codes
        # follow first appearance, so a table without repeated animals has a = 0, 1, 2, ...
        # and nothing to compare (the sort of a million codes saved)
        if a.size == n_listed:
            first = a
            clash = np.zeros(0, bool)
        else:
            _, first = np.unique(a, return_index=True)
            clash = (s != s[first][a]) | (d != d[first][a])
        if clash.any():
            bad = np.unique(a[clash])
            lab = np.append(labels[:], "unknown")            # code -1 -> "unknown"
            detail = "; ".join(
                f"{lab[k]!r}: " + " vs ".join(sorted({f"sire {lab[s[r]]!r}, dam {lab[d[r]]!r}"
                                                      for r in np.flatnonzero(a == k)}))
                for k in bad[:5])
            raise PedigreeError(
                f"{bad.size} animals are listed more than once with different parents: "
                f"{_quote(labels[bad])} ({detail})", animals=labels[bad])
        self.n_duplicates = int(a.size - n_listed)
        sire = np.full(n, -1, np.int64)
        dam = np.full(n, -1, np.int64)
        sire[:n_listed], dam[:n_listed] = s[first], d[first]
        self.n_founders_added = n - n_listed
        if self.n_founders_added:
            added = labels[n_listed:]
            if not add_founders:
                raise PedigreeError(f"{added.size} parents are not listed as animals: "
                                    f"{_quote(added)}", animals=added)
            warn(f"{added.size} parents not listed as animals were added as founders: "
                 f"{_quote(added)}", PedigreeWarning)
        self._check_sexes(sire, dam, labels, allow_sire_dam)
        order, gen = self._sort(sire, dam, n_listed, labels)
        rank = np.empty(n, np.int64)
        rank[order] = np.arange(n)
        self._set(labels.take(order), np.where(sire[order] >= 0, rank[sire[order]], -1),
                  np.where(dam[order] >= 0, rank[dam[order]], -1), gen[order], inbreeding)

    # ------------------------------------------------------------------ validation
    @staticmethod
    def _check_rows(a, s, d, labels) -> None:
        own = (s == a) | (d == a)
        if own.any():
            bad = np.unique(a[own])
            raise PedigreeError(f"{bad.size} animals are their own parent: {_quote(labels[bad])}",
                                animals=labels[bad])

    @staticmethod
    def _check_sexes(sire, dam, labels, allow: bool) -> None:
        is_sire = np.zeros(labels.size, bool)
        is_dam = np.zeros(labels.size, bool)
        is_sire[sire[sire >= 0]] = True
        is_dam[dam[dam >= 0]] = True
        both = np.flatnonzero(is_sire & is_dam)
        if both.size:
            msg = f"{both.size} animals are used both as sire and as dam: {_quote(labels[both])}"
            if not allow:
                raise PedigreeError(msg + " (pass allow_sire_dam=True, or --allow-sire-dam on the command line, "
                                    "if that is right)",
                                    animals=labels[both])
            warn(msg, PedigreeWarning)

    @staticmethod
    def _sort(sire, dam, n_listed, labels) -> tuple[np.ndarray, np.ndarray]:
        """Order (new -> old) with parents first, and generation numbers (old numbering)."""
        n = sire.size
        gen = np.empty(n, np.int64)
        # added founders first, then the table's order if it already has parents first: then
        # one pass in that order gives the generations (and there can be no cycle)
        order = np.concatenate([np.arange(n_listed, n), np.arange(n_listed)])
        if _kern.generations_in_order(sire, dam, order, gen):
            return order, gen
        placed = _kern.generations(sire, dam, np.empty(n + 1, np.int64),
                                   np.empty(2 * n, np.int64), np.empty(n, np.int64),
                                   np.empty(n, np.int64), gen)
        if placed < n:
            raise _cycle_message(sire, dam, gen, labels)
        return order[np.argsort(gen[order], kind="stable")], gen

    def _set(self, labels: _Labels, sire, dam, generation, inbreeding: bool) -> None:
        if labels.size >= 2 ** 28:
            raise PedigreeError(f"pedigree of {labels.size} animals is too large (limit 2^28)")
        self._labels = labels
        self._ids = None
        self.sire = sire.astype(np.int64)
        self.dam = dam.astype(np.int64)
        self.generation = generation.astype(np.int64)
        self.use_inbreeding = bool(inbreeding)
        self._F = self._d = None
        self._d_checked = False
        self._index = None

    # ------------------------------------------------------------------ public API
    @property
    def ids(self) -> np.ndarray:
        """Animal labels (normalised strings, object array) in internal order."""
        if self._ids is None:
            self._ids = self._labels[:]
        return self._ids

    def __len__(self) -> int:
        return self._labels.size

    def __repr__(self) -> str:
        founders = int(np.count_nonzero((self.sire < 0) & (self.dam < 0)))
        depth = int(self.generation.max()) + 1 if len(self) else 0
        return (f"Pedigree({len(self)} animals, {founders} founders "
                f"({self.n_founders_added} added), {depth} generations, "
                f"inbreeding={self.use_inbreeding})")

    def _inbreeding(self) -> tuple[np.ndarray, np.ndarray]:
        """(F, d with inbreeding), computed once."""
        if self._F is None:
            F = inbreeding_coefficients(self.sire, self.dam, self.generation)
            Fp = np.append(F, -1.0)                     # index -1 -> unknown parent, F = -1
            self._F, self._d = F, 0.5 - 0.25 * (Fp[self.sire] + Fp[self.dam])
        return self._F, self._d

    @property
    def inbreeding(self) -> pd.Series:
        """Inbreeding coefficients F by animal label (always the true F).

        Computed once (``mvreml._inbreeding``): by families of a key parent on ordinary
        pedigrees, using up to 4 threads on large ones (fewer if OMP_NUM_THREADS says so)
        with the same result for any number of threads; by the tabular method over the
        animals alive on deep inbred lines, in time linear in their depth.  Pedigrees of
        100,000 animals or more log their progress on the "mvreml" logger (INFO).
        """
        return pd.Series(self._inbreeding()[0], index=pd.Index(self.ids, name="animal"),
                         name="F")

    @property
    def d(self) -> np.ndarray:
        """Mendelian-sampling variances d_i used for A^-1 (see ``inbreeding``)."""
        if self.use_inbreeding:
            return self._inbreeding()[1]
        known = (self.sire >= 0).astype(float) + (self.dam >= 0)
        return 1.0 - 0.25 * known

    @property
    def dinv(self) -> np.ndarray:
        """1 / d_i, the diagonal of D^-1 in A^-1 = T' D^-1 T."""
        return 1.0 / self.d

    def _checked_d(self) -> np.ndarray:
        """d for A^-1 and log|A|: PedigreeError if A is singular to double precision (some
        d_i < ``_SINGULAR_D``), a PedigreeWarning if it is near singular (d_i < ``_TINY_D``),
        naming the animals."""
        d = self.d
        if self._d_checked:
            return d
        low = np.flatnonzero(d < _TINY_D)
        if low.size == 0:
            self._d_checked = True
            return d
        F = self._inbreeding()[0]                       # low: in pedigree order, oldest first
        ids = self.ids
        lab = np.append(ids, "unknown")
        shown = "; ".join(f"{ids[i]!r} (sire {lab[self.sire[i]]!r}, dam {lab[self.dam[i]]!r}, "
                          f"F of the parents {F[self.sire[i]]:.17g}, "
                          f"{F[self.dam[i]]:.17g}: d = {d[i]:.3g})" for i in low[:3])
        cause = ("d_i = 1/2 - (F_sire + F_dam)/4 is the Mendelian-sampling variance, the part "
                 "of A_ii not explained by the parents; it vanishes when both parents have F "
                 "near 1 (many generations of selfing or sib mating)")
        advice = ("Pedigree(..., inbreeding=False) builds A^-1 with d_i = 1/2, 3/4, 1 instead, "
                  "or drop the oldest generations of the inbred line")
        smallest = float(d[low].min())
        if smallest < _SINGULAR_D:
            bad = low[d[low] < _SINGULAR_D]
            raise PedigreeError(
                f"A is singular to double precision: {bad.size} animals have d_i below "
                f"{_SINGULAR_D:.2g} (within rounding error of 0: each is genetically identical "
                f"to its parents): {shown}. {cause}. {advice}.", animals=ids[bad])
        warn(
            f"A is near singular: {low.size} animals have d_i below {_TINY_D:g} (smallest "
            f"{smallest:.3g}), so A^-1 has entries near {1.0 / smallest:.3g} and the "
            f"mixed-model equations may fail to factorize or lose precision: {shown}. "
            f"{cause}. {advice}.", PedigreeWarning)
        self._d_checked = True                          # warned once, not at every use
        return d

    def ainv(self) -> sp.csc_array:
        """A^-1 (full symmetric, scipy.sparse CSC) in the order of ``ids``.

        Raises
        ------
        PedigreeError
            If A is singular to double precision: an animal whose parents both have F = 1
            to ~13 digits has d_i at the rounding error of 0 (a PedigreeWarning when d_i
            is below 1e-8: A is near singular).
        """
        n = len(self)
        t0 = time.perf_counter()
        dinv = 1.0 / self._checked_d()
        known_s, known_d = self.sire >= 0, self.dam >= 0
        cap = n + 2 * int(known_s.sum() + known_d.sum() + (known_s & known_d).sum())
        indptr = np.empty(n + 1, np.int32)
        indices = np.empty(cap, np.int32)
        data = np.empty(cap)
        nnz = _kern.ainv_csc(self.sire, self.dam, dinv, indptr, indices, data,
                             np.empty(n, np.int32))
        out = sp.csc_array((data[:nnz], indices[:nnz], indptr), shape=(n, n))
        out.has_sorted_indices = True
        out.has_canonical_format = True
        if n >= _LOG_MIN:
            log.info("A^-1 of %d animals: %d nonzeros in %.2f s", n, nnz,
                     time.perf_counter() - t0)
        return out

    def logdet_a(self) -> float:
        """log|A| = sum log d_i, consistent with ``ainv()`` (and its PedigreeError)."""
        return float(np.log(self._checked_d()).sum())

    def index_of(self, labels) -> np.ndarray:
        """Positions (int64) of ``labels`` in ``ids``; PedigreeError names those absent."""
        if self._index is None:
            self._index = pd.Index(self.ids)
        keys = normalize_ids(labels)
        pos = self._index.get_indexer(keys)
        if np.any(pos < 0):
            bad = pd.unique(keys[pos < 0])
            raise PedigreeError(f"{bad.size} animals are not in the pedigree: {_quote(bad)} "
                                "(Pedigree.add_animals adds them as founders)", animals=bad)
        return pos.astype(np.int64)

    def add_animals(self, labels) -> "Pedigree":
        """A new Pedigree with those of ``labels`` not yet in it appended as founders.

        For data animals absent from the pedigree (a PedigreeWarning counts them).
        """
        keys = pd.unique(normalize_ids(labels))
        keys = keys[~pd.isna(keys)]
        new = keys[pd.Index(self.ids).get_indexer(keys) < 0].astype(object)
        out = object.__new__(Pedigree)
        out.n_duplicates, out.n_founders_added = self.n_duplicates, self.n_founders_added + new.size
        none = np.full(new.size, -1, np.int64)
        out._set(self._labels.append(new), np.concatenate([self.sire, none]),
                 np.concatenate([self.dam, none]),
                 np.concatenate([self.generation, np.zeros(new.size, np.int64)]),
                 self.use_inbreeding)
        if new.size:
            warn(f"{new.size} animals absent from the pedigree were added as founders: "
                 f"{_quote(new)}", PedigreeWarning)
        return out

    def to_frame(self) -> pd.DataFrame:
        """Table animal, sire, dam (NaN unknown), generation, F in internal order."""
        lab = np.append(self.ids, np.nan)       # index -1 -> unknown
        return pd.DataFrame({"animal": self.ids, "sire": lab[self.sire],
                             "dam": lab[self.dam], "generation": self.generation,
                             "F": self._inbreeding()[0]})
