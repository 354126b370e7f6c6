"""mvreml.formula: asreml-R 4 model strings -> term specifications (no data, no numbers)."""
import pytest

from mvreml.errors import FormulaError
from mvreml.formula import (FixedSpec, FixedTerm, RandomTerm, Response, VarianceSpec, columns_used,
                            parse_fixed, parse_random, parse_residual)

UNI = Response(("y",), False)
BI = Response(("y1", "y2"), True)
TRI = Response(("y1", "y2", "y3"), True)
ALL3 = ("y1", "y2", "y3")


def rt(name, structure="idv", factors=None, k=None, traits=None, relmat=None, label=None, init=None):
    """A RandomTerm with the defaults of a plain univariate term."""
    return RandomTerm(name, factors or tuple(name.split(":")), structure, k, traits, relmat,
                      label or name, init)


def fails(fn, *args, match, term):
    """Call fn, expect a FormulaError whose message contains every string of ``match``."""
    with pytest.raises(FormulaError) as info:
        fn(*args)
    for text in [match] if isinstance(match, str) else match:
        assert text in str(info.value), (text, str(info.value))
    assert info.value.term == term
    return info.value


# ------------------------------------------------------------------ fixed, univariate
@pytest.mark.parametrize("formula, intercept, labels", [
    ("y ~ 1", True, ()),
    ("y~1", True, ()),
    ("y ~ 1 + sex", True, ("sex",)),
    ("y ~ sex", True, ("sex",)),
    ("y ~ 0 + sex", False, ("sex",)),
    ("y ~ -1 + sex", False, ("sex",)),
    ("y ~ sex - 1", False, ("sex",)),
    ("y ~ sex + x + sex:x", True, ("sex", "x", "sex:x")),
    ("y ~ sex * x", True, ("sex", "x", "sex:x")),
    ("y ~ a * b * c", True, ("a", "b", "c", "a:b", "a:c", "b:c", "a:b:c")),
    ("y ~ a * b:c", True, ("a", "b:c", "a:b:c")),
    ("y ~ sex * x + sex", True, ("sex", "x", "sex:x")),     # R drops the repeat of an expansion
])
def test_fixed_univariate(formula, intercept, labels):
    spec = parse_fixed(formula)
    assert spec.response == Response(("y",), False)
    assert spec.intercept is intercept
    assert tuple(t.label for t in spec.terms) == labels
    assert all(t.rhs == t.label and t.traits is None for t in spec.terms)


def test_fixed_term_fields_and_function_calls():
    spec = parse_fixed("y ~ 1 + sex + sex:x + C(year) + log(x) + poly(z,2) + I(w**2) + bs(v, df=3)")
    assert spec == FixedSpec(UNI, True, (
        FixedTerm("sex", "sex", None, ("sex",)),
        FixedTerm("sex:x", "sex:x", None, ("sex", "x")),
        FixedTerm("C(year)", "C(year)", None, ("year",)),
        FixedTerm("log(x)", "log(x)", None, ("x",)),
        FixedTerm("poly(z, 2)", "poly(z, 2)", None, ("z",)),       # spacing made canonical
        FixedTerm("I(w ** 2)", "I(w ** 2)", None, ("w",)),
        FixedTerm("bs(v, df=3)", "bs(v, df=3)", None, ("v",)),     # options are not columns
    ))
    res = parse_residual(None, spec.response)
    assert columns_used(spec, VarianceSpec(()), res) == {"y", "sex", "x", "year", "z", "w", "v"}


def test_single_column_cbind_is_univariate():
    assert parse_fixed("cbind(y) ~ 1").response == UNI


# ------------------------------------------------------------------ fixed, multivariate
def test_fixed_trait_only():
    spec = parse_fixed("cbind(a, b, c) ~ trait")
    assert spec == FixedSpec(Response(("a", "b", "c"), True), False,
                             (FixedTerm("trait", "1", ("a", "b", "c"), ()),))


def test_fixed_mixed_trait_and_common_terms():
    spec = parse_fixed("cbind(a,b) ~ trait + at(trait):sex + trait:x + sex")
    ab = ("a", "b")
    assert spec == FixedSpec(Response(ab, True), False, (
        FixedTerm("trait", "1", ab, ()),
        FixedTerm("at(trait):sex", "sex", ab, ("sex",)),
        FixedTerm("trait:x", "x", ab, ("x",)),
        FixedTerm("sex", "sex", None, ("sex",)),            # no trait: one effect for all traits
    ))


