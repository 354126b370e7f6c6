"""mvreml.demo: the simulated trial and the seed's analysis (models 3 and 4, LRT, corgh)."""
import io
import re

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")

from mvreml import demo  # noqa: E402


def test_simulate_trial_layout_and_determinism():
    a = demo.simulate_trial(seed=7, n_blocks=3, n_families=10, trees_per_plot=2, missing=0.2)
    b = demo.simulate_trial(seed=7, n_blocks=3, n_families=10, trees_per_plot=2, missing=0.2)
    pd.testing.assert_frame_equal(a, b)
    assert list(a.columns) == ["Tree", "Block", "Family", "velocity", "density"]
    assert len(a) == 3 * 10 * 2
    assert isinstance(a["Block"].dtype, pd.CategoricalDtype) and isinstance(a["Family"].dtype, pd.CategoricalDtype)
    # complete blocks: every family has one plot of 2 trees in every block
    assert (a.groupby(["Block", "Family"], observed=False).size() == 2).all()
    c = demo.simulate_trial(seed=8, n_blocks=3, n_families=10, trees_per_plot=2, missing=0.2)
    assert not np.allclose(a["velocity"].fillna(0), c["velocity"].fillna(0))


def test_simulated_moments_match_the_truth():
    """A big trial's raw moments: missing fraction, trait scales, phenotypic correlation."""
    df = demo.simulate_trial(seed=3, n_blocks=40, n_families=200, trees_per_plot=3)
    miss = df[["velocity", "density"]].isna().mean()
    assert miss.to_numpy() == pytest.approx([0.05, 0.05], abs=0.005)
    both = df["velocity"].isna() & df["density"].isna()
    assert both.mean() == pytest.approx(0.05 ** 2, abs=0.001)          # independent
    P = demo.BLOCK_COV + demo.FAMILY_COV + demo.RESIDUAL_COV
    v = df[["velocity", "density"]].var().to_numpy()
    np.testing.assert_allclose(v, np.diag(P), rtol=0.1)
    r = df["velocity"].corr(df["density"])
    assert r == pytest.approx(P[0, 1] / np.sqrt(P[0, 0] * P[1, 1]), abs=0.05)


def test_true_matrices():
    F = demo.FAMILY_COV
    assert F[0, 0] == 82.5 and F[1, 1] == 0.0023
    assert F[0, 1] / np.sqrt(F[0, 0] * F[1, 1]) == pytest.approx(0.37)
    R = demo.RESIDUAL_COV
    assert 0.2 <= R[0, 1] / np.sqrt(R[0, 0] * R[1, 1]) <= 0.3
    for M in (demo.BLOCK_COV, F, R):
        assert np.all(np.linalg.eigvalsh(M) > 0)


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    plots = tmp_path_factory.mktemp("plots")
    out = io.StringIO()
    fits = demo.run_demo(seed=1, plots=plots, out=out)
    return fits, out.getvalue(), plots


def test_model3_reproduces_univariate_fits(ran):
    fits, _, _ = ran
    m3, uv = fits["model3"], fits["univariate"]
    assert all(r.converged for r in uv.values()) and m3.converged
    assert m3.loglik == pytest.approx(sum(r.loglik for r in uv.values()), abs=1e-6)
    for term in ("Block", "Family", "units"):
        for trait, r in uv.items():
            assert m3.covariance(term).loc[trait, trait] == pytest.approx(
                r.covariance(term).iloc[0, 0], rel=1e-5)
    assert fits["comparison"]["rel_diff"].max() < 1e-5


def test_lrt_and_corgh(ran):
    fits, text, _ = ran
    m3, m4, mc, test = fits["model3"], fits["model4"], fits["model4_corgh"], fits["lrt"]
    assert m4.converged and mc.converged
    assert test.df == 3
    assert test.statistic == pytest.approx(2 * (m4.loglik - m3.loglik), rel=1e-12)
    assert re.search(r"= [\d.]+ on 3 df, p = ", text)
    assert mc.loglik == pytest.approx(m4.loglik, abs=1e-5)             # same model, other parameters
    for term in ("Block", "Family", "units"):
        np.testing.assert_allclose(mc.covariance(term), m4.covariance(term), rtol=1e-4)


def test_genetic_correlation_reported(ran):
    fits, text, _ = ran
    m4 = fits["model4"]
    C = m4.covariance("Family")
    rg = C.loc["density", "velocity"] / np.sqrt(C.loc["velocity", "velocity"] * C.loc["density", "density"])
    row = m4.correlation("Family", se=True).iloc[0]
    assert row["estimate"] == pytest.approx(rg, rel=1e-10)
    assert 0 < row["std_error"] < 0.5
    assert f"family = genetic correlation       {rg:.3f}" in text
    truth = fits["truth"].set_index(["term", "quantity"])["true"]
    assert truth[("Family", "correlation")] == pytest.approx(0.37)


def test_demo_plots_written(ran):
    fits, _, plots = ran
    names = sorted(p.name for p in plots.iterdir())
    assert names == sorted(p.name for p in fits["plots"])
    assert {"trait_scatter.png", "loglik_trace_model4.png", "varcomp_model4.png",
            "correlation_Family.png", "blup_Family_velocity.png"} <= set(names)
    assert all((plots / n).stat().st_size > 5000 for n in names)
