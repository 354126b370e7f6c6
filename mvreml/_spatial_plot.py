"""Figures of a spatial fit (exported by :mod:`mvreml.plot`): the sample semivariogram by row and
column displacement, as asreml-R's ``varioGram`` (a heat map or a wireframe surface), and the
residuals or fitted values over the field."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .errors import ModelError


def _records(res, section):
    rec = res.residuals()
    pos = [c for c in rec.columns if c.startswith("pos_")]
    if not pos:
        raise ModelError("spatial plots need a spatial residual (e.g. residual = ~ ar1(col):ar1(row))")
    if section is not None:
        if "section" not in rec:
            raise ModelError(f"section={section!r}: the fit has one residual section")
        names = [str(s) for s in pd.unique(rec["section"])]
        if str(section) not in names:
            raise ModelError(f"section={section!r} is not a residual section; sections: {', '.join(names)}")
        rec = rec[rec["section"].astype(str) == str(section)]
    return rec, pos


def variogram_grid(v: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """gamma of a two-dimensional sample variogram as an array [lag_1, lag_2] (NaN where no pair)."""
    lags = [c for c in v.columns if c.startswith("lag_")]
    shape = tuple(int(v[c].max()) + 1 for c in lags)
    out = np.full(shape, np.nan)
    out[tuple(v[c].to_numpy(int) for c in lags)] = v["gamma"].to_numpy(float)
    return out, lags


def variogram(res, kind: str = "heatmap", max_lag: int | None = None, section=None, ax=None):
    """Sample semivariogram of a spatial fit's residuals (Gilmour, Cullis & Verbyla 1997).

    gamma(l_1, l_2) = mean of (e_a - e_b)^2 / 2 over the plot pairs whose lattice positions
    differ by (l_1, l_2) in absolute value, within a residual section (see
    :meth:`mvreml.Result.variogram`); the first lattice dimension on the vertical axis.

    Parameters
    ----------
    res : mvreml.Result
        A fit with a spatial residual.
    kind : {"heatmap", "surface"}
        A heat map of gamma, or a wireframe surface (asreml-R's varioGram). A one-dimensional
        lattice always draws gamma against the lag.
    max_lag : int, optional
        Largest displacement per dimension (default: all).
    section : optional
        One residual section of a ``dsum`` (default: the pairs of every section, pooled).
    ax : matplotlib Axes, optional
        For ``kind="surface"`` a 3-D axes (``projection="3d"``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from .plot import _axes, _pyplot
    from .variogram import sample_variogram

    if kind not in ("heatmap", "surface"):
        raise ValueError(f"kind={kind!r}: use 'heatmap' or 'surface'")
    rec, pos = _records(res, section)
    v = sample_variogram(rec, max_lag)
    title = "sample variogram of the residuals" + ("" if section is None else f", section {section}")
    if len(pos) == 1:
        fig, ax = _axes(ax, (5.5, 3.8))
        lag = v.columns[0]
        ax.plot(v[lag], v["gamma"], "o-", color="tab:blue")
        ax.set_xlabel(f"{lag[4:]} displacement")
        ax.set_ylabel("semivariance")
        ax.set_title(title, fontsize=10)
        return fig
    grid, lags = variogram_grid(v)
    names = [c[4:] for c in lags]
    if kind == "heatmap":
        fig, ax = _axes(ax, (5.5, 4.5))
        im = ax.imshow(grid, origin="lower", cmap="viridis", aspect="auto", interpolation="nearest")
        fig.colorbar(im, ax=ax, label="semivariance")
    else:
        if ax is None:
            plt = _pyplot()
            fig = plt.figure(figsize=(6.0, 5.0), layout="constrained")
            ax = fig.add_subplot(projection="3d")
        fig = ax.figure
        L2, L1 = np.meshgrid(np.arange(grid.shape[1]), np.arange(grid.shape[0]))
        ax.plot_wireframe(L2, L1, np.ma.masked_invalid(grid), color="tab:blue", linewidth=0.8)
        ax.set_zlabel("semivariance")
    ax.set_xlabel(f"{names[1]} displacement")
    ax.set_ylabel(f"{names[0]} displacement")
    ax.set_title(title, fontsize=10)
    return fig


def field_grid(rec: pd.DataFrame, pos: list[str], what: str) -> np.ndarray:
    """The values of ``what`` over the lattice, [position_1, position_2] (NaN: no record)."""
    P = rec[pos].to_numpy(int)
    out = np.full(tuple(int(x) + 1 for x in P.max(axis=0)), np.nan)
    out[tuple(P.T)] = rec[what].to_numpy(float)
    return out


def field(res, what: str = "residual", section=None, ax=None):
    """Residuals (or fitted values, or the data) of a spatial fit over the field lattice.

    Parameters
    ----------
    res : mvreml.Result
        A fit with a spatial residual.
    what : {"residual", "fitted", "y"}
        Conditional residuals y - Xb - Zu, fitted values Xb + Zu (with the fitted trend), or
        the records.
    section : optional
        The residual section to draw; needed when the fit has several.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
        Missing plots are blank; the first lattice dimension runs horizontally.
    """
    from .plot import _axes

    if what not in ("residual", "fitted", "y"):
        raise ValueError(f"what={what!r}: use 'residual', 'fitted' or 'y'")
    rec, pos = _records(res, section)
    if section is None and "section" in rec and rec["section"].nunique() > 1:
        raise ModelError("the fit has several residual sections (" + ", ".join(map(str, pd.unique(rec["section"])))
                         + "): choose one with section=")
    grid = field_grid(rec, pos, what)
    names = [c[4:] for c in pos]
    if grid.ndim == 1:
        fig, ax = _axes(ax, (6.0, 3.5))
        ax.plot(np.arange(len(grid)), grid, "o-", color="tab:blue")
        ax.set_xlabel(f"{names[0]} position")
        ax.set_ylabel(what)
    else:
        fig, ax = _axes(ax, (6.0, 4.8))
        lim = np.nanmax(np.abs(grid)) if what == "residual" else None
        im = ax.imshow(grid.T, origin="lower", cmap="RdBu_r" if what == "residual" else "viridis",
                       vmin=-lim if lim else None, vmax=lim, aspect="auto", interpolation="nearest")
        fig.colorbar(im, ax=ax, label=what)
        ax.set_xlabel(f"{names[0]} position")
        ax.set_ylabel(f"{names[1]} position")
    ax.set_title(f"{what} over the field" + ("" if section is None else f", section {section}"), fontsize=10)
    return fig
