"""Bad inputs in formulas, data and fit options (issue 18): a typed error or an announced
change, never a silent wrong model; warnings point at the caller's line."""
import time
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import mvreml
from mvreml.design import build_design
from mvreml.errors import ArgumentError, DataError, DataWarning, FormulaError, MvremlWarning, warn
from mvreml.formula import parse_fixed, parse_random, parse_residual
from mvreml.rank import independent_columns


@pytest.fixture
def df():
    rng = np.random.default_rng(1)
    n = 80
    g = rng.integers(0, 8, n)
    x = rng.uniform(1, 3, n)
    return pd.DataFrame({"y": 2 * np.log(x) + rng.standard_normal(8)[g] + rng.standard_normal(n),
                         "x": x, "Family": g.astype(str), "k": rng.integers(0, 5, n),
                         "d": rng.integers(0, 2, n), "z": rng.standard_normal(n)})


def quiet_fit(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MvremlWarning)
        return mvreml.fit(*args, **kwargs)


def same_fit(a, b):
    assert a.loglik == pytest.approx(b.loglik, abs=1e-8)
    np.testing.assert_allclose(a.fixef.iloc[:, 0].to_numpy(), b.fixef.iloc[:, 0].to_numpy(), rtol=1e-6)


# ---------------------------------------------------------------- formula functions
def test_log_and_numpy_functions_in_the_fixed_formula(df):
    # 'log' used to resolve to design.py's logger ("'Logger' object is not callable")
    df["lx"] = np.log(df["x"])
    same_fit(quiet_fit("y ~ log(x)", random="~ Family", data=df),
             quiet_fit("y ~ lx", random="~ Family", data=df))
    df["sx"] = np.sqrt(df["x"])
    same_fit(quiet_fit("y ~ sqrt(x) + np.exp(z)", random="~ Family", data=df.assign(ez=np.exp(df.z))),
             quiet_fit("y ~ sx + ez", random="~ Family", data=df.assign(ez=np.exp(df.z))))


def test_r_factor_is_c(df):
    via_factor = quiet_fit("y ~ factor(k)", random="~ Family", data=df)
    via_c = quiet_fit("y ~ C(k)", random="~ Family", data=df)
    as_text = quiet_fit("y ~ ks", random="~ Family", data=df.assign(ks=df.k.astype(str)))
    same_fit(via_factor, via_c)
    same_fit(via_factor, as_text)
    assert len(via_factor.fixef) == 1 + df.k.nunique() - 1


def test_r_power_inside_i(df):
    spec = parse_fixed("y ~ I(x^2) + I(k %% 2)")
    assert [(t.label, t.rhs) for t in spec.terms] == [("I(x^2)", "I(x ** 2)"), ("I(k %% 2)", "I(k % 2)")]
    same_fit(quiet_fit("y ~ x + I(x^2)", random="~ Family", data=df),
             quiet_fit("y ~ x + x2", random="~ Family", data=df.assign(x2=df.x ** 2)))


# ---------------------------------------------------------------- integer codes as covariates
def test_integer_codes_used_as_covariate_warn(df):
    with pytest.warns(DataWarning, match=r"integer column 'k'.*covariate.*C\(k\).*--factors k"):
        res = mvreml.fit("y ~ k", random="~ Family", data=df)
    assert list(res.fixef.index) == ["(Intercept)", "k"]          # R's rule kept: one slope
    assert any("'k'" in m and "covariate" in m for m in res.diagnostics)


@pytest.mark.parametrize("formula", ["y ~ C(k)", "y ~ factor(k)", "y ~ d", "y ~ z", "y ~ I(k)"])
def test_no_covariate_warning_for_factors_binary_or_real_columns(df, formula):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        warnings.simplefilter("ignore", mvreml.errors.BoundaryWarning)
        mvreml.fit(formula, random="~ Family", data=df)


