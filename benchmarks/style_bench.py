"""A 256-px StyleGAN2-architecture generator: corrkit `apcr` in W+ against PyTorch eager, and its peak memory.

    .venv/bin/python -m benchmarks.style_bench [--out FILE.json]

The generator is ``tests/stylegan2.py`` at 256 px (8-layer mapping, scaling-form modulated and
demodulated 3x3 convolutions, 2x upsampling, toRGB skips; random weights) with channels cut to
``CHANNELS`` so that it runs on a 2-core CPU in minutes; the classifier is that file's. Both are
exported with ``torch.onnx.export`` at a dynamic batch. In one run: ``corrkit apcr --space w+`` end
to end (each in a fresh process, so its peak RSS is its own) on a 1x and a 10x grid, and PyTorch
eager fp32 NCHW, fp32 channels-last and bf16 autocast channels-last on the same modules, the same
``ws`` batch.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.scale_suite import _peak_rss_mb, torch_rows  # noqa: E402

CHANNELS = {4: 128, 8: 128, 16: 128, 32: 64, 64: 64, 128: 32, 256: 16}
BATCH = 16
CODES = 2  # per class
GRIDS = {"1x": 4, "10x": 40}  # directions of W, lifted to every layer


def _child(folder: str, n_dirs: int, q) -> None:
    from corrkit._core.bundle import load_bundle
    from corrkit._core.execution import Execution
    from corrkit._core.style import Space, space_directions
    from corrkit.methods.sequential import apcr

    b = load_bundle(folder).in_space(Space("w+"))
    d, norm = space_directions(b, np.eye(b.style.w_dim, dtype=np.float32)[:n_dirs])
    r = apcr(b, directions=d, normalize_directions=norm, samples_per_class=CODES, steps=1, threshold=0.3,
             execution=Execution(device="cpu"))
    q.put({"points": int(r.points), "seconds": r.seconds, "points_per_second": r.points / r.seconds,
           "batch_size": r.params["batch_size"], "peak_rss_mb": _peak_rss_mb()})


def corrkit_row(folder: str, n_dirs: int) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(folder, n_dirs, q))
    p.start()
    out = q.get()
    p.join()
    return out


def style_bundle(folder: Path, n_classes: int = 3):
    """``(bundle, torch generator, torch classifier)``: the 256-px model exported to ``folder/raw`` and bundled."""
    from corrkit._core.style_bundle import create_style_bundle
    from tests import stylegan2 as sg

    cfg = sg.StyleConfig(resolution=256, z_dim=512, w_dim=512, n_mlp=8, channels=CHANNELS)
    e = sg.export_style(Path(folder) / "raw", cfg, n_classes=n_classes)
    b = create_style_bundle(e.mapping, e.synthesis, e.classifier, Path(folder) / "bundle", w_avg=e.w_avg, force=True)
    return b, e.generator, e.classifier_module


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    b, gen, cls = style_bundle(Path(tempfile.mkdtemp(prefix="corrkit-style-")))
    rows = {f"corrkit apcr --space w+ ({k} grid)": corrkit_row(str(b.path), n) for k, n in GRIDS.items()}
    ws = np.random.default_rng(0).standard_normal((BATCH, b.style.n_layers, b.style.w_dim)).astype(np.float32)
    rows.update({k: {"points_per_second": v} for k, v in torch_rows(gen.synthesis, cls, ws).items()})
    info = {"cpu": platform.processor() or platform.machine(), "channels": CHANNELS, "batch_torch": BATCH}
    fp32_cl = rows["PyTorch eager fp32 channels-last"]["points_per_second"]
    bf16_cl = rows["PyTorch eager bf16 channels-last"]["points_per_second"]
    print("| path | points/s | vs torch fp32 CL | vs torch bf16 CL | peak RSS MB |\n|---|---:|---:|---:|---:|")
    for name, r in rows.items():
        pps = r["points_per_second"]
        print(f"| {name} | {pps:.1f} | {pps / fp32_cl:.2f}x | {pps / bf16_cl:.2f}x | "
              f"{r.get('peak_rss_mb', float('nan')):.0f} |")
    if args.out:
        args.out.write_text(json.dumps({"info": info, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
