"""Levels of the factors that structure a model: structured dimensions (``us(site)``), at()
restrictions (``at(site, S1):rep``) and residual sections (``dsum(~ units | site)``).

Levels are the factor's labels as strings (integral numbers as integers, like the levels of a
random term); their order is the column's category order for a pandas Categorical, numeric for
integer labels, else sorted text -- the order asreml's factors have, and the order of the rows
and columns of the site-labelled matrices.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from .errors import DataError, FormulaError
from .formula import At, RandomTerm


def _labels(sub: pd.DataFrame, column: str) -> np.ndarray:
    from .design import factor_labels

    return factor_labels(sub, [column]).astype(object)


def ordered_levels(sub: pd.DataFrame, column: str, what: str, rows=None) -> tuple[tuple[str, ...], np.ndarray]:
    """(levels in order, label of every row) of a factor that carries a structure.

    Raises
    ------
    DataError
        The column holds non-integral numbers: a structure needs a factor, not a covariate.
    """
    col = sub[column]
    if pd.api.types.is_float_dtype(col):
        vals = col.to_numpy(dtype=float)
        frac = np.isfinite(vals) & (vals != np.round(vals))
        if frac.any():
            raise DataError(f"{what} needs a factor, but column {column!r} is numeric with non-integer "
                            f"values (e.g. {vals[frac][0]!r}); give it as a factor (strings or a pandas "
                            "Categorical)", column=column)
    labels = _labels(sub, column)
    present = labels if rows is None else labels[rows]
    present = present[~pd.isna(present)].astype(str)
    uniq = pd.unique(present)
    if isinstance(col.dtype, pd.CategoricalDtype):
        cats = [str(c) for c in col.cat.categories]
        order = [c for c in cats if c in set(uniq)]
        order += sorted(set(uniq) - set(order))
    else:
        try:
            order = sorted(uniq, key=lambda x: (0, int(x), "") if x.lstrip("-").isdigit() else (1, 0, x))
        except ValueError:
            order = sorted(uniq)
    return tuple(order), labels


def factor_levels(sub: pd.DataFrame, column: str, what: str, covered: np.ndarray) -> tuple[tuple[str, ...], np.ndarray]:
    """(levels, code of every unit) of a structured dimension; code -1 outside ``covered``."""
    levels, labels = ordered_levels(sub, column, what, covered)
    index = pd.Index(levels)
    code = index.get_indexer(labels.astype(str))
    code[~covered] = -1
    return levels, code.astype(np.int64)


def _replace_at(text: str, column: str, level: str) -> str:
    """``at(site, ...)`` in a term's text -> ``at(site, level)`` (asreml's component label)."""
    start = text.find("at(")
    while start >= 0 and not text[start + 3:].lstrip("`").startswith(column):
        start = text.find("at(", start + 1)
    if start < 0:
        return text
    depth, end = 0, start + 2
    for end in range(start + 2, len(text)):
        depth += {"(": 1, ")": -1}.get(text[end], 0)
        if depth == 0:
            break
    return text[:start] + f"at({column}, {level})" + text[end + 1:]


def expand_at(sub: pd.DataFrame, term: RandomTerm) -> list[RandomTerm]:
    """``at(site):rep`` -> one term per level of site (``at(site, S1):rep``, ...), as asreml fits
    them; ``at(site, "S3")``, ``at(site, 3)`` (position), ``at(site, c("S1", "S2"))`` choose levels.

    Raises
    ------
    FormulaError
        A level that the factor does not have (the message lists the levels), a position past
        the last level, or two at() in one term.
    """
    if not term.at:
        return [term]
    if len(term.at) > 1:
        raise FormulaError(f"{term.label!r}: one at() per term", term=term.label)
    at = term.at[0]
    levels, _ = ordered_levels(sub, at.column, f"at({at.column})")
    shown = ", ".join(levels[:30]) + (" ..." if len(levels) > 30 else "")
    chosen = []
    for text, by_position in at.levels or [(lv, False) for lv in levels]:
        if by_position and text.isdigit():
            pos = int(text)
            if not 1 <= pos <= len(levels):
                raise FormulaError(f"at({at.column}, {text}) in {term.label!r}: {at.column!r} has "
                                   f"{len(levels)} levels ({shown})", term=term.label)
            text = levels[pos - 1]
        elif text not in levels:
            raise FormulaError(f"at({at.column}, {text!r}) in {term.label!r}: {text!r} is not a level of "
                               f"{at.column!r}; its levels are {shown}", term=term.label)
        chosen.append(text)
    return [replace(term, at=(At(at.column, ((lv, False),)),), name=_replace_at(term.name, at.column, lv),
                    label=_replace_at(term.label, at.column, lv)) for lv in chosen]


def residual_sections(sub: pd.DataFrame, residual: RandomTerm, observed: np.ndarray,
                      traits) -> tuple[list | None, np.ndarray]:
    """(section labels or None, section of every unit) of a ``dsum(~ ... | column)`` residual.

    Raises
    ------
    DataError
        A section with fewer than two records of a trait: its residual variance cannot be
        estimated (the message names the section and the trait).
    """
    n = len(sub)
    if residual.sections is None:
        return None, np.zeros(n, np.int64)
    col = residual.sections
    levels, code = factor_levels(sub, col, f"dsum(~ ... | {col})", np.ones(n, bool))
    for s, lev in enumerate(levels):
        lev = str(lev)
        counts = observed[code == s].sum(axis=0)
        for j, trait in enumerate(traits):
            if counts[j] < 2:
                raise DataError(f"residual section {col}={lev!r} (dsum(~ ... | {col})) has {int(counts[j])} "
                                f"record(s) of {trait!r}: its residual variance needs at least two",
                                column=col)
    return list(levels), code
