"""Data + parsed terms -> the long-format model: y, X, the random terms' level maps, missing patterns.

One row of the data is a *unit* (a tree, an animal record). The long format has one
observation per observed (unit, trait) value, ordered unit-major and trait-minor, so the
observations of a unit are contiguous: that is what lets the residual covariance be a
block diagonal of small per-unit blocks R0[o_i, o_i].

Nothing here depends on variance parameters: the design is built once per model.
"""
from __future__ import annotations

import hashlib
import itertools
import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ._datachecks import (check_magnitudes, check_numeric_values, coded_covariates, formula_context,
                          is_numeric, missing_rows, warn_missing_text)
from .errors import DataError, DataWarning, FormulaError, warn
from .formula import FixedSpec, RandomTerm, VarianceSpec, columns_used
from .levels import expand_at, residual_sections
from .random_design import _covariate_factors, random_design  # noqa: F401  (predict uses the former)
from .rank import independent_columns

log = logging.getLogger("mvreml")


@dataclass
class RandomDesign:
    """One random term after it met the data.

    Attributes
    ----------
    term : RandomTerm
        The parsed term.
    traits : np.ndarray
        Indices (into the model's traits) of the traits the term covers, in order.
    levels : np.ndarray
        Level labels (strings), q of them; for a relationship matrix, its labels.
    level_of_unit : np.ndarray
        Level index of every unit (int64).
    kinv : scipy.sparse.csc_matrix
        K^-1 (q x q, full symmetric); identity for a plain factor.
    logdet_k : float
        log|K|.
    identity : bool
        True when K = I (no relationship matrix).
    kdiag : np.ndarray or None
        diag(K) when known (1 + F for a pedigree), for reliabilities.
    dims : list of (str, tuple of str)
        The structured dimensions in the order of the direct product: ("trait", trait names)
        and (column, its levels) for structures on other factors such as us(site).
    obs_rows, obs_cols : np.ndarray
        Z of the term as (observation, column) pairs, value 1: column = level * c + compound
        index, the compound index running over the dimensions in order (the first slowest).
    """

    term: RandomTerm
    traits: np.ndarray
    levels: np.ndarray
    level_of_unit: np.ndarray
    kinv: sp.csc_matrix
    logdet_k: float
    identity: bool
    kdiag: np.ndarray | None = None
    dims: list = field(default_factory=list)
    obs_rows: np.ndarray | None = None
    obs_cols: np.ndarray | None = None
    compound: list | None = None
    obs_vals: np.ndarray | None = None
    bases: dict = field(default_factory=dict)
    kcor: object = None             # AR1 dimensions: K(theta) (mvreml.ar1_levels.Ar1Levels)

    @property
    def name(self) -> str:
        return self.term.name

    @property
    def q(self) -> int:
        return len(self.levels)

    @property
    def t(self) -> int:
        """Size c of the compound dimension (the number of traits for a trait-only term)."""
        return int(np.prod([len(lv) for _, lv in self.dims])) if self.dims else len(self.traits)

    @property
    def comp_labels(self) -> list[str]:
        """Labels of the compound index: trait names, site levels, or "y1:S1" for products."""
        if self.compound is not None:
            return list(self.compound)
        return [":".join(p) for p in itertools.product(*(lv for _, lv in self.dims))]


