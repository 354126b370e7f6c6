"""The vpredict expression evaluator: values, exact gradients (vs finite differences), names, errors."""
import math

import numpy as np
import pandas as pd
import pytest

from mvreml.errors import ExpressionError
from mvreml.vpredict import ComponentIndex, Dual, delta_se, evaluate

# Gryphon bivariate animal model (ASReml 4.2, SOURCE.md): animal and residual us(trait) matrices.
TRAITS = ["bwt", "tarsus"]
X = np.array([3.368397, 2.459809, 12.345792, 3.849916, 3.313282, 17.646432])


def _components():
    rows = [(term, a, b) for term in ("animal", "units")
            for a, b in (("bwt", "bwt"), ("tarsus", "bwt"), ("tarsus", "tarsus"))]
    comp = pd.DataFrame(rows, columns=["term", "trait_1", "trait_2"])
    comp["estimate"] = X
    return comp


def _varcomp(labels, kinds, terms):
    return pd.DataFrame({"term": terms, "estimate": 0.0, "std_error": 0.0, "z_ratio": 0.0,
                         "bound": "P", "kind": kinds}, index=pd.Index(labels))


def _us_index():
    labels = [f"{t}:trait!{a}:{b}" for t in ("animal", "units")
              for a, b in (("bwt", "bwt"), ("tarsus", "bwt"), ("tarsus", "tarsus"))]
    kinds = ["variance", "covariance", "variance"] * 2
    vc = _varcomp(labels, kinds, ["animal"] * 3 + ["units"] * 3)
    return ComponentIndex.build(_components(), {"animal": TRAITS, "units": TRAITS}, vc)


def _fd_gradient(f, x, rel=1e-6):
    """Central differences with a relative step, independent of the evaluator."""
    g = np.zeros(x.size)
    for i in range(x.size):
        h = rel * max(abs(x[i]), 1.0)
        xp, xm = x.copy(), x.copy()
        xp[i] += h
        xm[i] -= h
        g[i] = (f(xp) - f(xm)) / (2 * h)
    return g


CASES = [
    ("animal[tarsus,bwt] / sqrt(animal[bwt,bwt] * animal[tarsus,tarsus])",
     lambda x: x[1] / math.sqrt(x[0] * x[2])),
    ("animal[bwt,bwt] / (animal[bwt,bwt] + units[bwt,bwt])", lambda x: x[0] / (x[0] + x[3])),
    ("log(units[tarsus,tarsus]) - exp(-animal[bwt,bwt] / 10) ** 2 + 2 ** (animal[bwt] / 3)",
     lambda x: math.log(x[5]) - math.exp(-x[0] / 10) ** 2 + 2 ** (x[0] / 3)),
    ("(animal[bwt,bwt] + 2*animal[bwt,tarsus] + animal[tarsus,tarsus]) ** 0.5 * -units[bwt,tarsus]",
     lambda x: (x[0] + 2 * x[1] + x[2]) ** 0.5 * -x[4]),
    ("units[bwt,tarsus] ** units[bwt,bwt] / +3", lambda x: x[4] ** x[3] / 3),
    ("(V1 - V4) ** 2 / V6", lambda x: (x[0] - x[3]) ** 2 / x[5]),
]


@pytest.mark.parametrize("expr,f", CASES)
def test_value_and_gradient_match_independent_finite_differences(expr, f):
    d = evaluate(expr, _us_index(), X)
    assert d.value == pytest.approx(f(X), rel=1e-14)
    g = _fd_gradient(f, X)
    np.testing.assert_allclose(d.grad, g, rtol=1e-6, atol=1e-9)


def test_published_genetic_correlation_value():
    d = evaluate("animal[bwt,tarsus] / sqrt(animal[bwt,bwt] * animal[tarsus,tarsus])", _us_index(), X)
    assert d.value == pytest.approx(0.3814436, abs=5e-7)       # ASReml r_A
    d = evaluate("units[bwt,tarsus] / sqrt(units[bwt,bwt] * units[tarsus,tarsus])", _us_index(), X)
    assert d.value == pytest.approx(0.4019799, abs=5e-7)       # ASReml r_res


def test_trait_order_quoting_and_shorthand_name_the_same_component():
    idx = _us_index()
    values = [evaluate(e, idx, X).value for e in
              ("animal[bwt,tarsus]", "animal[tarsus,bwt]", "animal['tarsus', 'bwt']", "V2")]
    assert values == [X[1]] * 4
    assert evaluate("animal[tarsus]", idx, X).value == X[2]


