"""The engine's graph with and without the thin-layer rule, in alternating blocks (benchmarks/RESULTS.md, run L).

    .venv/bin/python -m benchmarks.thin_layer --size 64 --batch 64 [--blocks 4] [--seconds 2.5]

On onnxruntime the engine leaves a ConvTranspose to fewer than
:data:`corrkit._core.engine.THIN_OUT_CHANNELS` channels as exported
(:func:`corrkit._core.engine.rewritten`). This builds the scale suite's DCGAN bundle
(:mod:`benchmarks.scale_models`), makes two sessions of its fused graph (the rule on, and off:
every doubling layer in phase form), checks they agree, and times them in alternating blocks of
back-to-back calls (alternating single calls evicts each session's buffers and slows both).
Prints the median and best points/s of each.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def graphs(fused) -> dict:
    from corrkit._core.engine import rewritten

    every, _ = rewritten(fused, min_out_channels=1, into_conv=False)  # no phases read by the classifier either
    return {"every layer in phase form": every, "thin layers whole (engine)": rewritten(fused)[0]}


def session(model):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads, so.log_severity_level = 2, 1, 3
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def main(argv=None) -> None:
    ab_main(graphs, __doc__, argv, size=64, batch=64, blocks=4)


def ab_main(make_graphs, doc: str, argv, size: int, batch: int, blocks: int) -> dict:
    """An A/B script's command line: build the suite's DCGAN at ``--size``, race ``make_graphs(fused)``."""
    from benchmarks.scale_models import bundle

    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--size", type=int, default=size, choices=(64, 128, 256))
    ap.add_argument("--batch", type=int, default=batch)
    ap.add_argument("--blocks", type=int, default=blocks)
    ap.add_argument("--seconds", type=float, default=2.5)
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        b = bundle(a.size, Path(work) / f"dcgan{a.size}")
        fused = b.fused_model()
    return race(make_graphs(fused), a.size, a.batch, b.latent_dim, a.blocks, a.seconds)


def race(models: dict, size: int, batch: int, latent_dim: int, blocks: int, seconds: float) -> dict:
    """Check the two graphs agree, time them in alternating blocks, print and return their median points/s."""
    sessions = {k: session(m) for k, m in models.items()}
    z = np.random.default_rng(0).standard_normal((batch, latent_dim)).astype(np.float32)
    outs = [s.run(None, {"z": z})[0] for s in sessions.values()]
    print(f"max |dp| between the two: {float(np.abs(outs[0] - outs[1]).max()):.2e}")
    times = {k: [] for k in sessions}
    for i in range(blocks):
        for k in list(sessions)[:: 1 if i % 2 == 0 else -1]:
            for _ in range(3):
                sessions[k].run(None, {"z": z})
            t_end = time.perf_counter() + seconds
            while time.perf_counter() < t_end:
                t = time.perf_counter()
                sessions[k].run(None, {"z": z})
                times[k].append(time.perf_counter() - t)
    medians = {}
    for k, t in times.items():
        t = np.array(t)
        medians[k] = batch / np.median(t)
        print(f"{size} px batch {batch}, {k}: median {medians[k]:.0f}, "
              f"best {batch / t.min():.0f} points/s ({len(t)} calls)")
    return medians


if __name__ == "__main__":
    main()