@pytest.mark.parametrize("piece, traits, label", [
    ("at(trait, y2):cg", ("y2",), "at(trait, y2):cg"),
    ('at(trait, "y2"):cg', ("y2",), "at(trait, y2):cg"),
    ("at(trait, 2):cg", ("y2",), "at(trait, y2):cg"),        # asreml's level index
    ('at(trait, c("y1","y2")):cg', ("y1", "y2"), "at(trait, c(y1, y2)):cg"),
    ("at(trait, c(y3, y1)):cg", ("y1", "y3"), "at(trait, c(y1, y3)):cg"),   # response order
    ("cg:at(trait, y2)", ("y2",), "at(trait, y2):cg"),
    ("at(trait):cg", ALL3, "at(trait):cg"),
    ("trait:cg", ALL3, "trait:cg"),
    ("cg:trait", ALL3, "trait:cg"),                          # order within an interaction irrelevant
])
def test_fixed_at_trait(piece, traits, label):
    term, = parse_fixed(f"cbind(y1, y2, y3) ~ {piece}").terms
    assert term == FixedTerm(label, "cg", traits, ("cg",))


def test_fixed_trait_interaction_of_three():
    spec = parse_fixed("cbind(y1, y2) ~ trait + trait:sex:x + x:sex:trait:z")
    assert spec.terms[1:] == (FixedTerm("trait:sex:x", "sex:x", ("y1", "y2"), ("sex", "x")),
                              FixedTerm("trait:x:sex:z", "x:sex:z", ("y1", "y2"), ("x", "sex", "z")))


def test_fixed_intercept_for_some_traits_only():
    spec = parse_fixed("cbind(y1, y2, y3) ~ at(trait, c(y1, y3)) + trait:sex")
    assert spec.terms == (FixedTerm("at(trait, c(y1, y3))", "1", ("y1", "y3"), ()),
                          FixedTerm("trait:sex", "sex", ALL3, ("sex",)))


def test_fixed_multivariate_without_intercept_marker():
    assert parse_fixed("cbind(y1, y2) ~ -1 + trait").intercept is False
    assert parse_fixed("cbind(y1, y2) ~ 0 + trait").terms == parse_fixed("cbind(y1, y2) ~ trait").terms


# ------------------------------------------------------------------ random
def test_random_none_or_empty():
    assert parse_random(None, UNI) == VarianceSpec(())
    assert parse_random("  ", TRI) == VarianceSpec(())


def test_random_univariate_forms():
    spec = parse_random("~ Block + Family + idv(Plot) + id(Row) + Block:Family", UNI)
    assert spec.terms == (rt("Block"), rt("Family"), rt("Plot", label="idv(Plot)"),
                          rt("Row", label="id(Row)"),        # asreml scales id(): idv
                          rt("Block:Family", factors=("Block", "Family")))
    assert parse_random("Block", UNI).terms == (rt("Block"),)   # '~' optional
    assert parse_random("~ idv(Block, init=0.5)", UNI).terms == (rt("Block", label="idv(Block)",
                                                                    init=(0.5,)),)


@pytest.mark.parametrize("piece, structure, k, label", [
    ("at(trait):Block", "diag", None, "at(trait):Block"),
    ("diag(trait):Block", "diag", None, "diag(trait):Block"),
    ("us(trait):Block", "us", None, "us(trait):Block"),
    ("Block:us(trait)", "us", None, "us(trait):Block"),
    ("idv(trait):Block", "idv", None, "idv(trait):Block"),
    ("id(trait):Block", "idv", None, "id(trait):Block"),
    ("corgh(trait):Block", "corgh", None, "corgh(trait):Block"),
    ("corv(trait):Block", "corv", None, "corv(trait):Block"),
    ("corh(trait):Block", "corh", None, "corh(trait):Block"),
    ("fa(trait, 2):Block", "fa", 2, "fa(trait, 2):Block"),
    ("fa(trait,k=1):Block", "fa", 1, "fa(trait, 1):Block"),
    ("us(trait):id(Block)", "us", None, "us(trait):id(Block)"),
])
def test_random_trait_structures(piece, structure, k, label):
    term, = parse_random(f"~ {piece}", TRI).terms
    assert term == rt("Block", structure, k=k, label=label)


