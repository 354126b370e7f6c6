"""The sample variogram of a spatial fit's residuals, the diagnostic plot of spatial field
trials (Gilmour, Cullis & Verbyla 1997): gamma(l1, l2) = mean of (e_i - e_j)^2 / 2 over the
pairs of plots whose lattice positions differ by (l1, l2) in absolute value."""
from __future__ import annotations

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
        # all pairs of the section's plots (a trial has thousands of plots at most)
        i, j = np.triu_indices(len(e), 1)
        lags = np.abs(P[i] - P[j])
        keep = np.ones(len(i), bool) if max_lag is None else np.all(lags <= max_lag, axis=1)
        d2 = 0.5 * (e[i] - e[j]) ** 2
        key = pd.MultiIndex.from_arrays([lags[keep, k] for k in range(len(pos_cols))])
        agg = pd.Series(d2[keep], index=key).groupby(level=list(range(len(pos_cols)))).agg(["sum", "count"])
        for lag, row in agg.iterrows():
            lag = lag if isinstance(lag, tuple) else (lag,)
            s, n = sums.get(lag, (0.0, 0))
            sums[lag] = (s + row["sum"], n + int(row["count"]))
    out = [dict({f"lag_{c[4:]}": int(v) for c, v in zip(pos_cols, lag)}, gamma=s / n, n_pairs=n)
           for lag, (s, n) in sorted(sums.items())]
    return pd.DataFrame(out)
