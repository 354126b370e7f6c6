"""Animal models against published results: Mrode (2014), gryphon (ASReml-R 4.2), BLUPF90.

Sources and numbers: shared/data/*/SOURCE.md.
"""
import warnings

import numpy as np
import pandas as pd
import pytest

import mvreml


def _ws(path, **kw):
    return pd.read_csv(path, sep=r"\s+", **kw)


# --------------------------------------------------------------------------- Mrode
def _mrode31(data_dir):
    """Example 3.1: (pedigree table, data with sex as "male" / "female")."""
    d = data_dir / "mrode2014"
    ped = _ws(d / "pedigree_mr03a.txt", header=None, names=["animal", "sire", "dam"])
    dat = _ws(d / "data_mr03a.txt", header=None, names=["animal", "sex", "sire", "dam", "wwg"])
    dat["sex"] = dat["sex"].map({1: "male", 2: "female"})
    return ped, dat


def _fit31(dat, random, relmat):
    """Mrode 3.1 with the book's known variances (20, 40)."""
    return mvreml.fit("wwg ~ 0 + sex", random=random, data=dat, relmat=relmat,
                      init={"animal": 20.0, "units": 40.0}, fix=["animal", "units"])

def test_mrode_3_1_blup_and_standard_errors(data_dir):
    ped, dat = _mrode31(data_dir)
    res = _fit31(dat, "~ vm(animal, ped)", {"ped": ped})
    fx = res.fixef
    assert fx.loc["sex[male]", "estimate"] == pytest.approx(4.35850233, abs=1e-6)
    assert fx.loc["sex[female]", "estimate"] == pytest.approx(3.40443010, abs=1e-6)
    assert fx.loc["sex[male]", "std_error"] == pytest.approx(4.88082357, abs=1e-6)
    assert fx.loc["sex[female]", "std_error"] == pytest.approx(5.66554023, abs=1e-6)
    blup = res.blup("animal")
    sol = [0.09844458, -0.01877010, -0.04108420, -0.00866312, -0.18573210, 0.17687209, -0.24945855, 0.18261469]
    se = [4.34094096, 4.43664612, 4.27297922, 4.13608581, 4.13814812, 4.20610397, 4.20407502, 4.11029997]
    np.testing.assert_allclose(blup.loc[[str(i) for i in range(1, 9)], "wwg"], sol, atol=1e-6)
    np.testing.assert_allclose(np.sqrt(blup.loc[[str(i) for i in range(1, 9)], "pev_wwg"]), se, atol=1e-6)
    assert list(res.varcomp["bound"]) == ["F", "F"]


MT_51 = {  # animal: (WWG, PWG), Mrode (2014) p.74
    1: (0.151, 0.280), 2: (-0.015, -0.008), 3: (-0.078, -0.170), 4: (-0.010, -0.013),
    5: (-0.270, -0.478), 6: (0.276, 0.517), 7: (-0.316, -0.479), 8: (0.244, 0.392)}
MT_52 = {
    1: (0.130, 0.266), 2: (-0.084, -0.075), 3: (-0.098, -0.194), 4: (0.007, 0.016), 5: (-0.343, -0.555),
    6: (0.192, 0.440), 7: (-0.308, -0.483), 8: (0.201, 0.349), 9: (-0.018, -0.119)}