def test_delta_se_and_its_guards():
    V = np.array([[4.0, 1.0], [1.0, 9.0]])
    assert delta_se(np.array([1.0, 2.0]), V) == pytest.approx(math.sqrt(4 + 4 + 36))
    assert delta_se(np.array([1.0, -1.0]), np.array([[1.0, 1.0], [1.0, 1.0]])) == 0.0
    assert math.isnan(delta_se(np.array([1.0, 0.0]), np.array([[-1.0, 0.0], [0.0, 1.0]])))


def test_dual_power_rules():
    x = Dual(-2.0, np.array([1.0]))
    d = x ** 3
    assert (d.value, d.grad[0]) == (-8.0, 12.0)
    assert (x ** 0).grad[0] == 0.0
    with pytest.raises(ExpressionError, match="non-integer power"):
        x ** 0.5
    with pytest.raises(ExpressionError, match="no derivative"):
        Dual(0.0, np.array([1.0])) ** 0.5


def test_positional_names_for_correlation_shared_and_loading_parameters():
    # corgh: correlation row first, then variances; its V1 is the correlation from the components
    comp = _components().iloc[:3].copy()
    vc = _varcomp(["animal:trait!tarsus:!bwt.cor", "animal:trait!bwt", "animal:trait!tarsus"],
                  ["correlation", "variance", "variance"], ["animal"] * 3)
    idx = ComponentIndex.build(comp, {"animal": TRAITS}, vc)
    x = X[:3]
    d = evaluate("V1", idx, x)
    assert d.value == pytest.approx(x[1] / math.sqrt(x[0] * x[2]), rel=1e-14)
    np.testing.assert_allclose(d.grad, _fd_gradient(lambda v: v[1] / math.sqrt(v[0] * v[2]), x), rtol=1e-6)
    assert evaluate("V3", idx, x).value == x[2]
    # idv: one common variance = the first diagonal element; fa loadings cannot be named
    comp = pd.DataFrame({"term": "Family", "trait_1": ["bwt", "tarsus", "tarsus"],
                         "trait_2": ["bwt", "bwt", "tarsus"], "estimate": [2.0, 0.0, 2.0]})
    idx = ComponentIndex.build(comp, {"Family": TRAITS}, _varcomp(["Family:trait"], ["variance"], ["Family"]))
    assert evaluate("V1 * 3", idx, comp["estimate"].to_numpy()).value == 6.0
    vc = _varcomp(["Family:trait!bwt!fa1", "Family:trait!bwt!var"], ["loading", "variance"], ["Family"] * 2)
    idx = ComponentIndex.build(comp, {"Family": TRAITS}, vc)
    assert evaluate("V2", idx, comp["estimate"].to_numpy()).value == 2.0
    with pytest.raises(ExpressionError, match=r"V1 \(Family:trait!bwt!fa1\) is a loading"):
        evaluate("V1", idx, comp["estimate"].to_numpy())


def test_varcomp_trait_columns_take_precedence_over_labels():
    vc = _varcomp(["animal one", "animal two"], ["variance", "covariance"], ["animal"] * 2)
    vc["trait_1"] = ["tarsus", "tarsus"]
    vc["trait_2"] = [None, "bwt"]
    idx = ComponentIndex.build(_components(), {"animal": TRAITS, "units": TRAITS}, vc)
    assert evaluate("V1", idx, X).value == X[2]
    assert evaluate("V2", idx, X).value == X[1]


@pytest.mark.parametrize("expr,message", [
    ("animal[bwt,wing]", r"'animal' has no trait 'wing' \(its traits: bwt, tarsus\)"),
    ("maternal[bwt,bwt]", r"unknown component 'maternal'; available: animal\[bwt,bwt\], "
                          r"animal\[tarsus,bwt\], .*units\[tarsus,tarsus\], V1, V2, V3, V4, V5, V6"),
    ("V1 + V7", r"unknown component 'V7'"),
    ("animal / units", r"'animal' covers 2 traits \(bwt, tarsus\): name an element"),
    ("animal.bwt", r"'animal.bwt' is not allowed"),
    ("abs(V1)", r"'abs\(V1\)' is not allowed"),
    ("sqrt(V1, V2)", r"is not allowed"),
    ("log(x=V1)", r"is not allowed"),
    ("V1 if V2 else V3", r"is not allowed"),
    ("V1 > V2", r"is not allowed"),
    ("'V1'", r"is not allowed"),
    ("True + V1", r"is not allowed"),
    ("__import__('os')", r"is not allowed"),
    ("V1 // V2", r"is not allowed"),
    ("animal[bwt,tarsus,bwt]", r"is not allowed"),
    ("animal[V1 + 1]", r"is not a trait name"),
    ("V1 / (V2 - V2)", r"'V1 / \(V2 - V2\)' is undefined at the estimates: division by zero"),
    ("log(V2 - V1 * 2)", r"'log\(V2 - V1 \* 2\)' is undefined at the estimates: log of"),
    ("sqrt(-V1)", r"sqrt of -3.3684"),
    ("exp(V3 * 100)", r"overflows"),
    ("V3 ** V3 ** V3", r"overflow"),
    ("V1 +", r"cannot parse"),
    ("   ", r"non-empty string"),
])
def test_bad_expressions_raise_typed_errors_naming_the_culprit(expr, message):
    with pytest.raises(ExpressionError, match=message):
        evaluate(expr, _us_index(), X)


