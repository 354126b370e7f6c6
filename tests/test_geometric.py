"""Oscillating AI steps damped to the limit of the sequence (mvreml._geometric)."""
import warnings

import numpy as np
import pytest

import mvreml
from mvreml import _geometric as g
from mvreml.likelihood import Evaluation


class _Quadratic:
    """log L = -1/2 (x - x*)' H (x - x*)."""

    def __init__(self, H, xstar):
        self.H, self.xstar, self.calls = np.asarray(H, float), np.asarray(xstar, float), 0

    def evaluate(self, x, derivatives=True):
        self.calls += 1
        d = np.asarray(x, float) - self.xstar
        return Evaluation(theta=np.asarray(x, float), loglik=float(-0.5 * d @ self.H @ d), solution=None,
                          residuals=None)


class _Run:
    scale = np.ones(2)


def test_damp_oscillation_goes_to_the_limit_of_an_alternating_sequence():
    # the error flips sign and shrinks by rho = 0.8 per step along the first axis
    model = _Quadratic(np.diag([1.0, 1.0]), [0.0, 0.0])
    e = [np.array([1.0, 0.0]), np.array([-0.8, 0.0]), np.array([0.64, 0.0])]
    cand_ev = model.evaluate(e[2])
    cand, ev, damped = g.damp_oscillation(_Run(), model, model.evaluate(e[1]), e[1], e[2], cand_ev, [e[0], e[1]])
    assert damped
    np.testing.assert_allclose(cand, [0.0, 0.0], atol=1e-12)   # x* = x_n + delta / (1 + rho)
    assert ev.loglik == pytest.approx(0.0)
    # steps that do not reverse are left alone, without an evaluation
    model.calls = 0
    same = [np.array([1.0, 0.0]), np.array([0.5, 0.0]), np.array([0.25, 0.0])]
    cand, ev, damped = g.damp_oscillation(_Run(), model, None, same[1], same[2], cand_ev, same[:2])
    assert not damped and cand is same[2] and model.calls == 0


def test_damp_oscillation_keeps_the_full_step_when_it_is_better():
    # a reversing step that lands on the maximum: damping would lose log L
    model = _Quadratic(np.eye(2), [0.0, 0.0])
    x0, x1, x2 = np.array([-1.0, 0.0]), np.array([1.0, 0.0]), np.array([0.0, 0.0])
    full = model.evaluate(x2)
    cand, ev, damped = g.damp_oscillation(_Run(), model, model.evaluate(x1), x1, x2, full, [x0, x1])
    assert not damped and cand is x2 and ev is full


def test_met_fa3_with_heywood_sites_converges_in_few_iterations():
    """benchmarks.met S (10 sites x 200 genotypes, fa(3):vm(gen, ped), three psi at 0): the
    fa2 loadings oscillated about the maximum and took 87 iterations; damped, far fewer, and
    the same log L."""
    from benchmarks import met
    from mvreml.relmat import RelationshipMatrix

    ped, data, _ = met.simulate("S")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pedigree = mvreml.Pedigree(ped, allow_sire_dam=True)
        rel = RelationshipMatrix(pedigree.ids, pedigree.ainv(), pedigree.logdet_a(), "pedigree", "ped")
        res = mvreml.fit(met.MODEL["fixed"], random=met.MODEL["random"], residual=met.MODEL["residual"],
                         data=data, relmat={"ped": rel}, maxiter=300)
    assert res.converged
    assert res.iterations <= 40
    assert res.loglik == pytest.approx(-6666.478184, abs=2e-5)     # the 87-iteration fit's
    assert "AI~" in set(res.history["step"])