@dataclass
class Design:
    """The long-format model matrices.

    Attributes
    ----------
    traits : list of str
        Response names.
    y : np.ndarray
        Observations (N), unit-major, trait-minor.
    obs_unit, obs_trait : np.ndarray
        Unit index and trait index of every observation.
    unit_start : np.ndarray
        Offsets of each unit's observations (n_units + 1).
    weights : np.ndarray
        Weight of every unit (residual covariance R0[o, o] / w).
    patterns : np.ndarray
        Boolean (n_patterns x t): which traits each missing-value pattern observes.
    unit_pattern : np.ndarray
        Pattern index of every unit.
    X : scipy.sparse.csr_matrix
        Fixed-effect design (N x p), full column rank.
    fixef_names : list of str
    fixed_terms : dict
        Fixed term label -> positions of its columns in X.
    random : list of RandomDesign
    n_dropped : int
        Data rows not used (no trait observed, or a missing covariate / factor level).
    dropped_columns : list of str
        Fixed-effect columns dropped as aliased (rank deficiency).
    messages : list of str
    """

    traits: list
    y: np.ndarray
    obs_unit: np.ndarray
    obs_trait: np.ndarray
    unit_start: np.ndarray
    weights: np.ndarray
    patterns: np.ndarray
    unit_pattern: np.ndarray
    X: sp.csr_matrix
    fixef_names: list
    fixed_terms: dict
    random: list
    n_dropped: int
    dropped_columns: list = field(default_factory=list)
    messages: list = field(default_factory=list)
    unit_rows: np.ndarray | None = None
    sections: list | None = None
    section_column: str | None = None
    pattern_section: np.ndarray | None = None
    unit_section: np.ndarray | None = None
    # a spatial residual (mvreml._lattice_design): the pairs where R^-1 is nonzero, their
    # section and lattice positions, each section's lattice, the pseudo-records of missing plots
    rpairs: tuple | None = None
    pair_section: np.ndarray | None = None
    pair_pos: tuple | None = None
    lattice: list | None = None
    n_missing_plots: int = 0
    plot_positions: np.ndarray | None = None
    # what predictions need to rebuild rows of X for new data (mvreml.predict): the formulaic
    # model spec of every block of columns, which columns survived the rank check, the aliased
    # columns themselves (for estimability) and the data rows used
    fixed_model: dict | None = None

    @property
    def n_obs(self) -> int:
        return len(self.y)

    @property
    def n_units(self) -> int:
        return len(self.weights)

    @property
    def t(self) -> int:
        return len(self.traits)

    @property
    def p(self) -> int:
        return self.X.shape[1]

    def signature(self) -> str:
        """Hash of what REML depends on besides the variance model: y, its trait/unit layout,
        the weights (an LRT refuses fits whose signatures differ)."""
        h = hashlib.sha1()
        for arr in (self.y, self.obs_trait, self.obs_unit, self.weights):
            h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()[:16]


def _check_columns(data: pd.DataFrame, names, what: str) -> None:
    for name in names:
        if name not in data.columns:
            raise FormulaError(f"{what} names column {name!r}, which is not in the data "
                               f"(columns: {', '.join(map(str, data.columns[:20]))})", term=name)
        if int((data.columns == name).sum()) > 1:
            raise DataError(f"{what} uses column {name!r}, which the data has "
                            f"{int((data.columns == name).sum())} times: rename the duplicates", column=name)


def _response_matrix(data: pd.DataFrame, traits) -> np.ndarray:
    cols = []
    for name in traits:
        col = data[name]
        if not is_numeric(col):
            raise DataError(f"response column {name!r} is not numeric (dtype {col.dtype})", column=name)
        check_numeric_values(col, name, "response column", None)
        values = col.to_numpy(dtype=float, na_value=np.nan)
        if np.isnan(values).all():
            raise DataError(f"response column {name!r} has no observed value", column=name)
        cols.append(values)
    return np.column_stack(cols)


def factor_labels(data: pd.DataFrame, factors) -> np.ndarray:
    """Level labels of a (possibly combined) factor, as strings; NaN where any part is missing."""
    from .pedigree import normalize_ids

    parts = [normalize_ids(data[f].to_numpy()) for f in factors]
    if len(parts) == 1:
        return parts[0]
    out = parts[0].astype(object)
    missing = pd.isna(out)
    for part in parts[1:]:
        missing |= pd.isna(part)
        out = out.astype(str) + ":" + part.astype(str)
    out = np.asarray(out, dtype=object)
    out[missing] = np.nan
    return out


