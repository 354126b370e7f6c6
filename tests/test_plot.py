"""mvreml.plot: every figure renders (Agg backend) to a non-empty PNG and is returned."""
import sys
import warnings

import matplotlib
import pytest

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import mvreml  # noqa: E402
from mvreml import plot  # noqa: E402
from mvreml.demo import BIVARIATE_FIXED, MODEL4, simulate_trial  # noqa: E402


@pytest.fixture(scope="module")
def fits():
    df = simulate_trial(seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m4 = mvreml.fit(BIVARIATE_FIXED, data=df, **MODEL4)
        uni = mvreml.fit("velocity ~ 1", random="~ Block + Family", data=df)
    assert m4.converged and uni.converged
    return df, m4, uni


def _save(fig, path):
    assert isinstance(fig, Figure)
    fig.savefig(path, dpi=60)
    plt.close(fig)
    assert path.stat().st_size > 1000


def test_each_figure_renders(fits, tmp_path):
    df, m4, uni = fits
    _save(plot.trait_scatter(df, "velocity", "density"), tmp_path / "scatter.png")
    _save(plot.loglik_trace(m4), tmp_path / "trace.png")
    _save(plot.varcomp_intervals(m4), tmp_path / "varcomp.png")
    _save(plot.varcomp_intervals(uni, relative=False), tmp_path / "varcomp_uni.png")
    _save(plot.correlation_heatmap(m4, "Family"), tmp_path / "heat.png")
    _save(plot.blup_intervals(m4, "Family", trait="density", top=10), tmp_path / "blup.png")


def test_figure_content(fits):
    df, m4, uni = fits
    fig = plot.blup_intervals(m4, "Family", trait="density", top=10)
    ax = fig.axes[0]
    shown = [t.get_text() for t in ax.get_yticklabels()]
    best = m4.blup("Family").sort_values("density", ascending=False).index[:10]
    assert shown == list(best)          # ticks listed from the top (best) down
    plt.close(fig)
    fig = plot.varcomp_intervals(uni)
    # relative scale: the three variance shares of a univariate model add up to 1
    (bars,) = fig.axes[0].containers                 # one ErrorbarContainer: variances only
    xs = bars.lines[0].get_xdata()
    assert len(xs) == 3 and sum(xs) == pytest.approx(1.0, rel=1e-12)
    plt.close(fig)
    fig = plot.correlation_heatmap(m4, "Family")
    texts = [t.get_text() for t in fig.axes[0].texts]
    r = m4.correlation("Family").loc["density", "velocity"]
    assert any(t.startswith(f"{r:.2f}\n(") for t in texts)
    plt.close(fig)


def test_draws_on_given_axes(fits):
    df, m4, _ = fits
    fig, axes = plt.subplots(1, 2)
    assert plot.trait_scatter(df, "velocity", "density", ax=axes[0]) is fig
    assert plot.loglik_trace(m4, ax=axes[1]) is fig
    plt.close(fig)


def test_bad_names(fits):
    df, m4, _ = fits
    with pytest.raises(KeyError, match="'height'"):
        plot.trait_scatter(df, "velocity", "height")
    with pytest.raises(KeyError, match="'height'"):
        plot.blup_intervals(m4, "Family", trait="height")


def test_missing_matplotlib_message(fits, monkeypatch):
    df, _, _ = fits
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)     # import now fails
    with pytest.raises(ImportError, match=r"pip install mvreml\[plot\]"):
        plot.trait_scatter(df, "velocity", "density")
