"""Many fits at once: :func:`fit_many`, serially or on dask.distributed, resumable.

Each job is a dict of :func:`mvreml.fit` arguments. With a ``store`` (a directory), every
finished fit is written there at once, atomically, as one JSON file named by a hash of the
job's inputs (:mod:`mvreml._jobkey`): a successful fit as its :meth:`Result.to_json` document
(readable with :meth:`Result.from_json`) with a ``job`` entry added, a failed one as its error
(type and message). A rerun reads what is there and fits only the rest, so a run that is
killed loses at most the fits that were running.

Fits run on dask.distributed when it is installed (``pip install mvreml[dask]``): on a
LocalCluster of processes made for the call (one thread and one BLAS thread per worker), or
on any ``distributed.Client`` given (a cluster made with dask-jobqueue for SLURM / PBS, say).
Without dask, or with ``client="serial"``, they run one after another in this process.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import time
import warnings
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from . import checkpoint
from ._jobkey import KeyMaker
from .errors import ArgumentError, MvremlError
from .results import Result

__all__ = ["fit_many", "local_client", "Fits", "FitRecord"]

log = logging.getLogger("mvreml")

#: arguments of mvreml.fit a job may give ("name" is a label for the summary)
FIT_ARGUMENTS = ("fixed", "random", "residual", "data", "relmat", "init", "fix", "weights", "maxiter",
                 "verbose", "ordering", "tol", "missing_animals", "checkpoint", "resume", "threads")
_ERROR_FORMAT = "mvreml-fit-error"
_BLAS_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclass
class FitRecord:
    """One job of :func:`fit_many`.

    Attributes
    ----------
    index : int
        Position of the job in ``jobs``.
    name : str or None
        The job's ``name`` entry, if any.
    key : str or None
        Hash of the job's inputs (its file in the store is ``<key>.json``); None if the job
        could not be read (then it is not stored).
    status : {"ok", "failed"}
    source : {"fit", "store"}
        Fitted in this call, or read from the store.
    result : Result or None
    error : dict or None
        ``{"type": ..., "message": ...}`` of a failed fit.
    warnings : list of str
        Warnings the fit gave ("Category: message").
    seconds : float
        Wall time of the fit (in the process that ran it).
    """

    index: int
    name: str | None
    key: str | None
    status: str
    source: str
    result: Result | None = None
    error: dict | None = None
    warnings: list = field(default_factory=list)
    seconds: float = 0.0


class Fits(Sequence):
    """The records of :func:`fit_many`, in job order (a sequence of :class:`FitRecord`)."""

    def __init__(self, records: list):
        self.records = list(records)

    def __getitem__(self, i):
        return self.records[i]

    def __len__(self) -> int:
        return len(self.records)

    @property
    def results(self) -> list:
        """Result per job (None for a failed one)."""
        return [r.result for r in self.records]

    @property
    def failed(self) -> list:
        """The records of the jobs that failed."""
        return [r for r in self.records if r.status != "ok"]

    @property
    def n_fitted(self) -> int:
        """Jobs fitted in this call (successfully or not)."""
        return sum(r.source == "fit" for r in self.records)

    @property
    def n_from_store(self) -> int:
        """Jobs read from the store instead of being fitted."""
        return sum(r.source == "store" for r in self.records)

    def summary(self) -> pd.DataFrame:
        """One row per job: name, status, source, loglik, converged, iterations, seconds,
        warnings (count), error_type, error, key."""
        rows = []
        for r in self.records:
            res = r.result
            rows.append(dict(name=r.name, status=r.status, source=r.source,
                             loglik=res.loglik if res is not None else float("nan"),
                             converged=res.converged if res is not None else None,
                             iterations=res.iterations if res is not None else None,
                             seconds=r.seconds, warnings=len(r.warnings),
                             error_type=(r.error or {}).get("type"), error=(r.error or {}).get("message"),
                             key=r.key))
        return pd.DataFrame(rows)

    def __repr__(self) -> str:
        return (f"<mvreml.Fits: {len(self)} jobs, {len(self) - len(self.failed)} ok, {len(self.failed)} failed, "
                f"{self.n_from_store} from the store>")


# ---------------------------------------------------------------------- one fit (any process)
def _call_fit(job: Mapping) -> Result:
    from . import api
    from .formula import FixedSpec

    kw = {k: v for k, v in job.items() if k != "name"}
    fixed = kw.pop("fixed")
    if isinstance(fixed, FixedSpec):            # a parsed sub-model (mvreml.pairwise)
        return api.fit_specs(fixed, kw.pop("random"), kw.pop("residual"), **kw)
    return api.fit(fixed, **kw)


def run_job(job: Mapping) -> dict:
    """Fit one job and return its outcome (what a worker sends back): status, the Result or
    the error, the warnings and the wall time.

    Every exception of the fit is caught and returned as ``{"type", "message"}``: a job that
    fails must not stop the others. Warnings are collected as text.
    """
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            # the Result itself: pickled by dask (much faster than JSON); JSON only for the store
            out = {"status": "ok", "result": _call_fit(job), "error": None}
        except Exception as exc:          # noqa: BLE001 -- recorded, the run goes on
            out = {"status": "failed", "result": None,
                   "error": {"type": type(exc).__name__, "message": str(exc)}}
    texts = []
    for w in caught:
        text = f"{w.category.__name__}: {w.message}"
        if text not in texts:
            texts.append(text)
    out.update(warnings=texts, seconds=time.perf_counter() - t0)
    return out


# ---------------------------------------------------------------------- the store
def _describe(job: Mapping) -> dict:
    """A readable account of a job's inputs for its stored record."""
    out = {}
    for k, v in job.items():
        if v is None or isinstance(v, (bool, int, float, str)):
            out[k] = v
        elif isinstance(v, pd.DataFrame):
            out[k] = f"DataFrame with {v.shape[0]} rows x {v.shape[1]} columns"
        elif k == "fixed" and hasattr(v, "response"):
            out[k] = f"sub-model on {', '.join(v.response.traits)}"
        elif isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v):
            out[k] = list(v)
        else:
            out[k] = type(v).__name__
    return out


