"""Checkpoint and resume of the AI-REML iteration (``fit(..., checkpoint=, resume=)``).

After every iterate the state needed to continue exactly is written to a JSON file: theta,
the iteration count and history, and everything held (box bounds, identifiability holds,
matrices held at reduced rank, release counts, messages), with a signature of the data and
the model. The write is atomic (a temporary file in the same directory, then os.replace),
so a fit killed at any moment leaves the last complete iterate: it loses at most one.
Resuming re-evaluates log L at the saved theta and continues the loop where it stopped;
evaluations are deterministic, so the resumed fit follows the uninterrupted one exactly.
Floats are written with Python's repr, which reads back to the same double.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile

import numpy as np

from .boundary import Reduced
from .errors import CheckpointError

FORMAT = "mvreml-checkpoint"
VERSION = 1


def signature(model, fixed: np.ndarray, theta0: np.ndarray) -> str:
    """Hash of what the iteration depends on: y and its layout, the weights, the mixed-model
    design W = [X Z], every K^-1, the variance structures, and which parameters are held by
    the user at which values."""
    d = model.design
    h = hashlib.sha1()

    def add(*parts):
        for part in parts:
            if isinstance(part, np.ndarray):
                h.update(str(part.dtype).encode())
                h.update(np.ascontiguousarray(part).tobytes())
            else:
                h.update(repr(part).encode())
            h.update(b"|")

    add(d.signature(), list(d.traits), list(d.fixef_names))
    W = model.pattern.W.tocsc()
    add(W.shape, W.indptr, W.indices, W.data)
    for rd in d.random:
        K = rd.kinv.tocsc()
        add(rd.name, rd.q, rd.t, K.shape, K.indptr, K.indices, K.data)
    for b in model.blocks:
        add(b.name, b.structure.name, tuple(b.structure.traits), b.start, b.stop)
    add(np.asarray(fixed, bool), np.asarray(theta0, float)[np.asarray(fixed, bool)])
    return h.hexdigest()


def _floats(a) -> list:
    return [float(x) for x in np.asarray(a, float).ravel()]


def _row(row: dict) -> dict:
    return {k: (float(v) if isinstance(v, (float, np.floating)) else int(v) if isinstance(v, (int, np.integer))
                else v) for k, v in row.items()}


def state(run, theta, iteration: int, history: list, where, sig: str, finished: bool = False) -> dict:
    """The iteration state after `iteration` iterates, as plain JSON-able values."""
    holds = run.holds
    return dict(
        format=FORMAT, version=VERSION, signature=sig, iteration=int(iteration), finished=bool(finished),
        theta=_floats(theta), history=[_row(r) for r in history], where=where,
        messages=list(run.messages), warnings=[list(w) for w in run.warnings],
        path=[_floats(p) for p in run.path],
        holds=dict(
            box=[bool(x) for x in holds.box], side=_floats(holds.side), ident=[bool(x) for x in holds.ident],
            ident_el={str(k): sorted(int(i) for i in v) for k, v in holds.ident_el.items()},
            texts=[[list(k), v] for k, v in holds.texts.items()],
            ident_released=int(holds.ident_released), released=[int(x) for x in holds.released],
            reduced={str(k): dict(d=_floats(R.d), perm=[int(i) for i in R.perm], L=np.asarray(R.L).tolist(),
                                  t=int(R.L.shape[0]), r=int(R.L.shape[1]), floor=float(R.floor))
                     for k, R in holds.reduced.items()},
            block_released={str(k): int(v) for k, v in holds.block_released.items()},
            ident_blocks=sorted(int(b) for b in holds.ident_blocks)))


def save(path, content: dict) -> None:
    """Write a checkpoint atomically: a temporary file beside `path`, then os.replace."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(content, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def load(path, sig: str) -> dict:
    """Read a checkpoint and check that it belongs to this model and data.

    Raises
    ------
    CheckpointError
        The file is missing, is not an mvreml checkpoint, or was written for another model,
        other data or other held (``fix=``) values.
    """
    path = os.fspath(path)
    try:
        with open(path) as fh:
            content = json.load(fh)
    except FileNotFoundError:
        raise CheckpointError(f"resume={path!r}: no such checkpoint file") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"resume={path!r} cannot be read as an mvreml checkpoint ({exc})") from None
    if not isinstance(content, dict) or content.get("format") != FORMAT:
        raise CheckpointError(f"resume={path!r} is not an mvreml checkpoint")
    if content.get("version") != VERSION:
        raise CheckpointError(f"resume={path!r} is a version {content.get('version')} checkpoint; this mvreml "
                              f"reads version {VERSION}")
    if content.get("signature") != sig:
        raise CheckpointError(f"resume={path!r} was written by a fit of another model or other data (the "
                              "response, weights, fixed and random design, relationship matrices, variance "
                              "structures and fix= values must all be those of the interrupted fit); "
                              "refusing to continue from it")
    return content


def restore(run, content: dict):
    """Put a loaded checkpoint back into an Iteration; returns (theta, iteration, history, where)."""
    n = len(run.scale)
    theta = np.array(content["theta"], float)
    hd = content["holds"]
    if theta.shape != (n,) or len(hd["box"]) != n:
        raise CheckpointError(f"checkpoint has {theta.size} parameters, the model {n}")
    holds = run.holds
    holds.box = np.array(hd["box"], bool)
    holds.side = np.array(hd["side"], float)
    holds.ident = np.array(hd["ident"], bool)
    holds.ident_el = {int(k): set(v) for k, v in hd["ident_el"].items()}
    holds.texts = {tuple(k): v for k, v in hd["texts"]}
    holds.ident_released = int(hd["ident_released"])
    holds.released = np.array(hd["released"], int)
    holds.reduced = {int(k): Reduced(d=np.array(R["d"], float), perm=np.array(R["perm"], int),
                                     L=np.array(R["L"], float).reshape(R["t"], R["r"]), floor=float(R["floor"]))
                     for k, R in hd["reduced"].items()}
    holds.block_released = {int(k): int(v) for k, v in hd["block_released"].items()}
    holds.ident_blocks = set(int(b) for b in hd["ident_blocks"])
    run.messages[:] = list(content["messages"])
    run.path[:] = [np.array(p, float) for p in content.get("path", [])]
    run.warnings[:] = [tuple(w) for w in content["warnings"]]
    history = [dict(r) for r in content["history"]]
    return theta, int(content["iteration"]), history, content["where"]
