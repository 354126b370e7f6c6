"""The sparse MME engine against an independent dense computation (V = ZGZ' + R).

log L to 1e-8 relative, the score against finite differences of the dense log L and its
analytic dense form, the AI matrix against 1/2 y'P V_i P V_j P y.
"""
import numpy as np
import pandas as pd
import pytest

from mvreml.api import _blocks
from mvreml.design import build_design
from mvreml.formula import parse_fixed, parse_random, parse_residual
from mvreml.likelihood import REMLModel

from dense import assert_engine_matches_dense, dense_parts


def _random_pd(rng, t, scale):
    A = rng.standard_normal((t, t))
    M = A @ A.T + t * np.eye(t)
    d = np.sqrt(scale)
    return M / np.mean(np.diag(M)) * np.outer(d, d)


def _data(seed, n=40, traits=("y1",), missing=0.0, weights=False):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "A": rng.integers(0, 5, n).astype(str),
        "B": rng.integers(0, 4, n).astype(str),
        "sex": rng.choice(["m", "f"], n),
        "x": rng.standard_normal(n),
    })
    df["C"] = df["A"] + "_" + rng.integers(0, 2, n).astype(str)   # nested in A
    scales = [1.0, 100.0, 0.01, 5.0]
    for j, tr in enumerate(traits):
        y = rng.standard_normal(n) * np.sqrt(scales[j]) + 3 * j
        if missing:
            y[rng.random(n) < missing] = np.nan
        df[tr] = y
    if weights:
        df["w"] = rng.uniform(0.5, 2.0, n)
    return df


def _model(df, fixed, random, residual=None, weights=None, seed=0):
    fs = parse_fixed(fixed)
    rs = parse_random(random, fs.response)
    res = parse_residual(residual, fs.response)
    design = build_design(df, fs, rs, res, weights=weights)
    blocks = _blocks(design, res)
    model = REMLModel(design, blocks)
    rng = np.random.default_rng(seed + 99)
    theta = np.zeros(blocks[-1].stop)
    for b in blocks:
        t = len(b.structure.traits)
        G = _random_pd(rng, t, np.array([1.0, 100.0, 0.01, 5.0][:t]) * rng.uniform(0.3, 1.5))
        theta[b.slice] = b.structure.from_matrix(G)
    return design, blocks, model, theta


