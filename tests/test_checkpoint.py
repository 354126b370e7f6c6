"""Checkpoint / resume: a fit killed (SIGKILL, in a subprocess) after a few iterates continues
from its checkpoint to the optimum of the uninterrupted fit; a checkpoint of another model
or other data is refused."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

import mvreml
from mvreml.errors import CheckpointError
from mvreml.likelihood import REMLModel

REPO = Path(__file__).resolve().parents[1]
MODEL = dict(fixed="cbind(HD, HT, GY) ~ trait", random="~ diag(trait):Block + us(trait):RIL",
             residual="~ units:us(trait)")

# the fit of tests/test_reml.py's seed trial (7 iterates; the RIL matrix held at reduced rank
# from iterate 4, so the holds are part of the state), killed by SIGKILL at a chosen point of the writes
CHILD = textwrap.dedent("""
    import os, signal, sys, warnings
    sys.path.insert(0, {tests!r})
    import mvreml, mvreml.checkpoint as ckpt
    from test_reml import seed_trial
    from test_checkpoint import MODEL

    path, kill_at, where = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    save, replace = ckpt.save, os.replace

    def killing_save(p, content):
        if where == "before-replace" and content["iteration"] == kill_at:
            # die with the new state written to the temporary file but not yet in place
            ckpt.os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)
        save(p, content)
        if where == "after-save" and content["iteration"] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    ckpt.save = killing_save
    warnings.simplefilter("ignore")
    mvreml.fit(**MODEL, data=seed_trial(), checkpoint=path)
    print("not killed")