def test_random_interaction_subset_relmat_and_init():
    spec = parse_random('~ us(trait, init=c(1, .5, 2)):Block:Family + at(trait, "y2"):g '
                        "+ vm(animal, ped):diag(trait) + corgh(trait):vm(sire, 'A')", BI)
    assert spec.terms == (
        rt("Block:Family", "us", factors=("Block", "Family"), label="us(trait):Block:Family",
           init=(1.0, 0.5, 2.0)),
        rt("g", "diag", traits=("y2",), label="at(trait, y2):g"),
        rt("animal", "diag", relmat="ped", label="diag(trait):vm(animal, ped)"),
        rt("sire", "corgh", relmat="A", label="corgh(trait):vm(sire, A)"),
    )
    assert parse_random("~ us(trait, init=c(-0.2, 1e-3, 4)):g", BI).terms[0].init == (-0.2, 0.001, 4.0)


# ------------------------------------------------------------------ residual
@pytest.mark.parametrize("formula, response, structure, label", [
    (None, UNI, "idv", "units"),
    ("~ units", UNI, "idv", "units"),
    ("~ idv(units)", UNI, "idv", "idv(units)"),
    ("~ id(units)", UNI, "idv", "id(units)"),
    (None, TRI, "us", "units:us(trait)"),
    ("~ units:us(trait)", TRI, "us", "units:us(trait)"),
    ("~ us(trait):units", TRI, "us", "units:us(trait)"),
    ("~ units:diag(trait)", TRI, "diag", "units:diag(trait)"),
    ("~ units:at(trait)", TRI, "diag", "units:at(trait)"),
    ("~ id(units):us(trait)", TRI, "us", "id(units):us(trait)"),
    ("~ units:corgh(trait)", TRI, "corgh", "units:corgh(trait)"),
])
def test_residual_forms(formula, response, structure, label):
    assert parse_residual(formula, response) == rt("units", structure, label=label)


# ------------------------------------------------------------------ whole models
def test_seed_model_3_and_4():
    fixed = parse_fixed("cbind(velocity, density) ~ trait")
    vd = ("velocity", "density")
    assert fixed == FixedSpec(Response(vd, True), False, (FixedTerm("trait", "1", vd, ()),))
    m3 = parse_random("~ at(trait):Block + at(trait):Family", fixed.response)
    assert m3.terms == (rt("Block", "diag", label="at(trait):Block"),
                        rt("Family", "diag", label="at(trait):Family"))
    m3b = parse_random("~ diag(trait):Block + diag(trait):Family", fixed.response)
    assert [t.structure for t in m3b.terms] == ["diag", "diag"]
    r3 = parse_residual("~ units:diag(trait)", fixed.response)
    assert r3 == rt("units", "diag", label="units:diag(trait)")
    m4 = parse_random("~ us(trait):Block + us(trait):Family", fixed.response)
    assert [(t.name, t.structure) for t in m4.terms] == [("Block", "us"), ("Family", "us")]
    assert parse_residual("~ units:us(trait)", fixed.response).structure == "us"
    assert columns_used(fixed, m4, r3) == {"velocity", "density", "Block", "Family"}


def test_gryphon_models():
    fixed = parse_fixed("bwt ~ 1 + sex")
    assert fixed == FixedSpec(Response(("bwt",), False), True, (FixedTerm("sex", "sex", None, ("sex",)),))
    random = parse_random("~ vm(animal, ainv) + byear", fixed.response)
    assert random.terms == (rt("animal", relmat="ainv", label="vm(animal, ainv)"), rt("byear"))
    res = parse_residual("~idv(units)", fixed.response)
    assert columns_used(fixed, random, res) == {"bwt", "sex", "animal", "byear"}
    bi = parse_fixed("cbind(bwt,tarsus) ~ trait")
    g = parse_random("~us(trait):vm(animal,ainv)", bi.response)
    assert g.terms == (rt("animal", "us", relmat="ainv", label="us(trait):vm(animal, ainv)"),)
    assert parse_residual("~id(units):us(trait)", bi.response).structure == "us"


