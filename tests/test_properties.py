"""Property-based tests (hypothesis): whatever a user types or feeds in, mvreml answers with a
result or with one of its own typed errors (:mod:`mvreml.errors`), never with another
exception, a crash or a hang.

The properties: the formula parsers on strings built from formula tokens (FormulaError only),
also on very long formulas; ``mvreml.Pedigree`` on random, often broken, pedigree tables;
``mvreml.fit`` on random formulas over a fixed data set, and on random small designs (data with
missing / non-finite / extreme values, bad weights, random pedigrees, options). A Result that is
returned must be usable: its summary and JSON round trip work, variances are not negative, a
converged fit has a finite log-likelihood. Warnings are allowed.

The number of examples is bounded and the examples are derandomized, so the suite stays fast
(~20 s) and reproducible; ``HYPOTHESIS_PROFILE=fuzz`` runs many more, freshly drawn, examples.
Inputs a fuzz run found are pinned with ``@example``.
"""
import math
import os
import signal
import warnings
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, Phase, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import mvreml  # noqa: E402
from mvreml.errors import FormulaError, MvremlError  # noqa: E402
from mvreml.formula import Response, parse_fixed, parse_random, parse_residual  # noqa: E402

# Time is bounded by time_limit() below, not by hypothesis' deadline: on a loaded machine a
# deadline fails (or reports "flaky") ordinary examples that merely ran while others computed.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("fuzz", max_examples=5000, derandomize=False, database=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
settings.load_profile(PROFILE)


def _examples(n: int) -> int:
    """``n`` examples in CI; the fuzz profile's own (larger) number otherwise."""
    return n if PROFILE == "ci" else settings.get_profile(PROFILE).max_examples


class Hang(Exception):
    """An input that runs past its time limit (raised from a SIGALRM handler)."""


