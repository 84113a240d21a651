"""The engine's graph with and without the classifier reading the last layer's phases (benchmarks/RESULTS.md, run M).

    .venv/bin/python -m benchmarks.grid_layer --size 256 --batch 32 [--blocks 6] [--seconds 2.5]

On onnxruntime a generator's last ConvTranspose read by the classifier's stride-2 conv becomes
phases on a grid that conv reads directly (:mod:`corrkit._core.rewrite_into_conv`). This builds
the scale suite's DCGAN bundle, makes two sessions of its fused graph (the engine's, and the
engine's without that rewrite: the last layer whole, interleaved image), checks they agree and
times them in alternating blocks of back-to-back calls (:func:`benchmarks.thin_layer.race`).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def graphs(fused) -> dict:
    from corrkit._core.engine import rewritten

    return {"image interleaved (before)": rewritten(fused, into_conv=False)[0],
            "classifier reads the phases (engine)": rewritten(fused)[0]}


def main(argv=None) -> None:
    from benchmarks.scale_models import bundle
    from benchmarks.thin_layer import race

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256, choices=(64, 128, 256))
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--blocks", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=2.5)
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        b = bundle(a.size, Path(work) / f"dcgan{a.size}")
        fused = b.fused_model()
    race(graphs(fused), a.size, a.batch, b.latent_dim, a.blocks, a.seconds)


if __name__ == "__main__":
    main()
