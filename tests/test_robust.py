"""Fits that do not fail: random small problems near the boundary against an independent dense
optimum, confounded terms, copied traits, an unbounded likelihood, determinism.

The random problems (seeded): 1-4 traits on scales 10^4 apart, 1-3 random terms (crossed and
nested factors) with us / diag / idv / corgh structures, us or diag residuals, missing values,
true matrices near the boundary (rank deficient, a zero variance, a correlation of 0.99, a
tiny term). One in five is deliberately tiny for its number of parameters; some of those
have no REML maximum at all (log L grows without bound as a residual direction vanishes):
then the fit must not claim convergence.
"""
import warnings

import numpy as np
import pandas as pd
import pytest

import mvreml
from mvreml.api import _blocks
from mvreml.design import build_design
from mvreml.errors import IdentifiabilityWarning, ModelError
from mvreml.formula import parse_fixed, parse_random, parse_residual

from dense import dense_loglik
from dense_opt import DenseREML, single_thread_blas

SCALES = np.array([1.0, 100.0, 0.01, 5.0])
GAP = 1e-4                 # log L of a fit may be at most this far below the dense optimum


def _true_matrix(rng, t, structure, size):
    """A true trait matrix for a structure, often on or near the boundary."""
    d = np.sqrt(SCALES[:t] * size)
    kind = rng.choice(["regular", "rank", "zero", "cor", "tiny"], p=[0.3, 0.2, 0.2, 0.15, 0.15])
    if structure == "idv":
        v = {"zero": 0.0, "tiny": 1e-3}.get(kind, 1.0)
        return v * size * np.eye(t)
    if structure == "diag":
        v = rng.uniform(0.3, 1.5, t)
        if kind in ("zero", "rank", "cor"):
            v[rng.integers(t)] = 0.0
        return np.diag(v * (1e-3 if kind == "tiny" else 1.0) * d * d)
    A = rng.standard_normal((t, t))
    if kind == "rank" and t > 1:
        A[:, rng.integers(1, t):] = 0.0
    M = A @ A.T + (0.0 if kind == "rank" else 0.3 * np.eye(t))
    R = M / np.sqrt(np.outer(np.diag(M), np.diag(M)))
    if kind == "cor" and t > 1:
        R = np.eye(t)
        R[0, 1] = R[1, 0] = rng.choice([-1.0, 1.0]) * 0.99
    v = rng.uniform(0.3, 1.5, t) * (1e-3 if kind == "tiny" else 1.0)
    if kind == "zero":
        v[rng.integers(t)] = 0.0
    sd = np.sqrt(v) * d
    return R * np.outer(sd, sd)


def random_problem(seed: int) -> dict:
    """A seeded random model and data set (see the module docstring)."""
    rng = np.random.default_rng(seed)
    t = int(rng.integers(1, 5))
    tiny = rng.random() < 0.2
    n = int(rng.integers(25, 40)) if tiny else int(rng.integers(20 + 10 * t, 50 + 10 * t))
    k1, k2 = int(rng.integers(3, 9)), int(rng.integers(2, 6))
    df = pd.DataFrame({"F1": rng.integers(0, k1, n).astype(str), "F2": rng.integers(0, k2, n).astype(str),
                       "x": rng.standard_normal(n)})
    df["F3"] = df["F1"] + "_" + rng.integers(0, 2, n).astype(str)          # nested in F1
    factors = list(rng.permutation(["F1", "F2", "F3"])[: int(rng.integers(1, 4))])
    terms, truth = [], []
    for f in factors:
        st = "idv" if t == 1 else str(rng.choice(["us", "diag", "idv", "corgh"], p=[0.5, 0.25, 0.1, 0.15]))
        terms.append((f, st))
        truth.append(_true_matrix(rng, t, st, rng.uniform(0.2, 1.0)))
    rst = "idv" if t == 1 else str(rng.choice(["us", "diag"], p=[0.7, 0.3]))
    R = _true_matrix(rng, t, "us", 1.0) + np.diag(0.05 * SCALES[:t])
    truth.append(np.diag(np.diag(R)) if rst != "us" else R)
    Y = np.zeros((n, t)) + 3.0 * np.arange(t)
    covariate = rng.random() < 0.4
    if covariate:
        Y += np.outer(df["x"].to_numpy(), rng.standard_normal(t) * np.sqrt(SCALES[:t]))
    for (f, _), G in zip(terms, truth):
        levels, idx = np.unique(df[f], return_inverse=True)
        w, V = np.linalg.eigh(G)
        Y += (rng.standard_normal((len(levels), t)) @ (V * np.sqrt(np.clip(w, 0, None))).T)[idx]
    w, V = np.linalg.eigh(truth[-1])
    Y += rng.standard_normal((n, t)) @ (V * np.sqrt(np.clip(w, 0, None))).T
    if t > 1:
        miss = rng.random((n, t)) < rng.uniform(0, 0.3)
        miss[miss.all(axis=1), 0] = False
        Y[miss] = np.nan
    traits = [f"y{j + 1}" for j in range(t)]
    for j, name in enumerate(traits):
        df[name] = Y[:, j]
    if t == 1:
        model = dict(fixed="y1 ~ 1" + (" + x" if covariate else ""),
                     random="~ " + " + ".join(f for f, _ in terms), residual=None)
    else:
        model = dict(fixed=f"cbind({', '.join(traits)}) ~ trait" + (" + trait:x" if covariate else ""),
                     random="~ " + " + ".join(f"{st}(trait):{f}" for f, st in terms),
                     residual=f"~ units:{rst}(trait)")
    return dict(data=df, truth=truth, **model)