def test_benchmark_model():
    fixed = parse_fixed("cbind(y1, y2, y3) ~ trait + at(trait):sex + at(trait):cg")
    assert fixed == FixedSpec(TRI, False, (FixedTerm("trait", "1", ALL3, ()),
                                           FixedTerm("at(trait):sex", "sex", ALL3, ("sex",)),
                                           FixedTerm("at(trait):cg", "cg", ALL3, ("cg",))))
    random = parse_random("~ us(trait):vm(animal, ped)", fixed.response)
    assert random == VarianceSpec((rt("animal", "us", relmat="ped", label="us(trait):vm(animal, ped)"),))
    res = parse_residual("~ units:us(trait)", fixed.response)
    assert res == rt("units", "us", label="units:us(trait)")
    assert columns_used(fixed, random, res) == {"y1", "y2", "y3", "sex", "cg", "animal"}


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("fn, args, match, term", [
    (parse_fixed, ("y ~ trait",), ["'trait'", "multivariate"], "trait"),
    (parse_fixed, ("y ~ at(trait):sex",), "multivariate", "at(trait):sex"),
    (parse_fixed, ("cbind(y) ~ trait",), "multivariate", "trait"),
    (parse_random, ("~ us(trait):Family", UNI), "multivariate", "us(trait):Family"),
    (parse_random, ("~ corgh(trait):g", Response(("a",), False)), "multivariate", "corgh(trait):g"),
    (parse_residual, ("~ units:us(trait)", UNI), "multivariate", "units:us(trait)"),
    (parse_random, ("~ uss(trait):Family", BI), ["uss(trait)", "us, diag, idv, id, corgh, corv, corh, fa"],
     "uss(trait)"),
    (parse_fixed, ('cbind(y1, y2) ~ trait + at(trait, "nope"):cg',), ["'nope'", "y1, y2"], "nope"),
    (parse_random, ("~ at(trait, nope):g", BI), ["'nope'", "y1, y2"], "nope"),
    (parse_random, ("~ fa(trait):g", TRI), ["fa(trait)", "number of factors"], "fa(trait)"),
    (parse_random, ("~ fa(trait, 2):g", BI), ["k = 2", "2 traits"], "fa(trait, 2)"),
    (parse_random, ("~ corgh(trait):g", Response(("a",), True)), "two traits or more", "corgh(trait)"),
    (parse_fixed, ("cbind() ~ 1",), "at least one column", "cbind()"),
    (parse_fixed, ("cbind(log(a), b) ~ trait",), "'log(a)' is not one", "cbind(log(a), b)"),
    (parse_fixed, ("cbind(a, a) ~ trait",), "given twice", "cbind(a, a)"),
    (parse_fixed, ("log(y) ~ 1",), "column name or cbind", "log(y)"),
    (parse_fixed, ("y ~ poly(x, 2",), "not closed", "y ~ poly(x, 2"),
    (parse_fixed, ("y ~ x)",), "')' without '('", "y ~ x)"),
    (parse_fixed, ("y ~ sex +",), "empty term", "y ~ sex +"),
    (parse_fixed, ("y ~ sex + + x",), "empty term", "y ~ sex + + x"),
    (parse_fixed, ("y ~ ",), "no terms", "y ~"),
    (parse_fixed, ("~ sex",), "needs a response", "~ sex"),
    (parse_random, ("y ~ Block", UNI), "takes no response", "y"),
    (parse_fixed, ("y ~ sex + x + sex",), "given twice", "sex"),
    (parse_fixed, ("y ~ sex:x + x:sex",), "given twice", "x:sex"),
    (parse_fixed, ("cbind(y1, y2) ~ trait:sex + at(trait):sex",), "given twice", "at(trait):sex"),
    (parse_fixed, ("y ~ sex:sex",), "appears twice", "sex:sex"),
    (parse_random, ("~ Family + Family", UNI), "given twice", "Family"),
    (parse_random, ("~ us(trait):Family + diag(trait):Family", BI), "given twice", "diag(trait):Family"),
    (parse_fixed, ("cbind(y1, y2) ~ 1 + trait",), "write 'trait'", "1"),
    (parse_fixed, ("y ~ sex - x",), "not supported", "x"),
    (parse_fixed, ("y ~ x^2",), "I(...)", "x^2"),
    (parse_fixed, ("cbind(y1, y2) ~ C(trait)",), "only as 'trait'", "C(trait)"),
    (parse_fixed, ("cbind(y1, y2) ~ trait:at(trait)",), "more than once", "trait:at(trait)"),
    (parse_random, ("~ Family", BI), ["no trait structure", "diag(trait):Family"], "Family"),
    (parse_random, ("~ trait:Family", BI), "give trait a structure", "trait"),
    (parse_random, ("~ us(trait)", BI), "names no factor", "us(trait)"),
    (parse_random, ("~ rr(site):gen", UNI), ["number of factors", "rr(site, 1)"], "rr(site)"),
    (parse_random, ("~ us(site):site", UNI), "appears twice", "us(site):site"),
    (parse_random, ("~ vm(animal, ped):ide(animal)", UNI), "appears twice", "vm(animal, ped):ide(animal)"),
    (parse_random, ("~ sar(row)", UNI), "not supported", "sar(row)"),
    (parse_random, ("~ vm(animal)", UNI), "vm(factor, relmat)", "vm(animal)"),
    (parse_random, ("~ vm(animal, ped):vm(dam, ped)", UNI), "crossed", "vm(animal, ped):vm(dam, ped)"),
    (parse_random, ("~ units:Block", UNI), "residual", "units:Block"),
    (parse_random, ("~ us(trait, init=c(1, a)):g", BI), "init= takes numbers", "us(trait, init=c(1, a)):g"),
    (parse_random, ("~ us(trait, 3):g", BI), "unexpected argument", "us(trait, 3):g"),
    (parse_residual, ("~ dsum(~ units | site, levels = c(1, 2))", UNI), "levels= is a list with one entry per structure",
     "~ dsum(~ units | site, levels = c(1, 2))"),
    (parse_residual, ("~ dsum(~ units | site)",), ["no trait structure", "units:us(trait)"], "units"),
    (parse_residual, ("~ dsum(units | site)", UNI), "is a formula", "~ dsum(units | site)"),
    (parse_residual, ("~ units:us(site)", UNI), "dsum(~ units | site)", "~ units:us(site)"),
    (parse_residual, ("~ at(site, S1):units", UNI), "some levels", "~ at(site, S1):units"),
    (parse_residual, ("~ Block", UNI), "built on 'units'", "~ Block"),
    (parse_residual, ("~ units + Block", UNI), "one term", "~ units + Block"),
    (parse_residual, ("~ units", BI), ["no trait structure", "units:us(trait)"], "units"),
    (parse_residual, ("~ units:at(trait, y1)", BI), "every trait", "~ units:at(trait, y1)"),
    (parse_fixed, (42,), "must be a string", "42"),
    (parse_fixed, ("y ~ sex $ x",), "cannot read", "y ~ sex $ x"),
])
def test_errors(fn, args, match, term):
    if fn is parse_residual and len(args) == 1:
        args = args + (BI,)
    fails(fn, *args, match=match, term=term)


