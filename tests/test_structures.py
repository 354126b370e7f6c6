"""Covariance structures: G(theta), exact derivatives, round trips, feasibility, labels, helpers."""
import numpy as np
import pytest

from mvreml.errors import FormulaError, ModelError, StartingValueError
from mvreml.structures import (STRUCTURE_NAMES, correlation_matrix, em_update, jacobian_elements,
                               make_structure, nearest_pd, vech_pairs)

TRAITS = ("velocity", "density", "height", "dbh")
CASES = ([(n, t, None) for n in ("id", "idv", "diag", "us") for t in range(1, 5)]
         + [(n, t, None) for n in ("corgh", "corv", "corh") for t in range(2, 5)]
         + [("fa", t, k) for t in range(2, 5) for k in range(1, t)])
# fa(k) parameters are identified (recoverable from G) only when (t - k)^2 >= t + k
FA_IDENTIFIED = {(3, 1), (4, 1)}


def ids(case):
    name, t, k = case
    return f"{name}{'' if k is None else k}-t{t}"


def random_theta(s, rng, scales=None):
    """A random feasible theta of structure s; trait variances around `scales`."""
    t = s.t
    sc = np.ones(t) if scales is None else np.asarray(scales, dtype=float)
    v = sc * rng.uniform(0.5, 2.0, t)
    if s.name == "id":
        return np.zeros(0)
    if s.name == "idv":
        return v[:1]
    if s.name == "diag":
        return v
    if s.name in ("us", "corgh"):
        A = rng.normal(size=(t, t + 2))
        d = np.sqrt(sc)
        G = (A @ A.T + 0.5 * np.eye(t)) * np.outer(d, d)
        if s.name == "us":
            return np.array([G[i, j] for i, j in vech_pairs(t)])
        R = correlation_matrix(G)
        return np.concatenate([[R[i, j] for i in range(t) for j in range(i)], v])
    if s.name in ("corv", "corh"):
        r = rng.uniform(-0.8 / (t - 1), 0.9)
        return np.concatenate([[r], v[:1] if s.name == "corv" else v])
    # fa: loadings bounded away from 0 (a near-zero loading makes the fit ill-conditioned)
    L = np.tril(rng.uniform(0.3, 1.5, (t, s.k)) * rng.choice([-1.0, 1.0], (t, s.k)))
    L[np.arange(s.k), np.arange(s.k)] = np.abs(np.diag(L))
    L *= np.sqrt(sc)[:, None]
    return np.concatenate([[L[i, m] for m in range(s.k) for i in range(m, t)], v])


def build(case):
    name, t, k = case
    return make_structure(name, TRAITS[:t], k)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_derivatives_match_central_differences(case):
    s = build(case)
    rng = np.random.default_rng(11)
    for _ in range(3):
        theta = random_theta(s, rng)
        D = s.derivatives(theta)
        assert D.shape == (s.n_params, s.t, s.t)
        h = 1e-5
        for j in range(s.n_params):
            e = np.zeros(s.n_params)
            e[j] = h
            fd = (s.matrix(theta + e) - s.matrix(theta - e)) / (2 * h)
            np.testing.assert_allclose(D[j], fd, rtol=0, atol=1e-7)
            np.testing.assert_array_equal(D[j], D[j].T)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_jacobian_elements_match_central_differences(case):
    s = build(case)
    rng = np.random.default_rng(12)
    theta = random_theta(s, rng)
    J = jacobian_elements(s, theta)
    m = s.t * (s.t + 1) // 2
    assert J.shape == (m, s.n_params)
    il = [i for i, _ in vech_pairs(s.t)], [j for _, j in vech_pairs(s.t)]
    h = 1e-5
    for p in range(s.n_params):
        e = np.zeros(s.n_params)
        e[p] = h
        fd = (s.matrix(theta + e)[il] - s.matrix(theta - e)[il]) / (2 * h)
        np.testing.assert_allclose(J[:, p], fd, rtol=0, atol=1e-7)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_round_trip(case):
    s = build(case)
    rng = np.random.default_rng(13)
    for rep in range(5):
        # traits on scales 10^4 apart, like the seed's velocity and density
        scales = [1.0, 1e-4, 1e2, 3.0][: s.t] if rep % 2 else None
        theta = random_theta(s, rng, scales)
        assert s.feasible(theta)
        G = s.matrix(theta)
        back = s.from_matrix(G)
        assert back.shape == (s.n_params,)
        scale = np.sqrt(np.outer(np.diag(G), np.diag(G)))
        np.testing.assert_allclose(s.matrix(back) / scale, G / scale, rtol=0, atol=1e-10)
        if s.name != "fa" or (s.t, s.k) in FA_IDENTIFIED:
            np.testing.assert_allclose(back, theta, rtol=1e-8, atol=0)
        else:
            # over-parameterised fa: some exact fit, identified by a lower-trapezoid L
            assert s.feasible(back)
            L = s.loadings(back)
            assert np.all(L[np.triu_indices(s.t, 1, s.k)] == 0) and np.all(np.diag(L) >= 0)


