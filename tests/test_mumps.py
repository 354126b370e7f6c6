"""backend="mumps": the same fits as CHOLMOD over MPI, faults that end every rank with a message.

The MUMPS fits run under ``mpirun -n 2`` in a subprocess (tests/mpi_fits.py); the CHOLMOD
fits they are held against run here. The MPI tests are skipped, with the reason, only when
MPI, mpi4py or PyMUMPS is missing (``make mpi`` installs them; ``make test`` does too).
"""
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

import mvreml
from mvreml.errors import ArgumentError

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SCRIPT = HERE / "mpi_fits.py"
RANKS = 2
EQUAL_CASES = ["gryphon-U", "gryphon-B", "U-S", "B-S", "slatehall"]

sys.path.insert(0, str(HERE))
import mpi_fits  # noqa: E402


def _mpi_missing() -> str | None:
    if shutil.which("mpirun") is None:
        return "mpirun not found"
    probe = subprocess.run([sys.executable, "-c", "import mpi4py, mumps"], capture_output=True, text=True)
    if probe.returncode:
        return probe.stderr.strip().splitlines()[-1]
    return None


MISSING = _mpi_missing()
needs_mpi = pytest.mark.skipif(MISSING is not None, reason=f"MPI not installed ({MISSING}): `make mpi` "
                               "installs OpenMPI, MUMPS, mpi4py and PyMUMPS")


def one_process(out: Path, *cases, timeout=600):
    """tests/mpi_fits.py in one process, no mpirun (MPI's singleton: rank 0 alone)."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, str(SCRIPT), str(out), *cases], env=env, capture_output=True,
                          text=True, timeout=timeout)


def mpirun(out: Path, *cases, timeout=900, **env_vars):
    """tests/mpi_fits.py on RANKS ranks of localhost; returns the CompletedProcess."""
    return mpirun_program([str(SCRIPT), str(out), *cases], timeout=timeout, **env_vars)


def mpirun_program(args, timeout=900, cwd=None, **env_vars):
    """`python ARGS...` on RANKS ranks of localhost; returns the CompletedProcess."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", **env_vars)
    if hasattr(os, "geteuid") and os.geteuid() == 0:       # CI runs as root; Open MPI refuses by default
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    version = subprocess.run(["mpirun", "--version"], capture_output=True, text=True).stdout
    extra = ["--oversubscribe"] if "Open MPI" in version or "OpenRTE" in version else []
    cmd = ["mpirun", "-n", str(RANKS), *extra, sys.executable, *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd)


@pytest.fixture(scope="module")
def mumps_fits(tmp_path_factory):
    out = tmp_path_factory.mktemp("mumps") / "fits.json"
    proc = mpirun(out, *EQUAL_CASES, "predict", "selinv", "notpd")     # notpd spoils the assembly for good
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text()), proc