def build_design(data: pd.DataFrame, fixed: FixedSpec, random: VarianceSpec, residual: RandomTerm,
                 relmat: dict | None = None, weights: str | None = None,
                 missing_animals: str = "error") -> Design:
    """Build the long-format design of a model.

    Parameters
    ----------
    data : pandas.DataFrame
        Wide data, one row per unit.
    fixed, random, residual
        Parsed formula pieces (see :mod:`mvreml.formula`).
    relmat : dict, optional
        Name -> relationship object (anything :func:`mvreml.relmat.as_relmat` accepts).
    weights : str, optional
        Column of record weights (residual variance sigma^2 / w).
    missing_animals : {"error", "founders"}
        Levels of a pedigree term absent from the pedigree: error, or added as founders.

    Returns
    -------
    Design
    """
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data must be a pandas DataFrame, not {type(data).__name__}")
    traits = list(fixed.response.traits)
    _check_columns(data, traits, "the response")
    used = columns_used(fixed, random, residual) - set(traits) - {"units", "trait"}
    _check_columns(data, sorted(used), "the model")
    if weights is not None:
        _check_columns(data, [weights], "weights=")

    Y = _response_matrix(data, traits)
    keep = ~np.isnan(Y).all(axis=1)
    messages = []
    n_no_trait = int((~keep).sum())
    if n_no_trait:
        messages.append(f"{n_no_trait} rows with no observed trait dropped")
    # rows missing a covariate / factor used by the model are dropped (and counted); a blank
    # string is missing too: left in, it would become a level (merged with NaN by the labels)
    for col in sorted(used):
        miss, blank = missing_rows(data[col])
        n = int((miss & keep).sum())
        if n:
            how = " (blank or NaN)" if (blank & keep).any() else ""
            messages.append(f"{n} rows with missing {col!r}{how} dropped")
            keep &= ~miss
    w = np.ones(len(data))
    if weights is not None:
        wcol = data[weights]
        if not pd.api.types.is_numeric_dtype(wcol):
            raise DataError(f"weights column {weights!r} is not numeric", column=weights)
        w = wcol.to_numpy(dtype=float, na_value=np.nan)
        n = int((np.isnan(w) & keep).sum())
        if n:
            messages.append(f"{n} rows with missing weight {weights!r} dropped")
            keep &= ~np.isnan(w)
        bad = keep & ~(np.isfinite(w) & (w > 0))
        if bad.any():
            row = data.index[np.flatnonzero(bad)[0]]
            raise DataError(f"weights column {weights!r} must be positive and finite "
                            f"(row {row!r} has {w[np.flatnonzero(bad)[0]]})", column=weights)
    if not keep.any():
        raise DataError("no data row is left once rows with missing values are dropped")
    for col in sorted(used):
        if is_numeric(data[col]):
            check_numeric_values(data[col], col, "column", keep)
        else:
            warn_missing_text(data[col], col, keep)
    n_dropped = int(len(data) - keep.sum())
    if n_dropped:
        warn("; ".join(messages), DataWarning)

    rows = np.flatnonzero(keep)
    sub = data.iloc[rows].reset_index(drop=True)
    Ysub = Y[rows]
    observed = ~np.isnan(Ysub)
    for j, name in enumerate(traits):
        if not observed[:, j].any():
            raise DataError(f"response column {name!r} has no observed value in the rows used", column=name)

    # long format, unit-major / trait-minor
    counts = observed.sum(axis=1)
    unit_start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    obs_unit, obs_trait = np.nonzero(observed)
    y = Ysub[obs_unit, obs_trait]
    sections, unit_section = residual_sections(sub, residual, observed, traits)
    # a missing-value pattern is per residual section: (section, observed traits)
    keyed = np.column_stack([unit_section, observed]).astype(np.int64)
    pkeys, unit_pattern = np.unique(keyed, axis=0, return_inverse=True)
    patterns, pattern_section = pkeys[:, 1:].astype(bool), pkeys[:, 0].astype(np.int64)

    fixed_model: dict = {}
    X, names, fixed_terms, dropped = _fixed_design(sub, fixed, traits, obs_unit, obs_trait,
                                                   data.index[rows], messages, fixed_model)
    fixed_model["data"] = sub
    if dropped:
        messages.append("aliased fixed-effect columns dropped: " + ", ".join(dropped))

    if missing_animals not in ("error", "founders"):
        raise DataError(f"missing_animals={missing_animals!r}: use 'error' or 'founders'")
    relmat = relmat or {}
    terms = [x for term in random.terms for x in expand_at(sub, term)]
    term_names = [x.name for x in terms]
    dup = sorted({n for n in term_names if term_names.count(n) > 1})
    if dup:
        raise FormulaError(f"random term {dup[0]!r} appears twice once at() is expanded", term=dup[0])
    rand = [random_design(sub, term, traits, relmat, missing_animals, terms, obs_unit, obs_trait)
            for term in terms]
    for rd in rand:
        if rd.identity and rd.q < 2 and not rd.term.ide:
            raise DataError(f"random term {rd.name!r} has {rd.q} level in the data: a variance needs "
                            f"at least two levels", column=rd.name)

    design = Design(traits=traits, y=y, obs_unit=obs_unit.astype(np.int64), obs_trait=obs_trait.astype(np.int64),
                  unit_start=unit_start, weights=w[rows], patterns=patterns,
                  unit_pattern=unit_pattern.ravel().astype(np.int64), X=X, fixef_names=names,
                  fixed_terms=fixed_terms, random=rand, n_dropped=n_dropped, dropped_columns=dropped,
                  messages=messages, unit_rows=rows, sections=sections, section_column=residual.sections,
                  pattern_section=pattern_section, unit_section=unit_section.astype(np.int64),
                  fixed_model=fixed_model)
    if residual.structure == "lattice":
        from ._lattice_design import augment

        augment(design, sub, residual)
    elif any(rd.term.factors == ("units",) for rd in rand):
        raise FormulaError("random units (a nugget, one effect per record) is confounded with the "
                           "residual unless the residual is spatial, e.g. ar1(col):ar1(row)", term="units")
    return design


