"""MPI plumbing of a distributed backend: rank 0 drives, the other ranks serve, none hangs.

Rank 0 runs the whole fit in Python. The other ranks sit in :func:`serve`, a loop that
receives one small command at a time from rank 0 (a tuple, sent point to point) and joins the
collective step it names (a MUMPS analysis, factorization, solve or selected inversion of
an object created by an earlier command). Large arrays go inside the step: by ``Scatterv``,
or, for each rank's rows of the design at the analysis, point to point.

Ending, whatever happens:

- rank 0 leaves :func:`session` (normally or by an exception) by sending ``stop``: the
  serving ranks return and the fit raises on rank 0 only;
- an exception inside a serving rank, or an uncaught one on any rank while a session is
  open, prints ``mvreml: rank k: ...`` and calls ``MPI_Abort`` (every rank ends);
- a rank that dies (killed, out of memory) makes the MPI runtime end the others; rank 0
  first says, from a watcher thread, which step it was in (Open MPI sends SIGTERM before
  SIGKILL; the main thread is then inside MUMPS, so the message comes from the thread
  that reads the signal's wakeup pipe);
- ``MVREML_MPI_TIMEOUT`` (seconds) bounds every collective step: rank 0 aborts the run
  with a message when one lasts longer (a rank hung rather than died).
"""
from __future__ import annotations

import importlib
import itertools
import os
import select
import signal
import sys
import threading
import time
import traceback
from contextlib import contextmanager

from ..errors import ArgumentError

__all__ = ["world", "serve", "session", "collective", "new_object", "call"]

#: classes the serving ranks may be asked to create: name -> class (filled by the backends)
FACTORIES: dict = {}

_state = {"depth": 0, "phase": None, "since": 0.0}
_live: dict = {}          # rank 0: key -> object alive on every rank
_keys = itertools.count(1)


def world():
    """MPI.COMM_WORLD (mpi4py), or an error saying how to install it."""
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ArgumentError("backend='mumps' needs MPI for Python and MUMPS: install the extra "
                            "(pip install 'mvreml[mpi]' after apt-get install libmumps-dev libopenmpi-dev "
                            f"openmpi-bin, or `make mpi`) ({exc})", argument="backend") from None
    return MPI.COMM_WORLD


def _say(text: str) -> None:
    try:
        sys.stderr.write(text.rstrip("\n") + "\n")
        sys.stderr.flush()
    except Exception:       # stderr closed: nothing else to tell
        pass


def abort(comm, text: str, code: int = 1) -> None:
    """Print `text` for this rank and end every rank of `comm`."""
    _say(f"mvreml: rank {comm.rank}: {text}")
    try:
        comm.Abort(code)
    finally:
        os._exit(code)


_TAG = 7717            # the tag of rank 0's commands
_POLL_MAX = 0.01       # s: the longest a serving rank sleeps between looks for a command


def _send(comm, msg) -> None:
    """Rank 0: one command to every other rank (point to point, so that they can wait idle)."""
    for r in range(1, comm.size):
        comm.send(msg, dest=r, tag=_TAG)


def _receive(comm):
    """A serving rank: the next command of rank 0. It polls with growing sleeps instead of
    blocking in MPI, whose wait spins a core for the whole time rank 0 computes (the score,
    the AI matrix) -- a core rank 0 may need when ranks share a machine."""
    delay = 1e-4
    while not comm.iprobe(source=0, tag=_TAG):
        time.sleep(delay)
        delay = min(2 * delay, _POLL_MAX)
    return comm.recv(source=0, tag=_TAG)


def _factory(kind: str):
    """FACTORIES[kind], importing mvreml.backends.<kind> (which registers it) when needed."""
    if kind not in FACTORIES:
        importlib.import_module(f"{__package__}.{kind}")
    return FACTORIES[kind]