def _write(store: Path, key: str, name, job: Mapping, out: dict) -> None:
    meta = dict(key=key, name=name, status=out["status"], seconds=float(out["seconds"]),
                warnings=list(out["warnings"]), error=out["error"], inputs=_describe(job))
    if out["status"] == "ok":
        doc = json.loads(out["result"].to_json())
    else:
        doc = {"format": _ERROR_FORMAT, "version": 1}
    doc["job"] = meta
    checkpoint.save(store / f"{key}.json", doc)


def _read(store: Path, key: str, index: int, name) -> FitRecord | None:
    """The stored record of a job, or None if there is none (or it cannot be read)."""
    path = store / f"{key}.json"
    if not path.exists():
        return None
    try:
        text = path.read_text()
        doc = json.loads(text)
        meta = doc["job"]
        if doc.get("format") == _ERROR_FORMAT:
            return FitRecord(index, name, key, "failed", "store", None, dict(meta["error"]),
                             list(meta.get("warnings", [])), float(meta.get("seconds", 0.0)))
        return FitRecord(index, name, key, "ok", "store", Result.from_json(text), None,
                         list(meta.get("warnings", [])), float(meta.get("seconds", 0.0)))
    except (OSError, ValueError, KeyError, TypeError, MvremlError) as exc:
        log.warning("fit_many: %s cannot be read (%s); fitting that job again", path, exc)
        return None


def _record(index, name, key, out: dict) -> FitRecord:
    return FitRecord(index, name, key, out["status"], "fit", out["result"], out["error"], list(out["warnings"]),
                     float(out["seconds"]))


# ---------------------------------------------------------------------- runners
def _distributed():
    """The dask.distributed module, or None if it is not installed."""
    try:
        import distributed
    except ImportError:
        return None
    return distributed


def local_client(n_workers: int | None = None, **kwargs):
    """A ``distributed.Client`` on a LocalCluster of processes, one thread and one BLAS thread
    each (OPENBLAS/OMP/MKL_NUM_THREADS=1 in the workers: n fits in parallel, not n x BLAS
    threads fighting for the cores).

    Parameters
    ----------
    n_workers : int, optional
        Worker processes (default: the number of cores).
    **kwargs
        Passed on to ``distributed.LocalCluster``.

    Raises
    ------
    ArgumentError
        dask.distributed is not installed.
    """
    distributed = _distributed()
    if distributed is None:
        raise ArgumentError("local_client() needs dask.distributed: pip install 'mvreml[dask]'",
                            argument="client")
    options = dict(n_workers=n_workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
                   dashboard_address=":0", env=dict(_BLAS_ENV))
    options.update(kwargs)
    return distributed.Client(distributed.LocalCluster(**options))


class _Serial:
    """Runs each job at once, in this process."""

    def __init__(self):
        self.done = []

    def room(self) -> bool:
        return not self.done

    def busy(self) -> bool:
        return bool(self.done)

    def submit(self, entry) -> None:
        self.done.append((entry, run_job(entry[2])))

    def wait(self) -> list:
        done, self.done = self.done, []
        return done

    def close(self) -> None:
        pass