def test_non_string_expression_is_refused():
    with pytest.raises(ExpressionError, match="non-empty string"):
        evaluate(3, _us_index(), X)


# ---------------------------------------------------------------------- labels and backticks
@pytest.mark.parametrize("text,label,body", [
    ("h2 ~ V1/(V1+V2)", "h2", "V1/(V1+V2)"),
    ("  r_A~animal[bwt,tarsus]  ", "r_A", "animal[bwt,tarsus]"),
    ("`h2 bwt` ~ V1", "h2 bwt", "V1"),
    ("V1 / `a~b`", None, "V1 / `a~b`"),                 # a ~ inside backticks is part of a name
    ("share ~ `rep:block` / V3", "share", "`rep:block` / V3"),
    ("animal / units", None, "animal / units"),
])
def test_split_label(text, label, body):
    from mvreml.vpredict import split_label
    assert split_label(text) == (label, body)


@pytest.mark.parametrize("text,message", [
    ("~ V1", r"nothing before '~'"),
    ("h2 ~ ", r"nothing after '~'"),
    ("a ~ b ~ V1", r"more than one '~'"),
    ("`a ~ V1", r"unmatched backtick"),
    ("`` / V1", r"empty name between backticks"),
])
def test_bad_labels_and_backticks_raise_typed_errors(text, message):
    with pytest.raises(ExpressionError, match=message):
        evaluate(text, _us_index(), X)


def test_labelled_expression_evaluates_its_right_hand_side():
    idx = _us_index()
    assert evaluate("h2 ~ V1 / (V1 + V4)", idx, X).value == pytest.approx(X[0] / (X[0] + X[3]), rel=1e-15)


def _colon_index():
    """Univariate terms whose names are not identifiers (rep:block, a V-like name in backticks)."""
    comp = pd.DataFrame({"term": ["gen", "rep:block", "units"], "trait_1": "y", "trait_2": "y",
                         "estimate": [0.25, 0.5, 2.0]})
    vc = _varcomp(["gen", "rep:block", "units"], ["variance"] * 3, ["gen", "rep:block", "units"])
    return ComponentIndex.build(comp, {"gen": ["y"], "rep:block": ["y"], "units": ["y"]}, vc), \
        comp["estimate"].to_numpy()


def test_backticked_term_names_with_colons():
    idx, x = _colon_index()
    d = evaluate("`rep:block` / (gen + `rep:block` + units)", idx, x)
    assert d.value == pytest.approx(0.5 / 2.75, rel=1e-15)
    np.testing.assert_allclose(d.grad, _fd_gradient(lambda v: v[1] / v.sum(), x), rtol=1e-6)
    assert evaluate("`rep:block`[y,y] + `rep:block`[`y`]", idx, x).value == 1.0
    assert evaluate("`gen` * 4", idx, x).value == 1.0        # backticks around an identifier too
    # a name the user writes cannot collide with the placeholder backticks are replaced by
    with pytest.raises(ExpressionError, match="unknown component '_bq0_'"):
        evaluate("`rep:block` + _bq0_", idx, x)
    # messages show the backticked name, and list it as it must be written
    with pytest.raises(ExpressionError, match=r"'`rep:block` / \(gen - gen\)' is undefined"):
        evaluate("`rep:block` / (gen - gen)", idx, x)
    with pytest.raises(ExpressionError, match=r"unknown component 'rep'; available: gen, `rep:block`, units"):
        evaluate("rep", idx, x)
    with pytest.raises(ExpressionError, match=r"cannot parse"):
        evaluate("rep:block / units", idx, x)             # unquoted: not an expression


def test_pathological_expressions_raise_expression_errors():
    idx, x = _colon_index()
    for text in ("-" * 100000 + "gen", "+".join(["gen"] * 100000), "(" * 300 + "gen" + ")" * 300,
                 "gen\x00", "`" * 7):
        with pytest.raises(ExpressionError):
            evaluate(text, idx, x)


# ---------------------------------------------------------------------- on real fits
@pytest.fixture(scope="module")
def gryphon(gryphon_data):
    import warnings

    import mvreml
    g, ped = gryphon_data

    def fit(random):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", mvreml.errors.DataWarning)
            return mvreml.fit("bwt ~ 1 + sex", random=random, data=g, relmat={"ped": ped})
    return fit


