"""The engine's graph with and without the classifier reading the last layer's phases (benchmarks/RESULTS.md, run M).

    .venv/bin/python -m benchmarks.grid_layer --size 256 --batch 32 [--blocks 6] [--seconds 2.5]

On onnxruntime a generator's last ConvTranspose read by the classifier's stride-2 conv becomes
phases on a grid that conv reads directly (:mod:`corrkit._core.rewrite_into_conv`). This builds
the scale suite's DCGAN bundle, makes two sessions of its fused graph (the engine's, and the
engine's without that rewrite: the last layer whole, interleaved image), checks they agree and
times them in alternating blocks of back-to-back calls (:func:`benchmarks.thin_layer.race`).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def graphs(fused) -> dict:
    from corrkit._core.engine import rewritten

    return {"image interleaved (before)": rewritten(fused, into_conv=False)[0],
            "classifier reads the phases (engine)": rewritten(fused)[0]}


def main(argv=None) -> None:
    from benchmarks.thin_layer import ab_main

    ab_main(graphs, __doc__, argv, size=256, batch=32, blocks=6)


if __name__ == "__main__":
    main()