@contextmanager
def time_limit(seconds: float, what: str):
    """Fail an example that takes longer than ``seconds`` (a hang or a runaway expansion)."""
    def handler(signum, frame):
        raise Hang(f"{what} still running after {seconds} s")
    old = signal.signal(signal.SIGALRM, handler)
    # the timer repeats: an exception raised while a gc callback runs is swallowed ("unraisable"),
    # and the next one lands in the code under test
    signal.setitimer(signal.ITIMER_REAL, seconds, 0.25)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def only_typed_errors(call, *args, allowed=MvremlError, **kw):
    """Run ``call``; return its value or the ``allowed`` error it raised. Any other exception
    fails the property (hypothesis shrinks and prints the input); warnings are allowed."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return call(*args, **kw)
        except allowed as e:
            assert str(e), f"{type(e).__name__} without a message"
            return e


# ---------------------------------------------------------------------- formula strings
NAMES = ["y", "y2", "x", "x2", "a", "b", "sex", "Family", "animal", "ped", "units", "trait", "cbind",
         "us", "diag", "idv", "id", "corgh", "corv", "corh", "fa", "at", "vm", "ide", "dsum", "I", "C",
         "log", "exp", "factor", "poly", "c", "init", "k", "TRUE", "None", "`a b`", "`y:2`", ".x", "_a"]
OPS = ["~", "+", "-", "*", "/", "^", ":", "(", ")", ",", "=", "|", "!", "==", "**", "%in%", "<", "&"]
OTHER = ["0", "1", "2", "0.5", "1e-3", ".5", "10000000000000000000000", "'y2'", '"a"', "'",
         "`", "#", "$", "@", "[", "]", "{", ";", "\\", "é", "\t", "\n", "\x00", "∑"]
TOKENS = st.sampled_from(NAMES + OPS + OTHER)
SPACE = st.sampled_from(["", " ", "  "])
token_strings = st.lists(st.tuples(TOKENS, SPACE), max_size=25).map(lambda ts: "".join(a + b for a, b in ts))

# mostly well-formed formulas, to reach past the tokenizer into the term and structure rules
FACTOR = st.sampled_from(["a", "b", "sex", "Family", "animal", "units", "x", "`a b`", "1", "0", "2"])
CALL = st.builds(lambda f, arg, extra: f"{f}({arg}{extra})",
                 st.sampled_from(["us", "diag", "idv", "id", "corgh", "corv", "corh", "fa", "at", "vm",
                                  "ide", "dsum", "I", "C", "log", "factor", "poly", "c"]),
                 st.sampled_from(["trait", "a", "animal", "x", "x^2", "y2", "'y2'", "1", ""]),
                 st.sampled_from(["", ", ped", ", 1", ", 2", ", 0", ", k=1", ", init=c(1, 0.5, 2)",
                                  ", init=0.3", ", init=x", ", 'y2'", ", c(y, y2)", ", 3", ", a=1"]))
TERM = st.lists(st.one_of(FACTOR, CALL), min_size=1, max_size=3).map(":".join)
RHS = st.lists(st.tuples(st.sampled_from(["+", "-", "*", "/"]), TERM), min_size=1, max_size=5).map(
    lambda ts: " ".join(op + " " + t for op, t in ts)[2:])
LHS = st.sampled_from(["", "y", "y2", "cbind(y, y2)", "cbind(y)", "cbind(y, y)", "cbind(y, 1)", "log(y)",
                       "cbind()", "y + y2"])
grammar_strings = st.builds(lambda lhs, rhs: f"{lhs} ~ {rhs}", LHS, RHS)

RESPONSES = [Response(("y",), False), Response(("y", "y2"), True), Response(("y", "y2", "x"), True)]


def _parse_everything(text: str) -> None:
    only_typed_errors(parse_fixed, text, allowed=FormulaError)
    for response in RESPONSES:
        only_typed_errors(parse_random, text, response, allowed=FormulaError)
        only_typed_errors(parse_residual, text, response, allowed=FormulaError)


@settings(max_examples=_examples(400), deadline=None)
@given(st.one_of(token_strings, grammar_strings))
def test_formula_parsers_raise_only_formula_errors(text):
    with time_limit(10, f"parsing {text!r}"):
        _parse_everything(text)


LONG = [
    "y ~ " + "(" * 3000 + "x" + ")" * 3000,
    "y ~ I(" + "(" * 3000 + "x" + ")" * 3000 + ")",
    "~ " + " + ".join(f"a{i}" for i in range(3000)),
    "y ~ " + "+".join(["x"] * 20000),
]


# no shrinking: each shrink step of a runaway input would wait out the time limit again
@settings(max_examples=_examples(20), deadline=None, phases=[Phase.explicit, Phase.generate])
@given(st.integers(2, 40), st.integers(0, 4000), st.sampled_from(["*", ":", "+", "/"]))
@example(22, 0, "*")            # x0*x1*...*x21: 4 million terms if expanded
@example(1, 3000, "+")
def test_formula_parsers_stay_fast_on_long_formulas(n_factors, depth, op):
    """Long products and deep nesting: a result or a FormulaError within seconds."""
    text = "y ~ " + "(" * depth + op.join(f"x{i}" for i in range(n_factors)) + ")" * depth
    with time_limit(10, f"parsing a formula of {n_factors} factors joined by {op!r}, depth {depth}"):
        _parse_everything(text)


@pytest.mark.parametrize("text", LONG, ids=["3000 parentheses", "3000 in I()",
                                            "3000 random terms", "20000 repeats"])
def test_long_formula_examples_parse_or_fail_fast(text):
    with time_limit(10, f"parsing {text[:30]!r}..."):
        _parse_everything(text)


# ---------------------------------------------------------------------- pedigrees
ID_POOL = ["A1", "A2", "A3", "A4", "A5", "A6", "A7", "A8", "A9", "A10", "B1", "B2"]
UNKNOWN = [None, np.nan, "0", 0, "", "NA", "."]


@st.composite
def pedigree_tables(draw, max_rows: int = 14):
    """A three-column table ``id, sire, dam``: a valid pedigree, one with a single defect
    (cycle, own parent, conflicting duplicate, missing ID, a sire used as dam, an unlisted
    parent, a value of another type), or rows drawn at random."""
    kind = draw(st.sampled_from(["str", "int", "float", "mixed"]))
    pool = {"str": ID_POOL, "int": list(range(1, 13)), "float": [float(i) for i in range(1, 13)],
            "mixed": ID_POOL[:6] + list(range(1, 7))}[kind]
    unknown = st.sampled_from(UNKNOWN if kind in ("str", "mixed") else [0, np.nan])
    ids = st.sampled_from(pool)
    mode = draw(st.sampled_from(["valid", "valid", "defect", "defect", "random"]))
    n = draw(st.integers(0, min(max_rows, len(pool))))
    if mode == "random":
        rows = [[draw(st.one_of(ids, ids, ids, unknown)), draw(st.one_of(ids, unknown)),
                 draw(st.one_of(ids, unknown))] for _ in range(n)]
        return pd.DataFrame(rows, columns=["id", "sire", "dam"])
    animals = draw(st.lists(ids, min_size=n, max_size=n, unique=True))
    male = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    rows = []
    for i, a in enumerate(animals):
        sires = [b for b, m in zip(animals[:i], male) if m]
        dams = [b for b, m in zip(animals[:i], male) if not m]
        rows.append([a, draw(st.one_of(unknown, st.sampled_from(sires))) if sires else draw(unknown),
                     draw(st.one_of(unknown, st.sampled_from(dams))) if dams else draw(unknown)])
    if mode == "defect" and rows:
        i = draw(st.integers(0, len(rows) - 1))
        j = draw(st.integers(0, len(rows) - 1))
        defect = draw(st.sampled_from(["own parent", "cycle", "duplicate", "same row twice", "no id",
                                       "both sexes", "unlisted parent", "other type", "swap columns"]))
        if defect == "own parent":
            rows[i][1] = rows[i][0]
        elif defect == "cycle":
            rows[min(i, j)][1] = rows[max(i, j)][0]
        elif defect == "duplicate":
            rows.append([rows[i][0], rows[j][0], rows[i][2]])
        elif defect == "same row twice":
            rows.append(list(rows[i]))
        elif defect == "no id":
            rows[i][0] = draw(st.sampled_from([None, np.nan]))
        elif defect == "both sexes":
            rows[i][1] = rows[i][2] = rows[j][0]
        elif defect == "unlisted parent":
            rows[i][2] = draw(st.sampled_from(["Z9", 99, 99.0]))
        elif defect == "other type":
            rows[i][draw(st.integers(0, 2))] = draw(st.sampled_from([True, 1.5, -3, 2 ** 63 - 1, "  A1 ", "1.0"]))
        else:
            rows = [[r[0], r[2], r[1]] for r in rows]
    return pd.DataFrame(rows, columns=["id", "sire", "dam"])


def _check_pedigree(ped) -> None:
    """A pedigree accepted is a pedigree: A^-1 symmetric positive definite with F in [0, 1)."""
    n = len(ped)
    ainv = ped.ainv().toarray()
    assert ainv.shape == (n, n)
    if n:
        np.testing.assert_allclose(ainv, ainv.T, atol=1e-12)
        assert np.linalg.eigvalsh(ainv).min() > 0
        F = ped.inbreeding.to_numpy()
        assert np.all((F >= 0) & (F < 1)), F
        assert np.isfinite(ped.logdet_a())


@settings(max_examples=_examples(150), deadline=None)
@given(pedigree_tables(), st.booleans(), st.booleans(), st.booleans())
def test_pedigrees_are_built_or_refused_with_pedigree_errors(table, inbreeding, add_founders, allow):
    with time_limit(10, "building a pedigree"):
        ped = only_typed_errors(mvreml.Pedigree, table, inbreeding=inbreeding, add_founders=add_founders,
                                allow_sire_dam=allow)
        if not isinstance(ped, MvremlError):
            _check_pedigree(ped)


# ---------------------------------------------------------------------- fits
SPECIAL = [np.nan, np.inf, -np.inf, 0.0, 1e6, -1e-6, 1e200, 5e-324]
FACTOR_LEVELS = st.sampled_from(["l1", "l2", "l3", "l4", None, "", "nan", 1, 2.0])

UNI_FIXED = ["y ~ 1", "y ~ x", "y ~ a", "y ~ a + x", "y ~ a * b", "y ~ 0 + a", "y ~ -1 + x", "y ~ a:x",
             "y ~ b + I(x**2)", "y ~ C(b)", "y ~ x + a + b"]
UNI_RANDOM = [None, "~ a", "~ a + b", "~ a:b", "~ idv(a)", "~ vm(animal, ped)", "~ vm(animal, ped) + a",
              "~ id(b)", "~ a + a:b"]
UNI_RESIDUAL = [None, "~ units", "~ idv(units)"]
MV_FIXED = ["cbind(y, y2) ~ trait", "cbind(y, y2) ~ trait + at(trait):a", "cbind(y, y2) ~ trait + trait:x",
            "cbind(y, y2, x) ~ trait"]
MV_RANDOM = [None, "~ us(trait):a", "~ diag(trait):a", "~ corgh(trait):vm(animal, ped)", "~ idv(trait):b",
             "~ fa(trait, 1):a", "~ at(trait, y):a", "~ corv(trait):a + diag(trait):b", "~ corh(trait):a",
             "~ us(trait):vm(animal, ped)"]
MV_RESIDUAL = [None, "~ units:us(trait)", "~ units:diag(trait)", "~ id(units):us(trait)", "~ units:corgh(trait)"]


@st.composite
def designs(draw):
    """A small data set, a model on it (mostly well-formed) and fitting options."""
    n = draw(st.integers(1, 24))
    col = lambda s: draw(st.lists(s, min_size=n, max_size=n))  # noqa: E731
    data = pd.DataFrame({"y": col(st.floats(-5, 5)), "y2": col(st.floats(-5, 5)), "x": col(st.floats(-5, 5)),
                         "a": col(FACTOR_LEVELS), "b": col(FACTOR_LEVELS),
                         "animal": col(st.sampled_from(ID_POOL + [None]))})
    # a few special values (missing, infinite, huge, subnormal) poked into the numeric columns
    for c, i, v in draw(st.lists(st.tuples(st.sampled_from(["y", "y2", "x"]), st.integers(0, n - 1),
                                           st.sampled_from(SPECIAL)), max_size=3)):
        data.loc[i, c] = v
    if draw(st.booleans()):
        data["w"] = col(st.sampled_from([1.0, 0.5, 2.0, 1.0, 0.5, 2.0, 0.0, -1.0, np.nan, 1e-300]))
    multivariate = draw(st.booleans())
    fixed = draw(st.sampled_from(MV_FIXED if multivariate else UNI_FIXED))
    random = draw(st.sampled_from(MV_RANDOM if multivariate else UNI_RANDOM))
    residual = draw(st.sampled_from(MV_RESIDUAL if multivariate else UNI_RESIDUAL))
    if draw(st.integers(0, 9)) == 0:      # now and then a model that does not fit the response
        residual = draw(st.sampled_from(MV_RESIDUAL if not multivariate else UNI_RESIDUAL[1:]))
    options = {}
    if draw(st.booleans()):
        options["maxiter"] = draw(st.integers(1, 15))
    if "w" in data and draw(st.booleans()):
        options["weights"] = "w"
    if random and "ped" in random:
        options["relmat"] = {"ped": draw(pedigree_tables(max_rows=12))}
        options["missing_animals"] = draw(st.sampled_from(["error", "founders"]))
    return data, fixed, random, residual, options


def _check_result(res) -> None:
    """A Result returned is usable and describes a valid model."""
    assert isinstance(res, mvreml.Result) and isinstance(res.loglik, float)
    if res.converged:
        assert math.isfinite(res.loglik), res.loglik
    vc = res.varcomp
    variances = vc.loc[vc["kind"] == "variance", "estimate"].to_numpy(dtype=float)
    assert np.all(variances >= 0), vc
    assert res.n_obs >= 1
    str(res.summary())
    back = mvreml.Result.from_json(res.to_json())
    assert str(back.summary()) == str(res.summary())


# inputs the property found (issue 18 reports), pinned so that every run checks them
_BIV = pd.DataFrame({"y": [0.5, -1.0, 0.25, 2.0, -0.75, 1.5, 0.0, -2.0, 1.0, 0.75, -0.5, 1.25],
                     "y2": [1.0, 0.5, -1.5, 1e200, 0.0, 2.0, -1.0, 0.25, 1.75, -0.25, 0.5, -2.0],
                     "b": list("pqrs") * 3})


@settings(max_examples=_examples(120), deadline=None)
@given(designs())
@example(design=(pd.DataFrame({"y": [0.0]}), "y ~ 1", None, None, {}))           # N = p: summary fails
@example(design=(pd.DataFrame({"y": [1.0, 2.0, 3.0], "x": [0.0, 0.0, 0.0]}),     # only a zero column
                 "y ~ -1 + x", None, None, {}))
@example(design=(_BIV, "cbind(y, y2) ~ trait", "~ idv(trait):b", "~ units:us(trait)", {}))  # 1e200
@example(design=(pd.DataFrame({"y": [0.0, 1e200], "a": ["p", "q"], "b": ["r", "s"]}),
                 "y ~ 1", "~ a + a:b", None, {}))
@example(design=(pd.DataFrame({"y": [np.nan, 1.0, 1.0, 1.0, 2.0, 1.0], "y2": [2.0, 0.0, -3.5, 0.0, 0.0, 1.0],
                               "a": list("ppqrqs"), "w": [1.0, 1.0, 1e-300, 1.0, 2.0, 1.0]}),
                 "cbind(y, y2) ~ trait + at(trait):a", None, "~ units:us(trait)", {"weights": "w"}))  # tiny w
def test_fit_returns_a_result_or_a_typed_error(design):
    data, fixed, random, residual, options = design
    with time_limit(30, f"fitting {fixed!r}, {random!r}, {residual!r} on {len(data)} rows"):
        res = only_typed_errors(mvreml.fit, fixed, random, residual, data=data, **options)
        if not isinstance(res, MvremlError):
            _check_result(res)


FORMULA_DATA = pd.DataFrame({
    "y": [1.2, 0.4, 2.5, 1.9, 0.7, 3.1, 2.2, 1.4, 0.9, 2.8, 1.1, 1.7],
    "y2": [0.3, 1.8, 1.1, 2.4, 0.2, 1.5, 0.9, 2.0, 1.3, 0.6, 2.2, 1.0],
    "x": [0.5, 1.5, -0.5, 2.0, 0.0, 1.0, -1.0, 2.5, 0.25, 1.25, -0.75, 0.75],
    "a": list("pqrs") * 3, "b": list("uuvvww") * 2, "sex": list("MF") * 6, "Family": list("ffgghh") * 2,
    "animal": [f"A{i}" for i in range(1, 11)] + ["B1", "B2"]})
FORMULA_PED = pd.DataFrame({"id": [f"A{i}" for i in range(1, 11)] + ["B1", "B2"],
                            "sire": [None, None, "A1", "A1", "A3", None, "A3", "A5", None, "A7", "A9", None],
                            "dam": [None, None, "A2", "A2", "A4", "A6", "A6", "A4", "A8", "A8", "A10", None]})


# formulas over FORMULA_DATA's columns, mostly valid, so that most get as far as the fit
FIXED_TERM = st.lists(st.sampled_from(["a", "b", "sex", "x", "Family", "C(a)", "log(x + 2)", "I(x^2)",
                                       "I(x**2)", "poly(x, 2)", "factor(b)", "exp(x)", "x:a", "a*b",
                                       "np.sqrt(x + 2)", "scale(x)", "1", "0", "-1", "animal", "y2", "z"]),
                      min_size=1, max_size=4, unique=True).map(" + ".join)
RANDOM_TERM = st.lists(st.sampled_from(["a", "b", "Family", "a:b", "idv(a)", "id(b)", "vm(animal, ped)",
                                        "sex", "vm(animal, nope)", "x", "units", "ide(animal)", "Family:sex"]),
                       min_size=1, max_size=3, unique=True).map(lambda ts: "~ " + " + ".join(ts))
FIT_FIXED = st.builds(lambda lhs, rhs: f"{lhs} ~ {rhs}", st.sampled_from(["y", "y", "y2", "cbind(y)"]), FIXED_TERM)


@settings(max_examples=_examples(150), deadline=None)
@given(FIT_FIXED, st.one_of(st.none(), RANDOM_TERM), st.sampled_from([None, "~ units", "~ idv(units)"]))
def test_fit_on_random_formulas_raises_only_typed_errors(fixed, random, residual):
    """Formulas through the design (formulaic for the fixed part) and the fit."""
    with time_limit(30, f"fitting {fixed!r}, {random!r}"):
        res = only_typed_errors(mvreml.fit, fixed, random, residual, data=FORMULA_DATA,
                                relmat={"ped": FORMULA_PED}, maxiter=10)
        if not isinstance(res, MvremlError):
            _check_result(res)
