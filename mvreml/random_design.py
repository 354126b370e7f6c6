"""The random terms of a design: levels, K^-1 and the Z entries (observation, column, value).

A term's compound index runs over its structured dimensions in order (the trait, the levels of
a factor such as site, the coefficients of a covariate basis); a factor picks one level of its
dimension, a basis spreads the record over its coefficients with their values, a numeric
column crossed with a factor (x:g) multiplies the value (a slope per level).
"""
from __future__ import annotations

import itertools
import logging
import time
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .errors import DataError, DataWarning, FormulaError, RelmatError, warn
from .formula import RandomTerm
from .ar1_levels import AR1_KINDS, ar1_term_levels
from .levels import factor_levels

if TYPE_CHECKING:
    from .design import RandomDesign

log = logging.getLogger("mvreml")


def random_design(sub: pd.DataFrame, term: RandomTerm, traits, relmat: dict,
                   missing_animals: str = "error", terms=(), obs_unit=None, obs_trait=None) -> "RandomDesign":
    """Levels, unit -> level map, K^-1 and the Z entries of one random term."""
    from .design import RandomDesign, factor_labels

    if term.traits is None:
        tr = np.arange(len(traits))
    else:
        tr = np.array([traits.index(x) for x in term.traits])
    # units the term covers: at(site, S1) restricts it to the records of S1
    covered = np.ones(len(sub), bool)
    for at in term.at:
        labels_at = factor_labels(sub, [at.column]).astype(str)
        covered &= labels_at == at.levels[0][0]
    covariates = _covariate_factors(sub, term)
    fac_cols = tuple(c for c in term.factors if c not in covariates)
    if not fac_cols:
        labels = None                                   # only AR1 dimensions: ar1(row):ar1(col)
    elif fac_cols == ("units",):
        labels = np.array([str(i + 1) for i in range(len(sub))], dtype=object)   # the nugget
    else:
        labels = factor_labels(sub, fac_cols)
    ar1_dims = [d for d in term.dims if d.structure in AR1_KINDS]
    kcor = None
    if ar1_dims:
        # AR1 dimensions go into K (mvreml.ar1_levels): K^-1 sparse, its values theta-dependent
        levels, level_of_unit, kcor = ar1_term_levels(sub, term, labels if fac_cols else None, covered, ar1_dims)
        kinv, logdet_k, identity, kdiag = kcor.kinv(np.full(kcor.n_params, 0.5)), 0.0, False, None
    elif term.ide:
        levels, level_of_unit, kinv, logdet_k, identity, kdiag = _ide_levels(sub, term, terms, relmat,
                                                                            missing_animals, labels)
    elif term.relmat is None:
        levels, level_of_unit = np.unique(labels[covered].astype(str), return_inverse=True)
        full = np.full(len(sub), -1, np.int64)
        full[covered] = level_of_unit
        level_of_unit = full
        q = len(levels)
        kinv, logdet_k, identity, kdiag = sp.identity(q, format="csc"), 0.0, True, None
    else:
        levels, level_of_unit, kinv, logdet_k, kdiag = _relmat_levels(sub, term, relmat, missing_animals,
                                                                      labels)
        identity = False
    # the compound dimension: trait and structured factors in the order of the product
    dims, codes, bases = [], [], {}
    tpos = np.full(len(traits), -1, np.int64)
    tpos[tr] = np.arange(len(tr))
    ar1_cols = {d.column for d in ar1_dims}
    g_dims = [d for d in term.dims if d.column not in ar1_cols]
    order = tuple(o for o in term.order if o not in ar1_cols) if g_dims else ("trait",)
    dim_of = {d.column: d for d in term.dims}
    for name in order:
        if name == "trait":
            dims.append(("trait", tuple(traits[i] for i in tr)))
            codes.append(("code", tpos[obs_trait] if obs_trait is not None else None))
        elif dim_of[name].basis is not None:
            lv, B, bases[name] = _basis_columns(sub, dim_of[name], covered, term.label)
            dims.append((name, lv))
            codes.append(("basis", B[obs_unit] if obs_unit is not None else None))
        else:
            lv, code = factor_levels(sub, name, dim_of[name].label, covered)
            dims.append((name, lv))
            codes.append(("code", code[obs_unit] if obs_unit is not None else None))
    rd = RandomDesign(term=term, traits=tr, levels=np.asarray(levels), level_of_unit=level_of_unit.astype(np.int64),
                      kinv=kinv, logdet_k=logdet_k, identity=identity, kdiag=kdiag,
                      dims=dims if g_dims else [],
                      compound=[":".join(p) for p in itertools.product(*(lv for _, lv in dims))],
                      bases=bases, kcor=kcor)
    if obs_unit is not None:
        # every observation's entries (compound index, value): a factor picks one level of its
        # dimension, a basis spreads the observation over its coefficients with their values
        n = len(obs_unit)
        unit_val = np.ones(len(sub))
        for c in covariates:
            unit_val = unit_val * sub[c].to_numpy(dtype=float)
        comp = np.zeros((n, 1), np.int64)
        val = unit_val[obs_unit][:, None]
        ok = covered[obs_unit] & (rd.level_of_unit[obs_unit] >= 0)
        for (_, lv), (kind, arr) in zip(dims, codes):
            if kind == "code":
                ok &= arr >= 0
                comp = comp * len(lv) + arr[:, None]
            else:
                nb = arr.shape[1]
                comp = (comp[:, :, None] * nb + np.arange(nb)).reshape(n, -1)
                val = (val[:, :, None] * arr[:, None, :]).reshape(n, -1)
        rows = np.flatnonzero(ok)
        width = comp.shape[1]
        R = np.repeat(rows, width)
        C = (rd.level_of_unit[obs_unit[R]] * rd.t + comp[rows].ravel()).astype(np.int64)
        V = val[rows].ravel()
        nz = V != 0.0          # an exact zero (a raw basis at x = 0) is no entry of Z
        rd.obs_rows, rd.obs_cols, rd.obs_vals = R[nz].astype(np.int64), C[nz], V[nz]
    return rd