# ---------------------------------------------------------------- where warnings point
def test_warnings_point_at_the_callers_line(df):
    df.loc[[1, 2], "y"] = np.nan
    df["Family"] = df["Family"].where(df.index > 5, "0")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mvreml.fit("y ~ k", random="~ Family", data=df)
        mvreml.fit("y ~ x", random="~ Family", data=df, init="pairwise")
    ours = [w for w in caught if issubclass(w.category, MvremlWarning)]
    assert {w.category for w in ours} >= {DataWarning}
    assert {w.filename for w in ours} == {__file__}


def test_warn_helper_skips_mvreml_frames():
    def user():
        warn("x", DataWarning)
    with pytest.warns(DataWarning) as rec:
        user()
    assert rec[0].filename == __file__


# ---------------------------------------------------------------- runaway formulas
def test_huge_crossing_refused_fast():
    t0 = time.perf_counter()
    with pytest.raises(FormulaError, match="expands to 4194303 terms"):
        parse_fixed("y ~ " + "*".join(f"x{i}" for i in range(1, 23)))
    assert time.perf_counter() - t0 < 1.0
    assert len(parse_fixed("y ~ " + "*".join(f"x{i}" for i in range(1, 11))).terms) == 1023


@pytest.mark.parametrize("nest", ["(", "log(", "f("])
def test_deep_nesting_is_a_formula_error_fast(nest):
    t0 = time.perf_counter()
    with pytest.raises(FormulaError, match="nested more than"):
        parse_fixed("y ~ I(" + nest * 3000 + "x" + ")" * 3001)
    with pytest.raises(FormulaError, match="nested more than"):
        parse_random("~ " + nest * 3000 + "g" + ")" * 3000, parse_fixed("y ~ 1").response)
    assert time.perf_counter() - t0 < 1.0
    parse_fixed("y ~ " + "log(" * 20 + "x" + ")" * 20)      # reasonable nesting still parses


# ---------------------------------------------------------------- non-finite and huge covariates
@pytest.mark.parametrize("bad", [np.inf, -np.inf])
def test_infinite_covariate_is_a_data_error(df, bad):
    df.index = [f"r{i}" for i in range(len(df))]
    df.loc["r7", "x"] = bad
    with pytest.raises(DataError, match=r"'x'.*infinite.*'r7'") as e:
        mvreml.fit("y ~ x", random="~ Family", data=df)
    assert e.value.column == "x"


@pytest.mark.parametrize("value, shown", [(0.0, "-inf"), (-1.0, "nan")])
def test_non_finite_value_of_a_transformed_covariate(df, value, shown):
    df.loc[4, "x"] = value
    with warnings.catch_warnings():
        warnings.simplefilter("error")                 # and no numpy RuntimeWarning beside it
        with pytest.raises(DataError, match=rf"'log\(x\)' is {shown} in row 4") as e:
            mvreml.fit("y ~ log(x)", random="~ Family", data=df)
    assert e.value.column == "log(x)"


def test_infinite_covariate_in_a_dropped_row_is_harmless(df):
    df.loc[3, "x"] = np.inf
    df.loc[3, "y"] = np.nan
    with pytest.warns(DataWarning, match="1 rows with no observed trait"):
        quiet = mvreml.fit("y ~ x", random="~ Family", data=df)
    assert quiet.n_obs == len(df) - 1


@pytest.mark.parametrize("scale", [1e160, 1e-170])
def test_covariate_beyond_the_squarable_range_is_a_data_error(df, scale):
    df["x"] = df["x"] * scale
    with pytest.raises(DataError, match=r"column 'x' reaches .*rescale") as e:
        mvreml.fit("y ~ x", random="~ Family", data=df)
    assert e.value.column == "x"


def test_rank_check_survives_huge_columns():
    rng = np.random.default_rng(0)
    X = np.column_stack([np.ones(30), rng.standard_normal(30) * 1e160, rng.standard_normal(30)])
    assert independent_columns(sp.csc_matrix(X)) == ([0, 1, 2], [])
    X[:, 2] = 3e-160 * X[:, 1]                      # aliased with the huge column: still found
    assert independent_columns(sp.csc_matrix(X)) == ([0, 1], [2])


