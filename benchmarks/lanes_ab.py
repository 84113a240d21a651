"""What lanes buy: ``corrkit apcr`` fp32 on one two-thread session against two single-thread lanes, in one process.

    .venv/bin/python -m benchmarks.lanes_ab [--sizes 64 128 256 builtin] [--rounds 3]

For each model (the scale suite's DCGANs, :mod:`benchmarks.scale_models`, and the built-in
bundle) two engines are built, ``lanes=1`` (one onnxruntime session of all the threads, the
engine before lanes) and ``lanes=2``, each with the batch size its own autotune measures (a
fresh cache). Then ``apcr`` runs on each in turn, ``--rounds`` times, on the same grid (the
scale suite's: 8 codes a class, 32 directions, 2 steps; the built-in bundle: 10 codes a class,
its default directions). Prints points per second and the ratio per round, and whether the two
runs' APCR are the same bits (they are where the two batch sizes agree: lanes change the speed
of a batch, never its rows).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def ab(size: str, rounds: int) -> None:
    from corrkit._core.bundle import as_bundle, load_bundle
    from corrkit._core.engine import Engine
    from corrkit.methods.sequential import apcr

    if size == "builtin":
        b, kw = as_bundle(None), {"samples_per_class": 10}
    else:
        from benchmarks.scale_models import bundle
        from benchmarks.scale_suite import CODES, DIRECTIONS

        folder = Path(tempfile.mkdtemp()) / "bundle"
        bundle(int(size), folder)
        b = load_bundle(str(folder))
        kw = {"directions": np.eye(b.latent_dim, dtype=np.float32)[:DIRECTIONS], "samples_per_class": CODES,
              "steps": 2}
    engines = {n: Engine(b, device="cpu", lanes=n) for n in (1, 2)}
    print(f"{size}: batch {engines[1].batch_size} (1 lane) / {engines[2].batch_size} (2 lanes), threads "
          f"{engines[1].threads}", flush=True)
    rates, result = {1: [], 2: []}, {}
    for r in range(rounds):
        for n, e in engines.items():
            out = apcr(b, engine=e, **kw)
            rates[n].append(out.points / out.seconds)
            result[n] = out.apcr
        print(f"  round {r}: 1 lane {rates[1][-1]:.0f}  2 lanes {rates[2][-1]:.0f} points/s  "
              f"ratio {rates[2][-1] / rates[1][-1]:.2f}", flush=True)
    print(f"  median ratio {np.median(np.array(rates[2]) / np.array(rates[1])):.2f}; same APCR bits: "
          f"{np.array_equal(result[1], result[2], equal_nan=True)}", flush=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=["64", "128", "256", "builtin"])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    os.environ.setdefault("CORRKIT_CACHE", tempfile.mkdtemp())  # each engine's own autotune, measured here
    for size in args.sizes:
        ab(size, args.rounds)


if __name__ == "__main__":
    main()
