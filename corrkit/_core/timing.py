"""Points per second of a callable: the one timer of ``corrkit bench`` and of its PyTorch rows.

Its own module, torch-free, so that :mod:`corrkit._core.bench` and
:mod:`corrkit.export.bench_torch` both use it without importing each other.
"""

from __future__ import annotations

import time


def timed(fn, points: int, repeats: int = 3, min_seconds: float = 1.0) -> float:
    """Best-of-``repeats`` points per second of ``fn`` (each repeat runs at least ``min_seconds``)."""
    fn()  # warm-up
    best = 0.0
    for _ in range(repeats):
        n, t0 = 0, time.perf_counter()
        while True:
            fn(); n += 1
            dt = time.perf_counter() - t0
            if dt >= min_seconds:
                break
        best = max(best, n * points / dt)
    return best