def _model_matrix(sub: pd.DataFrame, rhs: list, intercept: bool, row_labels=None):
    """formulaic model matrix (sparse) of `1 + rhs...` (or `0 + ...`) with its term -> slice map.

    ``row_labels``: the data's labels of the rows of ``sub``, to name a row in errors."""
    from formulaic import model_matrix

    formula = " + ".join((["1"] if intercept else ["0"]) + rhs)
    try:
        # rows with missing values are gone; a NaN or inf now comes from a transform (log(0),
        # log(-1), 1/0), which the check below names: numpy's own warnings would only repeat it
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            mm = model_matrix(formula, sub, output="sparse", na_action="ignore", context=formula_context())
    except Exception as exc:  # formulaic raises many types; name the formula piece
        raise FormulaError(f"cannot build fixed effects {formula!r}: {exc}", term=formula) from exc
    spec = mm.model_spec
    slices = {str(t): s for t, s in spec.term_slices.items()}
    mat, colnames = sp.csc_matrix(mm), list(spec.column_names)
    if not np.isfinite(mat.data).all():
        coo = sp.coo_matrix(mat)
        k = int(np.flatnonzero(~np.isfinite(coo.data))[0])
        row = coo.row[k] if row_labels is None else row_labels[coo.row[k]]
        raise DataError(f"fixed-effect column {colnames[coo.col[k]]!r} is {coo.data[k]} in row {row!r} "
                        "(a transform out of its domain?): a covariate must be finite",
                        column=colnames[coo.col[k]])
    return mat, colnames, slices, spec


def _term_keys(rhs: str) -> list:
    from formulaic import Formula

    return [str(t) for t in Formula(rhs) if str(t) != "1"]


def _term_columns(terms, slices, colnames, prefix, cols, labels, owners) -> None:
    """Append the model-matrix columns of each term (its formulaic pieces, in order) with their
    labels (prefix + formulaic name) and owning term label."""
    for term in terms:
        for key in _term_keys(term.rhs):
            s = slices.get(key)
            if s is None:
                continue
            for c in range(s.start, s.stop):
                cols.append(c)
                labels.append(prefix + colnames[c])
                owners.append(term.label)