@needs_mpi
@pytest.mark.slow
@pytest.mark.parametrize("case", EQUAL_CASES)
def test_mumps_fit_equals_cholmod_fit(mumps_fits, case):
    """Same iterations, same answer: log L and every component to 1e-8 (the fixed effects, which
    follow the components, to 1e-8 absolute: a cg effect of 0.03 moves by 8e-10 on B-S)."""
    got = mumps_fits[0][case]
    ref = mpi_fits.record(mpi_fits.fit(case, "cholmod"))
    assert got["converged"] and ref["converged"]
    assert got["iterations"] == ref["iterations"]
    assert abs(got["loglik"] - ref["loglik"]) < 1e-8
    np.testing.assert_allclose(got["varcomp"], ref["varcomp"], rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(got["fixef"], ref["fixef"], rtol=0, atol=1e-8)


@needs_mpi
def test_mumps_memory_forecast_is_logged_and_kept(mumps_fits):
    """The analysis's memory per rank reaches the user: a log line and result.model["mumps"]."""
    fits, proc = mumps_fits
    est = fits["gryphon-U"]["mumps"]
    assert est["ranks"] == RANKS and len(est["mb_per_rank"]) == RANKS
    assert est["mb_max"] == max(est["mb_per_rank"]) and est["mb_total"] >= est["mb_max"] >= 1
    assert "MUMPS analysis on 2 rank(s): the factorization will need about" in proc.stderr


@needs_mpi
def test_mumps_factorization_failure_names_term_and_level(mumps_fits):
    """C not positive definite at an animal's equation: the start fails naming the term and level,
    the same equation the CHOLMOD adapter names."""
    fail = mumps_fits[0]["notpd"]
    assert fail["error"] == "StartingValueError"
    assert f"term 'animal', level '{mpi_fits.NOTPD_LEVEL}'" in fail["message"]
    assert "negative pivot" in fail["message"]


def _cholmod_predictions():
    pred = mpi_fits.fit("gryphon-U", "cholmod").predict(classify="sex")
    return pred["predicted_value"].to_numpy(), pred["std_error"].to_numpy()


@needs_mpi
def test_predict_after_a_fit_on_two_ranks(mumps_fits):
    """On rank 0 alone the ranks are gone: a ModelError saying what to do; inside
    mvreml.backends.collective on every rank: CHOLMOD's predictions."""
    got = mumps_fits[0]["predict"]
    assert got["alone"]["error"] == "ModelError"
    assert "mvreml.backends.collective(lambda: res.predict(...))" in got["alone"]["message"]
    assert "ran on 2 MPI ranks" in got["alone"]["message"]
    value, se = _cholmod_predictions()
    np.testing.assert_allclose(got["predict"]["value"], value, rtol=1e-8)
    np.testing.assert_allclose(got["predict"]["std_error"], se, rtol=1e-8)


@needs_mpi
def test_predict_after_a_fit_on_one_process(tmp_path):
    """backend="mumps" without mpirun: predict() makes a new MUMPS instance and frees it."""
    proc = one_process(tmp_path / "one.json", "predict")
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads((tmp_path / "one.json").read_text())["predict"]
    value, se = _cholmod_predictions()
    for way in ("alone", "predict"):
        np.testing.assert_allclose(got[way]["value"], value, rtol=1e-8)
        np.testing.assert_allclose(got[way]["std_error"], se, rtol=1e-8)


def _iterate_parts(case):
    """(REMLModel, Assembly, C assembled on one process) of a case at its starting values."""
    from mvreml import api
    from mvreml.backends import Assembly
    from mvreml.formula import parse_fixed, parse_random, parse_residual
    from mvreml.likelihood import REMLModel
    from mvreml.start import starting_values

    fixed, kw = mpi_fits.model(case)
    fs = parse_fixed(fixed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        design, Y, P, blocks = api.prepare(fs, parse_random(kw["random"], fs.response),
                                           parse_residual(kw.get("residual"), fs.response), kw["data"],
                                           relmat=kw.get("relmat"))
    model = REMLModel(design, blocks)
    theta, _ = starting_values(design, blocks, None, P, Y)
    mats = model.matrices(theta)
    nr = model.n_random
    ginv = [np.linalg.inv(G) for G in mats[:nr]]
    if design.lattice is None:
        rstack, _ = model._residual_parts(mats[nr:])
        rinv = model._pair_values(rstack)
    else:
        rstack, (rinv, _) = None, model._lattice_parts(theta)
    return model, Assembly(rinv, rstack, ginv), model.pattern.assemble(rinv, ginv)


@pytest.mark.parametrize("case", ["gryphon-B", "slatehall"])
def test_rank_shares_sum_to_the_records_part_of_c(case):
    """The records split over 3 ranks (rank 0 none), each share built from its rows of W alone:
    summed (as MUMPS sums them) they are W'R^-1 W, computed densely; with rank 0's G^-1
    part they are the engine's C."""
    from mvreml.backends.share import LocalShare, pair_ranges, piece

    model, parts, C = _iterate_parts(case)
    pat = model.pattern
    stack = parts.rstack is not None
    n = pat.n_eq
    total = np.zeros((n, n))
    ranges = pair_ranges(len(pat.pair_a), 3)
    assert ranges[0] == (0, 0) and ranges[-1][1] == len(pat.pair_a)
    for lo, hi in ranges:
        share = LocalShare(piece(model, lo, hi, stack))
        vals = share.values(rstack=parts.rstack) if stack else share.values(rinv=parts.rinv_pairs[lo:hi])
        np.add.at(total, (share.irn - 1, share.jcn - 1), vals)
    W = pat.W.toarray()
    Rinv = pat.rinv_matrix(parts.rinv_pairs).toarray()
    np.testing.assert_allclose(total, np.tril(W.T @ Rinv @ W), rtol=1e-12, atol=1e-12)
    g = sum(M @ np.ravel(Gi) for M, Gi in zip(pat.M_G, parts.ginvs))
    np.testing.assert_allclose(total[pat.rows, pat.cols] + g, C.data, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("size", [1, 2, 5, 12])
def test_pair_ranges_cover_every_pair_once(size):
    """Every pair on exactly one rank, in order; rank 0 none when there are others (also with
    more ranks than pairs: the last ones get none)."""
    from mvreml.backends.share import pair_ranges

    for n in (0, 7, 1000):
        ranges = pair_ranges(n, size)
        assert len(ranges) == size
        got = np.concatenate([np.arange(lo, hi) for lo, hi in ranges])
        np.testing.assert_array_equal(got, np.arange(n))
        assert size == 1 or ranges[0] == (0, 0)


def _gryphon_model():
    return mpi_fits.gryphon_c()


def test_cholmod_adapter_names_the_column_of_a_failed_factorization():
    from mvreml.backends import NotPositiveDefinite, equation_label
    from mvreml.backends.cholmod import CholmodBackend

    design, pattern, C = _gryphon_model()
    rd = design.random[0]
    j = pattern.offsets[0] + int(np.flatnonzero(rd.levels.astype(str) == mpi_fits.NOTPD_LEVEL)[0])
    C.data[C.indptr[j]] = -1.0
    b = CholmodBackend()
    b.analyze(C)
    with pytest.raises(NotPositiveDefinite) as err:
        b.factorize(C)
    assert err.value.column == j
    assert equation_label(design, pattern, j) == f"equation {j}: term 'animal', level '{mpi_fits.NOTPD_LEVEL}'"
    assert equation_label(design, pattern, 1) == "equation 1: fixed effect 'sex[T.2]'"


def test_cholmod_adapter_is_the_engines_linear_algebra():
    """log|C|, solves and C^-1 on the pattern of C, against dense numpy."""
    from mvreml.backends.cholmod import CholmodBackend

    _, pattern, C = _gryphon_model()
    full = (C + sp.tril(C, -1).T).toarray()
    b = CholmodBackend()
    b.analyze(C)
    b.set_pattern(pattern.rows, pattern.cols)
    logdet = b.factorize(C)
    assert logdet == pytest.approx(np.linalg.slogdet(full)[1], rel=1e-12)
    rhs = np.random.default_rng(1).random((C.shape[0], 3))
    np.testing.assert_allclose(full @ b.solve(rhs), rhs, atol=1e-9)
    inv = np.linalg.inv(full)
    np.testing.assert_allclose(b.selected_inverse(), inv[pattern.rows, pattern.cols], rtol=1e-9, atol=1e-12)


def _check_selected_inverse(got):
    """MUMPS's C^-1 at pairs given in any order (both triangles, repeats) is CHOLMOD's at the same
    pairs, in the caller's order; MUMPS was asked for each unordered pair of C once, as the entry
    whose column is eliminated first."""
    from mvreml.backends.cholmod import CholmodBackend

    _, pattern, C = _gryphon_model()
    rows, cols = mpi_fits.shuffled_pairs(pattern)
    ref = CholmodBackend()
    ref.analyze(C)
    ref.set_pattern(rows, cols)
    ref.factorize(C)
    np.testing.assert_allclose(got["values"], ref.selected_inverse(), rtol=1e-9, atol=1e-12)
    ptr, req_rows, position = (np.asarray(got[k]) for k in ("ptr", "rows", "position"))
    n = C.shape[0]
    req_cols = np.repeat(np.arange(n), np.diff(ptr))
    assert np.all(position[req_cols] <= position[req_rows])
    assert np.any(position[pattern.rows] < position[pattern.cols])      # C gives some pairs the other way
    requested = np.minimum(req_rows, req_cols) * n + np.maximum(req_rows, req_cols)
    np.testing.assert_array_equal(np.sort(requested), np.sort(pattern.cols * n + pattern.rows))


@needs_mpi
def test_selected_inverse_on_two_ranks_is_cholmods_at_any_pairs(mumps_fits):
    _check_selected_inverse(mumps_fits[0]["selinv"])


@needs_mpi
def test_selected_inverse_on_one_process_is_cholmods_at_any_pairs(tmp_path):
    proc = one_process(tmp_path / "one.json", "selinv")
    assert proc.returncode == 0, proc.stderr[-3000:]
    _check_selected_inverse(json.loads((tmp_path / "one.json").read_text())["selinv"])


@needs_mpi
def test_a_rank_that_dies_ends_the_run_with_a_message_on_rank_0(tmp_path):
    """Rank 1 killed inside a factorization: no hang, and rank 0 says where it was."""
    proc = mpirun(tmp_path / "die.json", "die", timeout=300)
    assert proc.returncode != 0
    assert "mvreml: rank 0: the MPI runtime is ending this run" in proc.stderr
    assert "inside the MUMPS step 'factorize'" in proc.stderr
    assert not (tmp_path / "die.json").exists()


@needs_mpi
def test_a_rank_that_hangs_is_ended_by_the_step_timeout(tmp_path):
    """Rank 1 never joins the second factorization: MVREML_MPI_TIMEOUT ends every rank, with
    rank 0's message, long before the subprocess's own limit."""
    proc = mpirun(tmp_path / "hang.json", "hang", timeout=300, MVREML_MPI_TIMEOUT="5")
    assert proc.returncode != 0
    assert "mvreml: rank 0: the MUMPS step 'factorize' has run 5 s (MVREML_MPI_TIMEOUT)" in proc.stderr
    assert not (tmp_path / "hang.json").exists()


@needs_mpi
def test_command_line_under_mpirun(tmp_path):
    """`mpirun -n 2 python -m mvreml fit ... --backend mumps`: exit 0, the files, CHOLMOD's answer,
    and MUMPS's memory forecast in the output."""
    d = HERE / "data" / "gryphon_wam"
    args = ["-m", "mvreml", "fit", str(d / "gryphon.csv"), "--fixed", "bwt ~ 1 + sex", "--factors", "sex",
            "--random", "~ vm(animal, ped)", "--relmat", f"ped={d / 'gryphonped.csv'}"]
    proc = mpirun_program(args + ["--backend", "mumps", "--out", "out"], timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "MUMPS analysis on 2 rank(s): the factorization will need about" in proc.stdout
    import pandas as pd

    got = pd.read_csv(tmp_path / "out" / "varcomp.csv")
    ref = mpi_fits.fit("gryphon-U", "cholmod").varcomp
    np.testing.assert_allclose(got["estimate"].to_numpy(), ref["estimate"].to_numpy(), rtol=1e-8)


def test_unknown_backend_is_an_argument_error():
    g, ped = mpi_fits.gryphon()
    with pytest.raises(ArgumentError, match="backend='magma' is not a linear-algebra backend; known: cholmod, mumps"):
        mvreml.fit("bwt ~ 1", random="~ vm(animal, ped)", data=g, relmat={"ped": ped}, backend="magma")