def test_plain_factor_crossed_with_vm_is_an_identity_dimension():
    """Block:vm(animal, ped) is Var = sigma^2 I_Block (x) A, idv(env):vm(gen, ped) the same with
    the scale on env (asreml's idv(env):vm(gen, ped.ainv))."""
    (t,) = parse_random("~ Block:vm(animal, ped)", UNI).terms
    assert t.factors == ("animal",) and t.relmat == "ped"
    assert [(d.column, d.structure) for d in t.dims] == [("Block", "id")] and t.structure == "idv"
    (t,) = parse_random("~ idv(env):vm(gen, ped)", UNI).terms
    assert [(d.column, d.structure) for d in t.dims] == [("env", "idv")] and t.structure == "id"


def test_ar1_dimensions_of_random_terms():
    """ar1 / ar1v / ar1h are dimensions of a random term (mvreml.ar1_levels); a term of AR1
    dimensions alone (a field trend) needs no plain factor; ar1 and ar1v leave the scale to the
    term, ar1h carries it."""
    (t,) = parse_random("~ ar1v(row):id(col)", UNI).terms
    assert t.factors == ("col",) and [(d.column, d.structure) for d in t.dims] == [("row", "ar1v")]
    assert t.structure == "idv" and t.name == "row:col"
    (t,) = parse_random("~ ar1(row):ar1(col)", UNI).terms
    assert t.factors == () and [d.structure for d in t.dims] == ["ar1", "ar1"] and t.structure == "idv"
    (t,) = parse_random("~ ar1h(row):col", UNI).terms
    assert t.structure == "id"
