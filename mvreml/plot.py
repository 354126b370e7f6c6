"""Figures of data and fits: the seed's trait scatter, the log L trace, variance components,
correlation matrices and BLUPs with intervals; for spatial fits the sample variogram and the
residuals over the field (:mod:`mvreml._spatial_plot`).

matplotlib is an optional dependency (``pip install mvreml[plot]``) and is imported only
when a function here is called.  Every function draws on ``ax`` when given (its figure is
returned) or on a new figure, and returns the :class:`matplotlib.figure.Figure`.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

__all__ = ["trait_scatter", "loglik_trace", "varcomp_intervals", "correlation_heatmap", "blup_intervals",
           "variogram", "field"]

from ._spatial_plot import field, variogram  # noqa: E402,F401  (the spatial figures)

Z95 = 1.959963984540054     # two-sided 95% normal quantile


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("mvreml's plots need matplotlib: pip install mvreml[plot] "
                          f"(or pip install matplotlib); import failed with: {exc}") from None
    return plt


def _axes(ax, size):
    """(figure, axes): ``ax`` and its figure, or a new figure of the given size."""
    if ax is not None:
        return ax.figure, ax
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=size, layout="constrained")
    return fig, ax


def trait_scatter(data: pd.DataFrame, x: str, y: str, ax=None):
    """Scatter plot of two responses, with their correlation (pairwise complete rows).

    Parameters
    ----------
    data : DataFrame
        One row per unit.
    x, y : str
        Column names of the two responses.
    ax : matplotlib Axes, optional
    """
    for col in (x, y):
        if col not in data.columns:
            raise KeyError(f"column {col!r} is not in the data (columns: {', '.join(map(str, data.columns))})")
    fig, ax = _axes(ax, (5.5, 4.5))
    both = data[[x, y]].apply(pd.to_numeric, errors="coerce").dropna()
    r = both[x].corr(both[y]) if len(both) > 2 else math.nan
    ax.scatter(both[x], both[y], s=10, alpha=0.45, edgecolors="none", color="tab:blue")
    if len(both) > 2:
        slope, icpt = np.polyfit(both[x], both[y], 1)
        xs = np.array([both[x].min(), both[x].max()])
        ax.plot(xs, icpt + slope * xs, color="tab:red", lw=1.5, label="least-squares line")
        ax.legend(loc="upper left", frameon=False, fontsize=9)
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(f"{y} against {x}: r = {r:.2f} (n = {len(both)} units with both)", fontsize=10)
    ax.grid(alpha=0.3)
    return fig


def loglik_trace(res, ax=None):
    """REML log-likelihood by iteration (from ``res.history``), marked by step kind.

    The start is usually far below the maximum, so the y axis shows ``log L - max log L`` on a
    symmetric log scale; steps other than full AI steps (halved, EM) are marked apart.

    Parameters
    ----------
    res : mvreml.Result
    ax : matplotlib Axes, optional
    """
    h = res.history
    fig, ax = _axes(ax, (6.0, 4.0))
    it = h["iteration"].to_numpy(dtype=int)
    ll = h["loglik"].to_numpy(dtype=float)
    gap = ll - np.nanmax(ll)
    ax.plot(it, gap, color="0.6", lw=1, zorder=1)
    kinds = h["step"].astype(str).to_numpy()
    groups = {"start": kinds == "start", "full AI step": kinds == "AI",
              "EM step": np.char.startswith(kinds.astype(str), "EM")}
    groups["shortened AI step"] = ~(groups["start"] | groups["full AI step"] | groups["EM step"])
    styles = {"start": ("s", "0.3"), "full AI step": ("o", "tab:blue"),
              "shortened AI step": ("D", "tab:orange"), "EM step": ("^", "tab:red")}
    for name, mask in groups.items():
        if mask.any():
            marker, color = styles[name]
            ax.scatter(it[mask], gap[mask], marker=marker, color=color, label=name, zorder=2, s=30)
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.set_xlabel("iteration")
    ax.set_ylabel("log L - final log L")
    state = "converged" if res.converged else "NOT converged"
    ax.set_title(f"REML iterations: final log L = {ll[-1]:.4f} ({state})", fontsize=10)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    ax.grid(alpha=0.3)
    return fig


def _element_table(res) -> pd.DataFrame:
    """Covariance-matrix elements of every term with delta-method SEs and the phenotypic scale."""
    comp = res.components.copy()
    comp["std_error"] = np.sqrt(np.clip(np.diag(res.components_vcov), 0, None))
    var = comp[comp["trait_1"] == comp["trait_2"]]
    total = var.groupby("trait_1")["estimate"].sum()
    comp["scale"] = np.sqrt(total.reindex(comp["trait_1"]).to_numpy() * total.reindex(comp["trait_2"]).to_numpy())
    comp["label"] = [f"{t} [{a}]" if a == b else f"{t} [{a}, {b}]"
                     for t, a, b in zip(comp["term"], comp["trait_1"], comp["trait_2"])]
    return comp


def varcomp_intervals(res, relative: bool = True, ax=None):
    """Variance and covariance components with +-1.96 SE intervals.

    Components are the elements of each term's trait covariance matrix (for corgh and other
    structures too, with delta-method SEs).  Traits may differ in scale by orders of
    magnitude, so by default each element is divided by the phenotypic (co)variance scale
    ``sqrt(P_ii P_jj)`` (P = sum of all terms' matrices): a variance then reads as its
    share of the trait's variance, a covariance as its contribution to the phenotypic
    correlation.  The absolute estimate +- SE is written beside each row.

    Parameters
    ----------
    res : mvreml.Result
    relative : bool
        False plots the raw estimates (one common axis).
    ax : matplotlib Axes, optional
    """
    comp = _element_table(res)
    n = len(comp)
    fig, ax = _axes(ax, (7.5, 0.45 * n + 1.4))
    scale = comp["scale"].to_numpy(dtype=float) if relative else np.ones(n)
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
    est = comp["estimate"].to_numpy(dtype=float) / scale
    half = Z95 * comp["std_error"].to_numpy(dtype=float) / scale
    pos = np.arange(n)[::-1]
    variance = (comp["trait_1"] == comp["trait_2"]).to_numpy()
    for mask, color, name in ((variance, "tab:blue", "variance"), (~variance, "tab:purple", "covariance")):
        if mask.any():
            ax.errorbar(est[mask], pos[mask], xerr=np.where(np.isfinite(half[mask]), half[mask], 0.0),
                        fmt="o", color=color, capsize=3, label=name)
    ax.axvline(0.0, color="0.5", lw=0.8)
    ax.set_yticks(pos, comp["label"])
    ax.set_ylim(-0.7, n - 0.3)
    for p, e, s in zip(pos, comp["estimate"], comp["std_error"]):
        text = f"{e:.4g} ± {s:.2g}" if np.isfinite(s) else f"{e:.4g}"
        ax.annotate(text, (1.01, p), xycoords=("axes fraction", "data"), va="center", fontsize=8)
    ax.set_xlabel("estimate / sqrt(P_ii P_jj)  (share of phenotypic (co)variance)" if relative
                  else "estimate")
    ax.set_title("(Co)variance components with 95% intervals (estimate ± 1.96 SE)", fontsize=10)
    ax.legend(loc="best", fontsize=8, framealpha=0.9)
    ax.grid(axis="x", alpha=0.3)
    return fig


def correlation_heatmap(res, term: str, ax=None):
    """Heat map of a term's trait correlation matrix, cells labelled r (SE).

    Parameters
    ----------
    res : mvreml.Result
    term : str
        Term name ("Family", "animal", residual "units").
    ax : matplotlib Axes, optional
    """
    R = res.correlation(term)
    pairs = res.correlation(term, se=True)
    se = {(a, b): s for a, b, s in zip(pairs["trait_1"], pairs["trait_2"], pairs["std_error"])}
    traits = list(R.index)
    t = len(traits)
    fig, ax = _axes(ax, (1.3 * t + 3.0, 1.1 * t + 2.0))
    im = ax.imshow(R.to_numpy(dtype=float), cmap="RdBu_r", vmin=-1.0, vmax=1.0)
    for i, a in enumerate(traits):
        for j, b in enumerate(traits):
            r = R.iloc[i, j]
            s = se.get((a, b), se.get((b, a)))
            text = "NA" if not np.isfinite(r) else (f"{r:.2f}" if i == j or s is None or not np.isfinite(s)
                                                      else f"{r:.2f}\n({s:.2f})")
            ax.text(j, i, text, ha="center", va="center", fontsize=10,
                    color="white" if np.isfinite(r) and abs(r) > 0.6 else "black")
    ax.set_xticks(range(t), traits, rotation=30 if t > 3 else 0)
    ax.set_yticks(range(t), traits)
    fig.colorbar(im, ax=ax, shrink=0.8, label="correlation")
    ax.set_title(f"{term}: trait correlations (SE)", fontsize=10)
    return fig


def blup_intervals(res, term: str, trait: str | None = None, top: int = 30, ax=None):
    """The ``top`` largest BLUPs of a term with +-1.96 sqrt(PEV) intervals.

    Parameters
    ----------
    res : mvreml.Result
    term : str
        Random term name.
    trait : str, optional
        Trait to rank by (default: the term's first trait).
    top : int
        Number of levels shown, best at the top.
    ax : matplotlib Axes, optional
    """
    table = res.blup(term)
    traits = [c for c in table.columns if not str(c).startswith("pev_")]
    trait = traits[0] if trait is None else trait
    if trait not in traits:
        raise KeyError(f"term {term!r} has no BLUPs for trait {trait!r} (traits: {', '.join(traits)})")
    sel = table.sort_values(trait, ascending=False).head(max(int(top), 1))
    k = len(sel)
    fig, ax = _axes(ax, (6.0, 0.22 * k + 1.5))
    pos = np.arange(k)[::-1]
    half = Z95 * np.sqrt(np.clip(sel[f"pev_{trait}"].to_numpy(dtype=float), 0, None))
    ax.errorbar(sel[trait].to_numpy(dtype=float), pos, xerr=half, fmt="o", ms=4, color="tab:green", capsize=2)
    ax.axvline(0.0, color="0.5", lw=0.8)
    ax.set_yticks(pos, [str(i) for i in sel.index], fontsize=8 if k > 20 else 9)
    ax.set_ylim(-0.7, k - 0.3)
    ax.set_xlabel(f"BLUP of {trait} ± 1.96 sqrt(PEV)")
    ax.set_title(f"{term}: top {k} of {len(table)} levels by {trait}", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return fig