def test_positional_names_follow_varcomp_and_the_summary_prints_them(gryphon):
    """Gryphon model3 (ASReml-R 4.2, SOURCE.md): h2 = 0.4586068 (SE 0.06740364), which ASReml
    writes V2/(V1+V2+V3) because it prints byear first. mvreml numbers varcomp's rows."""
    res = gryphon("~ vm(animal, ped) + byear")
    assert list(res.varcomp.index) == ["animal", "byear", "units"]
    text = str(res.summary())
    assert "vpredict names (V<i> = row i above; ASReml may number them differently):\n" \
           "  V1 = animal, V2 = byear, V3 = units\n" in text
    assert "V1 = animal, V2 = byear, V3 = units" in res._repr_html_()
    h2 = res.vpredict("h2 ~ V1/(V1+V2+V3)")
    assert h2.name == "h2"
    assert h2["estimate"] == pytest.approx(0.4586068, abs=5e-5)
    assert h2["std_error"] == pytest.approx(0.06740364, rel=5e-4)
    by_name = res.vpredict("animal / (animal + byear + units)")
    assert (by_name["estimate"], by_name["std_error"]) == (h2["estimate"], h2["std_error"])
    # the tutorial's V2 is byear's share here (0.150): documented, not silently "fixed"
    assert res.vpredict("V2/(V1+V2+V3)")["estimate"] == pytest.approx(0.8862604 / 5.9023684, abs=5e-5)
    # written in ASReml's order, the tutorial's expression gives the published value
    asreml_order = gryphon("~ byear + vm(animal, ped)")
    assert "V1 = byear, V2 = animal, V3 = units" in str(asreml_order.summary())
    h2 = asreml_order.vpredict("h2 ~ V2/(V1+V2+V3)")
    assert h2["estimate"] == pytest.approx(0.4586068, abs=5e-5)
    assert h2["std_error"] == pytest.approx(0.06740364, rel=5e-4)


def test_vpredict_lists_and_dicts_of_labelled_expressions(gryphon):
    res = gryphon("~ vm(animal, ped) + byear")
    out = res.vpredict(["h2 ~ V1/(V1+V2+V3)", "`byear share` ~ byear / (V1 + V2 + V3)", "V1 + V2 + V3"])
    assert list(out.index) == ["h2", "byear share", "V1 + V2 + V3"]
    assert out.loc["h2", "estimate"] == pytest.approx(0.4586068, abs=5e-5)
    assert out.loc["V1 + V2 + V3", "estimate"] == pytest.approx(res.varcomp["estimate"].sum(), rel=1e-12)
    d = res.vpredict({"h2": "h2 ~ V1/(V1+V2+V3)", "c2": "byear / (V1 + V2 + V3)"})
    assert list(d.index) == ["h2", "c2"] and d.loc["h2", "estimate"] == out.loc["h2", "estimate"]
    with pytest.raises(ExpressionError, match=r"labelled 'h2' but given under the name 'c2'"):
        res.vpredict({"c2": "h2 ~ V1/(V1+V2+V3)"})
    with pytest.raises(ExpressionError, match=r"two expressions are named 'h2'"):
        res.vpredict(["h2 ~ V1/(V1+V2+V3)", "h2 ~ V1"])
    with pytest.raises(ExpressionError, match="non-empty string"):
        res.vpredict(["V1", 3])


def test_backticked_interaction_term_on_a_real_fit(data_dir):
    """damesa maize site S1 (agridat): random = ~ gen + rep:block."""
    import mvreml
    d = pd.read_csv(data_dir / "agridat" / "damesa.maize.csv")
    res = mvreml.fit("yield ~ rep", random="~ gen + rep:block", data=d[d["site"] == "S1"])
    assert "V1 = gen, V2 = rep:block, V3 = units" in str(res.summary())
    for i, (label, row) in enumerate(res.varcomp.iterrows()):      # V<i> is row i of varcomp
        v = res.vpredict(f"V{i + 1}")
        assert (v["estimate"], v["std_error"]) == pytest.approx((row["estimate"], row["std_error"]), rel=1e-12)
    a = res.vpredict("blk ~ `rep:block` / (gen + `rep:block` + units)")
    b = res.vpredict("V2 / (V1 + V2 + V3)")
    vc = res.varcomp["estimate"]
    assert a["estimate"] == pytest.approx(vc["rep:block"] / vc.sum(), rel=1e-12)
    assert (a["estimate"], a["std_error"]) == (b["estimate"], b["std_error"]) and a.name == "blk"
    with pytest.raises(ExpressionError, match=r"available: gen, `rep:block`, units, V1, V2, V3"):
        res.vpredict("block / units")
