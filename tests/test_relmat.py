"""Relationship matrices: user G, user G^-1 and pedigrees behind one interface."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import mvreml
from mvreml import relmat
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
    rel = as_relmat(relmat.matrix(shuffled, name="G"), "G")
    assert rel.kind == "G" and list(rel.labels) == ["101", "102", "103", "104", "105", "106"]
    K = rel.kinv()
    assert K.format == "csc" and K.shape == (6, 6)
    np.testing.assert_allclose(K.toarray(), np.linalg.inv(G), atol=1e-10)
    assert rel.logdet() == pytest.approx(np.linalg.slogdet(G)[1], abs=1e-10)


def test_sparse_g_uses_cholmod():
    G = np.diag(np.full(8, 2.0)) + np.diag(np.full(7, -0.9), 1) + np.diag(np.full(7, -0.9), -1)
    labels = [f"L{k}" for k in range(8)]
    rel = as_relmat(relmat.matrix(sp.csc_array(G), labels), "tri")
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


def test_three_by_three_labelled_matrix_is_g_not_triplets():
    """A 3 x 3 labelled DataFrame has three columns but is a square matrix, not (row, col, value)."""
    G = pd.DataFrame([[1.0, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 1.0]],
                     index=["x", "y", "z"], columns=["x", "y", "z"])
    rel = relmat.matrix(G)
    assert rel.kind == "G" and list(rel.labels) == ["x", "y", "z"]
    np.testing.assert_allclose(rel.kinv().toarray(), np.linalg.inv(G.to_numpy()), atol=1e-12)


def test_as_relmat_rejects_other_objects():
    with pytest.raises(RelmatError, match="relmat 'kin'.*list"):
        as_relmat([1, 2, 3], "kin")
    with pytest.raises(RelmatError, match="relmat 'kin'"):
        as_relmat(pd.DataFrame({"a": [1, 2], "b": [3, 4]}), "kin")


# ---------------------------------------------------------------- G or G^-1: said, never guessed
def mrode_pedigree(data_dir):
    table = pd.read_csv(data_dir / "mrode2014" / "pedigree_mr03a.txt", sep=r"\s+", header=None)
    return Pedigree(table)


def write_giv(path, kinv, labels=None, triangle="lower", sep=" ", header=False):
    """kinv as ASReml's three-column file: 1-based indices, or the labels when given."""
    coo = sp.coo_array(kinv)
    keep = {"lower": coo.row >= coo.col, "upper": coo.row <= coo.col, "both": coo.row >= 0}[triangle]
    rows = sorted(zip(coo.row[keep], coo.col[keep], coo.data[keep]))
    name = (lambda k: labels[k]) if labels is not None else (lambda k: k + 1)
    text = "".join(f"{name(i)}{sep}{name(j)}{sep}{float(v)!r}\n" for i, j, v in rows)
    path.write_text(("row,col,value\n" if header else "") + text)
    return path


@pytest.mark.parametrize("case", ["square", "square_inverse", "pair", "ndarray", "sparse",
                                  "triplet_frame"])
def test_bare_matrix_refused_until_its_kind_is_said(data_dir, case):
    """A G^-1 given bare through relmat= was used as G: a wrong log L without a word."""
    ped = mrode_pedigree(data_dir)
    Ainv = ped.ainv()
    A = np.linalg.inv(Ainv.toarray())
    coo = sp.coo_array(sp.tril(Ainv))
    obj = {"square": pd.DataFrame(A, index=ped.ids, columns=ped.ids),
           "square_inverse": pd.DataFrame(Ainv.toarray(), index=ped.ids, columns=ped.ids),
           "pair": (Ainv, ped.ids),
           "ndarray": Ainv.toarray(),
           "sparse": Ainv,
           "triplet_frame": pd.DataFrame({"Row": coo.row + 1, "Column": coo.col + 1, "Ainverse": coo.data})}[case]
    with pytest.raises(RelmatError, match=r"relmat 'Gi'.*whether it is G or G\^-1") as err:
        as_relmat(obj, "Gi")
    assert "mvreml.relmat.matrix(" in str(err.value) and "mvreml.relmat.inverse(" in str(err.value)


