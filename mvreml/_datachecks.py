"""Checks of the data columns a model uses, and the namespace its fixed formula runs in.

``build_design`` calls these before it builds matrices, so that what a float64 model cannot
hold (complex numbers, +-inf, integers beyond 2^53, covariates whose squares overflow) and
what would silently change the model (blank factor levels, the text "nan", integer codes
fitted as covariates) is refused or announced, naming the column and row.
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from .errors import DataError, DataWarning, warn
from .formula import FixedSpec

# float64 holds every integer up to 2^53 exactly; beyond, the cast to float rounds
_EXACT_INT = 2 ** 53
# an integer column with this few distinct values (but more than two: a 0/1 column spans the
# same space as a factor) may be a code of levels fitted, by R's rule, as a covariate
_FEW_CODES = 20
# Text that pandas writes for a missing value turned into a string (astype(str))
_MISSING_TEXT = frozenset({"nan", "none", "<na>", "nat"})
# a fixed-effect column beyond this magnitude (or, nonzero, below its inverse) over- or
# underflows once the mixed-model equations square it
MAGNITUDE = 1e150


def formula_context() -> dict:
    """The names a fixed formula may call, and nothing else: formulaic would otherwise
    evaluate in the namespace of its caller, where ``log`` is design.py's logger.
    formulaic adds its own transforms (C, I, poly, scale, center, bs, ...) beneath these."""
    from formulaic.transforms import C

    names = ("abs", "sqrt", "exp", "expm1", "log", "log1p", "log2", "log10", "sin", "cos", "tan",
             "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh", "floor", "ceil", "trunc", "round",
             "sign", "square", "cbrt", "power", "maximum", "minimum", "where", "clip")
    context = {name: getattr(np, name) for name in names}
    # R's spellings of the same functions, and R's factor() for formulaic's C()
    context.update(np=np, numpy=np, asin=np.arcsin, acos=np.arccos, atan=np.arctan,
                   ceiling=np.ceil, pmax=np.maximum, pmin=np.minimum, factor=C, C=C)
    context.update(pol=_pol, leg=_leg)
    return context


def _basis_transform(kind: str):
    """pol(x, k) / leg(x, k) in a fixed formula: the non-constant columns of the same basis as
    in random terms (mvreml.basis), fitted on the data and kept (stateful) for new data."""
    from formulaic.transforms import stateful_transform

    from . import basis

    @stateful_transform
    def transform(x, k: int = 1, _state: dict = {}):  # noqa: B006  (formulaic replaces _state)
        x = np.asarray(x, dtype=float)
        if "params" not in _state:
            _state["params"] = basis.fit(kind, int(k), x[np.isfinite(x)], f"{kind}(x, {k})", "x")
        B = basis.evaluate(_state["params"], x)[:, 1:]
        return pd.DataFrame(B, columns=[str(j) for j in range(1, B.shape[1] + 1)])

    transform.__name__ = kind
    return transform


_pol = _basis_transform("pol")
_leg = _basis_transform("leg")


def is_numeric(col: pd.Series) -> bool:
    """Numeric and not boolean (a covariate or a response can be one)."""
    return pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)


def check_numeric_values(col: pd.Series, name: str, what: str, rows) -> None:
    """Refuse what a float64 model cannot hold (complex, +-inf); announce integers that the
    float cast rounds. ``rows``: boolean mask of the rows the model uses (None: all)."""
    if pd.api.types.is_complex_dtype(col):
        raise DataError(f"{what} {name!r} is complex (dtype {col.dtype}): give its real part, "
                        "or its modulus, as a real column", column=name)
    rows = np.ones(len(col), bool) if rows is None else rows
    if pd.api.types.is_integer_dtype(col):
        np_dtype = np.dtype(getattr(col.dtype, "numpy_dtype", col.dtype))   # Int64 -> int64
        values = col.to_numpy(dtype=np_dtype, na_value=0)
        big = (values > _EXACT_INT) if np_dtype.kind == "u" else (values > _EXACT_INT) | (values < -_EXACT_INT)
        big &= rows
        if big.any():
            first = int(np.flatnonzero(big)[0])
            warn(f"{what} {name!r} holds integers beyond 2^53 (row {col.index[first]!r}: "
                 f"{values[first]}), which a float64 cannot hold exactly: {int(big.sum())} values "
                 "are rounded to the nearest float", DataWarning)
        return
    bad = np.isinf(col.to_numpy(dtype=float, na_value=np.nan)) & rows
    if bad.any():
        row = col.index[int(np.flatnonzero(bad)[0])]
        raise DataError(f"{what} {name!r} has an infinite value (row {row!r})", column=name)


def _text_values(col: pd.Series, test) -> np.ndarray:
    """Rows whose value is a string for which ``test(stripped string)`` holds (checked once
    per distinct value: a column of a million rows has a few hundred levels)."""
    if not (pd.api.types.is_object_dtype(col) or pd.api.types.is_string_dtype(col)
            or isinstance(col.dtype, pd.CategoricalDtype)):
        return np.zeros(len(col), bool)
    codes, uniques = pd.factorize(col)
    hits = [i for i, v in enumerate(uniques) if isinstance(v, str) and test(v.strip())]
    return np.isin(codes, hits) if hits else np.zeros(len(col), bool)


def missing_rows(col: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(missing, blank): NaN / None / NA, or a string of blanks (which ``normalize_ids``
    also reads as missing); ``blank`` marks the blanks alone."""
    blank = _text_values(col, lambda v: v == "")
    return np.asarray(col.isna(), dtype=bool) | blank, blank


