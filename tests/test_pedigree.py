"""Pedigree: reading, validation, sorting, inbreeding and A^-1 against dense references."""
import warnings

import numpy as np
import pandas as pd
import pytest

from mvreml.errors import PedigreeError, PedigreeWarning
from mvreml.pedigree import Pedigree, normalize_ids


# ----------------------------------------------------------------------------- references
def tabular_a(sire, dam):
    """Dense A by the tabular method (0-based, parents first, -1 unknown)."""
    n = len(sire)
    A = np.zeros((n, n))
    for i in range(n):
        s, d = sire[i], dam[i]
        row = np.zeros(i)
        if s >= 0:
            row += 0.5 * A[s, :i]
        if d >= 0:
            row += 0.5 * A[d, :i]
        A[i, :i] = A[:i, i] = row
        A[i, i] = 1.0 + (0.5 * A[s, d] if s >= 0 and d >= 0 else 0.0)
    return A


def henderson_ainv(sire, dam, d):
    """Dense (I - P)' D^-1 (I - P), P holding 1/2 at each known parent."""
    n = len(sire)
    T = np.eye(n)
    for i in range(n):
        for p in (sire[i], dam[i]):
            if p >= 0:
                T[i, p] -= 0.5
    return T.T @ np.diag(1.0 / np.asarray(d)) @ T


def quaas_d(sire, dam, F):
    Fp = np.append(F, -1.0)                      # index -1 -> unknown parent, F = -1
    return 0.5 - 0.25 * (Fp[sire] + Fp[dam])


def random_pedigree(seed, n_gen=6, per_gen=45, n_founders=24, selfing=False):
    """Population with half- and full-sib families, matings among relatives, unknown parents.

    Returns (true sire, true dam, labels) in a parents-first order.
    """
    rng = np.random.default_rng(seed)
    sire, dam = [-1] * n_founders, [-1] * n_founders
    male = list(rng.random(n_founders) < 0.5)
    gen_start = [0]
    for _ in range(n_gen):
        lo = gen_start[-2] if len(gen_start) > 1 else 0
        pool = np.arange(lo, len(sire))
        males = pool[np.asarray(male)[pool]]
        females = pool[~np.asarray(male)[pool]]
        studs = rng.choice(males, size=min(3, males.size), replace=False)   # half sibs
        gen_start.append(len(sire))
        while len(sire) - gen_start[-1] < per_gen:
            s, d = int(rng.choice(studs)), int(rng.choice(females))
            if selfing and rng.random() < 0.15:
                d = s
            for _ in range(int(rng.integers(1, 4))):                        # full sibs
                sire.append(s if rng.random() > 0.08 else -1)
                dam.append(d if rng.random() > 0.08 else -1)
                male.append(bool(rng.random() < 0.5))
    n = len(sire)
    labels = np.array([f"A{k:04d}" for k in rng.permutation(n)], dtype=object)
    return np.array(sire), np.array(dam), labels