def test_fa_identified_values_on_wide_scales():
    s = make_structure("fa", TRAITS, 1)
    L = np.array([120.0, -0.03, 5.0, 0.8])
    psi = np.array([9000.0, 0.002, 30.0, 0.5])
    back = s.from_matrix(s.matrix(np.concatenate([L, psi])))
    np.testing.assert_allclose(back, np.concatenate([L, psi]), rtol=1e-9)


def test_fa_fit_of_general_matrix_is_least_squares_stationary():
    s = make_structure("fa", TRAITS, 1)
    rng = np.random.default_rng(3)
    A = rng.normal(size=(4, 6))
    G = A @ A.T + np.eye(4)
    theta = s.from_matrix(G)
    assert s.feasible(theta)
    d = np.sqrt(np.diag(G))
    # gradient of ||G_s - L L' - diag(psi)||_F on the correlation scale vanishes at the fit
    i, j = np.tril_indices(4)
    w = np.where(i == j, 1.0, np.sqrt(2.0))
    ts = np.concatenate([s.loadings(theta)[:, 0] / d, theta[4:] / d**2])
    r = w * (s.matrix(ts) - G / np.outer(d, d))[i, j]
    grad = (w[:, None] * jacobian_elements(s, ts)).T @ r
    # KKT of the bounded problem (psi >= 1e-4 on this scale): zero gradient off the bound,
    # gradient pushing through the bound on it (this G needs a Heywood psi_2 at the bound)
    at_bound = ts[4:] <= 1e-4 * (1 + 1e-9)
    assert list(at_bound) == [False, True, False, False]
    np.testing.assert_allclose(grad[:5], 0.0, atol=1e-9)
    np.testing.assert_allclose(grad[[6, 7]], 0.0, atol=1e-9)
    assert grad[5] > 1e-3
    # and it beats the one-step principal-component start by a clear margin
    lam, V = np.linalg.eigh(G / np.outer(d, d))
    l0 = V[:, -1] * np.sqrt(lam[-1])
    r0 = (np.outer(l0, l0) + np.diag(1 - l0**2) - G / np.outer(d, d))
    assert r @ r < 0.9 * np.sum(r0**2)


def test_labels_two_traits():
    tr = ("velocity", "density")
    expected = {
        "id": [],
        "idv": ["Family:trait"],
        "diag": ["Family:trait!velocity", "Family:trait!density"],
        "us": ["Family:trait!velocity:velocity", "Family:trait!density:velocity",
               "Family:trait!density:density"],
        "corgh": ["Family:trait!density:!velocity.cor", "Family:trait!velocity",
                  "Family:trait!density"],
        "corv": ["Family:trait!cor", "Family:trait"],
        "corh": ["Family:trait!cor", "Family:trait!velocity", "Family:trait!density"],
        "fa": ["Family:trait!velocity!fa1", "Family:trait!density!fa1",
               "Family:trait!velocity!var", "Family:trait!density!var"],
        "rr": ["Family:trait!velocity!fa1", "Family:trait!density!fa1"],
    }
    assert set(expected) == set(STRUCTURE_NAMES)
    for name, labels in expected.items():
        s = make_structure(name, tr, 1 if name in ("fa", "rr") else None)
        assert s.labels("Family", True) == labels
        assert s.n_params == len(labels)
    assert make_structure("idv", ("velocity",)).labels("Family", False) == ["Family"]
    assert make_structure("idv", ("velocity",)).labels("units", True) == ["units:trait"]


