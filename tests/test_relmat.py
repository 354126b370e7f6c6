"""Relationship matrices: user G, user G^-1 and pedigrees behind one interface."""
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from mvreml.errors import RelmatError
from mvreml.pedigree import Pedigree
from mvreml.relmat import RelationshipMatrix, as_relmat


def random_g(n, seed=0):
    rng = np.random.default_rng(seed)
    Z = rng.integers(0, 3, (n, 4 * n)).astype(float)
    Z -= Z.mean(axis=0)
    return Z @ Z.T / (4 * n) + 0.05 * np.eye(n)


def test_dense_g_dataframe_reordered_columns():
    G = random_g(6)
    labels = [101.0, 102.0, 103.0, 104.0, 105.0, 106.0]          # floats read by pandas
    df = pd.DataFrame(G, index=labels, columns=labels)
    perm = [3, 0, 5, 1, 4, 2]
    shuffled = df.iloc[:, perm]
    shuffled.columns = [str(int(x)) for x in shuffled.columns]   # same labels, as strings
    rel = as_relmat(shuffled, "G")
    assert rel.kind == "G" and list(rel.labels) == ["101", "102", "103", "104", "105", "106"]
    K = rel.kinv()
    assert K.format == "csc" and K.shape == (6, 6)
    np.testing.assert_allclose(K.toarray(), np.linalg.inv(G), atol=1e-10)
    assert rel.logdet() == pytest.approx(np.linalg.slogdet(G)[1], abs=1e-10)


def test_sparse_g_uses_cholmod():
    G = np.diag(np.full(8, 2.0)) + np.diag(np.full(7, -0.9), 1) + np.diag(np.full(7, -0.9), -1)
    labels = [f"L{k}" for k in range(8)]
    rel = as_relmat((sp.csc_array(G), labels), "tri")
    np.testing.assert_allclose(rel.kinv().toarray(), np.linalg.inv(G), atol=1e-10)
    assert rel.logdet() == pytest.approx(np.linalg.slogdet(G)[1], abs=1e-10)
    assert list(rel.labels) == labels


def test_precomputed_inverse():
    G = random_g(5, seed=3)
    Ginv = np.linalg.inv(G)
    for given in (Ginv, sp.csc_array(Ginv)):
        rel = RelationshipMatrix.from_inverse(given, labels=["a", "b", "c", "d", "e"])
        assert rel.kind == "Ginv"
        np.testing.assert_allclose(rel.kinv().toarray(), Ginv, atol=1e-12)
        assert rel.logdet() == pytest.approx(np.linalg.slogdet(G)[1], abs=1e-10)


@pytest.mark.parametrize("sparse", [False, True])
def test_duplicated_individuals_not_positive_definite(sparse):
    G = random_g(5, seed=1)
    G[4, :] = G[1, :]                                             # plant "e" is a clone of "b"
    G[:, 4] = G[:, 1]
    G[4, 4] = G[1, 1]
    matrix = sp.csc_array(G) if sparse else G
    with pytest.raises(RelmatError, match="not positive definite") as err:
        RelationshipMatrix.from_matrix(matrix, labels=list("abcde"), name="Gplants")
    msg = str(err.value)
    assert "'Gplants'" in msg and "identical rows" in msg and "('b', 'e')" in msg
    assert {"b", "e"} <= set(err.value.labels)
    if not sparse:
        assert "failed at label 'e'" in msg


def test_bad_inverse_and_bad_matrices():
    with pytest.raises(RelmatError, match="G\\^-1 of relationship matrix 'K' is not positive"):
        RelationshipMatrix.from_inverse(np.array([[1.0, 2.0], [2.0, 1.0]]), ["u", "v"], name="K")
    with pytest.raises(RelmatError, match="not symmetric") as err:
        RelationshipMatrix.from_matrix(np.array([[1.0, 0.5], [0.2, 1.0]]), ["u", "v"])
    assert err.value.labels == ["u", "v"] or err.value.labels == ["v", "u"]
    with pytest.raises(RelmatError, match="shape"):
        RelationshipMatrix.from_matrix(np.eye(3), ["u", "v"])
    with pytest.raises(RelmatError, match="repeats labels 'u'"):
        RelationshipMatrix.from_matrix(np.eye(3), ["u", "v", "u"])
    with pytest.raises(RelmatError, match="no labels"):
        RelationshipMatrix.from_matrix(np.eye(3))


def test_pedigree_interface(data_dir):
    ped = Pedigree(data_dir / "mrode2014" / "pedigree_mr03a.txt")
    rel = as_relmat(ped, "ped")
    assert rel.kind == "pedigree" and list(rel.labels) == list(ped.ids)
    np.testing.assert_allclose(rel.kinv().toarray(), ped.ainv().toarray())
    assert rel.logdet() == pytest.approx(ped.logdet_a())
    table = pd.read_csv(data_dir / "mrode2014" / "pedigree_mr03a.txt", sep=r"\s+", header=None)
    rel2 = as_relmat(table, "ped")                                 # 3-column table -> pedigree
    assert rel2.kind == "pedigree"
    np.testing.assert_allclose(rel2.kinv().toarray(), ped.ainv().toarray())
    rel3 = as_relmat(data_dir / "mrode2014" / "pedigree_mr03a.txt", "ped")
    assert rel3.logdet() == pytest.approx(ped.logdet_a())
    assert as_relmat(rel, "again") is rel


def test_three_by_three_labelled_matrix_is_g():
    G = pd.DataFrame([[1.0, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 1.0]],
                     index=["x", "y", "z"], columns=["x", "y", "z"])
    rel = as_relmat(G, "G3")
    assert rel.kind == "G"
    np.testing.assert_allclose(rel.kinv().toarray(), np.linalg.inv(G.to_numpy()), atol=1e-12)


def test_as_relmat_rejects_other_objects():
    with pytest.raises(RelmatError, match="relmat 'kin'.*list"):
        as_relmat([1, 2, 3], "kin")
    with pytest.raises(RelmatError, match="relmat 'kin'"):
        as_relmat(pd.DataFrame({"a": [1, 2], "b": [3, 4]}), "kin")