def as_table(sire, dam, labels, seed, drop_founders=True):
    """Shuffled table (parents after offspring) with mixed unknown markers, some parents
    missing from column 1."""
    rng = np.random.default_rng(seed)
    markers = np.array([0, "", "NA", ".", np.nan, "0", None], dtype=object)
    n = len(sire)
    lab = np.append(labels, None)
    s = lab[sire].astype(object)
    d = lab[dam].astype(object)
    s[sire < 0] = markers[rng.integers(0, markers.size, (sire < 0).sum())]
    d[dam < 0] = markers[rng.integers(0, markers.size, (dam < 0).sum())]
    keep = np.ones(n, bool)
    if drop_founders:
        parents = set(sire[sire >= 0]) | set(dam[dam >= 0])
        founders = [k for k in range(n) if sire[k] < 0 and dam[k] < 0 and k in parents]
        keep[rng.choice(founders, size=len(founders) // 2, replace=False)] = False
    order = rng.permutation(np.flatnonzero(keep))
    return pd.DataFrame({"ID": labels[order], "father": s[order], "mother": d[order]})


def check_against_reference(ped, sire, dam, labels, tol=1e-10):
    A = tabular_a(sire, dam)
    F = np.diag(A) - 1.0
    pos = {lab: k for k, lab in enumerate(labels)}
    perm = np.array([pos[x] for x in ped.ids])
    assert sorted(ped.ids) == sorted(labels)
    np.testing.assert_allclose(ped.inbreeding.loc[labels].to_numpy(), F, atol=tol, rtol=0)
    Ainv = ped.ainv()
    ref = np.linalg.inv(A)[np.ix_(perm, perm)]
    np.testing.assert_allclose(Ainv.toarray(), ref, atol=tol, rtol=0)
    np.testing.assert_allclose(Ainv.toarray(), henderson_ainv(sire, dam, quaas_d(sire, dam, F))
                               [np.ix_(perm, perm)], atol=tol, rtol=0)
    sign, logdet = np.linalg.slogdet(A)
    assert sign == 1.0 and ped.logdet_a() == pytest.approx(logdet, abs=1e-9)
    return A, F


def quiet(*args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PedigreeWarning)
        return Pedigree(*args, **kw)


# ----------------------------------------------------------------------------- Mrode examples
def test_mrode_example_3_1(data_dir):
    ped = Pedigree(data_dir / "mrode2014" / "pedigree_mr03a.txt")
    assert list(ped.ids) == [str(k) for k in range(1, 9)]
    sire = np.array([-1, -1, -1, 0, 2, 0, 3, 2])
    dam = np.array([-1, -1, -1, -1, 1, 1, 4, 5])
    A = tabular_a(sire, dam)
    Ainv = ped.ainv()
    np.testing.assert_allclose(Ainv.toarray(), np.linalg.inv(A), atol=1e-12)
    # published A^-1 (Mrode 2014, Example 3.1): first row and two diagonals
    np.testing.assert_allclose(Ainv.toarray()[0], [11 / 6, 0.5, 0, -2 / 3, 0, -1, 0, 0], atol=1e-12)
    assert Ainv[4, 4] == pytest.approx(2.5) and Ainv[7, 7] == pytest.approx(2.0)
    assert np.all(ped.inbreeding.to_numpy() == 0.0)
    assert ped.logdet_a() == pytest.approx(np.linalg.slogdet(A)[1], abs=1e-12)
    assert list(ped.generation) == [0, 0, 0, 1, 1, 1, 2, 2]


def test_mrode2_nadiv_dam_sire_order(data_dir):
    raw = pd.read_csv(data_dir / "mrode2014" / "Mrode2.csv")        # id, dam, sire
    ped = Pedigree(raw[["id", "sire", "dam"]])
    F = ped.inbreeding
    np.testing.assert_allclose(F.loc[["1", "2", "3", "4", "5", "6"]], [0, 0, 0, 0, 0.125, 0.125])
    sire = np.array([-1, -1, 0, 0, 3, 4])
    dam = np.array([-1, -1, 1, -1, 2, 1])
    A = tabular_a(sire, dam)
    np.testing.assert_allclose(ped.ainv().toarray(), np.linalg.inv(A), atol=1e-12)
    np.testing.assert_allclose(ped.dinv, [1, 1, 2, 4 / 3, 2, 1 / (0.5 - 0.25 * 0.125)])
    assert ped.logdet_a() == pytest.approx(np.linalg.slogdet(A)[1], abs=1e-12)


def test_mrode9_nadiv_unsorted_labels(data_dir):
    raw = pd.read_csv(data_dir / "mrode2014" / "Mrode9.csv")        # pig, dam, sire
    ped = Pedigree(raw[["pig", "sire", "dam"]])
    assert list(ped.ids) == ["2", "4", "1", "3", "5", "6", "7", "8", "9", "10", "11", "12"]
    labels = [str(x) for x in raw["pig"]]
    lab = {x: k for k, x in enumerate(labels)}
    sire = np.array([lab[normalize_ids([x])[0]] if x == x else -1 for x in raw["sire"]])
    dam = np.array([lab[normalize_ids([x])[0]] if x == x else -1 for x in raw["dam"]])
    check_against_reference(ped, sire, dam, np.array(labels, dtype=object))


# ----------------------------------------------------------------------------- random pedigrees
@pytest.mark.parametrize("seed, swap", [(1, False), (2, False), (3, False), (4, True)])
def test_random_pedigree_against_tabular(seed, swap):
    sire, dam, labels = random_pedigree(seed)
    if swap:                         # few dams with large families: F via dam families
        sire, dam = dam, sire
    table = as_table(sire, dam, labels, seed)
    with pytest.warns(PedigreeWarning, match="added as founders"):
        ped = Pedigree(table)
    assert ped.n_founders_added > 0
    A, F = check_against_reference(ped, sire, dam, labels)
    assert F.max() > 0.1 and (F > 0).sum() > 50           # real inbreeding is exercised
    # parents precede offspring in the internal numbering
    for p in (ped.sire, ped.dam):
        known = p >= 0
        assert np.all(p[known] < np.flatnonzero(known))
        assert np.all(ped.generation[p[known]] < ped.generation[known])


def test_random_pedigree_integer_float_ids():
    sire, dam, _ = random_pedigree(7, n_gen=4)
    labels = np.array([str(1000 + 3 * k) for k in range(len(sire))], dtype=object)
    ids = np.array([1000 + 3 * k for k in range(len(sire))], dtype=float)
    table = pd.DataFrame({"a": ids,
                          "s": np.where(sire >= 0, ids[sire], np.nan),     # floats with NaN
                          "d": np.where(dam >= 0, ids[dam], 0.0)})
    ped = Pedigree(table.iloc[::-1])
    check_against_reference(ped, sire, dam, labels)
    assert ped.index_of([1000, 1003.0, "1006"]).tolist() == \
        [list(ped.ids).index(x) for x in ("1000", "1003", "1006")]


def test_selfing_allowed_with_warning():
    sire, dam, labels = random_pedigree(11, n_gen=4, selfing=True)
    assert np.any((sire == dam) & (sire >= 0))
    table = as_table(sire, dam, labels, 11, drop_founders=False)
    with pytest.raises(PedigreeError, match="both as sire and as dam"):
        Pedigree(table)
    with pytest.warns(PedigreeWarning, match="both as sire and as dam"):
        ped = Pedigree(table, allow_sire_dam=True)
    check_against_reference(ped, sire, dam, labels)


def test_inbreeding_false_uses_henderson_without_f():
    sire, dam, labels = random_pedigree(5, n_gen=5)
    table = as_table(sire, dam, labels, 5)
    ped = quiet(table, inbreeding=False)
    pos = {lab: k for k, lab in enumerate(labels)}
    perm = np.array([pos[x] for x in ped.ids])
    d0 = 1.0 - 0.25 * ((sire >= 0).astype(float) + (dam >= 0))
    ref = henderson_ainv(sire, dam, d0)[np.ix_(perm, perm)]
    np.testing.assert_allclose(ped.ainv().toarray(), ref, atol=1e-12)
    assert ped.logdet_a() == pytest.approx(np.log(d0).sum(), abs=1e-10)
    F_true = np.diag(tabular_a(sire, dam)) - 1.0                     # F is still reported
    np.testing.assert_allclose(ped.inbreeding.loc[labels].to_numpy(), F_true, atol=1e-12)
    assert F_true.max() > 0


def test_blupf90_simped_inbreeding(data_dir):
    ped = Pedigree(data_dir / "blupf90_simdata" / "simped.txt")
    F = ped.inbreeding
    assert len(ped) == 4641
    assert F.max() == pytest.approx(0.2890625, abs=1e-12)
    assert F.mean() == pytest.approx(0.01112, abs=5e-6)
    assert int((F > 0).sum()) == 1313
    # BLUPF90 default: A^-1 by Henderson's rules with F = 0
    plain = Pedigree(data_dir / "blupf90_simdata" / "simped.txt", inbreeding=False)
    known = (plain.sire >= 0).astype(int) + (plain.dam >= 0)
    np.testing.assert_allclose(plain.dinv, 1.0 / (1.0 - 0.25 * known))
    Ainv = plain.ainv()
    assert Ainv.format == "csc" and (Ainv - Ainv.T).count_nonzero() == 0
    x = np.random.default_rng(0).standard_normal(len(plain))
    # A^-1 x = T' D^-1 T x with T = I - P, computed directly from the parent arrays
    Tx = x.copy()
    for p in (plain.sire, plain.dam):
        Tx[p >= 0] -= 0.5 * x[p[p >= 0]]
    y = plain.dinv * Tx
    Ty = y.copy()
    for p in (plain.sire, plain.dam):
        np.add.at(Ty, p[p >= 0], -0.5 * y[p >= 0])
    np.testing.assert_allclose(Ainv @ x, Ty, atol=1e-10)


# ----------------------------------------------------------------------------- errors
def test_cycle_names_the_path():
    table = pd.DataFrame({"a": ["x", "y", "z", "w", "k"], "s": ["z", "x", "y", "0", "y"],
                          "d": ["0", "0", "w", "0", "w"]})
    with pytest.raises(PedigreeError, match="its own ancestor") as err:
        Pedigree(table)
    assert sorted(err.value.animals) == ["x", "y", "z"]
    assert "'x' is a child of 'z'" in str(err.value) or "'z' is a child of 'y'" in str(err.value)


def test_conflicting_duplicates_and_identical_duplicates():
    base = pd.DataFrame({"a": [1, 2, 3, 3, 4], "s": [0, 0, 1, 1, 1], "d": [0, 0, 2, 2, 0]})
    ped = Pedigree(base)
    assert len(ped) == 4 and ped.n_duplicates == 1
    bad = pd.DataFrame({"a": [1, 2, 3, 3, 5, 5], "s": [0, 0, 1, 1, 1, 0], "d": [0, 0, 2, 0, 2, 2]})
    with pytest.raises(PedigreeError, match="more than once with different parents") as err:
        Pedigree(bad)
    assert err.value.animals == ["3", "5"]


def test_own_parent_and_sire_dam_conflict():
    with pytest.raises(PedigreeError, match="their own parent") as err:
        Pedigree(pd.DataFrame({"a": [1, 2, "b7"], "s": [0, 1, 1], "d": [0, 0, "b7"]}))
    assert err.value.animals == ["b7"]
    both = pd.DataFrame({"a": [1, 2, 3, 4, 5], "s": [0, 0, 1, 2, 3], "d": [0, 0, 2, 3, 4]})
    with pytest.raises(PedigreeError, match="both as sire and as dam") as err:
        Pedigree(both)
    assert err.value.animals == ["2", "3"]
    with pytest.warns(PedigreeWarning, match="'2', '3'"):
        assert len(Pedigree(both, allow_sire_dam=True)) == 5


def test_missing_founders_and_missing_animal_id():
    table = pd.DataFrame({"a": ["c1", "c2"], "s": ["s1", "s1"], "d": ["d1", "NA"]})
    with pytest.raises(PedigreeError, match="not listed as animals") as err:
        Pedigree(table, add_founders=False)
    assert err.value.animals == ["s1", "d1"]
    with pytest.warns(PedigreeWarning, match="2 parents"):
        ped = Pedigree(table)
    assert list(ped.ids) == ["s1", "d1", "c1", "c2"] and ped.n_founders_added == 2
    with pytest.raises(PedigreeError, match="no animal ID"):
        Pedigree(pd.DataFrame({"a": [1, np.nan], "s": [0, 0], "d": [0, 0]}))
    with pytest.raises(PedigreeError, match="three columns"):
        Pedigree(pd.DataFrame({"a": [1], "s": [0]}))


def test_index_of_and_add_animals():
    ped = Pedigree(pd.DataFrame({"a": [1097.0, 1098.0, 5.0], "s": [np.nan, np.nan, 1097.0],
                                 "d": [np.nan, np.nan, 1098.0]}))
    assert list(ped.ids) == ["1097", "1098", "5"]
    assert ped.index_of([1097, "1098", 5.0, "1097.0"]).tolist() == [0, 1, 2, 0]
    with pytest.raises(PedigreeError, match="not in the pedigree") as err:
        ped.index_of([5, 77, "x9", 77])
    assert err.value.animals == ["77", "x9"]
    with pytest.warns(PedigreeWarning, match="2 animals absent"):
        big = ped.add_animals([5, 77, "x9", np.nan])
    assert list(big.ids) == ["1097", "1098", "5", "77", "x9"]
    np.testing.assert_allclose(big.ainv().toarray()[3:, 3:], np.eye(2))
    assert big.inbreeding.loc["5"] == 0.0 and big.logdet_a() == pytest.approx(ped.logdet_a())


def test_generations_when_parents_follow_offspring(tmp_path):
    path = tmp_path / "ped.csv"
    path.write_text("animal,sire,dam\nG,C,D\nC,A,B\nD,A,.\nA,NA,NA\nB,,\nE,C,B\n")
    ped = Pedigree(path, allow_sire_dam=False)
    gen = dict(zip(ped.ids, ped.generation))
    assert gen == {"A": 0, "B": 0, "C": 1, "D": 1, "G": 2, "E": 2}
    assert list(ped.ids) == ["A", "B", "C", "D", "G", "E"]
    assert ped.inbreeding.loc["G"] == pytest.approx(0.125)          # C x D half sibs by A
    assert "6 animals" in repr(ped) and "3 generations" in repr(ped)
    frame = ped.to_frame()
    assert frame.loc[frame.animal == "G", ["sire", "dam"]].values.tolist() == [["C", "D"]]


def test_whitespace_file_with_header(tmp_path):
    path = tmp_path / "ped.txt"
    path.write_text("id father mother\n10 0 0\n11 0 0\n12 10 11\n13 10 12\n")
    ped = Pedigree(path)
    assert list(ped.ids) == ["10", "11", "12", "13"]
    assert ped.inbreeding.loc["13"] == pytest.approx(0.25)


def test_normalize_ids():
    out = normalize_ids([1097.0, "1097.0", "12.00", 1097, " a1 ", 1.5, "007", 0, None, np.nan, ""])
    assert list(out[:8]) == ["1097", "1097", "12", "1097", "a1", "1.5", "007", "0"]
    assert pd.isna(out[8:]).all()
    assert list(normalize_ids(np.array([3.0, np.nan]))[:1]) == ["3"]


def test_uint64_ids_above_2_63_keep_their_labels(tmp_path):
    big = np.array([2 ** 64 - 1, 2 ** 64 - 2, 2 ** 63 + 7, 2 ** 63], dtype=np.uint64)
    labels = [str(int(x)) for x in big]                  # exact decimal IDs
    unknown = np.uint64(0)
    table = pd.DataFrame({"a": big, "s": np.array([0, 0, big[0], big[0]], np.uint64),
                          "d": np.array([unknown, unknown, big[1], big[2]], np.uint64)})
    ped = Pedigree(table)
    assert list(ped.ids) == labels
    assert list(normalize_ids(big)) == labels
    assert list(normalize_ids([2 ** 64 - 1, 5])) == [labels[0], "5"]
    assert list(normalize_ids(pd.Series(big, dtype="UInt64"))) == labels
    # a data column of the same IDs (numpy or nullable) finds the same animals
    assert ped.index_of(big[::-1]).tolist() == [3, 2, 1, 0]
    assert ped.index_of(pd.Series(big, dtype="UInt64")).tolist() == [0, 1, 2, 3]
    assert ped.sire[3] == 0 and ped.dam[3] == 2                # a sire x daughter mating
    assert ped.inbreeding.loc[labels[3]] == 0.25
    assert ped.to_frame().loc[3, ["sire", "dam"]].tolist() == [labels[0], labels[2]]
    path = tmp_path / "ped.csv"                          # read as uint64 by pandas
    path.write_text("animal,sire,dam\n" + "".join(
        f"{a},{s},{d}\n" for a, s, d in zip(big, table.s, table.d)))
    assert list(Pedigree(path).ids) == labels


# ----------------------------------------------------------------------------- near-singular A
def inbred_line_table(generations, selfing):
    """One line of selfing (an animal both sire and dam of the next) or full-sib mating."""
    rows, s, d = [], "0", "0"
    for g in range(generations):
        if selfing:
            rows.append((f"S{g}", s, d))
            s = d = f"S{g}"
        else:
            rows += [(f"M{g}", s, d), (f"F{g}", s, d)]
            s, d = f"M{g}", f"F{g}"
    return pd.DataFrame(rows, columns=["animal", "sire", "dam"])


def test_near_singular_a_warns_and_names_the_animals():
    ped = quiet(inbred_line_table(40, selfing=True), allow_sire_dam=True)
    # d_i = (1 - F_parent) / 2 = 2^-g: exact, A of 40 generations is still usable
    np.testing.assert_array_equal(ped.d, 2.0 ** -np.arange(40.0))
    with pytest.warns(PedigreeWarning, match=r"A is near singular: 13 animals have d_i below "
                      r"1e-08 \(smallest 1\.82e-12\).*'S27' \(sire 'S26', dam 'S26'"):
        Ainv = ped.ainv()
    assert np.isfinite(Ainv.data).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")                 # warned once per pedigree
        assert ped.logdet_a() == pytest.approx(np.log(2.0) * -sum(range(40)))


@pytest.mark.parametrize("generations, selfing", [(60, True), (200, False)])
def test_singular_a_is_a_pedigree_error(generations, selfing):
    ped = quiet(inbred_line_table(generations, selfing), allow_sire_dam=selfing)
    assert ped.inbreeding.max() > 1.0 - 1e-12
    for build in (ped.ainv, ped.logdet_a):
        with pytest.raises(PedigreeError, match="A is singular to double precision") as err:
            build()
        assert "F of the parents" in str(err.value) and "inbreeding=False" in str(err.value)
        first = np.flatnonzero(ped.d < 1000 * np.finfo(float).eps)[0]
        assert err.value.animals[0] == ped.ids[first] and len(err.value.animals) > 10
        assert not selfing or ped.ids[first] == "S43"             # d = 2^-43
    plain = quiet(inbred_line_table(generations, selfing), inbreeding=False,
                  allow_sire_dam=selfing)
    assert np.isfinite(plain.ainv().data).all()


def test_singular_a_in_a_fit_names_the_cause():
    import mvreml
    table = inbred_line_table(200, selfing=False)
    data = pd.DataFrame({"animal": table.animal,
                         "y": np.random.default_rng(2).standard_normal(len(table))})
    with pytest.raises(PedigreeError, match="A is singular to double precision"):
        mvreml.fit("y ~ 1", random="~ vm(animal, ped)", data=data,
                   relmat={"ped": quiet(table)})
