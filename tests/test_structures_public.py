"""The public structure classes (mvreml.structures.US, ..., Product): matrix and derivatives
against central differences for every class of the registry and for products, bounds,
labels, friendly constructors."""
import numpy as np
import pytest

from mvreml.errors import ArgumentError
from mvreml.structures import (AR1, FA, REGISTRY, US, Corgh, Corh, Corv, Diag, Id, Idv, Product, Structure,
                               make_structure)


def feasible_theta(s: Structure, rng) -> np.ndarray:
    """A random interior point: from_matrix of a random positive definite G (projected)."""
    t = s.t
    A = rng.normal(size=(t, t + 2))
    G = A @ A.T / (t + 2) + 0.3 * np.eye(t)
    th = np.asarray(s.from_matrix(G), float)
    assert s.feasible(th)
    return th


def central_differences(s: Structure, th: np.ndarray, rel: float = 1e-4) -> np.ndarray:
    """Central differences with a step relative to each parameter, Richardson-extrapolated
    (error O(h^4): a small variance v has derivatives ~ 1 / sqrt(v) that plain steps blur)."""
    out = np.zeros((s.n_params, s.t, s.t))
    for j in range(s.n_params):
        h = rel * max(abs(th[j]), 1e-2)

        def cd(h):
            e = np.zeros_like(th)
            e[j] = h
            return (s.matrix(th + e) - s.matrix(th - e)) / (2 * h)

        out[j] = (4 * cd(h / 2) - cd(h)) / 3
    return out


def registry_cases():
    cases = []
    for name in REGISTRY:
        if name == "fa":
            cases += [make_structure("fa", tuple("abcd"), k=k) for k in (1, 2)]
        elif name == "rr":
            cases += [make_structure("rr", tuple("abcd"), k=k) for k in (1, 2, 4)]
        else:
            cases.append(make_structure(name, tuple("abc")))
    return cases


PRODUCTS = [Product(US(2), Diag(3, dim="site")), Product(Corgh(2), FA(3, k=1, dim="site")),
            Product(Idv(1), Corv(3, dim="site")), Product(Diag(2), US(2, dim="env"), Corh(2, dim="rep")),
            Product(Id(2), US(3, dim="site")), Product(US(2), AR1(4, dim="time"))]
EXTRA = [AR1(2), AR1(5)]           # public classes outside the formula registry


@pytest.mark.parametrize("s", registry_cases() + EXTRA + PRODUCTS, ids=str)
def test_matrix_and_derivatives_against_central_differences(s):
    rng = np.random.default_rng(4)
    assert set(REGISTRY) >= {"id", "idv", "diag", "us", "corgh", "corv", "corh", "fa"}
    for _ in range(3):
        th = feasible_theta(s, rng)
        G = s.matrix(th)
        assert G.shape == (s.t, s.t)
        np.testing.assert_allclose(G, G.T, atol=1e-14)
        D = s.derivatives(th)
        assert D.shape == (s.n_params, s.t, s.t)
        np.testing.assert_allclose(D, central_differences(s, th), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("s", registry_cases() + EXTRA + PRODUCTS, ids=str)
def test_bounds_are_respected(s):
    lo, up = s.bounds
    assert lo.shape == up.shape == (s.n_params,)
    assert np.all(lo < up)
    kinds = s.kinds()
    for k, a, b in zip(kinds, lo, up):
        if k == "variance":
            assert (a, b) == (0.0, np.inf)
        elif k == "correlation":
            assert (a, b) == (-1.0, 1.0)
        else:
            assert (a, b) == (-np.inf, np.inf)
    rng = np.random.default_rng(8)
    for _ in range(5):
        th = feasible_theta(s, rng)
        assert np.all(th >= lo) and np.all(th <= up)
    # a correlation on its bound is outside the (open) parameter space: said by feasible()
    cor = [j for j, k in enumerate(kinds) if k == "correlation"]
    if cor:
        th = feasible_theta(s, rng)
        th[cor[0]] = 1.0
        assert not s.feasible(th)
    var = [j for j, k in enumerate(kinds) if k == "variance" and not s.fixed_params()[j]]
    if var and s.name != "product":
        th = feasible_theta(s, rng)
        th[var[0]] = -0.5
        assert not s.feasible(th)


def test_friendly_constructors_are_the_engine_structures():
    pairs = [(US(3), "us"), (Diag(3), "diag"), (Idv(3), "idv"), (Id(3), "id"), (Corgh(3), "corgh"),
             (Corh(3), "corh"), (Corv(3), "corv"), (FA(3, k=1), "fa")]
    for s, name in pairs:
        ref = make_structure(name, ("1", "2", "3"), k=1 if name == "fa" else None)
        assert isinstance(s, type(ref)) and s.name == name
        assert s.n_params == ref.n_params
        th = feasible_theta(s, np.random.default_rng(1))
        np.testing.assert_array_equal(s.matrix(th), ref.matrix(th))
        assert len(s.labels()) == s.n_params
    assert US(["bwt", "tarsus"]).labels() == ["trait!bwt:bwt", "trait!tarsus:bwt", "trait!tarsus:tarsus"]
    assert US(2).labels("animal") == ["animal:trait!1:1", "animal:trait!2:1", "animal:trait!2:2"]
    assert Diag(["S1", "S2"], dim="site").labels("gen") == ["gen!site_S1", "gen!site_S2"]
    p = Product(US(2), Diag(3, dim="site"))
    assert p.t == 6 and p.n_params == 6
    assert list(p.fixed_params()) == [False, False, False, True, False, False]
    assert Product([US(2), Diag(3, dim="site")]).n_params == 6


def test_constructor_errors_name_the_argument():
    with pytest.raises(ArgumentError, match="at least 2 levels") as e:
        Corgh(1)
    assert e.value.argument == "levels"
    with pytest.raises(ArgumentError, match="1 <= k <= 2"):
        FA(3, k=3)
    with pytest.raises(ArgumentError, match="repeat"):
        US(["a", "a"])
    with pytest.raises(ArgumentError, match="string"):
        US("ab")


def test_ar1_values():
    s = AR1(["t1", "t2", "t3"], dim="time")
    np.testing.assert_allclose(s.matrix([-0.5, 2.0]), 2.0 * np.array([[1, -0.5, 0.25], [-0.5, 1, -0.5],
                                                                      [0.25, -0.5, 1]]))
    assert s.labels("units") == ["units!time!cor", "units!time"]
    assert s.kinds() == ["correlation", "variance"]
    np.testing.assert_allclose(s.from_matrix(s.matrix([0.3, 1.5])), [0.3, 1.5])
    assert s.feasible([0.99, 1.0]) and not s.feasible([1.0, 1.0]) and not s.feasible([0.2, 0.0])
