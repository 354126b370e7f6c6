"""The seed's trial, end to end: a simulated randomized complete block trial with random
blocks and random families, two traits (acoustic velocity and basic density) whose variances
are 10^4 apart, fitted univariately and jointly as in the blog post the project grew from.

``python -m mvreml.cli demo`` (or ``mvreml demo``) runs :func:`run_demo`.

The true (co)variance matrices, traits ordered (velocity, density):

* ``FAMILY_COV``: family variances 82.5 and 0.0023 (the blog's estimates, 82.48 and
  0.002264) and a covariance giving a genetic correlation of 0.37.  With open-pollinated
  (half-sib) families the additive variance is 4 x the family variance.
* ``RESIDUAL_COV``: tree-within-plot variances 740 and 0.016, correlation 0.25, so that the
  heritability-like ratios 4 sigma2_F / (sigma2_F + sigma2_e) are 0.40 for velocity and
  0.50 for density (typical of such trials) and the phenotypic correlation is about 0.26
  (the blog's scatter plot shows ~0.2).
* ``BLOCK_COV``: block variances 60 and 0.0012 (6-7% of each trait's total variance) with a
  modest correlation of 0.3.  Five blocks say little about a block covariance; blocks
  much smaller than this often put the estimated block matrix on its singular boundary,
  where the fit is harder (the blog readers' "Singularity in Average Information Matrix").
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["simulate_trial", "run_demo", "TRAITS", "MEANS", "FAMILY_COV", "BLOCK_COV", "RESIDUAL_COV"]

TRAITS = ("velocity", "density")
MEANS = np.array([250.0, 0.45])          # arbitrary: means do not enter any variance component


def _cov(v1: float, v2: float, r: float) -> np.ndarray:
    c = r * np.sqrt(v1 * v2)
    return np.array([[v1, c], [c, v2]])


FAMILY_COV = _cov(82.5, 0.0023, 0.37)
BLOCK_COV = _cov(60.0, 0.0012, 0.30)
RESIDUAL_COV = _cov(740.0, 0.016, 0.25)

# the models of the blog post (asreml-R 4 notation)
UNIVARIATE_RANDOM = "~ Block + Family"
BIVARIATE_FIXED = "cbind(velocity, density) ~ trait"
MODEL3 = dict(random="~ diag(trait):Block + diag(trait):Family", residual="~ units:diag(trait)")
MODEL4 = dict(random="~ us(trait):Block + us(trait):Family", residual="~ units:us(trait)")
MODEL4_CORGH = dict(random="~ corgh(trait):Block + corgh(trait):Family", residual="~ units:corgh(trait)")


def simulate_trial(seed: int = 1, n_blocks: int = 5, n_families: int = 100, trees_per_plot: int = 3,
                   missing: float = 0.05) -> pd.DataFrame:
    """Simulate the seed's randomized complete block trial.

    Every family has one plot of ``trees_per_plot`` trees in each block.  Block effects,
    family effects and tree residuals are bivariate normal with covariances
    :data:`BLOCK_COV`, :data:`FAMILY_COV` and :data:`RESIDUAL_COV`.

    Parameters
    ----------
    seed : int
        Seed of the random generator; the same seed gives the same trial.
    n_blocks, n_families, trees_per_plot : int
        Size of the trial.
    missing : float
        Fraction of each trait set to NaN, independently for the two traits.

    Returns
    -------
    DataFrame
        Columns Tree (int), Block and Family (categoricals of labels "B01"..., "F001"...),
        velocity and density (floats, NaN where missing).
    """
    if min(n_blocks, n_families, trees_per_plot) < 1:
        raise ValueError("n_blocks, n_families and trees_per_plot must be at least 1")
    if not 0.0 <= missing < 1.0:
        raise ValueError(f"missing must be in [0, 1), got {missing}")
    rng = np.random.default_rng(seed)
    blocks = [f"B{i + 1:02d}" for i in range(n_blocks)]
    families = [f"F{j + 1:03d}" for j in range(n_families)]
    # each block is an independent randomisation of families to plots
    b_idx = np.repeat(np.arange(n_blocks), n_families * trees_per_plot)
    f_idx = np.concatenate([np.repeat(rng.permutation(n_families), trees_per_plot) for _ in blocks])
    n = b_idx.size
    u_block = rng.multivariate_normal(np.zeros(2), BLOCK_COV, size=n_blocks)
    u_family = rng.multivariate_normal(np.zeros(2), FAMILY_COV, size=n_families)
    e = rng.multivariate_normal(np.zeros(2), RESIDUAL_COV, size=n)
    y = MEANS + u_block[b_idx] + u_family[f_idx] + e
    for j in range(2):
        y[rng.random(n) < missing, j] = np.nan
    return pd.DataFrame({
        "Tree": np.arange(1, n + 1),
        "Block": pd.Categorical.from_codes(b_idx, blocks),
        "Family": pd.Categorical.from_codes(f_idx, families),
        TRAITS[0]: y[:, 0],
        TRAITS[1]: y[:, 1],
    })


def _fit(fixed: str, data: pd.DataFrame, **kw):
    """mvreml.fit without the expected 'rows dropped' notes (univariate fits drop the
    trees whose trait is missing: that is the point of fitting them one at a time)."""
    import warnings

    from .api import fit
    from .errors import DataWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return fit(fixed, data=data, **kw)


def _varcomp_text(res) -> str:
    vc = res.varcomp
    table = pd.DataFrame({"component": vc["estimate"], "std.error": vc["std_error"],
                          "z.ratio": vc["z_ratio"], "bound": vc["bound"]}, index=list(vc.index))
    fmt = {"component": lambda v: f"{v:.6g}", "std.error": lambda v: f"{v:.4g}",
           "z.ratio": lambda v: f"{v:.2f}"}
    return "\n".join("    " + line for line in table.to_string(formatters=fmt).splitlines())


def _univariate_comparison(uv: dict, m3) -> tuple[pd.DataFrame, float]:
    """Model 3's components against the univariate ones: table and the largest relative gap."""
    rows = []
    for term in ("Block", "Family", "units"):
        cov3 = m3.covariance(term)
        for tr, res in uv.items():
            u = float(res.covariance(term).iloc[0, 0])
            v = float(cov3.loc[tr, tr])
            rows.append(dict(term=term, trait=tr, univariate=u, model3=v, rel_diff=abs(v - u) / abs(u)))
    table = pd.DataFrame(rows)
    return table, float(table["rel_diff"].max())