""")


def _fit(**kw):
    from test_reml import seed_trial
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mvreml.fit(**MODEL, data=seed_trial(), **kw)


@pytest.fixture(scope="module")
def uninterrupted():
    return _fit()


def _killed(tmp_path, kill_at, where):
    path = tmp_path / "fit.ckpt"
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(tests=str(REPO / "tests")))
    env = dict(os.environ, PYTHONPATH=str(REPO), OPENBLAS_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(script), str(path), str(kill_at), where], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    return path


def _resumed(path, monkeypatch):
    """Resume, recording the first theta evaluated (it must be the checkpoint's)."""
    first = []
    evaluate = REMLModel.evaluate

    def spy(self, theta, derivatives=True):
        if not first:
            first.append(np.array(theta))
        return evaluate(self, theta, derivatives)

    monkeypatch.setattr(REMLModel, "evaluate", spy)
    res = _fit(resume=path)
    monkeypatch.undo()
    return res, first[0]


@pytest.mark.parametrize("where, kill_at, saved", [("after-save", 5, 5), ("before-replace", 5, 4)])
def test_a_killed_fit_resumes_to_the_uninterrupted_optimum(tmp_path, monkeypatch, uninterrupted, where,
                                                           kill_at, saved):
    path = _killed(tmp_path, kill_at, where)
    content = json.loads(path.read_text())
    assert content["iteration"] == saved and not content["finished"]
    assert content["holds"]["reduced"], "the saved state should include a matrix held at reduced rank"
    assert len(content["history"]) == saved + 1
    res, first = _resumed(path, monkeypatch)
    # it started from the saved iterate, not from the starting values
    np.testing.assert_array_equal(first, np.array(content["theta"]))
    assert [r["loglik"] for r in content["history"]] == list(res.history["loglik"][:saved + 1])
    assert res.converged and res.iterations == uninterrupted.iterations
    assert res.loglik == pytest.approx(uninterrupted.loglik, abs=1e-8)
    np.testing.assert_allclose(res.varcomp["estimate"], uninterrupted.varcomp["estimate"], rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(res.history["loglik"], uninterrupted.history["loglik"], rtol=0, atol=1e-8)
    assert list(res.history["step"]) == list(uninterrupted.history["step"])
    np.testing.assert_allclose(res.history["decrement"], uninterrupted.history["decrement"], rtol=1e-6)
    assert list(res.varcomp["bound"]) == list(uninterrupted.varcomp["bound"])


def test_the_checkpoint_is_written_every_iterate_and_at_the_end(tmp_path, uninterrupted):
    path = tmp_path / "fit.ckpt"
    res = _fit(checkpoint=path)
    content = json.loads(path.read_text())
    assert content["finished"] and content["iteration"] == res.iterations == uninterrupted.iterations
    assert [r["iteration"] for r in content["history"]] == list(range(res.iterations + 1))
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    again = _fit(resume=path, checkpoint=path)          # resuming a finished fit: at the optimum already
    # it may take one more iterate (it does, 7 -> 8, with either selected-inverse kernel); what
    # that iterate gains is bounded by the fit's own log L tolerance, not by rounding: 7e-10 with
    # the CSC kernel, 2.7e-8 with the supernodal one, whose iterates agree with it to 1e-14
    tol_ll = 1e-7 * max(1.0, abs(res.loglik) / 1000.0)  # mvreml.reml: tol_loglik, scaled
    assert again.loglik == pytest.approx(res.loglik, abs=tol_ll) and again.converged


def test_a_checkpoint_of_another_model_or_data_is_refused(tmp_path):
    from test_reml import seed_trial

    path = tmp_path / "fit.ckpt"
    _fit(checkpoint=path, maxiter=2)
    with pytest.raises(CheckpointError, match="written by a fit of another model or other data"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mvreml.fit(**dict(MODEL, random="~ us(trait):RIL"), data=seed_trial(), resume=path)
    other = seed_trial()
    other.loc[0, "HD"] += 1.0
    with pytest.raises(CheckpointError, match="another model or other data"):
        mvreml.fit(**MODEL, data=other, resume=path)
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        mvreml.fit(**MODEL, data=other, resume=tmp_path / "absent.ckpt")
    (tmp_path / "junk.ckpt").write_text("{not json")
    with pytest.raises(CheckpointError, match="cannot be read as an mvreml checkpoint"):
        mvreml.fit(**MODEL, data=other, resume=tmp_path / "junk.ckpt")


def test_other_fixed_values_are_refused(tmp_path):
    from test_reml import seed_trial

    path = tmp_path / "fit.ckpt"
    block = np.diag([4.0, 1.0, 0.2])
    _fit(checkpoint=path, maxiter=2, init={"Block": block}, fix=["Block"])
    with pytest.raises(CheckpointError, match="fix= values"):
        mvreml.fit(**MODEL, data=seed_trial(), init={"Block": 2 * block}, fix=["Block"], resume=path)


def test_command_line_checkpoint_and_resume(tmp_path, capsys):
    from mvreml import cli
    from mvreml.demo import simulate_trial

    simulate_trial(seed=2, n_blocks=4, n_families=30, trees_per_plot=3).to_csv(tmp_path / "t.csv", index=False)
    model = ["--fixed", "cbind(velocity, density) ~ trait", "--random", "~ us(trait):Family",
             "--residual", "~ units:us(trait)", "--quiet"]
    ckpt = tmp_path / "fit.ckpt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert cli.main(["fit", str(tmp_path / "t.csv"), *model, "--maxiter", "2", "--checkpoint", str(ckpt),
                         "--out", str(tmp_path / "a")]) == cli.EXIT_NOT_CONVERGED
        assert json.loads(ckpt.read_text())["iteration"] == 2
        assert cli.main(["fit", str(tmp_path / "t.csv"), *model, "--resume", str(ckpt),
                         "--out", str(tmp_path / "b")]) == cli.EXIT_OK
        other = [m if m != "~ us(trait):Family" else "~ diag(trait):Family" for m in model]
        code = cli.main(["fit", str(tmp_path / "t.csv"), *other, "--resume", str(ckpt), "--out", str(tmp_path / "c")])
    assert code == cli.EXIT_INPUT and "another model or other data" in capsys.readouterr().err