def test_labels_order_three_traits():
    tr = ("a", "b", "c")
    assert make_structure("corgh", tr).labels("G", True)[:3] == [
        "G:trait!b:!a.cor", "G:trait!c:!a.cor", "G:trait!c:!b.cor"]
    assert make_structure("us", tr).labels("G", True) == [
        "G:trait!a:a", "G:trait!b:a", "G:trait!b:b", "G:trait!c:a", "G:trait!c:b", "G:trait!c:c"]
    assert make_structure("fa", tr, 2).labels("G", True) == [
        "G:trait!a!fa1", "G:trait!b!fa1", "G:trait!c!fa1", "G:trait!b!fa2", "G:trait!c!fa2",
        "G:trait!a!var", "G:trait!b!var", "G:trait!c!var"]


def test_kinds_bounds_and_pairs():
    us = make_structure("us", ("v", "d"))
    assert us.kinds() == ["variance", "covariance", "variance"]
    assert us.trait_pairs() == [(0, 0), (1, 0), (1, 1)]
    np.testing.assert_array_equal(us.lower_bounds(), [0, -np.inf, 0])
    np.testing.assert_array_equal(us.upper_bounds(), [np.inf] * 3)
    cg = make_structure("corgh", ("v", "d"))
    assert cg.kinds() == ["correlation", "variance", "variance"]
    assert cg.trait_pairs() == [None, (0, 0), (1, 1)]
    np.testing.assert_array_equal(cg.lower_bounds(), [-1, 0, 0])
    np.testing.assert_array_equal(cg.upper_bounds(), [1, np.inf, np.inf])
    fa = make_structure("fa", ("a", "b", "c"), 1)
    assert fa.kinds() == ["loading"] * 3 + ["variance"] * 3
    np.testing.assert_array_equal(fa.lower_bounds(), [-np.inf] * 3 + [0] * 3)
    assert make_structure("id", ("a", "b")).n_params == 0
    np.testing.assert_array_equal(make_structure("id", ("a", "b")).matrix([]), np.eye(2))


def test_matrix_values():
    np.testing.assert_allclose(make_structure("corgh", ("a", "b")).matrix([0.5, 4.0, 9.0]),
                               [[4.0, 3.0], [3.0, 9.0]])
    np.testing.assert_allclose(make_structure("corv", ("a", "b", "c")).matrix([0.25, 2.0]),
                               [[2, 0.5, 0.5], [0.5, 2, 0.5], [0.5, 0.5, 2]])
    np.testing.assert_allclose(make_structure("corh", ("a", "b")).matrix([-0.5, 4.0, 1.0]),
                               [[4.0, -1.0], [-1.0, 1.0]])
    np.testing.assert_allclose(make_structure("us", ("a", "b")).matrix([2.0, -1.0, 3.0]),
                               [[2.0, -1.0], [-1.0, 3.0]])
    np.testing.assert_allclose(make_structure("fa", ("a", "b"), 1).matrix([2.0, 1.0, 0.5, 0.25]),
                               [[4.5, 2.0], [2.0, 1.25]])


