"""The sample variogram of a spatial fit's residuals, the diagnostic plot of spatial field
trials (Gilmour, Cullis & Verbyla 1997): gamma(l1, l2) = mean of (e_i - e_j)^2 / 2 over the
pairs of plots whose lattice positions differ by (l1, l2) in absolute value."""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from .errors import ModelError


def sample_variogram(records: pd.DataFrame, max_lag: int | None = None) -> pd.DataFrame:
    """Variogram table from :meth:`Result.residuals` of a spatial fit.

    Parameters
    ----------
    records : DataFrame
        With ``pos_<dim>`` columns (lattice positions) and ``residual``; ``section`` if any.
    max_lag : int, optional
        Largest lag per dimension (default: all).

    Returns
    -------
    DataFrame
        Columns ``lag_<dim>`` per lattice dimension, ``gamma``, ``n_pairs``; lag (0, 0) omitted.
    """
    pos_cols = [c for c in records.columns if c.startswith("pos_")]
    if not pos_cols:
        raise ModelError("the variogram needs a spatial residual (e.g. residual = ~ ar1(col):ar1(row))")
    groups = records.groupby("section") if "section" in records else [(None, records)]
    sums: dict = {}
    for _, g in groups:
        P = g[pos_cols].to_numpy(dtype=np.int64)
        e = g["residual"].to_numpy(dtype=float)
        for lag, (s, n) in _grid_sums(P, e, max_lag).items():
            s0, n0 = sums.get(lag, (0.0, 0))
            sums[lag] = (s0 + s, n0 + n)
    out = [dict({f"lag_{c[4:]}": int(v) for c, v in zip(pos_cols, lag)}, gamma=s / n, n_pairs=n)
           for lag, (s, n) in sorted(sums.items()) if n]
    return pd.DataFrame(out)


def _grid_sums(P: np.ndarray, e: np.ndarray, max_lag: int | None) -> dict:
    """{(|d_1|, |d_2|, ...): (sum of (e_a - e_b)^2 / 2, pairs)} over the unordered pairs of plots
    of one section, by shifting the section's grid of residuals (NaN where no record) against
    itself once per displacement: memory of the grid, not of the n^2 / 2 pairs (a 10,000-plot
    trial has 5 10^7 of them)."""
    lo = P.min(axis=0)
    P = P - lo
    shape = tuple(int(x) + 1 for x in P.max(axis=0))
    E = np.full(shape, np.nan)
    E[tuple(P.T)] = e
    ranges = [range(0, shape[0] if max_lag is None else min(shape[0], max_lag + 1))]
    for n in shape[1:]:
        m = n - 1 if max_lag is None else min(n - 1, max_lag)
        ranges.append(range(-m, m + 1))
    out: dict = {}
    for d in itertools.product(*ranges):
        # one of d and -d: the first nonzero displacement positive
        nz = next((x for x in d if x != 0), 0)
        if nz <= 0:
            continue
        a = tuple(slice(max(0, -x), n - max(0, x)) for x, n in zip(d, shape))
        b = tuple(slice(max(0, x), n - max(0, -x)) for x, n in zip(d, shape))
        diff = E[a] - E[b]
        ok = ~np.isnan(diff)
        n_pairs = int(ok.sum())
        if not n_pairs:
            continue
        key = tuple(abs(x) for x in d)
        s, n = out.get(key, (0.0, 0))
        out[key] = (s + 0.5 * float(np.sum(diff[ok] ** 2)), n + n_pairs)
    return out
