"""The models users bring, at 64, 128 and 256 px: a plain ConvTranspose DCGAN and a strided-conv classifier.

The generator is Radford et al.'s DCGAN shape: ``z [B, 128, 1, 1]`` → ConvTranspose(4, 1, 0)
to 4×4, then ConvTranspose(4, 2, 1) + BatchNorm + ReLU stages doubling the size, channels
``min(512, 2048 / side)``, a last ConvTranspose(4, 2, 1) to 3 channels and Tanh. The classifier
halves the size with Conv(4, 2, 1) + LeakyReLU down to 4×4, then one Linear to 10 logits.
Random weights from a fixed seed, and BatchNorm running statistics drawn away from (0, 1),
so folding them is not a no-op. Exported the way a user would (``torch.onnx.export`` with
its defaults: fixed batch, opset 20) and made a bundle by :func:`corrkit.export.export_bundle`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

LATENT = 128
SIZES = (64, 128, 256)


def _channels(side: int) -> int:
    return min(512, 2048 // side)


class DCGAN(nn.Module):
    def __init__(self, size: int, latent: int = LATENT):
        super().__init__()
        side, layers = 4, [nn.ConvTranspose2d(latent, _channels(4), 4, 1, 0, bias=False),
                           nn.BatchNorm2d(_channels(4)), nn.ReLU(True)]
        while side * 2 < size:
            layers += [nn.ConvTranspose2d(_channels(side), _channels(side * 2), 4, 2, 1, bias=False),
                       nn.BatchNorm2d(_channels(side * 2)), nn.ReLU(True)]
            side *= 2
        layers += [nn.ConvTranspose2d(_channels(side), 3, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z):
        return self.net(z)


class StridedClassifier(nn.Module):
    def __init__(self, size: int, n_classes: int = 10):
        super().__init__()
        layers, ch, side = [], 3, size
        while side > 4:
            out = min(256, 16 * 2 ** len(layers[::2]))
            layers += [nn.Conv2d(ch, out, 4, 2, 1), nn.LeakyReLU(0.2, True)]
            ch, side = out, side // 2
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(ch * 16, n_classes)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


def models(size: int, seed: int = 0) -> tuple[DCGAN, StridedClassifier]:
    """The generator and classifier for ``size`` px, random weights from ``seed``, eval mode."""
    torch.manual_seed(seed + size)
    g, q = DCGAN(size), StridedClassifier(size)
    gen = torch.Generator().manual_seed(seed + size + 1)
    for m in g.modules():
        if isinstance(m, nn.ConvTranspose2d):  # variance-keeping for ReLU: each output sums cin * 4 taps
            nn.init.normal_(m.weight, 0.0, (2.0 / (m.in_channels * (16 if m.stride[0] == 1 else 4))) ** 0.5,
                            generator=gen)
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0.0, 0.3, generator=gen)
            m.running_var.uniform_(0.5, 2.0, generator=gen)
            m.weight.data.uniform_(0.7, 1.3, generator=gen)
            m.bias.data.normal_(0.0, 0.1, generator=gen)
    with torch.no_grad():  # centred logits a few units apart on prior samples: every class gets filled
        logits = q.eval()(g.eval()(torch.randn(256, LATENT, 1, 1, generator=gen)))
        centred = logits - logits.mean(0)
        scale = 3.0 / float(centred.std())
        q.head.weight.mul_(scale)
        q.head.bias.copy_((q.head.bias - logits.mean(0)) * scale)
    return g, q


def export_as_user(size: int, folder: str | Path, seed: int = 0) -> tuple[Path, Path]:
    """``generator.onnx`` and ``classifier.onnx`` in ``folder`` by ``torch.onnx.export`` with its defaults."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    g, q = models(size, seed)
    gp, qp = folder / "generator.onnx", folder / "classifier.onnx"
    with torch.no_grad():
        torch.onnx.export(g, (torch.randn(4, LATENT, 1, 1),), str(gp))
        torch.onnx.export(q, (torch.randn(4, 3, size, size),), str(qp))
    return gp, qp


def bundle(size: int, folder: str | Path, seed: int = 0):
    """A corrkit bundle of the ``size`` px pair at ``folder`` (made once; reused when present)."""
    from corrkit._core.bundle import create_bundle, load_bundle

    folder = Path(folder)
    if (folder / "bundle.json").is_file():
        return load_bundle(folder)
    raw = folder.with_name(folder.name + "-onnx")
    gp, qp = export_as_user(size, raw, seed)
    return create_bundle(gp, qp, folder, classifier_output="logits", force=True)