def test_feasible():
    us = make_structure("us", ("a", "b"))
    assert us.feasible([1.0, 0.5, 1.0])
    assert not us.feasible([1.0, 1.5, 1.0])            # |cov| > sd sd: not PD
    assert not us.feasible([1.0, 1.0, 1.0])            # singular: boundary, not inside
    assert not us.feasible([-1.0, 0.0, 1.0])
    cg = make_structure("corgh", ("a", "b", "c"))
    assert cg.feasible([0.5, 0.2, 0.1, 1.0, 2.0, 3.0])
    assert not cg.feasible([1.2, 0.0, 0.0, 1.0, 2.0, 3.0])   # |cor| > 1
    assert not cg.feasible([0.9, 0.9, -0.9, 1.0, 2.0, 3.0])  # each |r| < 1, jointly not PD
    assert not cg.feasible([0.5, 0.2, 0.1, 1.0, -2.0, 3.0])  # negative variance
    cv = make_structure("corv", ("a", "b", "c"))
    assert cv.feasible([-0.45, 1.0]) and not cv.feasible([-0.55, 1.0])  # needs r > -1/(t-1)
    assert not cv.feasible([0.2, -1.0])
    assert not make_structure("corh", ("a", "b")).feasible([0.2, 1.0, 0.0])
    assert not make_structure("diag", ("a", "b")).feasible([1.0, -0.1])
    assert not make_structure("idv", ("a",)).feasible([0.0])
    fa = make_structure("fa", ("a", "b", "c"), 1)
    assert fa.feasible([-1.0, 2.0, -3.0, 0.1, 0.2, 0.3])
    assert not fa.feasible([1.0, 2.0, 3.0, 0.1, -0.2, 0.3])
    assert not us.feasible([1.0, np.nan, 1.0])
    with pytest.raises(ModelError, match="3 parameters"):
        us.feasible([1.0, 2.0])


def test_from_matrix_general_and_boundary():
    G = np.array([[4.0, 1.0, 0.6], [1.0, 1.0, 0.3], [0.6, 0.3, 9.0]])
    np.linalg.cholesky(G)
    np.testing.assert_allclose(make_structure("idv", ("a", "b", "c")).from_matrix(G), [14 / 3])
    np.testing.assert_allclose(make_structure("diag", ("a", "b", "c")).from_matrix(G), [4, 1, 9])
    r_mean = (0.5 + 0.1 + 0.1) / 3
    np.testing.assert_allclose(make_structure("corv", ("a", "b", "c")).from_matrix(G),
                               [r_mean, 14 / 3])
    np.testing.assert_allclose(make_structure("corh", ("a", "b", "c")).from_matrix(G),
                               [r_mean, 4, 1, 9])
    # a perfect correlation (PSD, singular): corgh shrinks all correlations by 0.999, stays PD
    G1 = np.array([[4.0, 2.0, 1.0], [2.0, 1.0, 0.5], [1.0, 0.5, 9.0]])
    cg = make_structure("corgh", ("a", "b", "c"))
    theta = cg.from_matrix(G1)
    np.testing.assert_allclose(theta, [0.999, 0.999 / 6, 0.999 / 6, 4, 1, 9], rtol=1e-12)
    assert cg.feasible(theta)
    # an indefinite G (r12 = 1 forces r13 = r23): still a feasible corgh point
    G2 = np.array([[4.0, 2.0, 0.0], [2.0, 1.0, 0.5], [0.0, 0.5, 9.0]])
    assert np.linalg.eigvalsh(G2)[0] < 0 and cg.feasible(cg.from_matrix(G2))
    # a common correlation below -1/(t-1) is pulled inside the PD range
    Gneg = np.array([[1.0, -0.9, -0.9], [-0.9, 1.0, -0.9], [-0.9, -0.9, 1.0]])
    th = make_structure("corv", ("a", "b", "c")).from_matrix(nearest_pd(Gneg, 1e-6)[0])
    assert -0.5 < th[0] < -0.49
    with pytest.raises(StartingValueError, match="3 x 3"):
        cg.from_matrix(np.eye(2))