def test_large_but_squarable_covariate_still_fits(df):
    small = quiet_fit("y ~ x", random="~ Family", data=df)
    big = quiet_fit("y ~ x", random="~ Family", data=df.assign(x=df.x * 1e100))
    assert big.fixef.iloc[1, 0] == pytest.approx(small.fixef.iloc[1, 0] * 1e-100, rel=1e-6)


# ---------------------------------------------------------------- blanks and "nan" in factors
def _design(df, fixed="y ~ 1", random="~ Family"):
    fs = parse_fixed(fixed)
    return build_design(df, fs, parse_random(random, fs.response), parse_residual(None, fs.response))


def test_blank_factor_levels_are_missing_and_nan_text_stays_a_level(df):
    df.loc[[0, 1, 2], "Family"] = ["", "  ", np.nan]
    df.loc[[3, 4], "Family"] = "nan"
    with pytest.warns(DataWarning) as rec:
        design = _design(df)
    text = " | ".join(str(w.message) for w in rec)
    assert "3 rows with missing 'Family' (blank or NaN) dropped" in text
    assert "'Family' has 2 values written as text 'nan'" in text
    assert design.n_dropped == 3
    levels = list(design.random[0].levels)
    assert "" not in levels and "nan" in levels
    counts = np.bincount(design.random[0].level_of_unit, minlength=len(levels))
    assert counts[levels.index("nan")] == 2                     # only the text, not the missing


@pytest.mark.parametrize("convert", [lambda s: s.astype(object), lambda s: s.astype("category"),
                                     lambda s: s.astype("string")])
def test_blank_checks_on_other_column_types(df, convert):
    mixed = pd.Series([int(v) for v in df["Family"]], dtype=object)   # object column of numbers
    assert _design(df.assign(Family=mixed)).n_dropped == 0
    text = df["Family"].where(df.index > 3, " ")
    with pytest.warns(DataWarning, match="4 rows with missing 'Family'"):
        assert _design(df.assign(Family=convert(text))).n_dropped == 4


def test_blank_in_a_fixed_factor_is_missing(df):
    df["s"] = np.where(df.index % 2, "m", "f").astype(object)
    df.loc[[5, 6], "s"] = " "
    with pytest.warns(DataWarning, match="2 rows with missing 's'"):
        res = mvreml.fit("y ~ s", random="~ Family", data=df)
    assert list(res.fixef.index) == ["(Intercept)", "s[T.m]"]


# ---------------------------------------------------------------- responses a float cannot hold
def test_complex_response_is_a_data_error(df):
    df["y"] = df["y"] + 1j
    with pytest.raises(DataError, match="'y' is complex") as e:
        mvreml.fit("y ~ 1", random="~ Family", data=df)
    assert e.value.column == "y"
    with pytest.raises(DataError, match="'x' is complex") as e:
        mvreml.fit("z ~ x", random="~ Family", data=df.assign(x=df.x * 1j))
    assert e.value.column == "x"


@pytest.mark.parametrize("dtype", ["int64", "uint64", "Int64"])
def test_integer_response_beyond_2_53_warns(df, dtype):
    df["big"] = (pd.Series((df.y * 1000).round().astype("int64") - int(df.y.min() * 1000) + 2 ** 60)
                 .astype(dtype))
    with pytest.warns(DataWarning, match=r"'big' holds integers beyond 2\^53"):
        _design(df, fixed="big ~ 1")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        _design(df.assign(big=df.k.astype(dtype)), fixed="big ~ 1")   # small integers: silent


