"""PyTorch baselines for the benchmarks: what a user would otherwise run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from corrkit._core.timing import timed
from corrkit.export.weights import load_modules


def torch_rows(bundle, batch: int, secs: float = 1.0) -> list[tuple[str, float, str]]:
    """Paper-style per-sample loop, and batched eager fp32 (NCHW, channels-last) and bf16 channels-last."""
    from corrkit._core.bundle import builtin_path

    if bundle.path is None or Path(bundle.path).resolve() != builtin_path().resolve():
        return [("PyTorch rows", float("nan"), "only for the built-in bundle, whose torch weights ship")]
    g, q = load_modules(latent_dim=bundle.latent_dim, n_classes=bundle.n_classes)
    z = torch.from_numpy(np.random.default_rng(0).standard_normal((batch, bundle.latent_dim)).astype(np.float32))
    out = []

    @torch.no_grad()
    def loop():
        for i in range(16):
            torch.softmax(q(g(z[i:i + 1])), 1)

    out.append(("PyTorch paper-style loop (one code at a time)", timed(loop, 16, min_seconds=secs), ""))
    for name, cl, bf16 in (("PyTorch eager fp32 NCHW", False, False), ("PyTorch eager fp32 channels-last", True, False),
                           ("PyTorch eager bf16 channels-last", True, True)):
        gm = g.to(memory_format=torch.channels_last if cl else torch.contiguous_format)
        qm = q.to(memory_format=torch.channels_last if cl else torch.contiguous_format)

        @torch.no_grad()
        def run(gm=gm, qm=qm, bf16=bf16):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                img = gm(z)
                if cl:
                    img = img.contiguous(memory_format=torch.channels_last)
                return torch.softmax(qm(img).float(), 1)

        out.append((name, timed(run, batch, min_seconds=secs), ""))
    return out