@pytest.mark.parametrize("layout", ["square", "triplets"])
def test_matrix_file_as_relmat_path_refused(data_dir, tmp_path, layout):
    """A G^-1 file given as a path was read as a pedigree ("8 animals are their own parent")."""
    ped = mrode_pedigree(data_dir)
    if layout == "square":
        path = tmp_path / "ainv.csv"
        pd.DataFrame(ped.ainv().toarray(), index=ped.ids, columns=ped.ids).to_csv(path)
    else:
        path = write_giv(tmp_path / "ainv.giv", ped.ainv())
    with pytest.raises(RelmatError, match="whether it is G or G\\^-1") as err:
        as_relmat(path, "ped")
    assert "ainv." in str(err.value)
    if layout == "triplets":
        assert "line 1: '1 1 1.8333333333333333' is a diagonal entry (i, i), which a pedigree cannot" \
            in str(err.value)


def test_attrs_inverse_states_the_kind(data_dir):
    """asreml-R's INVERSE attribute, as DataFrame.attrs["INVERSE"], says which matrix it is."""
    ped = mrode_pedigree(data_dir)
    Ainv = ped.ainv().toarray()
    gi = pd.DataFrame(Ainv, index=ped.ids, columns=ped.ids)
    gi.attrs["INVERSE"] = True
    g = pd.DataFrame(np.linalg.inv(Ainv), index=ped.ids, columns=ped.ids)
    g.attrs["INVERSE"] = False
    coo = sp.coo_array(sp.tril(ped.ainv()))
    trip = pd.DataFrame({"Row": coo.row + 1, "Column": coo.col + 1, "Ainverse": coo.data})
    trip.attrs.update(INVERSE=True, rowNames=list(ped.ids))
    for obj, kind in ((gi, "Ginv"), (g, "G"), (trip, "Ginv")):
        rel = as_relmat(obj, "K")
        assert rel.kind == kind
        assert rel.logdet() == pytest.approx(ped.logdet_a(), abs=1e-12)
        np.testing.assert_allclose(rel.kinv().toarray(), Ainv, atol=1e-10)
    gi.attrs["INVERSE"] = "yes"
    with pytest.raises(RelmatError, match="attrs\\['INVERSE'\\] must be True"):
        as_relmat(gi, "K")