class _Dask:
    """Submits jobs to a dask.distributed client, a bounded number in flight.

    The data and relationship matrices are scattered to the cluster once and shared by all the
    jobs that use them (released when none in flight needs them any more)."""

    def __init__(self, client, own: bool):
        distributed = _distributed()
        self.client, self.own = client, own
        self.ac = distributed.as_completed()
        self.meta: dict = {}
        self.shared: dict = {}          # id(obj) -> [obj, future, jobs in flight]
        threads = sum(client.nthreads().values()) or 1
        self.window = 2 * threads

    def room(self) -> bool:
        return len(self.meta) < self.window

    def busy(self) -> bool:
        return bool(self.meta)

    def _share(self, obj):
        hit = self.shared.get(id(obj))
        if hit is None or hit[0] is not obj:
            hit = self.shared[id(obj)] = [obj, self.client.scatter([obj], hash=False)[0], 0]
        hit[2] += 1
        return hit[1]

    def submit(self, entry) -> None:
        job = dict(entry[2])
        held = [id(job[k]) for k in ("data", "relmat") if job.get(k) is not None]
        for k in ("data", "relmat"):
            if job.get(k) is not None:
                job[k] = self._share(job[k])
        # a worker holds one core: its fit runs on one BLAS thread unless the job says otherwise
        # (the engine would otherwise give a large fit every core of the machine)
        job.setdefault("threads", 1)
        future = self.client.submit(run_job, job, pure=False)
        self.meta[future] = (entry, held)
        self.ac.add(future)

    def wait(self) -> list:
        futures = [next(self.ac)] + list(self.ac.next_batch(block=False))
        done = []
        for fut in futures:
            entry, held = self.meta.pop(fut)
            try:
                out = fut.result()
            except Exception as exc:      # noqa: BLE001 -- a lost worker, an unpicklable job
                out = {"status": "failed", "result": None, "warnings": [], "seconds": 0.0,
                       "error": {"type": type(exc).__name__, "message": str(exc)}}
            fut.release()
            for i in held:
                hit = self.shared[i]
                hit[2] -= 1
                if hit[2] == 0:
                    hit[1].release()
                    del self.shared[i]
            done.append((entry, out))
        return done

    def close(self) -> None:
        for fut in list(self.meta):
            fut.cancel()
        if self.own:                    # made here: a LocalCluster, or a client of an address
            cluster = self.client.cluster
            self.client.close()
            if cluster is not None:
                cluster.close()


