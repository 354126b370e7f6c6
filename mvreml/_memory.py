"""Memory this process may still use, and what it uses: /proc and the cgroup, no psutil.

``available_bytes()`` is the smaller of the kernel's MemAvailable (/proc/meminfo: free
memory plus what the page cache can give back without swapping) and the room left under
the cgroup's limit (cgroup v2 ``memory.max`` - ``memory.current``, or v1
``memory.limit_in_bytes`` - ``memory.usage_in_bytes``), because a container is killed at
its cgroup limit whatever the host has free. None when neither can be read (not Linux).
"""
from __future__ import annotations

import os
import resource
import sys

_MEMINFO = "/proc/meminfo"
_CGROUP_ROOT = "/sys/fs/cgroup"
#: a cgroup "limit" at or above this is no limit (v1 writes 2^63 rounded to a page)
_NO_LIMIT = 1 << 60


def _read_int(path: str) -> int | None:
    try:
        with open(path) as fh:
            text = fh.read().strip()
    except OSError:
        return None
    if text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def meminfo_available() -> int | None:
    """MemAvailable of /proc/meminfo in bytes (None if unreadable)."""
    try:
        with open(_MEMINFO) as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_dirs() -> list[tuple[str, str, str]]:
    """(directory, limit file, usage file) candidates of this process's memory cgroup."""
    out = []
    paths = {"v2": "/", "v1": "/"}
    try:
        with open("/proc/self/cgroup") as fh:
            for line in fh:
                parts = line.rstrip("\n").split(":", 2)
                if len(parts) != 3:
                    continue
                if parts[0] == "0" and parts[1] == "":
                    paths["v2"] = parts[2]
                elif "memory" in parts[1].split(","):
                    paths["v1"] = parts[2]
    except OSError:
        pass
    # inside a container the cgroup namespace usually mounts the process's own group at
    # the root, so the root is tried after the path named in /proc/self/cgroup
    for sub in dict.fromkeys([paths["v2"].lstrip("/"), ""]):
        out.append((os.path.join(_CGROUP_ROOT, sub), "memory.max", "memory.current"))
    v1 = os.path.join(_CGROUP_ROOT, "memory")
    for sub in dict.fromkeys([paths["v1"].lstrip("/"), ""]):
        out.append((os.path.join(v1, sub), "memory.limit_in_bytes", "memory.usage_in_bytes"))
    return out


def cgroup_room() -> tuple[int | None, int | None]:
    """(limit, limit - usage) of the memory cgroup in bytes; (None, None) without a limit."""
    for folder, limit_file, usage_file in _cgroup_dirs():
        limit = _read_int(os.path.join(folder, limit_file))
        if limit is None or limit >= _NO_LIMIT:
            continue
        usage = _read_int(os.path.join(folder, usage_file)) or 0
        return limit, max(limit - usage, 0)
    return None, None


def available_bytes() -> int | None:
    """Bytes this process can still allocate before the kernel or the cgroup kills it."""
    figures = [x for x in (meminfo_available(), cgroup_room()[1]) if x is not None]
    return min(figures) if figures else None


def rss_bytes() -> int | None:
    """Resident set size of this process now (VmRSS), None if unreadable."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def peak_rss_bytes() -> int:
    """Highest resident set size of this process so far (getrusage)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


def human(nbytes: float | None) -> str:
    """1.2 GB, 350 MB, 12 kB."""
    if nbytes is None:
        return "unknown"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(nbytes) >= size:
            return f"{nbytes / size:.3g} {unit}"
    return f"{int(nbytes)} B"