def _fit_forms(ped, A, tmp_path):
    """The same K given every way mvreml accepts: {name: relmat entry}."""
    Ainv = ped.ainv()
    ids = list(ped.ids)
    coo = sp.coo_array(sp.tril(Ainv))
    trip = pd.DataFrame({"Row": coo.row + 1, "Column": coo.col + 1, "Ainverse": coo.data})
    (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n")
    pd.DataFrame(A, index=ids, columns=ids).to_csv(tmp_path / "A.csv")
    return {
        "ped": ped,
        "G": relmat.matrix(pd.DataFrame(A, index=ids, columns=ids)),
        "Gfile": relmat.matrix(tmp_path / "A.csv"),
        "Ginv_frame": relmat.inverse(pd.DataFrame(Ainv.toarray(), index=ids, columns=ids)),
        "Ginv_sparse": relmat.inverse(Ainv, labels=ids),
        "Ginv_triplets": relmat.inverse(trip, labels=ids),
        "giv_indices": relmat.read_giv(write_giv(tmp_path / "a.giv", Ainv), labels=tmp_path / "ids.txt"),
        "giv_labels": relmat.read_giv(write_giv(tmp_path / "b.giv", Ainv, labels=ids, triangle="upper",
                                                sep="\t")),
        "giv_path": relmat.inverse(write_giv(tmp_path / "c.giv", Ainv, labels=ids, triangle="both",
                                             sep=",", header=True)),
    }


def test_inverse_gives_the_fit_of_g_and_of_the_pedigree_mrode(data_dir, tmp_path):
    """Mrode (2014) example 3.1 at the book's variances: every form, the pedigree's log L to 1e-8."""
    ped = mrode_pedigree(data_dir)
    A = np.linalg.inv(ped.ainv().toarray())
    dat = pd.read_csv(data_dir / "mrode2014" / "data_mr03a.txt", sep=r"\s+", header=None,
                      names=["animal", "sex", "sire", "dam", "wwg"])
    dat["sex"] = dat["sex"].map({1: "male", 2: "female"})
    fits = {name: mvreml.fit("wwg ~ 0 + sex", random=f"~ vm(animal, {name})", data=dat,
                             relmat={name: rel}, init={"animal": 20.0, "units": 40.0},
                             fix=["animal", "units"])
            for name, rel in _fit_forms(ped, A, tmp_path).items()}
    ref = fits.pop("ped")
    for name, res in fits.items():
        assert res.loglik == pytest.approx(ref.loglik, abs=1e-8), name
        np.testing.assert_allclose(res.fixef["estimate"], ref.fixef["estimate"], atol=1e-10, err_msg=name)
        blup = res.blup("animal")
        np.testing.assert_allclose(blup["wwg"], ref.blup("animal").loc[blup.index, "wwg"], atol=1e-10,
                                   err_msg=name)


def test_inverse_gives_the_reml_fit_of_g_and_of_the_pedigree(tmp_path):
    """REML estimates on a simulated pedigree (60 animals, some inbred): same log L and estimates."""
    rng = np.random.default_rng(11)
    ids = [f"a{i}" for i in range(12)]
    sire, dam = [""] * 12, [""] * 12
    for i in range(12, 60):
        s, d = rng.choice(len(ids), 2, replace=False)
        ids.append(f"a{i}")
        sire.append(ids[s])
        dam.append(ids[d])
    with pytest.warns(mvreml.errors.PedigreeWarning):
        ped = Pedigree(pd.DataFrame({"animal": ids, "sire": sire, "dam": dam}), allow_sire_dam=True)
    assert ped.inbreeding.max() > 0
    A = np.linalg.inv(ped.ainv().toarray())
    L = np.linalg.cholesky(A)
    u = L @ rng.normal(0.0, 1.0, len(ids))
    animal = np.repeat(ped.ids, 3)
    y = 10.0 + u[pd.Index(ped.ids).get_indexer(animal)] + rng.normal(0.0, 1.0, animal.size)
    data = pd.DataFrame({"animal": animal, "y": y})
    fits = {name: mvreml.fit("y ~ 1", random=f"~ vm(animal, {name})", data=data, relmat={name: rel})
            for name, rel in _fit_forms(ped, A, tmp_path).items()}
    ref = fits.pop("ped")
    assert ref.converged
    for name, res in fits.items():
        assert res.converged, name
        assert res.loglik == pytest.approx(ref.loglik, abs=1e-8), name
        np.testing.assert_allclose(res.varcomp["estimate"], ref.varcomp["estimate"], rtol=1e-6, err_msg=name)


# ---------------------------------------------------------------- the three-column reader
GINV = np.array([[2.0, -1.0, 0.0], [-1.0, 2.5, -0.5], [0.0, -0.5, 1.5]])


def test_read_giv_layouts(tmp_path):
    """Lower (ASReml), upper and both triangles; indices with labels, or labels in the columns."""
    (tmp_path / "low.giv").write_text("1 1 2.0\n2 1 -1.0\n2 2 2.5\n3 2 -0.5\n3 3 1.5\n")
    (tmp_path / "up.giv").write_text("1 1 2.0\n1 2 -1.0\n2 2 2.5\n2 3 -0.5\n3 3 1.5\n")
    (tmp_path / "both.giv").write_text("1  1  2.0\n1 2 -1.0\n2 1 -1.0\n2 2 2.5\n2 3 -0.5\n3 2 -0.5\n3 3 1.5\n")
    (tmp_path / "names.giv").write_text("Row\tColumn\tValue\nz\tz\t2.0\ny\tz\t-1.0\ny\ty\t2.5\n"
                                        "x\ty\t-0.5\nx\tx\t1.5\n")
    (tmp_path / "ids.txt").write_text("z\ny\nx\n")
    for file, labels in (("low.giv", ["z", "y", "x"]), ("up.giv", tmp_path / "ids.txt"),
                         ("both.giv", ("z", "y", "x")), ("names.giv", None)):
        rel = relmat.read_giv(tmp_path / file, labels=labels)
        assert rel.kind == "Ginv" and rel.name == file
        order = pd.Index(rel.labels).get_indexer(["z", "y", "x"])
        np.testing.assert_array_equal(rel.kinv().toarray()[np.ix_(order, order)], GINV)
        assert rel.logdet() == pytest.approx(-np.linalg.slogdet(GINV)[1], abs=1e-12)
    rel = relmat.read_giv(tmp_path / "low.giv")            # no labels: levels "1", "2", "3"
    assert list(rel.labels) == ["1", "2", "3"]
    g = relmat.read_grm(tmp_path / "low.giv", labels=["z", "y", "x"])     # the same file read as G
    assert g.kind == "G"
    np.testing.assert_allclose(g.kinv().toarray(), np.linalg.inv(GINV), atol=1e-12)


def test_read_giv_integer_labels_sorted_numerically(tmp_path):
    (tmp_path / "ids.giv").write_text("10 10 2.0\n2 10 -1.0\n2 2 2.5\n1097 2 -0.5\n1097 1097 1.5\n")
    rel = relmat.read_giv(tmp_path / "ids.giv")
    assert list(rel.labels) == ["2", "10", "1097"]
    order = [1, 0, 2]
    np.testing.assert_array_equal(rel.kinv().toarray()[np.ix_(order, order)], GINV)


@pytest.mark.parametrize("text, labels, match", [
    ("1 1 2.0\n2 1 -1.0\n2 1 -1.0\n2 2 2.0\n", None, r"entry \('2', '1'\) is listed twice .*entries 2 and 3"),
    ("1 1 2.0\n1 1 2.0\n2 2 2.0\n", None, r"\('1', '1'\) is listed twice"),
    ("1 1 2.0\n2 1 -1.0\n1 2 -0.9\n2 2 2.0\n", None, r"not symmetric: entries .* -1.0 and -0.9"),
    ("1 1 2.0\n2 1 -1.0\n2 2 x\n", None, r"value 'x' of entry 3 .* not a finite number"),
    ("1 1 2.0\n3 1 -1.0\n2 2 2.0\n", ["a", "b"], r"entry 2 .* index '3'.*1\.\.2 into the 2 labels"),
    ("1 1 2.0\n2 1 -1.0\n", ["a", "b", "c"], r"not positive definite.*non-positive diagonal for 'b', 'c'"),
    ("1 1 2.0 7\n", None, r"4 columns"),
])
def test_read_giv_errors(tmp_path, text, labels, match):
    (tmp_path / "bad.giv").write_text(text)
    with pytest.raises(RelmatError, match=match):
        relmat.read_giv(tmp_path / "bad.giv", labels=labels)


def test_read_square_file_separators(tmp_path):
    """Square matrix files: comma, tab, and R's write.table (header without the corner field)."""
    G = np.array([[1.0, 0.5], [0.5, 1.0]])
    (tmp_path / "g.csv").write_text(",x,y\nx,1.0,0.5\ny,0.5,1.0\n")
    (tmp_path / "g.tsv").write_text("id\tx\ty\nx\t1.0\t0.5\ny\t0.5\t1.0\n")
    (tmp_path / "g.txt").write_text('"x" "y"\n"x" 1.0 0.5\n"y" 0.5 1.0\n')
    for f in ("g.csv", "g.tsv", "g.txt"):
        rel = relmat.matrix(tmp_path / f)
        assert list(rel.labels) == ["x", "y"], f
        np.testing.assert_allclose(rel.kinv().toarray(), np.linalg.inv(G), atol=1e-12, err_msg=f)


def test_large_sparse_not_positive_definite_is_named_without_densifying():
    """A clone in a 60,000-level sparse G: the error names it (a dense copy would need 29 GB)."""
    n = 60_000
    G = sp.lil_array((n, n))
    G.setdiag(1.0)
    G[7, 70] = G[70, 7] = 1.0                      # level 70 is a copy of level 7
    labels = [f"g{k}" for k in range(n)]
    with pytest.raises(RelmatError, match=r"identical rows \(duplicated individuals\): \('g7', 'g70'\)"):
        relmat.matrix(sp.csc_array(G), labels)


def test_relmat_functions_reachable_from_the_package():
    """The error messages say mvreml.relmat.matrix(...) / inverse(...): that spelling must work."""
    import subprocess
    import sys
    code = "import mvreml; print(mvreml.relmat.inverse.__name__, mvreml.relmat.matrix.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.split() == ["inverse", "matrix"]


def test_stated_matrix_file_read_as_three_column_even_without_leading_diagonal(tmp_path):
    """Told it is G^-1, a three-column file is read as one, whatever order its lines are in."""
    (tmp_path / "k.txt").write_text("2 1 -1.0\n3 2 -0.5\n1 1 2.0\n2 2 2.5\n3 3 1.5\n")
    rel = relmat.inverse(tmp_path / "k.txt")
    np.testing.assert_array_equal(rel.kinv().toarray(), GINV)
    (tmp_path / "four.txt").write_text("a b c d\n1 2 3 4\n")
    with pytest.raises(RelmatError, match="4 columns: neither a labelled square matrix"):
        relmat.inverse(tmp_path / "four.txt")