def _covariate_factors(sub: pd.DataFrame, term: RandomTerm) -> tuple[str, ...]:
    """Numeric columns crossed with a factor in a random term (``Days:Subject``): covariates
    that multiply Z (a slope per level), R's rule; ``C(x)`` / ``factor(x)`` keep x a factor.

    Raises
    ------
    DataError
        Every column of an interaction is numeric: no factor for the effects to vary over.
    """
    if len(term.factors) < 2:
        return ()       # a factor alone (or vm(animal, ped)) is a factor, as lme4's grouping
    numeric = tuple(c for c in term.factors if c not in term.as_factor
                    and pd.api.types.is_numeric_dtype(sub[c]) and not pd.api.types.is_bool_dtype(sub[c]))
    if len(numeric) == len(term.factors):
        raise DataError(f"random term {term.label!r}: the columns {', '.join(numeric)} are all numeric "
                        f"(covariates, R's rule), so no factor is left for the effects to vary over; "
                        f"write C(x) for a column that is a factor", column=numeric[0])
    for c in numeric:
        values = sub[c].to_numpy(dtype=float)
        # lme4 bars and C() say which columns are factors: no doubt to warn about there
        if not term.as_factor and pd.api.types.is_integer_dtype(sub[c]) and len(np.unique(values)) <= 20:
            warn(f"integer column {c!r} is a covariate in random term {term.label!r} (R's rule: "
                 f"random slopes on {c!r} per level of the other factors); write C({c}) if it is a "
                 "factor", DataWarning)
    return numeric


def _basis_columns(sub, dim, covered, label):
    """(coefficient labels, n_units x (k + 1) basis values, basis parameters) of a basis dimension."""
    from . import basis

    kind, order, cols = dim.basis
    cols = tuple(cols) if kind == "raw" else (cols,)
    X = np.zeros((len(sub), len(cols)))
    for i, c in enumerate(cols):
        col = sub[c]
        if not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
            raise DataError(f"{dim.label} in {label!r}: {c!r} must be a numeric covariate (dtype {col.dtype})",
                            column=c)
        X[:, i] = col.to_numpy(dtype=float)
    params = basis.fit(kind, order, X[covered, 0], f"{dim.label} in {label!r}", cols[0])
    B = basis.evaluate(params, X if kind == "raw" else X[:, 0])
    params["columns"] = list(cols)
    return basis.level_names(params, cols), B, params


def _relmat_levels(sub, term, relmat, missing_animals, labels):
    """Levels of a vm(animal, ped) term: the relationship's labels, its K^-1 and log|K|."""
    from .relmat import as_relmat

    if term.relmat not in relmat:
        raise RelmatError(f"term {term.label!r} uses relationship {term.relmat!r}, which is not in relmat= "
                          f"(given: {sorted(relmat) or 'none'})", labels=[term.relmat])
    rel = as_relmat(relmat[term.relmat], term.relmat)
    absent = pd.Index(rel.labels).get_indexer(labels.astype(str)) < 0
    if absent.any() and missing_animals == "founders" and getattr(rel, "pedigree", None) is not None:
        rel = as_relmat(rel.pedigree.add_animals(pd.unique(labels[absent])), term.relmat)
    levels = np.asarray(rel.labels)
    log.info("relationship %r: building K^-1 of %d levels", term.relmat, len(levels))
    t0 = time.perf_counter()
    kinv = sp.csc_matrix(rel.kinv())
    logdet_k = float(rel.logdet())
    log.info("relationship %r: K^-1 built in %.2f s (%d nonzeros)", term.relmat, time.perf_counter() - t0, kinv.nnz)
    index = pd.Index(levels)
    level_of_unit = index.get_indexer(labels.astype(str))
    if (level_of_unit < 0).any():
        missing = pd.unique(labels[level_of_unit < 0])
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        hint = (" (fit(..., missing_animals='founders') adds them to the pedigree as founders)"
                if getattr(rel, "pedigree", None) is not None else "")
        raise RelmatError(f"{len(missing)} levels of {term.name!r} in the data are not in relationship "
                          f"{term.relmat!r}: {shown}{hint}", labels=list(missing))
    return levels, level_of_unit, kinv, logdet_k, rel.diagonal()


def _ide_levels(sub, term, terms, relmat, missing_animals, labels):
    """ide(animal): K = I on the levels of the vm(animal, ped) term of the same model
    (pedigree-only animals included), the permanent-environment twin of the additive effect."""
    col = term.factors[0]
    twin = next((t for t in terms if t.relmat is not None and t.factors == (col,)), None)
    if twin is None:
        raise FormulaError(f"{term.label!r} needs a vm({col}, relmat) term in the same model: ide() "
                           f"is its identity twin on the same levels", term=term.label)
    levels, level_of_unit, _, _, _ = _relmat_levels(sub, twin, relmat, missing_animals, labels)
    q = len(levels)
    return levels, level_of_unit, sp.identity(q, format="csc"), 0.0, True, None