# ----------------------------------------------------------------- serving ranks
def serve(comm) -> None:
    """The loop of a rank other than 0: join rank 0's collective steps until it says stop."""
    objects = {}
    hook = _install_excepthook(comm)
    try:
        while True:
            msg = _receive(comm)
            kind = msg[0]
            if kind == "stop":
                break
            try:
                if kind == "new":
                    objects[msg[1]] = _factory(msg[2])(comm)
                elif kind == "call":
                    getattr(objects[msg[1]], msg[2])(None, *msg[3])
                elif kind == "del":
                    objects.pop(msg[1]).close()
                else:
                    raise RuntimeError(f"unknown command {kind!r} from rank 0")
            except Exception as exc:
                # rank 0 waits inside the same collective step: only an abort ends it
                abort(comm, f"{kind} {msg[2] if len(msg) > 2 else ''} failed: "
                            f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
    finally:
        # rank 0 deletes every object before `stop`; anything left here is after an abort
        for obj in objects.values():
            getattr(obj, "abandon", lambda: None)()
        sys.excepthook = hook


# ----------------------------------------------------------------- rank 0
def new_object(comm, kind: str):
    """Create a FACTORIES[kind] object on every rank; returns (key, rank 0's object)."""
    key = next(_keys)
    if comm.size > 1:
        _send(comm, ("new", key, kind))
    obj = _factory(kind)(comm)
    _live[key] = obj
    return key, obj


def call(comm, key: int, obj, method: str, data, *small):
    """Run the collective `method` of object `key` on every rank; rank 0 passes `data`.

    Whatever fails on rank 0 after the command went out leaves the other ranks inside the
    step: the run is aborted with the error rather than left hanging.
    """
    if comm.size > 1:
        _send(comm, ("call", key, method, small))
    _state["phase"], _state["since"] = method, time.monotonic()
    try:
        return getattr(obj, method)(data, *small)
    except Exception as exc:
        if comm.size > 1:
            abort(comm, f"{method} failed on rank 0 while the other ranks were inside it: "
                        f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
        raise
    finally:
        _state["phase"] = None


def delete(comm, key: int, obj) -> None:
    """Release object `key` on every rank (nothing to send once the session has stopped)."""
    if key not in _live:
        return
    del _live[key]
    if comm.size > 1:
        _send(comm, ("del", key))
    obj.close()


@contextmanager
def session(comm):
    """Rank 0's side of a run with serving ranks (reentrant): ``stop`` is sent on leaving."""
    _state["depth"] += 1
    guard = None
    if _state["depth"] == 1 and comm.size > 1:
        guard = _Guard(comm)
    try:
        yield
    finally:
        _state["depth"] -= 1
        if _state["depth"] == 0:
            for key, obj in list(_live.items()):     # collective: while the ranks still serve
                delete(comm, key, obj)
            if comm.size > 1:
                _send(comm, ("stop",))
        if guard is not None:
            guard.close()


def collective(fn):
    """Call `fn()` on rank 0 with the other ranks serving it; they return None.

    Every rank calls this (a script run by ``mpirun -n N python script.py`` calls
    ``mvreml.fit(..., backend="mumps")`` on all of them).
    """
    comm = world()
    if comm.rank != 0:
        serve(comm)
        return None
    with session(comm):
        return fn()


def active() -> bool:
    """True inside rank 0's session."""
    return _state["depth"] > 0


# ----------------------------------------------------------------- guards
def _install_excepthook(comm):
    previous = sys.excepthook

    def hook(kind, value, tb):
        previous(kind, value, tb)
        if comm.size > 1:
            abort(comm, f"uncaught {kind.__name__}: ending every rank")
    sys.excepthook = hook
    return previous


def _timeout() -> float | None:
    raw = os.environ.get("MVREML_MPI_TIMEOUT", "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ArgumentError(f"MVREML_MPI_TIMEOUT={raw!r} is not a number of seconds",
                            argument="MVREML_MPI_TIMEOUT") from None
    return value if value > 0 else None


class _Guard:
    """Rank 0's watcher: a message before the runtime kills it, and the step timeout."""

    def __init__(self, comm):
        self.comm = comm
        self.timeout = _timeout()
        self.hook = _install_excepthook(comm)
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.write_fd, False)
        self.old = {}
        self.old_fd = None
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGHUP):
                self.old[sig] = signal.signal(sig, _noop)
            self.old_fd = signal.set_wakeup_fd(self.write_fd, warn_on_full_buffer=False)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._watch, name="mvreml-mpi-guard", daemon=True)
        self.thread.start()

    def _watch(self):
        while not self.done.is_set():
            ready, _, _ = select.select([self.read_fd], [], [], 0.5)
            if self.done.is_set():
                return
            phase = _state["phase"]
            if ready:
                sig = os.read(self.read_fd, 1)
                name = signal.Signals(sig[0]).name if sig else "a signal"
                where = f"inside the MUMPS step {phase!r}" if phase else "between MUMPS steps"
                _say(f"mvreml: rank 0: the MPI runtime is ending this run ({name}) {where}: another rank has "
                     "ended (killed, out of memory, or an error: see the MPI runtime's message)")
                os._exit(1)
            if self.timeout and phase and time.monotonic() - _state["since"] > self.timeout:
                abort(self.comm, f"the MUMPS step {phase!r} has run {self.timeout:g} s "
                                 "(MVREML_MPI_TIMEOUT): a rank has hung or died; ending every rank")

    def close(self):
        self.done.set()
        self.thread.join(timeout=2.0)
        if self.old_fd is not None:
            signal.set_wakeup_fd(self.old_fd)
            for sig, handler in self.old.items():
                signal.signal(sig, handler)
        sys.excepthook = self.hook
        os.close(self.read_fd)
        os.close(self.write_fd)


def _noop(signum, frame):
    """A Python-level handler, so that the signal reaches the wakeup pipe; the watcher acts."""
