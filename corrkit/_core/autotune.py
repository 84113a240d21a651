"""The engine's batch size, chosen by measurement within the memory budget, and kept once chosen.

A batch size is part of a result's definition (float64 sums are folded per batch and
shard), so the choice must not wander between runs. It is measured once per model,
device, provider, thread count, memory budget and CPU, and kept in a small cache file
(``$CORRKIT_CACHE`` or ``~/.cache/corrkit``, ``batch_sizes.json``); every later engine
for the same key reads it back, so for a given model, device and budget the batch is
fixed. ``--batch-size`` fixes it by hand, and a run records which it was.

The measurement: powers of two from 16 up to what the budget allows (and the budget's
own value), each timed as the best of a few calls on prior samples (at least 0.25 s each),
plus the fixed work a run does per batch (:data:`PER_BATCH_SECONDS`), stopping once two in a
row fall below the best; the smallest batch within 3% of the best throughput wins (a larger
batch only costs memory and latency).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

MIN_BATCH = 16
WITHIN = 0.97  # the smallest batch at >= 97% of the best throughput wins
ROUNDS = 3  # calls timed per candidate at least ...
MIN_SECONDS = 0.25  # ... and for at least this long; the best call counts
PATIENCE = 2  # stop after this many candidates in a row below the best (one slow call is noise)
MAX_SECONDS = 8.0  # stop growing the batch once the candidates so far took this long
# Work a run does per batch besides the model call (grid points, output checks, the APCR accumulation):
# measured as 3.9 ms per batch of 16 on the built-in bundle (2-core EPYC, apcr end to end vs the engine alone).
# Counted into each candidate's time, so a batch is chosen for the run's speed, not the model call's alone.
PER_BATCH_SECONDS = 0.004


def cache_file() -> Path:
    root = os.environ.get("CORRKIT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "corrkit")
    return Path(root) / "batch_sizes.json"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def key(model_bytes: bytes, device: str, provider: str, threads: int, budget_rows: int, lanes: int = 1) -> str:
    h = hashlib.sha256(model_bytes).hexdigest()[:24]
    return f"{h}|{device}|{provider}|threads={threads}|lanes={lanes}|budget_rows={budget_rows}|{cpu_name()}"


def candidates(budget_rows: int) -> list[int]:
    """Powers of two from :data:`MIN_BATCH` below ``budget_rows``, and ``budget_rows`` itself."""
    top = max(MIN_BATCH, int(budget_rows))
    out, b = [], MIN_BATCH
    while b < top:
        out.append(b)
        b *= 2
    return out + [top]


def measure(run, latent_dim: int, budget_rows: int) -> dict[int, float]:
    """Points per second of ``run(z)`` at each candidate batch size (best of :data:`ROUNDS` calls)."""
    rng = np.random.default_rng(0)
    rates: dict[int, float] = {}
    t_all = time.perf_counter()
    below = 0
    for b in candidates(budget_rows):
        z = rng.standard_normal((b, latent_dim)).astype(np.float32)
        run(z)  # warm: onnxruntime plans memory for a new shape on its first calls
        run(z)
        times, t0 = [], time.perf_counter()
        while len(times) < ROUNDS or time.perf_counter() - t0 < MIN_SECONDS:
            times.append(_seconds(run, z))
        rates[b] = b / (min(times) + PER_BATCH_SECONDS)
        below = below + 1 if rates[b] < WITHIN * max(rates.values()) else 0
        if below >= PATIENCE or time.perf_counter() - t_all > MAX_SECONDS:
            break  # past the knee, or the big batches are slow enough that the measured ones must do
    return rates


def _seconds(run, z) -> float:
    t = time.perf_counter()
    run(z)
    return time.perf_counter() - t


def choose(rates: dict[int, float]) -> int:
    best = max(rates.values())
    return min(b for b, r in rates.items() if r >= WITHIN * best)


def tuned_batch_size(run, latent_dim: int, budget_rows: int, cache_key: str) -> tuple[int, str]:
    """The batch size for ``cache_key``: the cached choice, else measured now and cached.

    Returns ``(batch_size, source)`` with source ``"autotuned"`` (measured now) or
    ``"autotuned, cached"``.
    """
    from corrkit._core import io

    path = cache_file()
    try:
        table = json.loads(path.read_text())
        if not isinstance(table, dict):
            table = {}
    except (OSError, ValueError):
        table = {}
    hit = table.get(cache_key)
    if isinstance(hit, dict) and isinstance(hit.get("batch_size"), int) and hit["batch_size"] >= 1:
        return hit["batch_size"], "autotuned, cached"
    rates = measure(run, latent_dim, budget_rows)
    b = choose(rates)
    table[cache_key] = {"batch_size": b, "points_per_second": {str(k): round(v, 1) for k, v in rates.items()}}
    try:
        io.write_json(path, table)
    except OSError:
        pass  # a read-only home: the choice holds for this engine only
    return b, "autotuned"