CASES = [
    # univariate: crossed, nested, covariates, weights
    (dict(traits=("y1",)), "y1 ~ 1 + sex + x", "~ A + B", None, None),
    (dict(traits=("y1",), weights=True), "y1 ~ 1 + x", "~ A + C", None, "w"),
    (dict(traits=("y1",)), "y1 ~ 1", "~ A:B", None, None),
    # multivariate with missing traits and several structures
    (dict(traits=("y1", "y2"), missing=0.15), "cbind(y1, y2) ~ trait + at(trait):sex",
     "~ us(trait):A + diag(trait):B", "~ units:us(trait)", None),
    (dict(traits=("y1", "y2", "y3"), missing=0.2, weights=True), "cbind(y1, y2, y3) ~ trait + trait:x",
     "~ corgh(trait):A + idv(trait):B", "~ units:us(trait)", "w"),
    (dict(traits=("y1", "y2", "y3"), missing=0.1), "cbind(y1, y2, y3) ~ trait",
     "~ corh(trait):A + corv(trait):B", "~ units:diag(trait)", None),
    (dict(traits=("y1", "y2", "y3", "y4"), missing=0.25, n=30), "cbind(y1, y2, y3, y4) ~ trait",
     "~ us(trait):A", "~ units:corgh(trait)", None),
    (dict(traits=("y1", "y2"), missing=0.1), "cbind(y1, y2) ~ trait + sex",
     "~ at(trait, y2):A + us(trait):B", "~ units:us(trait)", None),
    (dict(traits=("y1", "y2", "y3"), missing=0.15, n=50), "cbind(y1, y2, y3) ~ trait",
     "~ fa(trait, 1):A + diag(trait):B", "~ id(units):us(trait)", None),
    (dict(traits=("y1", "y2", "y3", "y4"), missing=0.2, n=40, weights=True), "cbind(y1, y2, y3, y4) ~ trait",
     "~ fa(trait, 2):A", "~ units:diag(trait)", "w"),
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_loglik_score_ai_match_dense(case):
    kw, fixed, random, residual, weights = CASES[case]
    df = _data(case, **kw)
    design, blocks, model, theta = _model(df, fixed, random, residual, weights, seed=case)
    assert_engine_matches_dense(design, blocks, model, theta)


def test_em_update_of_residual_matches_complete_data_formula():
    """Without missing traits the residual EM update is sum_i E_i / n (E_i = e e' + W C^-1 W')."""
    df = _data(3, traits=("y1", "y2"), n=25)
    design, blocks, model, theta = _model(df, "cbind(y1, y2) ~ trait", "~ us(trait):A", "~ units:us(trait)")
    ev = model.evaluate(theta)
    mats = [b.structure.matrix(theta[b.slice]) for b in blocks]
    from dense import dense_P

    parts = dense_parts(design)
    P = dense_P(design, mats, parts)
    # E[e e'] pieces: R P y y' P R + R - R P R per unit (the REML conditional expectation)
    R = np.kron(np.eye(design.n_units), mats[-1])
    Py = P @ design.y
    Ee = R @ np.outer(Py, Py) @ R + R - R @ P @ R
    S = np.zeros((2, 2))
    for i in range(design.n_units):
        a = design.unit_start[i]
        S += Ee[a:a + 2, a:a + 2]
    np.testing.assert_allclose(ev.em[-1], S / design.n_units, rtol=1e-8)


def test_engine_factor_is_consumed_by_the_selected_inverse_and_results_still_read_it():
    """The engine's factor (mvreml.chol): solves come before the selected inverse, which then
    holds C^-1 in place of L; PEVs and the fixed-effect covariance are read from it (or from
    solves after a refactorization) and agree with each other and with dense algebra."""
    from mvreml.chol import SupernodalFactor

    df = _data(3, n=60, traits=("y1", "y2"), missing=0.1)
    design, blocks, model, theta = _model(df, "cbind(y1, y2) ~ trait + at(trait):sex",
                                          "~ us(trait):A + diag(trait):B", "~ units:us(trait)")
    ev = model.evaluate(theta)
    assert isinstance(model.factor, SupernodalFactor) and model.factor.state == "consumed"
    np.testing.assert_allclose(model.pev_diagonal(), model.pattern.diagonal(ev.cinv), rtol=1e-12)
    from_inverse = model.fixed_vcov(theta=theta)
    assert model.factor.state == "consumed"          # read from C^-1, no factorization
    if model._fixed_positions() is None:
        pytest.skip("fixed block not in the factor's pattern for this ordering")
    model.evaluate(theta, derivatives=False)
    assert model.factor.state == "numeric"
    from_solves = model.fixed_vcov(theta=theta)
    np.testing.assert_allclose(from_inverse, from_solves, rtol=1e-10, atol=1e-14)
    C = model.pattern.assemble(model._pair_values(model._residual_parts(model.matrices(theta)[-1:])[0]),
                               [np.linalg.inv(G) for G in model.matrices(theta)[:-1]])
    dense = np.linalg.inv(C.toarray() + np.tril(C.toarray(), -1).T)
    np.testing.assert_allclose(from_solves, dense[:design.p, :design.p], rtol=1e-9)


def test_engine_not_positive_definite_mme_is_infeasible_naming_the_equation():
    from mvreml.errors import FactorizationError
    from mvreml.likelihood import Infeasible

    df = _data(4, n=50)
    design, blocks, model, theta = _model(df, "y1 ~ 1 + sex + x", "~ A + B")
    model.evaluate(theta)
    C = model.pattern.assemble(model._pair_values(model._residual_parts(model.matrices(theta)[-1:])[0]),
                               [np.linalg.inv(G) for G in model.matrices(theta)[:-1]])
    bad = C.copy()
    k = design.p + 2                                  # an equation of the first random term
    bad.data[bad.indptr[k]] = -1.0                    # its diagonal (sorted CSC: first in the column)
    assert bad.indices[bad.indptr[k]] == k
    model.factor_theta = None                         # as evaluate() does before factorizing
    level = design.random[0].levels[2]
    with pytest.raises(Infeasible, match=f"at equation {k}: term 'A', level '{level}'"):
        model._factorize(bad)
    assert not model.factor.solvable
    with pytest.raises(FactorizationError, match="no factor held"):
        model.fixed_vcov()
    model.evaluate(theta)                              # recovers on the same factor
    assert model.factor.state == "consumed"


def test_engine_default_ordering_is_amd_and_others_pass_through():
    df = _data(5, n=50)
    for asked, used in (("default", "amd"), ("metis", "metis"), ("nesdis", "nesdis")):
        fs = parse_fixed("y1 ~ 1 + sex")
        rs = parse_random("~ A + B", fs.response)
        res = parse_residual(None, fs.response)
        design = build_design(df, fs, rs, res)
        model = REMLModel(design, _blocks(design, res), ordering=asked)
        theta = np.concatenate([b.structure.from_matrix(np.eye(len(b.structure.traits))) for b in model.blocks])
        model.evaluate(theta, derivatives=False)
        assert model.factor.analysis()["ordering"] == used
