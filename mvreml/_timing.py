"""Wall time by named step (design, symbolic, factorize, selinv, ai, ...), for res.model["timings"]."""
from __future__ import annotations

import time


class Timer:
    """Accumulates wall time and counts by step name: ``with timer("factorize"): ...``."""

    def __init__(self):
        self.seconds: dict = {}
        self.counts: dict = {}

    def __call__(self, name: str) -> "_Section":
        return _Section(self, name)


class _Section:
    def __init__(self, timer: Timer, name: str):
        self.timer, self.name = timer, name

    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        dt = time.perf_counter() - self.t0
        self.timer.seconds[self.name] = self.timer.seconds.get(self.name, 0.0) + dt
        self.timer.counts[self.name] = self.timer.counts.get(self.name, 0) + 1
        return False