@pytest.mark.parametrize("example", ["5.1", "5.2"])
def test_mrode_multitrait_known_variances(data_dir, example):
    d = data_dir / "mrode2014"
    if example == "5.1":
        dat = _ws(d / "ex5_1_data_transcribed.txt")
        ped = _ws(d / "pedigree_mr03a.txt", header=None, names=["animal", "sire", "dam"])
        expected, fixed = MT_51, {"Male": (4.361, 6.800), "Female": (3.397, 5.880)}
    else:
        dat = _ws(d / "ex5_2_data_transcribed.txt")
        ped = _ws(d / "ex5_2_pedigree_transcribed.txt")
        expected, fixed = MT_52, {"Male": (4.367, 6.834), "Female": (3.657, 6.007)}
    G0 = np.array([[20.0, 18.0], [18.0, 40.0]])
    R0 = np.array([[40.0, 11.0], [11.0, 30.0]])
    res = mvreml.fit("cbind(WWG, PWG) ~ 0 + at(trait):sex", random="~ us(trait):vm(calf, ped)",
                     residual="~ units:us(trait)", data=dat, relmat={"ped": ped},
                     init={"calf": G0, "units": R0}, fix=["calf", "units"])
    blup = res.blup("calf")
    for animal, (w, p) in expected.items():
        assert blup.loc[str(animal), "WWG"] == pytest.approx(w, abs=5e-4)
        assert blup.loc[str(animal), "PWG"] == pytest.approx(p, abs=5e-4)
    for sex, (w, p) in fixed.items():
        assert res.fixef.loc[f"WWG:sex[{sex}]", "estimate"] == pytest.approx(w, abs=5e-4)
        assert res.fixef.loc[f"PWG:sex[{sex}]", "estimate"] == pytest.approx(p, abs=5e-4)
    if example == "5.1":  # BLUPF90 s.e. of animal 1 quoted by Masuda
        assert np.sqrt(blup.loc["1", "pev_WWG"]) == pytest.approx(4.313320612, abs=1e-6)
        assert np.sqrt(blup.loc["1", "pev_PWG"]) == pytest.approx(5.991809902, abs=1e-6)


# --------------------------------------------------------------------------- gryphon
@pytest.fixture(scope="module")
def gryphon(gryphon_data):
    g, ped = gryphon_data
    return g.copy(), ped


def _quiet_fit(*args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mvreml.errors.DataWarning)
        return mvreml.fit(*args, **kw)


def _assert_published(res, published):
    """Components to 5e-5 relative and their standard errors to 5e-4 (ASReml prints 7 digits)."""
    for label, (est, se) in published.items():
        assert res.varcomp.loc[label, "estimate"] == pytest.approx(est, rel=5e-5), label
        assert res.varcomp.loc[label, "std_error"] == pytest.approx(se, rel=5e-4), label


def test_gryphon_model1(gryphon):
    g, ped = gryphon
    res = _quiet_fit("bwt ~ 1", random="~ vm(animal, ped)", data=g, relmat={"ped": ped})
    assert res.converged
    _assert_published(res, {"animal": (3.395398, 0.6349915), "units": (3.828602, 0.5185919)})
    assert res.loglik_asreml == pytest.approx(-1247.183, abs=1e-3)
    h2 = res.vpredict("animal / (animal + units)")
    assert h2["estimate"] == pytest.approx(0.4700163, abs=5e-5)
    assert h2["std_error"] == pytest.approx(0.07650881, rel=5e-4)
    assert res.heritability("animal").loc["bwt", "estimate"] == pytest.approx(0.4700163, abs=5e-5)
    assert res.n_obs == 854


def test_gryphon_model2_fixed_and_wald(gryphon):
    g, ped = gryphon
    res = _quiet_fit("bwt ~ 1 + sex", random="~ vm(animal, ped)", data=g, relmat={"ped": ped})
    _assert_published(res, {"animal": (3.060441, 0.5243571), "units": (2.938412, 0.4161473)})
    assert res.loglik_asreml == pytest.approx(-1165.093, abs=1e-3)
    assert res.fixef.loc["(Intercept)", "estimate"] == pytest.approx(6.058669, abs=1e-5)
    assert res.fixef.loc["(Intercept)", "std_error"] == pytest.approx(0.1718244, rel=5e-4)
    assert res.fixef.loc["sex[T.2]", "estimate"] == pytest.approx(2.206996, abs=1e-5)
    assert res.fixef.loc["sex[T.2]", "std_error"] == pytest.approx(0.1619974, rel=5e-4)
    assert res.wald().loc["sex", "F_con"] == pytest.approx(185.6, abs=0.05)


