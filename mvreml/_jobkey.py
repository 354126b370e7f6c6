"""Stable keys of fit jobs (:func:`mvreml.fit_many`): a hash of everything the fit depends on.

The key names a job's file in the store, so it must be the same in every process and every
run for the same inputs, and differ when any input differs: the data (values, index, column
names and dtypes, by ``pandas.util.hash_pandas_object``), the formulas or parsed model, the
relationship matrices and every option, plus mvreml's version. A job's ``name`` is a label,
not an input. Large objects shared by many jobs (the same DataFrame for all trait pairs) are
hashed once per run (memo by identity, checked by a weak reference so that a recycled id is
never mistaken for the old object).
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import weakref
from collections.abc import Mapping

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .errors import ArgumentError

#: bump when the meaning of a stored record changes (old stores are then refitted)
KEY_VERSION = 1


class KeyMaker:
    """Computes job keys, hashing each large object once (see module docstring)."""

    def __init__(self):
        self._memo: dict = {}

    def key(self, job: Mapping) -> str:
        from . import __version__

        h = hashlib.sha256()
        self._add(h, ("mvreml-job", __version__, KEY_VERSION), "version")
        for name in sorted(job):
            if name == "name":
                continue
            self._add(h, name, name)
            self._add(h, job[name], name)
        return h.hexdigest()[:32]

    # ------------------------------------------------------------------ digests
    def _big(self, h, obj, what: str, fn) -> None:
        """Digest of a large object, memoised by identity."""
        hit = self._memo.get(id(obj))
        if hit is not None and hit[0]() is obj:
            h.update(hit[1])
            return
        sub = hashlib.sha256()
        fn(sub)
        digest = sub.digest()
        try:
            self._memo[id(obj)] = (weakref.ref(obj), digest)
        except TypeError:          # not weak-referenceable: not memoised
            pass
        h.update(digest)

    def _add(self, h, obj, what: str) -> None:
        tag = type(obj).__name__.encode()
        h.update(b"<" + tag + b">")
        if obj is None or isinstance(obj, (bool, int, float, complex, str, bytes)):
            h.update(repr(obj).encode())
        elif isinstance(obj, np.generic):
            h.update(str(obj.dtype).encode() + repr(obj.item()).encode())
        elif isinstance(obj, os.PathLike):
            h.update(os.fspath(obj).encode())
        elif isinstance(obj, pd.DataFrame):
            self._big(h, obj, what, lambda s: _frame(s, obj))
        elif isinstance(obj, pd.Series):
            self._big(h, obj, what, lambda s: _frame(s, obj.to_frame(name=obj.name if obj.name is not None
                                                                         else "__series__")))
        elif isinstance(obj, np.ndarray):
            self._big(h, obj, what, lambda s: _array(s, obj))
        elif sp.issparse(obj):
            self._big(h, obj, what, lambda s: _sparse(s, obj))
        elif isinstance(obj, Mapping):
            h.update(str(len(obj)).encode())
            for k in sorted(obj, key=repr):
                self._add(h, k, what)
                self._add(h, obj[k], what)
        elif isinstance(obj, (list, tuple)):
            h.update(str(len(obj)).encode())
            for x in obj:
                self._add(h, x, what)
        elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            h.update(type(obj).__qualname__.encode())
            for f in dataclasses.fields(obj):
                self._add(h, f.name, what)
                self._add(h, getattr(obj, f.name), what)
        else:
            self._object(h, obj, what)

    def _object(self, h, obj, what: str) -> None:
        from .pedigree import Pedigree
        from .relmat import RelationshipMatrix, _PedigreeRelmat

        if isinstance(obj, Pedigree):
            self._big(h, obj, what, lambda s: [self._add(s, x, what) for x in
                                               ("Pedigree", obj.ids, obj.sire, obj.dam, obj.use_inbreeding)])
        elif isinstance(obj, _PedigreeRelmat):
            self._add(h, ("PedigreeRelmat", obj.name), what)
            self._add(h, obj.pedigree, what)
        elif isinstance(obj, RelationshipMatrix):
            self._big(h, obj, what, lambda s: [self._add(s, x, what) for x in
                                               ("Relmat", obj.kind, obj.name, obj.labels, obj._kinv,
                                                float(obj.logdet()), obj.diagonal())])
        else:
            raise ArgumentError(f"fit_many: cannot make a stable key from {what}= of type "
                                f"{type(obj).__module__}.{type(obj).__qualname__}; give it as a DataFrame, "
                                "array, number, string, Pedigree or mvreml.relmat matrix", argument=what)


def _array(h, a: np.ndarray) -> None:
    h.update(str(a.dtype).encode() + repr(a.shape).encode())
    if a.dtype == object:
        h.update(pd.util.hash_array(np.asarray(a, object).ravel().astype(str).astype(object)).tobytes())
    else:
        h.update(np.ascontiguousarray(a).tobytes())


def _sparse(h, m) -> None:
    m = sp.csc_array(m)
    m.sum_duplicates()
    m.sort_indices()
    h.update(repr(m.shape).encode())
    for part in (m.data, m.indices.astype(np.int64), m.indptr.astype(np.int64)):
        _array(h, np.asarray(part))


def _frame(h, df: pd.DataFrame) -> None:
    h.update(repr([str(c) for c in df.columns]).encode())
    h.update(repr([str(t) for t in df.dtypes]).encode())
    h.update(repr(df.shape).encode())
    h.update(pd.util.hash_pandas_object(df, index=True).to_numpy().tobytes())
