"""mvreml.plot.variogram and mvreml.plot.field (Agg backend): the drawn arrays are the sample
variogram and the residual / fitted values of the fit, cell by cell, blank at missing plots."""
import warnings

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

import mvreml  # noqa: E402
from mvreml import plot  # noqa: E402
from mvreml.errors import ModelError  # noqa: E402


@pytest.fixture(scope="module")
def slatehall(data_dir):
    df = pd.read_csv(data_dir / "agridat" / "gilmour.slatehall.csv")
    df = df.assign(rowf=df["row"].astype(str), colf=df["col"].astype(str))
    # three plots without a record: blank cells of the field
    df.loc[[5, 40, 77], "yield"] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = mvreml.fit("yield ~ gen + row", random="~ rowf + colf", residual="~ ar1(col):ar1(row)", data=df)
    return df, res


def test_variogram_heatmap_and_surface_draw_the_sample_variogram(slatehall, tmp_path):
    _, res = slatehall
    v = res.variogram()
    fig = plot.variogram(res)
    im = fig.axes[0].images[0].get_array()
    assert im.shape == (v["lag_col"].max() + 1, v["lag_row"].max() + 1)
    for lc, lr, gamma, _ in v.itertuples(index=False):
        assert im[lc, lr] == pytest.approx(gamma)
    assert np.ma.is_masked(im[0, 0]) or np.isnan(im[0, 0])       # no lag (0, 0)
    assert fig.axes[0].get_xlabel() == "row displacement" and fig.axes[0].get_ylabel() == "col displacement"
    fig.savefig(tmp_path / "v.png", dpi=50)
    plt.close(fig)
    fig = plot.variogram(res, kind="surface", max_lag=4)
    w = res.variogram(max_lag=4)
    segs = fig.axes[0].collections[0]._segments3d
    z = np.concatenate([np.asarray(s)[:, 2] for s in segs])
    z = z[np.isfinite(z)]
    assert set(np.round(z, 6)) == set(np.round(w["gamma"].to_numpy(), 6))
    plt.close(fig)
    with pytest.raises(ValueError, match="heatmap"):
        plot.variogram(res, kind="contour")


def test_field_draws_residuals_and_fitted_blank_at_missing_plots(slatehall):
    df, res = slatehall
    rec = res.residuals()
    for what in ("residual", "fitted"):
        fig = plot.field(res, what=what)
        im = fig.axes[0].images[0].get_array()          # rows: row positions, columns: col positions
        assert im.shape == (df["row"].max(), df["col"].max())
        for pc, pr, val in zip(rec["pos_col"], rec["pos_row"], rec[what]):
            assert im[pr, pc] == pytest.approx(val)
        gone = df.loc[[5, 40, 77]]
        for c, r in zip(gone["col"], gone["row"]):
            assert np.ma.is_masked(im[r - 1, c - 1]) or np.isnan(im[r - 1, c - 1])
        plt.close(fig)


def test_spatial_plots_refuse_what_they_cannot_draw(slatehall):
    df, _ = slatehall
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = mvreml.fit("yield ~ gen", random="~ rowf", data=df)
        two = mvreml.fit("yield ~ gen", random="~ rowf", data=df.assign(half=np.where(df["col"] <= 5, "A", "B")),
                         residual="~ dsum(~ ar1(col):ar1(row) | half)")
    with pytest.raises(ModelError, match="need a spatial residual"):
        plot.field(plain)
    with pytest.raises(ModelError, match="choose one with section="):
        plot.field(two)
    fig = plot.field(two, section="B")
    rec = two.residuals()
    b = rec[rec["section"] == "B"]
    im = fig.axes[0].images[0].get_array()
    assert int(np.sum(~np.isnan(np.ma.filled(im, np.nan)))) == len(b)
    plt.close(fig)
    with pytest.raises(ModelError, match="not a residual section; sections: A, B"):
        plot.variogram(two, section="C")
    pooled = plot.variogram(two)
    assert pooled.axes[0].images[0].get_array().shape[0] == 5      # col lags 0..4 within a half
    plt.close(pooled)
