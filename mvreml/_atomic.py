"""Files written whole or not at all: a temporary file beside the target, then os.replace.

An interrupted write (Ctrl-C, a kill, a full disk) leaves the previous file, or none, and
no temporary behind; os.replace is atomic on POSIX and Windows within one file system.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager


@contextmanager
def atomic_open(path, mode: str = "w", *, fsync: bool = False, **kwargs):
    """Open a temporary file beside ``path`` for writing; on a clean exit it replaces ``path``.

    Parameters
    ----------
    path : str or path
    mode : str
        "w" (text) or "wb".
    fsync : bool
        Flush to disk before the rename (for files that must survive a power cut).
    **kwargs
        Passed to ``open`` (``newline=""`` for csv, ``encoding=``).
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:               # KeyboardInterrupt included: leave no temporary behind
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
