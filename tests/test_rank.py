"""Column dropping of the fixed design keeps the earliest independent columns (as lm / lme4)."""
import numpy as np
import scipy.sparse as sp

from mvreml.rank import independent_columns


def test_keeps_earliest_independent_columns():
    rng = np.random.default_rng(1)
    a, b, c = rng.standard_normal((3, 50))
    X = np.column_stack([a, b, a + 2 * b, np.zeros(50), c, c - a])
    keep, dropped = independent_columns(sp.csc_matrix(X))
    assert keep == [0, 1, 4]
    assert dropped == [2, 3, 5]
    assert np.linalg.matrix_rank(X) == len(keep)


def test_full_rank_fast_path_and_empty():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((30, 6))
    assert independent_columns(sp.csc_matrix(X)) == (list(range(6)), [])
    assert independent_columns(sp.csc_matrix((5, 0))) == ([], [])


def test_dummy_coding_aliased_with_intercept():
    g = np.repeat(np.arange(4), 5)
    D = np.eye(4)[g]
    X = np.column_stack([np.ones(20), D])            # intercept + all four levels
    keep, dropped = independent_columns(sp.csc_matrix(X))
    assert keep == [0, 1, 2, 3] and dropped == [4]
