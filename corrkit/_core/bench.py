"""Side-by-side throughput of corrkit and the alternatives, in points per second.

A point is one latent code through the generator and then the classifier. All
paths run in one process, one after another, on the same inputs, so ratios
are comparable even on a noisy machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from corrkit._core.bundle import Bundle, as_bundle
from corrkit._core.timing import timed


@dataclass
class Row:
    path: str
    points_per_second: float
    note: str = ""


def raw_session(bundle: Bundle, batch: int, threads: int | None = None):
    """The two models in plain onnxruntime sessions with default options, no rewrites: a closure.

    The models are the bundle's as loaded (:mod:`corrkit._core.conventions`: float32 at
    the boundary, extra inputs held, a baked batch freed when exact); a batch that
    cannot be freed is fed in chunks of its size, as a user would have to.
    """
    from corrkit._core.conventions import cpu_session, run_rows
    from corrkit._core.engine import cpu_count

    threads = threads or cpu_count()
    g = cpu_session(bundle.runnable_generator(), threads)
    q = cpu_session(bundle.runnable_classifier(), threads)
    z = np.random.default_rng(0).standard_normal((batch, bundle.latent_dim)).astype(np.float32)

    def run():
        return run_rows(q, run_rows(g, z))

    return run


def engine_call(bundle: Bundle, batch: int, **engine_kw):
    from corrkit._core.engine import Engine

    e = Engine(bundle, batch_size=batch, **engine_kw)
    rng = np.random.default_rng(0)
    if e.delta is None:
        z = rng.standard_normal((batch, bundle.latent_dim)).astype(np.float32)
        return lambda: e.probabilities(z), e
    # bf16-delta: a batch of grid points of one code, each one step along an axis (what `apcr` feeds it)
    from corrkit._core.defaults import DELTA

    code = rng.standard_normal((1, bundle.latent_dim)).astype(np.float32)
    z = code + DELTA * np.eye(bundle.latent_dim, dtype=np.float32)[np.arange(batch) % bundle.latent_dim]
    near = (code, np.zeros(batch, np.int64))
    return lambda: e.probabilities(z, near=near), e


def corrkit_end_to_end(bundle: Bundle, mode: str = "fp32", device: str = "cpu", codes_per_class: int = 2,
                       steps: int = 2) -> float:
    """Points per second of a whole ``corrkit.apcr`` run (sampling, grid, inference, reductions)."""
    from corrkit._core.execution import Execution
    from corrkit.methods.sequential import apcr

    run = Execution(device=device, mode=mode)
    apcr(bundle, samples_per_class=1, steps=1, directions=np.eye(bundle.latent_dim)[:2], execution=run)
    r = apcr(bundle, samples_per_class=codes_per_class, steps=steps, execution=run)
    return r.points / r.seconds


def compare(bundle: Bundle | str | None = None, batch: int = 256, device: str = "cpu", torch_rows: bool = True,
            quick: bool = False) -> list[Row]:
    """Every available path on the same bundle; PyTorch rows need torch and the bundle's torch weights."""
    bundle = as_bundle(bundle)
    secs = 0.3 if quick else 1.0
    rows = []
    if bundle.generator is not None:
        rows.append(Row("onnxruntime raw sessions (no rewrites)", timed(raw_session(bundle, batch), batch,
                                                                       min_seconds=secs)))
    fn, e = engine_call(bundle, batch, device=device)
    rows.append(Row(f"corrkit engine fp32 ({e.provider})", timed(fn, batch, min_seconds=secs)))
    rows.append(Row("corrkit apcr end-to-end fp32", corrkit_end_to_end(bundle, device=device,
                                                                       codes_per_class=1 if quick else 2)))
    if torch_rows:
        try:  # here, not at the top: the PyTorch rows are optional (extra `train`)
            from corrkit.export.bench_torch import torch_rows as _torch_rows
        except ImportError:
            rows.append(Row("PyTorch rows", float("nan"), "torch not installed (pip install 'corrkit[train]')"))
        else:
            rows += [Row(*r) for r in _torch_rows(bundle, batch, secs)]
    return rows