class _Progress:
    """A count of finished jobs on stderr: rewritten in place on a terminal, else a line every
    few seconds and at the end."""

    def __init__(self, total, show: bool):
        self.total, self.show = total, show
        self.n = self.fitted = self.stored = self.failed = 0
        self.last = 0.0
        self.tty = show and hasattr(sys.stderr, "isatty") and sys.stderr.isatty()

    def add(self, rec: FitRecord) -> None:
        self.n += 1
        self.fitted += rec.source == "fit"
        self.stored += rec.source == "store"
        self.failed += rec.status != "ok"
        log.debug("fit_many: job %d (%s) %s from %s", rec.index, rec.name, rec.status, rec.source)
        now = time.monotonic()
        if self.show and (self.tty or now - self.last >= 5.0):
            self.last = now
            self._print(end="" if self.tty else "\n")

    def _print(self, end: str) -> None:
        total = "" if self.total is None else f"/{self.total}"
        text = (f"mvreml.fit_many: {self.n}{total} done ({self.fitted} fitted, {self.stored} from the store, "
                f"{self.failed} failed)")
        print(("\r" if self.tty else "") + text, end=end, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.show:
            self._print(end="\n")
        log.info("fit_many: %d jobs: %d fitted, %d from the store, %d failed", self.n, self.fitted,
                 self.stored, self.failed)


# ---------------------------------------------------------------------- fit_many
def fit_many(jobs, client=None, store=None, *, n_workers: int | None = None, retry_failed: bool = False,
             progress: bool = True) -> Fits:
    """Fit many models, in parallel on dask.distributed when it is installed, resumably.

    Parameters
    ----------
    jobs : iterable of dict
        Each a dict of :func:`mvreml.fit` arguments (``fixed``, ``random``, ``residual``, ``data``,
        ``relmat``, ``init``, ``maxiter``, ...) and optionally ``name`` (a label for the
        summary). A generator is consumed lazily (a bounded number of fits in flight).
    client : None, "serial", str or distributed.Client
        None: a LocalCluster of processes made for this call (one BLAS thread each; see
        :func:`local_client`) when dask.distributed is installed and there are at least two
        fits to run, else serially. "serial": in this process, one after another. A
        scheduler address ("tcp://host:8786") or a Client: that cluster (left running; workers
        with one thread each, as processes, suit fits best).
    store : str or path, optional
        Directory of results, one JSON file per fit named ``<key>.json`` by a hash of the job's
        inputs, written as soon as each fit finishes. Jobs found there are not fitted again.
    n_workers : int, optional
        Worker processes of the LocalCluster made when ``client`` is None.
    retry_failed : bool
        Fit again the jobs whose stored record is a failure (by default they are reported
        from the store).
    progress : bool
        Print a count of finished jobs on stderr.

    Returns
    -------
    Fits
        One :class:`FitRecord` per job, in job order; ``.summary()`` lists them.

    Raises
    ------
    ArgumentError
        ``client`` of the wrong kind (or an address without dask installed), or ``store``
        that is not a directory. A job that is
        wrong (not a dict, an unknown argument, a bad option, data or formula) does not
        raise: it fails alone, with its error in its record (and in the store when its
        inputs could be hashed).
    """
    distributed = _distributed()
    serial = isinstance(client, str) and client == "serial"
    address = isinstance(client, str) and not serial
    if not (client is None or isinstance(client, str) or hasattr(client, "submit")):
        raise ArgumentError(f"client= takes None, 'serial', a scheduler address or a dask.distributed "
                            f"Client, not {type(client).__name__}", argument="client")
    if address and distributed is None:
        raise ArgumentError(f"client={client!r} names a dask scheduler, but dask.distributed is not installed: "
                            "pip install 'mvreml[dask]'", argument="client")
    folder = None
    if store is not None:
        folder = Path(store)
        if folder.exists() and not folder.is_dir():
            raise ArgumentError(f"store={os.fspath(store)!r} is a file; give a directory", argument="store")
        folder.mkdir(parents=True, exist_ok=True)
    total = len(jobs) if hasattr(jobs, "__len__") else None
    bar = _Progress(total, progress)
    keys = KeyMaker()
    records: dict = {}
    waiting: dict = {}                  # key -> (index, name) of later jobs with the same inputs
    pending: deque = deque()            # (index, key, job, name) to submit
    runner = None

    def finish(rec: FitRecord) -> None:
        records[rec.index] = rec
        bar.add(rec)

    def prepare(index: int, job) -> None:
        name = job.get("name") if isinstance(job, Mapping) else None
        try:
            if not isinstance(job, Mapping):
                raise ArgumentError(f"job {index} is a {type(job).__name__}, not a dict of fit() arguments",
                                    argument="jobs")
            unknown = [k for k in job if k not in FIT_ARGUMENTS and k != "name"]
            if unknown:
                raise ArgumentError(f"job {index} has arguments {unknown} that mvreml.fit does not take "
                                    f"(it takes {', '.join(FIT_ARGUMENTS)} and a label 'name')",
                                    argument=unknown[0])
            for need in ("fixed", "data"):
                if need not in job:
                    raise ArgumentError(f"job {index} has no {need!r}", argument=need)
            key = keys.key(job)
        except ArgumentError as exc:
            finish(FitRecord(index, name, None, "failed", "fit", None,
                             {"type": type(exc).__name__, "message": str(exc)}))
            return
        if key in waiting:
            waiting[key].append((index, name))
            return
        if folder is not None:
            rec = _read(folder, key, index, name)
            if rec is not None and not (retry_failed and rec.status != "ok"):
                finish(rec)
                return
        waiting[key] = []
        pending.append((index, key, job, name))

    def collect(done) -> None:
        for (index, key, job, name), out in done:
            if folder is not None:
                _write(folder, key, name, job, out)
            finish(_record(index, name, key, out))
            for other, other_name in waiting.pop(key, []):
                finish(_record(other, other_name, key, out))

    it = iter(enumerate(jobs))
    exhausted = False
    try:
        while True:
            while not exhausted and (len(pending) < 2 if runner is None else runner.room() and not pending):
                try:
                    index, job = next(it)
                except StopIteration:
                    exhausted = True
                    break
                prepare(index, job)
            if runner is None and pending:
                if serial or (client is None and (distributed is None or len(pending) < 2)):
                    runner = _Serial()
                elif client is None:
                    cpus = os.cpu_count() or 1
                    runner = _Dask(local_client(n_workers or min(cpus, total or cpus)), own=True)
                elif address:
                    runner = _Dask(distributed.Client(client), own=True)
                else:
                    runner = _Dask(client, own=False)
            while pending and runner.room():
                runner.submit(pending.popleft())
            if runner is not None and runner.busy():
                collect(runner.wait())
            elif exhausted and not pending:
                break
    finally:
        if runner is not None:
            runner.close()
        bar.close()
    return Fits([records[i] for i in sorted(records)])
