"""Ctrl-C during a fit: control comes back promptly, and no file is left half-written (the
checkpoint, the command line's tables and result.json are replaced whole or not at all)."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import mvreml.checkpoint as ckpt
from mvreml import _atomic

REPO = Path(__file__).resolve().parents[1]

# fits the seed trial again and again with a checkpoint until interrupted
CHILD = textwrap.dedent("""
    import sys, warnings
    sys.path.insert(0, {tests!r})
    import mvreml
    from test_reml import seed_trial
    from test_checkpoint import MODEL

    warnings.simplefilter("ignore")
    data = seed_trial()
    while True:
        mvreml.fit(**MODEL, data=data, checkpoint=sys.argv[1])
""")


def _temporaries(folder) -> list:
    return [p for p in os.listdir(folder) if p.endswith(".tmp")]


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
def test_ctrl_c_during_a_fit_returns_promptly_and_leaves_a_whole_checkpoint(tmp_path):
    path = tmp_path / "fit.ckpt"
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(tests=str(REPO / "tests")))
    env = dict(os.environ, PYTHONPATH=str(REPO), OPENBLAS_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, str(script), str(path)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not path.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert path.exists(), proc.communicate()[1] if proc.poll() is not None else "no checkpoint written"
        time.sleep(0.3)                                 # well inside a later fit's iterates
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        waited = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "KeyboardInterrupt" in err, err
    assert waited < 10.0                                 # the seed trial: a few ms per evaluation
    content = json.loads(path.read_text())                # whole, and a checkpoint of this fit
    assert content["format"] == ckpt.FORMAT and content["iteration"] >= 0
    assert _temporaries(tmp_path) == []


def test_ctrl_c_while_the_checkpoint_is_written_keeps_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "fit.ckpt"
    ckpt.save(path, {"format": ckpt.FORMAT, "iteration": 3})

    def interrupted_dump(content, fh):
        fh.write('{"format": "mvreml-checkpoint", "iter')    # half of the new state...
        raise KeyboardInterrupt                             # ...then Ctrl-C

    monkeypatch.setattr(ckpt.json, "dump", interrupted_dump)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save(path, {"format": ckpt.FORMAT, "iteration": 4})
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"format": ckpt.FORMAT, "iteration": 3}
    assert _temporaries(tmp_path) == []


def test_an_interrupted_atomic_write_leaves_the_old_file_or_none(tmp_path):
    path = tmp_path / "varcomp.csv"
    with pytest.raises(KeyboardInterrupt):
        with _atomic.atomic_open(path) as fh:
            fh.write("component,estimate\n")
            raise KeyboardInterrupt
    assert not path.exists() and _temporaries(tmp_path) == []
    with _atomic.atomic_open(path, newline="") as fh:
        fh.write("a,b\n")
    with pytest.raises(KeyboardInterrupt):
        with _atomic.atomic_open(path) as fh:
            fh.write("half")
            raise KeyboardInterrupt
    assert path.read_text() == "a,b\n" and _temporaries(tmp_path) == []


def test_the_command_line_writes_its_tables_whole(tmp_path, monkeypatch):
    # Ctrl-C while the second table is written: the first is complete, the others absent, no
    # temporaries
    import pandas as pd

    from mvreml import cli
    from test_reml import seed_trial

    seed_trial().to_csv(tmp_path / "t.csv", index=False)
    model = ["--fixed", "cbind(HD, HT, GY) ~ trait", "--random", "~ diag(trait):Block + us(trait):RIL",
             "--residual", "~ units:us(trait)"]
    calls = []
    to_csv = pd.DataFrame.to_csv

    def interrupting(self, target=None, *a, **kw):
        calls.append(1)
        if len(calls) == 2:                 # half of the second table written, then Ctrl-C
            half = to_csv(self, None, *a, **kw)[:40]
            if hasattr(target, "write"):
                target.write(half)
            else:
                Path(target).write_text(half)
            raise KeyboardInterrupt
        return to_csv(self, target, *a, **kw)

    monkeypatch.setattr(pd.DataFrame, "to_csv", interrupting)
    out = tmp_path / "out"
    assert cli.main(["fit", str(tmp_path / "t.csv"), *model, "--quiet", "--out", str(out)]) == 130
    assert sorted(os.listdir(out)) == ["varcomp.csv"]
    assert len(pd.read_csv(out / "varcomp.csv", comment=None)) > 3