def _quiet_fit(pr, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mvreml.fit(pr["fixed"], random=pr["random"], residual=pr["residual"], data=pr["data"], **kw)


def _dense(pr):
    fs = parse_fixed(pr["fixed"])
    resid = parse_residual(pr["residual"], fs.response)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        design = build_design(pr["data"], fs, parse_random(pr["random"], fs.response), resid)
    blocks = _blocks(design, resid)
    return design, blocks, DenseREML(design, blocks)


def _unbounded(design, mats) -> bool:
    """log L keeps growing as the smallest residual eigenvalue of a (dense) optimum goes to 0."""
    w, V = np.linalg.eigh(mats[-1])
    if w[0] > 1e-6 * w[-1]:
        return False
    with single_thread_blas():
        lls = [dense_loglik(design, mats[:-1] + [(V * np.r_[lam * w[-1], w[1:]]) @ V.T])
               for lam in (1e-8, 1e-10, 1e-12)]
    return lls[1] - lls[0] > 1.0 and lls[2] - lls[1] > 1.0


def check_case(seed: int) -> tuple[bool, str]:
    """Fit a random problem and compare with the dense optimum: (passed, description)."""
    pr = random_problem(seed)
    res = _quiet_fit(pr, maxiter=100)
    design, blocks, dense = _dense(pr)
    starts = [[res.covariance(b.name).to_numpy() for b in blocks], pr["truth"]]
    best, mats = dense.maximise(starts)
    what = f"seed {seed}: {pr['fixed']} | {pr['random']} | {pr['residual']}"
    if _unbounded(design, mats):
        return not res.converged, f"{what}: unbounded log L, converged={res.converged} ({res.reason[:60]})"
    return res.loglik >= best - GAP, f"{what}: dense {best:.6f} mvreml {res.loglik:.6f} converged={res.converged}"


def _run(seeds):
    results = [check_case(s) for s in seeds]
    failed = [text for ok, text in results if not ok]
    assert len(failed) <= int(0.01 * len(seeds)), "\n".join(failed)


def test_random_small_problems_reach_the_dense_optimum():
    _run(range(1000, 1020))


@pytest.mark.slow
def test_random_small_problems_reach_the_dense_optimum_200():
    _run(range(200))


# ---------------------------------------------------------------- named problems
def _confounded(n_fam=30, per=4, seed=3):
    """Each family in a block of its own: Block and Family are the same partition."""
    rng = np.random.default_rng(seed)
    fam = np.repeat(np.arange(n_fam), per)
    u = rng.standard_normal((n_fam, 2)) @ np.array([[1.0, 0.5], [0.0, 1.0]])
    y = 10 + u[fam] + rng.standard_normal((len(fam), 2))
    return pd.DataFrame({"Block": [f"B{f}" for f in fam], "Family": [f"F{f}" for f in fam],
                         "y1": y[:, 0], "y2": 10 * y[:, 1]})


def test_confounded_block_and_family_are_named_univariate():
    df = _confounded()
    with pytest.warns(IdentifiabilityWarning, match="(Block and Family|Family and Block) are confounded: only their sum is identified"):
        res = mvreml.fit("y1 ~ 1", random="~ Block + Family", data=df)
    assert res.converged
    assert res.varcomp.loc["Block", "bound"] == "B"
    # the sum is what the data identify: the one-term model gives it, with the same log L
    one = mvreml.fit("y1 ~ 1", random="~ Family", data=df)
    assert res.loglik == pytest.approx(one.loglik, abs=1e-7)
    assert res.varcomp.loc["Family", "estimate"] == pytest.approx(one.varcomp.loc["Family", "estimate"], rel=1e-5)


def test_confounded_covariance_matrices_are_named_multivariate():
    df = _confounded()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = mvreml.fit("cbind(y1, y2) ~ trait", random="~ us(trait):Block + us(trait):Family", data=df)
    text = "the Block and Family covariance matrices are confounded: only their sum is identified"
    assert any(text in d for d in res.diagnostics)
    assert any(issubclass(w.category, IdentifiabilityWarning) for w in caught)
    assert res.converged
    assert (res.varcomp.loc[res.varcomp["term"] == "Block", "bound"] == "B").all()
    one = mvreml.fit("cbind(y1, y2) ~ trait", random="~ us(trait):Family", data=df)
    assert res.loglik == pytest.approx(one.loglik, abs=1e-6)


def test_nested_families_are_identified():
    """Families nested in blocks (several per block) are not confounded: no such message."""
    df = _confounded()
    df["Block"] = [f"B{int(f[1:]) // 5}" for f in df["Family"]]
    with warnings.catch_warnings():
        warnings.simplefilter("error", IdentifiabilityWarning)
        warnings.simplefilter("ignore", mvreml.errors.BoundaryWarning)
        res = mvreml.fit("y1 ~ 1", random="~ Block + Family", data=df)
    assert res.converged and not any("confounded" in d for d in res.diagnostics)


def test_a_copied_trait_is_refused_with_both_names():
    df = _confounded()
    df["y3"] = 2.0 * df["y1"] - 1.0
    with pytest.raises(ModelError, match="traits 'y1' and 'y3' are exact copies"):
        mvreml.fit("cbind(y1, y2, y3) ~ trait", random="~ us(trait):Family", data=df)
    df["y4"] = df["y1"] + df["y2"]
    with pytest.raises(ModelError, match="traits 'y1', 'y2', 'y4' are linearly dependent"):
        mvreml.fit("cbind(y1, y2, y4) ~ trait", random="~ us(trait):Family", data=df)


def test_unbounded_likelihood_is_not_called_converged():
    """y2 - y1 is a family effect without residual: log L grows without bound as the residual
    variance of y2 - y1 goes to zero. The fit must say so instead of converging."""
    rng = np.random.default_rng(5)
    fam = np.repeat(np.arange(20), 5)
    y1 = rng.standard_normal(20)[fam] + rng.standard_normal(100)
    y2 = y1 + 3.0 * rng.standard_normal(20)[fam]
    df = pd.DataFrame({"Family": [f"F{f}" for f in fam], "y1": y1, "y2": y2})
    with pytest.warns(mvreml.errors.ConvergenceWarning, match="unbounded"):
        res = mvreml.fit("cbind(y1, y2) ~ trait", random="~ us(trait):Family", data=df)
    assert not res.converged
    assert "residual variance of" in res.reason and "y1" in res.reason and "y2" in res.reason


def test_fits_are_bit_identical():
    pr = random_problem(1003)
    a = _quiet_fit(pr)
    b = _quiet_fit(pr)
    assert a.loglik == b.loglik
    assert np.array_equal(a.varcomp["estimate"].to_numpy(), b.varcomp["estimate"].to_numpy())
    assert np.array_equal(a.history["loglik"].to_numpy(), b.history["loglik"].to_numpy())
    assert a.diagnostics == b.diagnostics


def test_residual_covariance_of_traits_never_observed_together_is_held_and_named():
    rng = np.random.default_rng(7)
    fam = np.repeat(np.arange(40), 6)
    y = (rng.standard_normal((40, 2)) @ np.array([[1.0, 0.6], [0.0, 0.8]]))[fam] + rng.standard_normal((240, 2))
    y[::2, 0] = np.nan
    y[1::2, 1] = np.nan
    df = pd.DataFrame({"Family": [f"F{f}" for f in fam], "y1": y[:, 0], "y2": y[:, 1]})
    with pytest.warns(IdentifiabilityWarning, match=r"units:trait!y2:y1 is not identified by the data \(no information"):
        res = mvreml.fit("cbind(y1, y2) ~ trait", random="~ us(trait):Family", data=df)
    assert res.converged
    assert res.varcomp.loc["units:trait!y2:y1", "estimate"] == 0.0
    # the genetic covariance is still estimated (the families carry it)
    assert 0.2 < res.varcomp.loc["Family:trait!y2:y1", "estimate"] < 0.7