def test_gryphon_model3_two_random_terms(gryphon):
    g, ped = gryphon
    res = _quiet_fit("bwt ~ 1 + sex", random="~ vm(animal, ped) + byear", data=g, relmat={"ped": ped})
    _assert_published(res, {"byear": (0.8862604, 0.2695918), "animal": (2.7068665, 0.4422140),
                            "units": (2.3092415, 0.3451025)})
    assert res.loglik_asreml == pytest.approx(-1113.772, abs=1e-3)
    h2 = res.vpredict("animal / (animal + byear + units)")
    assert h2["estimate"] == pytest.approx(0.4586068, abs=5e-5)
    assert h2["std_error"] == pytest.approx(0.06740364, rel=5e-4)


def test_gryphon_bivariate_modela(gryphon):
    g, ped = gryphon
    res = _quiet_fit("cbind(bwt, tarsus) ~ trait", random="~ us(trait):vm(animal, ped)",
                     residual="~ id(units):us(trait)", data=g, relmat={"ped": ped})
    assert res.converged
    assert res.n_obs == 854 + 683
    published = {
        "animal:trait!bwt:bwt": (3.368397, 0.6348307), "animal:trait!tarsus:bwt": (2.459809, 1.0732644),
        "animal:trait!tarsus:tarsus": (12.345792, 3.0744285), "units:trait!bwt:bwt": (3.849916, 0.5200101),
        "units:trait!tarsus:bwt": (3.313282, 0.9129234), "units:trait!tarsus:tarsus": (17.646432, 2.6670380)}
    _assert_published(res, published)
    assert res.loglik_asreml == pytest.approx(-2679.741, abs=1e-3)
    ra = res.correlation("animal", se=True).iloc[0]
    assert ra["estimate"] == pytest.approx(0.3814436, abs=5e-5)
    assert ra["std_error"] == pytest.approx(0.1299759, rel=1e-3)
    rr = res.correlation("units", se=True).iloc[0]
    assert rr["estimate"] == pytest.approx(0.4019799, abs=5e-5)
    assert rr["std_error"] == pytest.approx(0.08607104, rel=1e-3)
    h2 = res.heritability("animal")
    assert h2.loc["bwt", "estimate"] == pytest.approx(0.466646, abs=5e-5)
    assert h2.loc["bwt", "std_error"] == pytest.approx(0.07671533, rel=1e-3)
    assert h2.loc["tarsus", "estimate"] == pytest.approx(0.4116331, abs=5e-5)
    assert h2.loc["tarsus", "std_error"] == pytest.approx(0.09305863, rel=1e-3)
    # the genetic correlation through vpredict equals the ready-made one
    v = res.vpredict("animal[bwt,tarsus] / sqrt(animal[bwt,bwt] * animal[tarsus,tarsus])")
    assert v["estimate"] == pytest.approx(ra["estimate"], rel=1e-12)
    assert v["std_error"] == pytest.approx(ra["std_error"], rel=1e-9)


def test_gryphon_corgh_equals_us(gryphon):
    g, ped = gryphon
    us = _quiet_fit("cbind(bwt, tarsus) ~ trait", random="~ us(trait):vm(animal, ped)",
                    residual="~ units:us(trait)", data=g, relmat={"ped": ped})
    cg = _quiet_fit("cbind(bwt, tarsus) ~ trait", random="~ corgh(trait):vm(animal, ped)",
                    residual="~ units:us(trait)", data=g, relmat={"ped": ped})
    assert cg.loglik == pytest.approx(us.loglik, abs=1e-6)
    assert cg.varcomp.loc["animal:trait!tarsus:!bwt.cor", "estimate"] == pytest.approx(0.3814436, abs=5e-5)
    np.testing.assert_allclose(cg.covariance("animal").to_numpy(), us.covariance("animal").to_numpy(), rtol=1e-4)


# --------------------------------------------------------------------------- BLUPF90
EBV = {1: (-0.02253416, -0.04249548), 2: (0.10792661, -0.13113037), 3: (-0.02682949, 0.09896514),
       4: (0.03164894, -0.02495242), 5: (0.13475233, -0.23009750), 6: (-0.22496602, 0.32971990),
       7: (0.25609198, -0.41070894), 8: (-0.01797409, -0.07622271), 9: (0.01371895, 0.08288296),
       10: (-0.84143020, 1.63889151), 11: (0.19804880, -0.20028530), 12: (0.03355559, 0.06720834),
       13: (0.10550434, 0.07202442), 14: (0.52502266, -0.66337381), 15: (-1.00156891, 2.01449847)}


