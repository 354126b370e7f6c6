"""What a benchmark ran on: CPU, cores, RAM, load, BLAS libraries and threads, git commit.

Everything is read from /proc and the repository's .git directory (no subprocess, no git
command), so it works the same in the runner and in each problem's child process.
"""
from __future__ import annotations

import os
import platform
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_BLAS_RE = re.compile(r"(openblas|libblas|liblapack|mkl_|libblis|flexiblas|accelerate|libcholmod)", re.I)
_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def machine() -> dict:
    """CPU model, logical cores, RAM (GB), 1-minute load average, OS and Python."""
    cpu = re.search(r"^model name\s*:\s*(.+)$", _read("/proc/cpuinfo"), re.M)
    mem = re.search(r"^MemTotal:\s*(\d+)\s*kB", _read("/proc/meminfo"), re.M)
    load = _read("/proc/loadavg").split()
    return {
        "cpu": cpu.group(1).strip() if cpu else platform.processor() or "unknown",
        "cores": os.cpu_count(),
        "ram_gb": round(int(mem.group(1)) / 2**20, 1) if mem else None,
        "load1": float(load[0]) if load else None,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


def git_commit() -> str:
    """HEAD's commit id read from .git (branch ref, packed-refs or detached HEAD)."""
    git = REPO / ".git"
    if git.is_file():                  # a worktree: ".git" names its gitdir, refs live in commondir
        git = Path(_read(str(git)).split("gitdir:", 1)[-1].strip())
    common = git
    if (git / "commondir").is_file():
        common = (git / _read(str(git / "commondir")).strip()).resolve()
    head = _read(str(git / "HEAD")).strip()
    if not head:
        return "unknown (no .git)"
    if not head.startswith("ref:"):
        return head[:12]
    ref = head.split(None, 1)[1]
    sha = _read(str(git / ref)).strip() or _read(str(common / ref)).strip()
    if not sha:
        for line in _read(str(common / "packed-refs")).splitlines():
            if line.endswith(" " + ref):
                sha = line.split()[0]
    return f"{sha[:12]} ({ref.rsplit('/', 1)[-1]})" if sha else f"unknown ({ref})"


def blas() -> dict:
    """BLAS/LAPACK libraries loaded in this process and their thread settings.

    threadpoolctl's report when it is installed; otherwise the shared objects mapped into
    the process (/proc/self/maps), each with the file it resolves to (Debian's libblas.so.3
    is an alternatives link to the real implementation).
    """
    env = {k: os.environ[k] for k in _THREAD_VARS if k in os.environ}
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        libs = set()
        for line in _read("/proc/self/maps").splitlines():
            parts = line.split()
            if len(parts) >= 6 and _BLAS_RE.search(os.path.basename(parts[-1])):
                path = parts[-1]
                real = os.path.realpath(path)
                libs.add(path if real == path else f"{path} -> {real}")
        return {"source": "/proc/self/maps", "libraries": sorted(libs), "env": env}
    info = [{k: d.get(k) for k in ("internal_api", "version", "num_threads", "filepath")}
            for d in threadpool_info()]
    return {"source": "threadpoolctl", "libraries": info, "env": env}
