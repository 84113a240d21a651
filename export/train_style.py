"""Training of the built-in style-based generator on Fashion-MNIST (SPEC §12).

The generator is :data:`corrkit.export.style_models.FASHION`: a 4-layer mapping network
(z 64 -> w 64) and a 28x28 grey synthesis network with 6 style layers (7, 14 and 28 px).
The critic is the DCGAN's (:class:`corrkit.export.models.Discriminator`), the classifier
the built-in bundle's (unchanged: the same weights and ONNX file). Losses are the
non-saturating logistic ones of the DCGAN (``BCEWithLogits``); the generator side uses
StyleGAN2's optimiser settings (Adam, betas (0, 0.99), equalised learning rates, mapping
lr multiplier 0.01) and style mixing (two codes, a random crossover layer, probability
0.9), which is what makes the per-layer styles mean something on their own.

Seeded and resumable as :mod:`corrkit.export.train`: every epoch writes the generator
(``style_gen_epochNN.pt``) and a checkpoint atomically; a killed run restarted with the
same arguments continues from the last finished epoch. ``minutes`` time-boxes the run:
no epoch starts once that much training time has been spent.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from corrkit._core.data import load_split
from corrkit.export.models import Discriminator
from corrkit.export.style_models import FASHION, Generator
from corrkit.export.train import _log, resume_gan, save_gan, to_unit
from corrkit.export.weights import save_state


@dataclass
class StyleGANSettings:
    epochs: int = 30
    minutes: float = 80.0  # no epoch starts after this much training time
    batch_size: int = 64
    lr_g: float = 0.002
    betas_g: tuple = (0.0, 0.99)
    lr_d: float = 2e-4
    betas_d: tuple = (0.5, 0.999)
    mixing: float = 0.9
    seed: int = 0
    bf16: bool = True
    batches: int | None = None  # per epoch (default: the whole training set); tests use a few


def mixed_ws(G: Generator, n: int, mixing: float) -> torch.Tensor:
    """``ws [n, L, Nw]``: one ``w`` per row on every layer, or, with probability ``mixing``, a second
    code's ``w`` from a random crossover layer on (StyleGAN's style mixing)."""
    L = G.cfg.n_layers
    w1 = G.mapping(torch.randn(n, G.latent_dim))
    ws = w1[:, None].expand(-1, L, -1)
    mix = torch.rand(n) < mixing
    if mix.any():
        w2 = G.mapping(torch.randn(n, G.latent_dim))
        cut = torch.randint(1, L, (n,))
        later = (torch.arange(L)[None, :] >= cut[:, None]) & mix[:, None]
        ws = torch.where(later[:, :, None], w2[:, None].expand(-1, L, -1), ws)
    return ws


def train_style_gan(work: Path, s: StyleGANSettings, data_dir=None) -> tuple[Generator, dict]:
    """Train the style-based GAN; keeps the generator of every epoch in ``work/style_gen_epochNN.pt``."""
    work.mkdir(parents=True, exist_ok=True)
    ckpt = work / "style_gan.ckpt"
    xtr = to_unit(load_split("train", data_dir).images).contiguous(memory_format=torch.channels_last)
    G = Generator(FASHION, seed=s.seed)
    torch.manual_seed(s.seed + 1)
    D = Discriminator().to(memory_format=torch.channels_last)
    oG = torch.optim.Adam(G.parameters(), lr=s.lr_g, betas=tuple(s.betas_g))
    oD = torch.optim.Adam(D.parameters(), lr=s.lr_d, betas=tuple(s.betas_d))
    start, wall = resume_gan(ckpt, G, D, oG, oD, "style gan")
    bce = nn.BCEWithLogitsLoss()
    for epoch in range(start, s.epochs):
        if wall >= 60 * s.minutes:
            _log(f"style gan: {wall / 60:.0f} min spent, the time box ({s.minutes:g} min): stopped after epoch {epoch}")
            break
        t0 = time.time()
        G.train(); D.train()
        order = torch.from_numpy(np.random.default_rng([s.seed, epoch]).permutation(len(xtr)))
        torch.manual_seed(s.seed * 1000 + epoch)
        n_batches = min(len(xtr) // s.batch_size, s.batches or len(xtr))
        for b in range(n_batches):
            real = xtr[order[b * s.batch_size:(b + 1) * s.batch_size]]
            ones, zeros = torch.ones(len(real), 1), torch.zeros(len(real), 1)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=s.bf16):
                fake = G.synthesis(mixed_ws(G, len(real), s.mixing))
                g_loss = bce(D(fake).float(), ones)
            oG.zero_grad(); g_loss.backward(); oG.step()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=s.bf16):
                d_loss = 0.5 * (bce(D(real).float(), ones) + bce(D(fake.detach()).float(), zeros))
            oD.zero_grad(); d_loss.backward(); oD.step()
            if b % 200 == 0:
                _log(f"style gan epoch {epoch + 1} batch {b}/{n_batches} d {d_loss.item():.3f} g {g_loss.item():.3f}")
        wall += time.time() - t0
        G.eval()
        G.mapping.update_w_avg()
        save_state(G.state_dict(), work / f"style_gen_epoch{epoch + 1:02d}.pt")
        save_gan(ckpt, G, D, oG, oD, epoch + 1, wall)
        _log(f"style gan epoch {epoch + 1}/{s.epochs} done, {time.time() - t0:.0f}s")
    G.eval()
    return G, {"settings": asdict(s), "wall_seconds": wall, "epochs_run": len(list(work.glob("style_gen_epoch*.pt")))}


def main(work: str = "build/train", epochs: int = 30, minutes: float = 80.0, threads: int = 2, data_dir=None) -> None:
    torch.set_num_threads(threads)
    w = Path(work)
    _, rec = train_style_gan(w, StyleGANSettings(epochs=epochs, minutes=minutes), data_dir)
    (w / "style_gan.json").write_text(json.dumps(rec, indent=2))
    _log("style training finished")


if __name__ == "__main__":
    import sys
    main(*sys.argv[1:2])