def test_nearest_pd_rank_deficient():
    v = np.array([1.0, 2.0, 3.0])
    w = np.array([1.0, 0.0, -1.0])
    G = np.outer(v, v) + np.outer(w, w)              # rank 2, trace 16
    G_pd, deficient, clipped = nearest_pd(G, floor=1e-6)
    assert deficient and list(clipped) == [0]
    lam0, lam = np.linalg.eigvalsh(G), np.linalg.eigvalsh(G_pd)
    np.testing.assert_allclose(lam[0], 1e-6 * 16 / 3, rtol=1e-8)
    np.testing.assert_allclose(lam[1:], lam0[1:], rtol=1e-12)
    np.linalg.cholesky(G_pd)
    # an indefinite matrix: two directions clipped
    G_pd, deficient, clipped = nearest_pd(np.diag([4.0, -1.0, -2.0]), floor=0.1)
    np.testing.assert_allclose(G_pd, np.diag([4.0, 0.1 / 3, 0.1 / 3]))
    assert deficient and list(clipped) == [0, 1]
    # PD: untouched
    G_pd, deficient, clipped = nearest_pd(np.array([[2.0, 1.0], [1.0, 2.0]]))
    assert not deficient and clipped.size == 0
    np.testing.assert_array_equal(G_pd, [[2.0, 1.0], [1.0, 2.0]])


def test_em_update():
    us = make_structure("us", ("a", "b"))
    S = np.array([[20.0, 6.0], [6.0, 10.0]])
    np.testing.assert_allclose(em_update(us, S, 4), [5.0, 1.5, 2.5])
    # singular S (perfectly correlated): projected to a feasible point
    S1 = np.outer([2.0, 4.0], [2.0, 4.0])
    for name in ("us", "corgh", "corh", "corv"):
        s = make_structure(name, ("a", "b"))
        assert s.feasible(em_update(s, S1, 2))
    np.testing.assert_allclose(em_update(make_structure("diag", ("a", "b")), S, 10), [2.0, 1.0])
    with pytest.raises(ModelError, match="positive number of levels"):
        em_update(us, S, 0)


def test_correlation_matrix():
    G = np.array([[4.0, 3.0, 0.0], [3.0, 9.0, 0.0], [0.0, 0.0, 0.0]])
    R = correlation_matrix(G)
    np.testing.assert_allclose(R[:2, :2], [[1.0, 0.5], [0.5, 1.0]])
    assert np.all(np.isnan(R[2])) and np.all(np.isnan(R[:, 2]))


def test_make_structure_errors():
    with pytest.raises(FormulaError, match="known structures: id, idv, diag, us, corgh") as e:
        make_structure("ar1", ("a", "b"))
    assert e.value.term == "ar1"
    with pytest.raises(FormulaError, match="corgh.*at least 2 traits.*'velocity'"):
        make_structure("corgh", ("velocity",))
    for name in ("corv", "corh"):
        with pytest.raises(FormulaError, match="at least 2 traits"):
            make_structure(name, ("y",))
    with pytest.raises(FormulaError, match=r"fa\(trait, 2\) on 2 traits.*at most 1 factor"):
        make_structure("fa", ("a", "b"), 2)
    with pytest.raises(FormulaError, match=r"fa\(trait, None\)"):
        make_structure("fa", ("a", "b", "c"))
    with pytest.raises(FormulaError, match=r"fa\(site, 0\) on 3 levels of 'site'.*at most 2 factor"):
        make_structure("fa", ("a", "b", "c"), 0, dim="site")
    with pytest.raises(FormulaError, match="distinct"):
        make_structure("us", ("a", "a"))
    with pytest.raises(FormulaError, match="only fa"):
        make_structure("us", ("a", "b"), 1)
    assert str(make_structure("fa", ("a", "b", "c"), 2)) == "fa(trait, 2)"
    assert str(make_structure("us", ("a", "b"))) == "us(trait)"


def test_correlations_of_a_positive_definite_matrix_are_kept_exactly():
    """Issue 18: 0.99999 given in init= used to become 0.999 without a word."""
    G = np.array([[1.0, 0.99999], [0.99999, 1.0]])
    th = make_structure("corgh", ("a", "b")).from_matrix(G)
    assert th[0] == 0.99999
    th = make_structure("corh", ("a", "b", "c")).from_matrix(np.full((3, 3), 0.99999) + 0.00001 * np.eye(3))
    assert th[0] == pytest.approx(0.99999, abs=1e-15)
    # a matrix that is not positive definite still gets the documented shrinkage
    bad = np.array([[1.0, 1.2], [1.2, 1.0]])
    assert abs(make_structure("corgh", ("a", "b")).from_matrix(bad)[0]) <= 0.999