def _truth_table(m4) -> pd.DataFrame:
    truth = {"Block": BLOCK_COV, "Family": FAMILY_COV, "units": RESIDUAL_COV}
    rows = []
    for term, T in truth.items():
        C = m4.covariance(term)
        R = m4.correlation(term)
        for i, j, what in ((0, 0, f"var {TRAITS[0]}"), (1, 1, f"var {TRAITS[1]}"), (1, 0, "correlation")):
            true = T[i, j] if i == j else T[i, j] / np.sqrt(T[i, i] * T[j, j])
            est = C.iloc[i, j] if i == j else R.iloc[i, j]
            rows.append(dict(term=term, quantity=what, true=true, estimate=est))
    return pd.DataFrame(rows)


def _write_plots(directory, data, m4) -> list:
    from . import plot

    plt = plot._pyplot()
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    figures = {
        "trait_scatter.png": plot.trait_scatter(data, TRAITS[0], TRAITS[1]),
        "loglik_trace_model4.png": plot.loglik_trace(m4),
        "varcomp_model4.png": plot.varcomp_intervals(m4),
        "correlation_Family.png": plot.correlation_heatmap(m4, "Family"),
        "correlation_units.png": plot.correlation_heatmap(m4, "units"),
        "blup_Family_velocity.png": plot.blup_intervals(m4, "Family", TRAITS[0]),
        "blup_Family_density.png": plot.blup_intervals(m4, "Family", TRAITS[1]),
    }
    paths = []
    for name, fig in figures.items():
        path = out / name
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def run_demo(seed: int = 1, plots=None, out=sys.stdout) -> dict:
    """Run the seed's analysis on a simulated trial and print what the blog post shows.

    Fits, in order: the univariate models ``trait ~ 1``, random ``~ Block + Family`` for each
    trait; model 3 (diagonal trait structures: identical to the univariate fits); model 4
    (``us(trait)`` everywhere) and its ``corgh(trait)`` version; then the likelihood-ratio
    test of model 3 against model 4 and the genetic (family) correlation with its SE.

    Parameters
    ----------
    seed : int
        Seed of :func:`simulate_trial`.
    plots : path, optional
        Directory to write PNG figures into (needs matplotlib).
    out : file
        Where the report is printed.

    Returns
    -------
    dict
        data, univariate (trait -> Result), model3, model4, model4_corgh, lrt, comparison
        (model 3 vs univariate components), truth (true vs model 4 estimates), plots (paths).
    """
    from .results import lrt

    def say(*lines):
        for line in lines:
            print(line, file=out)

    t0 = time.perf_counter()
    data = simulate_trial(seed)
    n_obs = data[list(TRAITS)].notna().sum()
    say(f"Simulated randomized complete block trial (seed {seed}): {len(data)} trees, "
        f"{data['Block'].nunique()} blocks x {data['Family'].nunique()} families",
        "  observed: " + ", ".join(f"{t} {n_obs[t]}" for t in TRAITS)
        + f"; phenotypic correlation {data[TRAITS[0]].corr(data[TRAITS[1]]):.3f}", "")

    uv = {tr: _fit(f"{tr} ~ 1", data, random=UNIVARIATE_RANDOM) for tr in TRAITS}
    for tr, res in uv.items():
        say(f"Univariate model: {tr} ~ 1, random {UNIVARIATE_RANDOM}    log L = {res.loglik:.4f}",
            _varcomp_text(res), "")

    m3 = _fit(BIVARIATE_FIXED, data, **MODEL3)
    sum_ll = sum(r.loglik for r in uv.values())
    comparison, worst = _univariate_comparison(uv, m3)
    say(f"Model 3: {BIVARIATE_FIXED}, random {MODEL3['random']}, residual {MODEL3['residual']}",
        f"    log L = {m3.loglik:.6f}", _varcomp_text(m3),
        f"  same as the univariate fits: sum of their log L = {sum_ll:.6f} "
        f"(difference {m3.loglik - sum_ll:.2e}); largest relative difference of a component {worst:.1e}", "")

    m4 = _fit(BIVARIATE_FIXED, data, **MODEL4)
    say(f"Model 4: random {MODEL4['random']}, residual {MODEL4['residual']}",
        f"    log L = {m4.loglik:.6f}  (model 3 + {m4.loglik - m3.loglik:.2f})", _varcomp_text(m4), "")

    test = lrt(m3, m4)
    say("Likelihood-ratio test, model 3 against model 4 (the three covariances):",
        f"    2 (logL4 - logL3) = {test.statistic:.3f} on {test.df} df, p = {test.pvalue:.3g}", "")

    say("Correlations between traits in model 4 (delta-method SE):")
    for term, what in (("Block", "block"), ("Family", "family = genetic correlation"), ("units", "residual")):
        r = m4.correlation(term, se=True).iloc[0]
        say(f"    {what:32s} {r['estimate']:7.3f}  (SE {r['std_error']:.3f})")
    cov = m4.covariance("Family")
    a, b = TRAITS
    ratio = m4.vpredict(f"Family[{a},{b}] / sqrt(Family[{a},{a}] * Family[{b},{b}])")
    say(f"  as in the blog: {cov.loc[a, b]:.6g} / sqrt({cov.loc[a, a]:.6g} * {cov.loc[b, b]:.6g}) = "
        f"{ratio['estimate']:.3f} (vpredict SE {ratio['std_error']:.3f})", "")

    m4c = _fit(BIVARIATE_FIXED, data, **MODEL4_CORGH)
    say(f"Model 4 with corgh(trait) (correlations + heterogeneous variances): log L = {m4c.loglik:.6f}, "
        f"us(trait) gave {m4.loglik:.6f} (difference {m4c.loglik - m4.loglik:.1e})",
        _varcomp_text(m4c), "")

    truth = _truth_table(m4)
    say("True values of the simulation against model 4:",
        "\n".join("    " + line for line in truth.to_string(
            index=False, formatters={"true": lambda v: f"{v:.4g}", "estimate": lambda v: f"{v:.4g}"}).splitlines()))
    paths = _write_plots(plots, data, m4) if plots is not None else []
    if paths:
        say("", f"Figures written to {plots}: " + ", ".join(p.name for p in paths))
    say("", f"Demo done in {time.perf_counter() - t0:.1f} s.")
    return dict(data=data, univariate=uv, model3=m3, model4=m4, model4_corgh=m4c, lrt=test,
                comparison=comparison, truth=truth, plots=paths)