# ---------------------------------------------------------------- untyped errors and options
def test_duplicated_column_names(df):
    dup = pd.concat([df, df[["x"]]], axis=1)
    with pytest.raises(DataError, match="'x'.*2 times") as e:
        mvreml.fit("y ~ x", random="~ Family", data=dup)
    assert e.value.column == "x"
    dup = pd.concat([df, df[["Family"]]], axis=1)
    with pytest.raises(DataError, match="'Family'.*2 times"):
        mvreml.fit("y ~ 1", random="~ Family", data=dup)
    quiet_fit("y ~ 1", random="~ Family", data=pd.concat([df, df[["z"]]], axis=1))   # unused: fine


@pytest.mark.parametrize("kwargs, argument", [
    (dict(maxiter="10"), "maxiter"), (dict(maxiter=None), "maxiter"), (dict(maxiter=-5), "maxiter"),
    (dict(maxiter=2.5), "maxiter"), (dict(maxiter=True), "maxiter"),
    (dict(tol="1e-7"), "tol"), (dict(tol=0), "tol"), (dict(tol=-1e-3), "tol"), (dict(tol=np.nan), "tol"),
    (dict(tol=np.inf), "tol"), (dict(relmat=[1, 2]), "relmat"), (dict(relmat={1: None}), "relmat"),
    (dict(ordering="nope"), "ordering"), (dict(fix=3), "fix"), (dict(fix=["Family", 2]), "fix"),
    (dict(missing_animals="drop"), "missing_animals"), (dict(weights=["x"]), "weights"),
    (dict(verbose="yes"), "verbose"),
])
def test_bad_options_are_argument_errors(df, kwargs, argument):
    with pytest.raises(ArgumentError) as e:
        mvreml.fit("y ~ 1", random="~ Family", data=df, **kwargs)
    assert e.value.argument == argument
    assert f"{argument}=" in str(e.value)
    assert isinstance(e.value, mvreml.errors.MvremlError)


def test_good_options_of_other_types_are_accepted(df):
    res = quiet_fit("y ~ 1", random="~ Family", data=df, maxiter=np.int64(30), tol=np.float32(1e-6),
                    ordering="amd")
    assert res.converged


def test_fix_takes_a_single_term_name(df):
    init = {"Family": 0.5}
    one = quiet_fit("y ~ 1", random="~ Family", data=df, init=init, fix="Family")
    listed = quiet_fit("y ~ 1", random="~ Family", data=df, init=init, fix=["Family"])
    assert one.loglik == listed.loglik
    assert one.varcomp.iloc[0, 1] == pytest.approx(0.5)


def test_pedigree_and_lrt_warnings_point_at_the_caller(df):
    table = pd.DataFrame({"animal": ["a", "b", "c"], "sire": ["s", "s", "a"], "dam": ["d", "0", "b"]})
    with pytest.warns(mvreml.errors.PedigreeWarning, match="added as founders") as rec:
        mvreml.Pedigree(table)
    assert rec[0].filename == __file__
    ped = pd.DataFrame({"animal": ["1", "2", "3"], "sire": [0, 0, "1"], "dam": [0, 0, "2"]})
    with pytest.warns(mvreml.errors.PedigreeWarning, match="absent from the pedigree") as rec:
        quiet_fit_but_pedigree = mvreml.fit("y ~ 1", random="~ vm(Family, ped)", data=df,
                                            relmat={"ped": ped}, missing_animals="founders")
    assert quiet_fit_but_pedigree.n_obs == len(df)
    assert {w.filename for w in rec} == {__file__}
    small = quiet_fit("y ~ 1", data=df, maxiter=1)
    big = quiet_fit("y ~ 1", random="~ Family", data=df)
    with pytest.warns(mvreml.errors.ConvergenceWarning, match="did not converge") as rec:
        mvreml.lrt(small, big)
    assert rec[0].filename == __file__


def test_rank_check_refuses_non_finite_columns():
    X = np.column_stack([np.ones(5), [1.0, 2.0, np.inf, 4.0, 5.0]])
    with pytest.raises(DataError, match=r"columns \[1\]"):
        independent_columns(sp.csc_matrix(X))