def warn_missing_text(col: pd.Series, name: str, rows: np.ndarray) -> None:
    """A factor level written "nan" (or "None", "<NA>") is kept as a level of that name,
    distinct from missing values; say so, since it is usually a missing value turned into
    text (``astype(str)``)."""
    hit = _text_values(col, lambda v: v.lower() in _MISSING_TEXT) & rows
    if hit.any():
        first = int(np.flatnonzero(hit)[0])
        value = str(col.iloc[first]).strip()
        warn(f"column {name!r} has {int(hit.sum())} values written as text {value!r} (row "
             f"{col.index[first]!r}): kept as a level named {value!r}, distinct from missing values; "
             f"if they mean missing, make them NaN (df[{name!r}].replace({value!r}, np.nan))", DataWarning)


def coded_covariates(sub: pd.DataFrame, fixed: FixedSpec) -> list:
    """Integer columns with a few distinct values that the fixed formula names bare, so
    that (by R's rule: a numeric column is a covariate) each is fitted as one slope."""
    bare = re.compile(r"[A-Za-z_.][A-Za-z0-9_.]*|`[^`]+`")
    out = []
    for term in fixed.terms:
        for piece in term.rhs.split(":"):
            name = piece.strip().strip("`") if bare.fullmatch(piece.strip()) else None
            if name is None or name in out or name not in sub.columns:
                continue
            col = sub[name]
            if pd.api.types.is_integer_dtype(col) and 2 < col.nunique() <= _FEW_CODES:
                out.append(name)
    return out


def check_magnitudes(X, names) -> None:
    """Refuse a fixed-effect column whose largest entry is beyond ``MAGNITUDE`` (or, nonzero,
    below its inverse): its square in the mixed-model equations over- or underflows."""
    big = abs(X).max(axis=0).toarray().ravel() if X.shape[1] else np.zeros(0)
    bad = np.flatnonzero((big > MAGNITUDE) | ((big > 0) & (big < 1 / MAGNITUDE)))
    if bad.size:
        j = int(bad[0])
        raise DataError(f"fixed-effect column {names[j]!r} reaches {big[j]:.3g}, outside the magnitudes "
                        f"({1 / MAGNITUDE:.0e} to {MAGNITUDE:.0e}) whose squares in the mixed-model "
                        "equations stay finite and nonzero: rescale the covariate, e.g. "
                        f"I(x {'/' if big[j] > 1 else '*'} 1e{abs(int(np.floor(np.log10(big[j])))):d})",
                        column=names[j])
