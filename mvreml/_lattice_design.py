"""The design of a spatial residual: lattice positions, missing plots, the pattern of R^-1.

``augment`` completes every residual section's lattice with pseudo-records for the plots that
have no response (each with its own ``mv`` fixed effect, see :mod:`mvreml.lattice`) and lists
the pairs of records where R^-1 is nonzero; the engine assembles the mixed-model equations on
those pairs exactly as it does on the within-unit pairs of a block-diagonal residual.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .errors import DataError, DataWarning, FormulaError, warn
from .ar1_levels import position_labels
from .lattice import lattice_positions, neighbour_pairs


def augment(design, sub: pd.DataFrame, residual) -> None:
    """Turn ``design`` (built with a lattice residual) into its lattice form, in place.

    Raises
    ------
    DataError
        Several traits, weights, two records on one plot, a non-numeric position.
    """
    if design.t != 1:
        raise DataError("a spatial residual needs one trait")
    if not np.all(design.weights == 1.0):
        raise DataError("weights are not supported with a spatial residual")
    cols = [d.column for d in residual.dims]
    n_units = design.n_units
    section = design.unit_section
    n_sec = len(design.sections or [None])
    kinds_of = section_kinds(residual, design.sections)
    lattices, grids, pos_units = [], [], np.zeros((n_units, len(cols)), np.int64)
    absent = []
    extra_pos, extra_sec = [], []
    for s in range(n_sec):
        units = np.flatnonzero(section == s)
        where = "" if design.sections is None else f" in section {design.section_column}={str(design.sections[s])!r}"
        sizes, labels = [], []
        for d, col in enumerate(cols):
            vals = sub[col].to_numpy()[units]
            pos, size = lattice_positions(vals, col, where)
            pos_units[units, d] = pos
            sizes.append(size)
            labels.append(position_labels(vals, pos, size))
        grid = np.full(sizes, -1, np.int64)
        flat = np.ravel_multi_index(tuple(pos_units[units].T), sizes)
        order = np.argsort(flat, kind="stable")
        dup = np.flatnonzero(np.diff(flat[order]) == 0)
        if dup.size:
            a, b = units[order[dup[0]]], units[order[dup[0] + 1]]
            rows = design.unit_rows
            plot = ", ".join(f"{c}={_plain(sub[c].iloc[a])}" for c in cols)
            raise DataError(f"two records on the plot {plot}{where} (data rows {rows[a]} and {rows[b]}): "
                            "a spatial residual needs one record per plot", column=cols[0])
        grid.reshape(-1)[flat] = units
        missing = np.flatnonzero(grid.reshape(-1) < 0)
        if missing.size:
            cells = np.array(np.unravel_index(missing[:5], sizes)).T
            shown = "; ".join(", ".join(f"{c}={labels[d][p]}" for d, (c, p) in enumerate(zip(cols, cell)))
                              for cell in cells)
            absent.append(f"{len(missing)} of {grid.size}{where} ({shown}{' ...' if missing.size > 5 else ''})")
        extra_pos.append(np.array(np.unravel_index(missing, sizes)).T.reshape(-1, len(cols)))
        extra_sec.append(np.full(len(missing), s))
        # pseudo-units are numbered after the data units, section by section
        first = n_units + sum(len(e) for e in extra_sec[:-1])
        grid.reshape(-1)[missing] = first + np.arange(len(missing))
        grids.append(grid)
        lattices.append([(c, k, n) for c, k, n in zip(cols, kinds_of[s], sizes)])
    extra_pos = np.concatenate(extra_pos) if extra_pos else np.zeros((0, len(cols)), np.int64)
    extra_sec = np.concatenate(extra_sec).astype(np.int64)
    m = len(extra_sec)
    N, p = design.n_obs, design.p
    # univariate: observation i is unit i, so grids of units are grids of observations
    design.y = np.concatenate([design.y, np.zeros(m)])
    design.obs_unit = np.concatenate([design.obs_unit, n_units + np.arange(m)]).astype(np.int64)
    design.obs_trait = np.concatenate([design.obs_trait, np.zeros(m, np.int64)])
    design.unit_start = np.arange(n_units + m + 1, dtype=np.int64)
    design.weights = np.ones(n_units + m)
    design.unit_section = np.concatenate([section, extra_sec]).astype(np.int64)
    design.unit_pattern = design.unit_section.copy()
    design.patterns = np.ones((n_sec, 1), bool)
    design.pattern_section = np.arange(n_sec, dtype=np.int64)
    mv = sp.csr_matrix((np.ones(m), (N + np.arange(m), np.arange(m))), shape=(N + m, m))
    design.X = sp.csr_matrix(sp.hstack([sp.vstack([design.X, sp.csr_matrix((m, p))]), mv]))
    design.X.sort_indices()
    design.fixef_names = list(design.fixef_names) + [f"mv_{i + 1}" for i in range(m)]
    if m:
        design.fixed_terms = dict(design.fixed_terms)
        design.fixed_terms["mv"] = list(range(p, p + m))
        what = f"{m} plots of the lattice have no record" + ("" if n_sec == 1 else " (all sections)")
        design.messages.append(what + ": kept in the lattice as missing values (fixed effects mv_1, ...)")
        # a hole in the field (a lattice that is not rectangular, a record dropped for a missing
        # value) changes nothing in the estimates, but the user should know which cells they are
        warn(f"the {':'.join(cols)} lattice is not complete: cells without a record "
             f"{'; '.join(absent)} are treated as missing plots ({m} in all)", DataWarning)
    positions = np.concatenate([pos_units, extra_pos])
    A, B = [], []
    for grid, lat in zip(grids, lattices):
        a, b = neighbour_pairs(grid, [k for _, k, _ in lat])
        A.append(a)
        B.append(b)
    a, b = np.concatenate(A), np.concatenate(B)
    order = np.lexsort((b, a))
    design.rpairs = (a[order].astype(np.int64), b[order].astype(np.int64))
    design.pair_section = design.unit_section[design.rpairs[0]]
    design.pair_pos = (positions[design.rpairs[0]], positions[design.rpairs[1]])
    design.lattice = [dict(dims=lat, grid=grid) for lat, grid in zip(lattices, grids)]
    design.plot_positions = positions
    design.n_missing_plots = m


def section_kinds(residual, sections) -> list[list[str]]:
    """The lattice structures (ar1 / id per dimension) of every section: those of ``residual.dims``,
    or with ``dsum(~ A + B | site, levels = list(1:2, 3))`` those of the structure whose group
    names the section (by position, 1-based, or by name).

    Raises
    ------
    FormulaError
        A section given twice or by a name / position that does not exist, or given by no group.
    """
    if residual.section_dims is None:
        return [[d.structure for d in residual.dims] for _ in (sections or [None])]
    col = residual.sections
    names = [str(x) for x in sections]
    out: list = [None] * len(names)
    for group, dims in residual.section_dims:
        text = ":".join(d.label for d in dims)
        for level, by_position in group:
            if by_position:
                s = int(level) - 1
                if not 0 <= s < len(names):
                    raise FormulaError(f"dsum levels=: section {level} of {col!r} (for {text}) does not exist; "
                                       f"{col} has {len(names)} levels ({', '.join(names)})", term=text)
            elif level in names:
                s = names.index(level)
            else:
                raise FormulaError(f"dsum levels=: {col!r} has no level {level!r} (for {text}); its levels: "
                                   f"{', '.join(names)}", term=text)
            if out[s] is not None:
                raise FormulaError(f"dsum levels=: section {col}={names[s]!r} is given two structures", term=text)
            out[s] = [d.structure for d in dims]
    absent = [n for n, k in zip(names, out) if k is None]
    if absent:
        raise FormulaError(f"dsum levels=: sections {', '.join(repr(a) for a in absent)} of {col!r} get no "
                           "structure; list every section in levels=", term=col)
    return out


def _plain(v) -> str:
    """A data value as the user wrote it: 3, 2.5 or 'R3' (not numpy's np.int64(3))."""
    v = v.item() if hasattr(v, "item") else v
    return repr(v) if isinstance(v, str) else str(v)