def test_blupf90_quicktour_two_traits_without_inbreeding(data_dir):
    d = data_dir / "blupf90_quicktour_mt"
    dat = _ws(d / "data5.txt", header=None, names=["y1", "y2", "A", "S", "x", "animal"])
    dat["A"] = dat["A"].astype(str)
    dat["S"] = dat["S"].astype(str)
    ped = mvreml.Pedigree(_ws(d / "pedigree5.txt", header=None), inbreeding=False)
    R0 = np.array([[2.0, 1.0], [1.0, 1.5]])
    G0 = np.array([[0.50, -0.25], [-0.25, 1.00]])
    res = mvreml.fit("cbind(y1, y2) ~ at(trait):A + at(trait):S + trait:x", random="~ us(trait):vm(animal, ped)",
                     residual="~ units:us(trait)", data=dat, relmat={"ped": ped},
                     init={"animal": G0, "units": R0}, fix=["animal", "units"])
    blup = res.blup("animal")
    got = blup.loc[[str(i) for i in EBV], ["y1", "y2"]].to_numpy()
    np.testing.assert_allclose(got, np.array(list(EBV.values())), atol=1e-5)
    # A and S are confounded: per trait 3 A levels + 1 S contrast + x are estimable
    assert res.rank_x == 10


def test_mrode_3_1_reliability(data_dir):
    """Book p.45: reliability of animal 1 = 0.058 (PEV 18.84, sigma_a^2 = 20, F = 0)."""
    ped, dat = _mrode31(data_dir)
    res = _fit31(dat, "~ vm(animal, ped)", {"ped": ped})
    blup = res.blup("animal")
    assert blup.loc["1", "reliability_wwg"] == pytest.approx(1 - 18.84 / 20, abs=1e-3)
    np.testing.assert_allclose(blup["reliability_wwg"], 1 - blup["pev_wwg"] / 20.0, rtol=1e-12)


def test_reliability_uses_inbreeding(data_dir):
    """With inbred animals the reliability divides by (1 + F) sigma_a^2."""
    d = data_dir / "blupf90_quicktour_mt"
    dat = _ws(d / "data5.txt", header=None, names=["y1", "y2", "A", "S", "x", "animal"])
    ped = mvreml.Pedigree(_ws(d / "pedigree5.txt", header=None))
    res = mvreml.fit("y1 ~ 1 + x", random="~ vm(animal, ped)", data=dat, relmat={"ped": ped},
                     init={"animal": 0.5, "units": 2.0}, fix=["animal", "units"])
    blup = res.blup("animal")
    F = ped.inbreeding.reindex(blup.index).to_numpy()
    assert F.max() > 0
    np.testing.assert_allclose(blup["reliability_y1"], 1 - blup["pev_y1"] / ((1 + F) * 0.5), rtol=1e-12)


def test_user_relationship_matrix_equals_pedigree(data_dir):
    """vm(animal, G) with G = the dense A of the pedigree (or its inverse) gives the pedigree fit."""
    from mvreml.relmat import RelationshipMatrix

    table, dat = _mrode31(data_dir)
    ped = mvreml.Pedigree(table)
    A = np.linalg.inv(ped.ainv().toarray())
    G = pd.DataFrame(A, index=ped.ids, columns=ped.ids)
    by_ped = _fit31(dat, "~ vm(animal, ped)", {"ped": ped})
    by_g = _fit31(dat, "~ vm(animal, G)", {"G": RelationshipMatrix.from_matrix(G)})
    by_ginv = _fit31(dat, "~ vm(animal, Gi)",
                     {"Gi": RelationshipMatrix.from_inverse(ped.ainv(), labels=ped.ids)})
    for res in (by_g, by_ginv):
        assert res.loglik == pytest.approx(by_ped.loglik, rel=1e-10)
        np.testing.assert_allclose(res.blup("animal")["wwg"].to_numpy(),
                                   by_ped.blup("animal").loc[res.blup("animal").index, "wwg"].to_numpy(), atol=1e-10)