def _fixed_design(sub, fixed: FixedSpec, traits, obs_unit, obs_trait, row_labels=None, messages=None,
                  recipe=None):
    """Per-trait and common fixed-effect columns stacked into the long format.

    ``row_labels`` name the rows of ``sub`` in errors; notes are appended to ``messages``; a dict
    ``recipe`` receives what rebuilds rows of X for new data (the blocks' model specs, the kept
    columns, the aliased columns)."""
    specs = []
    for name in coded_covariates(sub, fixed):
        text = (f"integer column {name!r} ({sub[name].nunique()} distinct values) is fitted as a "
                f"covariate (one slope); if it codes levels, write C({name}) or factor({name}) in the "
                f"formula (--factors {name} on the command line)")
        warn(text, DataWarning)
        if messages is not None:
            messages.append(text)
    t = len(traits)
    n_obs = len(obs_unit)
    blocks, names, owners = [], [], []   # sparse (N x k) blocks, column names, term labels
    multivariate = fixed.response.multivariate

    def add(mat_units, cols, labels, owner_of_col, trait_rows):
        # mat_units: (n_units x k) csc; place its rows at observations whose trait is in trait_rows
        specs.append(dict(cols=list(cols), labels=list(labels), owners=list(owner_of_col),
                          traits=list(trait_rows)))
        mask = np.isin(obs_trait, trait_rows)
        R = sp.csr_matrix((np.ones(mask.sum()), (np.flatnonzero(mask), obs_unit[mask])),
                          shape=(n_obs, mat_units.shape[0]))
        blocks.append(R @ mat_units[:, cols])
        names.extend(labels)
        owners.extend(owner_of_col)

    per_trait = [term for term in fixed.terms if term.traits is not None]
    common = [term for term in fixed.terms if term.traits is None]
    has_trait_mean = any(term.rhs.strip() == "1" for term in per_trait)
    built: dict = {}        # (rhs, intercept) -> the model matrix of the traits that share it

    for j, trait in enumerate(traits):
        mine = [term for term in per_trait if trait in term.traits]
        if not mine and not (not multivariate and fixed.intercept):
            continue
        intercept = any(term.rhs.strip() == "1" for term in mine) or (not multivariate and fixed.intercept)
        rhs = [term.rhs for term in mine if term.rhs.strip() != "1"]
        # at(trait):x on every trait asks formulaic for the same matrix t times (0.4 s each
        # on 100k records and 1,800 levels): build it once, select its columns per trait
        key = (tuple(rhs), intercept)
        if key not in built:
            built[key] = _model_matrix(sub, rhs, intercept, row_labels)
        mat, colnames, slices, spec = built[key]
        cols, labels, owner = [], [], []
        if intercept and "1" in slices:
            cols.append(slices["1"].start)
            labels.append(f"trait_{trait}" if multivariate else "(Intercept)")
            owner.append("trait" if multivariate else "(Intercept)")
        _term_columns([term for term in mine if term.rhs.strip() != "1"], slices, colnames,
                      f"{trait}:" if multivariate else "", cols, labels, owner)
        add(mat, cols, labels, owner, [j])
        specs[-1]["spec"] = spec

    if common:
        # with per-trait means (or a univariate intercept) the common factors get treatment contrasts:
        # build with an intercept and drop its column
        with_mean = has_trait_mean or fixed.intercept
        mat, colnames, slices, spec = _model_matrix(sub, [term.rhs for term in common], with_mean, row_labels)
        cols, labels, owner = [], [], []
        _term_columns(common, slices, colnames, "", cols, labels, owner)
        add(mat, cols, labels, owner, list(range(t)))
        specs[-1]["spec"] = spec

    if not blocks:
        X = sp.csr_matrix((n_obs, 0))
    else:
        X = sp.hstack(blocks, format="csc")
    check_magnitudes(X, names)
    keep, dropped_idx = independent_columns(X)
    dropped = [names[i] for i in dropped_idx]
    if recipe is not None:
        recipe.update(blocks=specs, keep=list(keep), dropped=list(dropped_idx), names=list(names),
                      dropped_X=sp.csc_matrix(X[:, dropped_idx]) if X.shape[1] else None)
    X = sp.csr_matrix(X[:, keep])
    X.sort_indices()
    names = [names[i] for i in keep]
    owners = [owners[i] for i in keep]
    fixed_terms: dict = {}
    for pos, owner in enumerate(owners):
        fixed_terms.setdefault(owner, []).append(pos)
    return X, names, fixed_terms, dropped
