"""A StyleGAN2-architecture generator and a small image classifier, in torch, for tests (SPEC §12).

The architecture lives in :mod:`corrkit.export.style_models` (the trained built-in style bundle
uses it too); here: a small classifier calibrated on a random generator's images, the export the
way a user would (``torch.onnx.export`` at a symbolic batch), and SeFa computed the way
genforce/sefa's ``factorize_weight`` does, from the torch module's style weights.

Random weights are enough for the tests: ``TINY`` is 16 px with 8 channels (6 style layers);
``CONFIG_256`` is the 256-px, 512-channel layout of the official 256 config, for benchmarks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from corrkit.export.style_models import (CONFIG_256, TINY, EqualLinear, Generator, Mapping,  # noqa: F401
                                         ModulatedConv, StyleConfig, StyledConv, Synthesis, ToRGB)
from corrkit.export.style_models import export_onnx as _export


class Classifier(nn.Module):
    """``image [B, 3, res, res] -> logits [B, C]``; ``sharpness`` scales the logits so that random
    weights still give confident classes (class sets need ``S_j >= tau``)."""

    def __init__(self, resolution: int = 16, n_classes: int = 3, image_channels: int = 3, sharpness: float = 8.0):
        super().__init__()
        self.c1 = nn.Conv2d(image_channels, 8, 3, stride=2, padding=1)
        self.c2 = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.fc = nn.Linear(8 * (resolution // 4) ** 2, n_classes)
        self.sharpness = sharpness

    def forward(self, x):
        x = F.relu(self.c2(F.relu(self.c1(x))))
        return self.fc(x.flatten(1)) * self.sharpness


@dataclass
class Exported:
    mapping: Path
    synthesis: Path
    classifier: Path
    w_avg: Path
    generator: Generator
    classifier_module: Classifier


@torch.no_grad()
def calibrated(cls: Classifier, gen: Generator, samples: int = 512, spread: float = 4.0) -> Classifier:
    """``cls`` with its logits centred and scaled on ``gen``'s prior images, so every class is
    often the confident top class (random weights otherwise favour one class)."""
    images = gen(torch.randn(samples, gen.cfg.z_dim, generator=torch.Generator().manual_seed(123)))
    cls.sharpness = 1.0
    logits = cls(images)
    cls.fc.bias -= logits.mean(0)
    cls.sharpness = spread / float((logits - logits.mean(0)).std())
    return cls


def export_style(folder: Path, cfg: StyleConfig = TINY, seed: int = 0, n_classes: int = 3,
                 fused: bool = False) -> Exported:
    """``mapping.onnx`` (z -> w), ``synthesis.onnx`` (ws [B, L, Nw] -> image), ``classifier.onnx`` and
    ``w_avg.npy`` in ``folder``, exported with ``torch.onnx.export`` at a symbolic batch."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    gen = Generator(cfg, seed=seed, fused=fused).eval()
    torch.manual_seed(seed + 1)
    cls = calibrated(Classifier(cfg.resolution, n_classes, cfg.image_channels).eval(), gen)
    with torch.no_grad():
        z = torch.randn(2, cfg.z_dim)
        ws = torch.randn(2, cfg.n_layers, cfg.w_dim)
        m = _export(gen.mapping, (z,), folder / "mapping.onnx", ["z"], ["w"])
        s = _export(gen.synthesis, (ws,), folder / "synthesis.onnx", ["ws"], ["image"])
        q = _export(cls, (torch.zeros(2, cfg.image_channels, cfg.resolution, cfg.resolution),),
                    folder / "classifier.onnx", ["image"], ["logits"])
    avg = folder / "w_avg.npy"
    np.save(avg, gen.mapping.w_avg.numpy().astype(np.float32))
    return Exported(m, s, q, avg, gen, cls)


def official_sefa(synthesis: Synthesis, layers: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """genforce/sefa's ``factorize_weight`` on this module: ``(eigenvectors as rows, eigenvalues)``, unsorted.

    Concatenates ``style.weight.T`` of the chosen layers (``[Nw, sum C_in]``), normalises every
    column (one style unit), and eigen-decomposes ``W Wᵀ`` with ``np.linalg.eig`` as the official
    code does.
    """
    convs = synthesis.style_layers()
    weights = [convs[i].style.weight.detach().numpy().T for i in layers]
    weight = np.concatenate(weights, axis=1).astype(np.float32)
    weight = weight / np.linalg.norm(weight, axis=0, keepdims=True)
    values, vectors = np.linalg.eig(weight.dot(weight.T))
    return vectors.T, values
