"""Bad input gets a typed error naming the column or term; dropped rows are counted."""

import numpy as np
import pandas as pd
import pytest

import mvreml
from mvreml.errors import DataError, DataWarning, FormulaError, RelmatError


@pytest.fixture
def df():
    rng = np.random.default_rng(0)
    n = 60
    return pd.DataFrame({"y": rng.standard_normal(n), "z": rng.standard_normal(n) * 10,
                         "g": rng.integers(0, 6, n).astype(str), "h": rng.integers(0, 4, n).astype(str),
                         "x": rng.standard_normal(n), "w": rng.uniform(0.5, 2, n),
                         "label": rng.choice(["a", "b"], n)})


def test_missing_response_column(df):
    with pytest.raises(FormulaError, match="'nope'") as e:
        mvreml.fit("nope ~ 1", random="~ g", data=df)
    assert e.value.term == "nope"


def test_non_numeric_response(df):
    with pytest.raises(DataError, match="'label'.*not numeric") as e:
        mvreml.fit("label ~ 1", random="~ g", data=df)
    assert e.value.column == "label"


def test_cbind_of_non_numeric_column(df):
    with pytest.raises(DataError, match="'label'"):
        mvreml.fit("cbind(y, label) ~ trait", random="~ diag(trait):g", data=df)


def test_unknown_column_in_formula(df):
    with pytest.raises(FormulaError, match="'Famly'"):
        mvreml.fit("y ~ 1", random="~ Famly", data=df)
    with pytest.raises(FormulaError, match="'sexx'"):
        mvreml.fit("y ~ 1 + sexx", random="~ g", data=df)


def test_all_na_response(df):
    df["y"] = np.nan
    with pytest.raises(DataError, match="'y'.*no observed value"):
        mvreml.fit("y ~ 1", random="~ g", data=df)


def test_factor_with_one_level(df):
    df["one"] = "a"
    with pytest.raises(DataError, match="'one'"):
        mvreml.fit("y ~ 1", random="~ one", data=df)


@pytest.mark.parametrize("bad", [0.0, -1.0, np.inf])
def test_bad_weights(df, bad):
    df.loc[5, "w"] = bad
    with pytest.raises(DataError, match="'w'") as e:
        mvreml.fit("y ~ 1", random="~ g", data=df, weights="w")
    assert e.value.column == "w"


def test_infinite_response(df):
    df.loc[3, "y"] = np.inf
    with pytest.raises(DataError, match="'y'.*infinite"):
        mvreml.fit("y ~ 1", random="~ g", data=df)


def test_dropped_rows_are_counted_and_reported(df):
    df.loc[[1, 2, 3], "y"] = np.nan
    df.loc[[4], "x"] = np.nan
    with pytest.warns(DataWarning, match="3 rows with no observed trait"):
        res = mvreml.fit("y ~ 1 + x", random="~ g", data=df)
    assert res.n_dropped == 4
    assert res.n_obs == 56
    assert any("'x'" in m for m in res.diagnostics)


def test_aliased_fixed_columns_dropped_with_a_message(df):
    df["x2"] = 2 * df["x"]
    res = mvreml.fit("y ~ 1 + x + x2", random="~ g", data=df)
    assert list(res.fixef.index) == ["(Intercept)", "x"]
    assert any("aliased" in m and "x2" in m for m in res.diagnostics)


def test_multivariate_missing_traits_keep_units(df):
    df.loc[:9, "y"] = np.nan
    df.loc[10:14, "z"] = np.nan
    res = mvreml.fit("cbind(y, z) ~ trait", random="~ diag(trait):g", residual="~ units:us(trait)", data=df)
    assert res.n_obs == 2 * 60 - 15
    assert res.n_units == 60


def test_trait_in_univariate_model(df):
    with pytest.raises(FormulaError, match="trait"):
        mvreml.fit("y ~ trait", random="~ g", data=df)


def test_relmat_missing_and_animals_not_in_pedigree(df):
    with pytest.raises(RelmatError, match="'ped'"):
        mvreml.fit("y ~ 1", random="~ vm(g, ped)", data=df)
    ped = pd.DataFrame({"animal": ["1", "2", "3"], "sire": [0, 0, "1"], "dam": [0, 0, "2"]})
    with pytest.raises(RelmatError, match="not in relationship 'ped'"):
        mvreml.fit("y ~ 1", random="~ vm(g, ped)", data=df, relmat={"ped": ped})


def test_weights_scale_the_residual(df):
    """A weight w on every record gives the residual variance sigma^2 / w: estimates scale by w."""
    a = mvreml.fit("y ~ 1", random="~ g", data=df)
    df["w4"] = 4.0
    b = mvreml.fit("y ~ 1", random="~ g", data=df, weights="w4")
    assert b.varcomp.loc["units", "estimate"] == pytest.approx(4 * a.varcomp.loc["units", "estimate"], rel=1e-6)
    assert b.varcomp.loc["g", "estimate"] == pytest.approx(a.varcomp.loc["g", "estimate"], rel=1e-4)
    assert b.loglik == pytest.approx(a.loglik, abs=1e-7)   # the same V


def test_missing_animals_added_as_founders(df):
    ped = pd.DataFrame({"animal": ["1", "2", "3"], "sire": [0, 0, "1"], "dam": [0, 0, "2"]})
    df["g"] = df["g"].replace({"0": "1", "4": "2"})
    with pytest.raises(RelmatError, match="missing_animals='founders'"):
        mvreml.fit("y ~ 1", random="~ vm(g, ped)", data=df, relmat={"ped": ped})
    with pytest.warns(mvreml.errors.PedigreeWarning, match="added as founders"):
        res = mvreml.fit("y ~ 1", random="~ vm(g, ped)", data=df, relmat={"ped": ped},
                         missing_animals="founders")
    levels = set(res.blup("g").index)
    assert {"1", "2", "3", "5"} <= levels and "0" not in levels
