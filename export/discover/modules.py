"""The two networks of Voynov & Babenko (ICML 2020, Section 3), their loss and the seeded draws of a step.

A direction matrix ``A`` (``N x K``) moves a code ``z`` to ``z + eps·A e_k``; a
reconstructor ``R`` sees the pair ``(G(z), G(z + eps·A e_k))`` and guesses ``k``
(cross-entropy) and ``eps`` (``|eps_hat - eps|``). Which reconstructor follows the
image size, as in the authors' code (anvoynov/GANLatentDiscovery): a LeNet for
MNIST-sized images, a ResNet-18 from 64 px (:func:`reconstructor`). Every draw of a step comes from a
seed of (seed, method, step), so a resumed training draws what an uninterrupted one would.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from corrkit.errors import CorrkitError
from corrkit.export.discover.settings import AUTHORS_INIT_SCALE, DEFAULT_INIT_SCALE, KINDS, METHODS, DiscoverSettings


# --- the two networks ---------------------------------------------------------------------------------------------


class DirectionMatrix(nn.Module):
    """``A`` of shape ``[N, K]``; ``forward(k, eps)`` gives the latent shifts ``eps·A e_k`` ``[B, N]``.

    Kinds (Voynov & Babenko, Section 3): ``ortho`` ``A = exp(S - Sᵀ)`` (orthogonal,
    ``K = N``), ``proj`` columns of a free matrix scaled to unit norm, ``linear`` a
    free matrix, ``fixed`` a constant matrix (the random and coordinate baselines).
    """

    def __init__(self, n: int, k: int, kind: str, *, generator: torch.Generator | None = None,
                 matrix: torch.Tensor | np.ndarray | None = None, init_scale: float = DEFAULT_INIT_SCALE):
        super().__init__()
        self.n, self.k, self.kind = n, k, kind
        if kind == "ortho":
            if k != n:
                raise CorrkitError(f"ortho directions need K = N, got K = {k}, N = {n}")
            # the authors' initialisation: a well-mixed random rotation
            self.log_half = nn.Parameter(torch.randn(n, n, generator=generator))
        elif kind in ("proj", "linear"):
            # linear's column norm is the shift size, so it keeps the authors' scale; proj normalises
            # its columns, so its scale only sets how fast they turn (DEFAULT_INIT_SCALE)
            scale = init_scale if kind == "proj" else AUTHORS_INIT_SCALE
            self.weight = nn.Parameter(scale * torch.randn(n, k, generator=generator))
        elif kind == "fixed":
            m = torch.as_tensor(np.asarray(matrix, np.float32))
            if tuple(m.shape) != (n, k):
                raise CorrkitError(f"fixed direction matrix must be [{n}, {k}], got {list(m.shape)}")
            self.register_buffer("fixed", m.clone())
        else:
            raise CorrkitError(f"direction type {kind!r} is not one of {', '.join(KINDS + ('fixed',))}")

    def matrix(self) -> torch.Tensor:
        """``A`` float32 ``[N, K]``."""
        if self.kind == "ortho":
            # float64 keeps AᵀA = I to ~1e-7 even for a large skew generator
            s = self.log_half.double()
            return torch.linalg.matrix_exp(s - s.T).float()
        if self.kind == "proj":
            return self.weight / self.weight.norm(dim=0, keepdim=True).clamp_min(1e-12)
        if self.kind == "linear":
            return self.weight
        return self.fixed

    def forward(self, k: torch.Tensor, eps: torch.Tensor, a: torch.Tensor | None = None) -> torch.Tensor:
        a = self.matrix() if a is None else a
        return eps[:, None] * a[:, k].T

    def directions(self) -> np.ndarray:
        """Rows = columns of ``A`` scaled to unit norm: float32 ``[K, N]``."""
        with torch.no_grad():
            a = self.matrix().double()
            a = a / a.norm(dim=0, keepdim=True).clamp_min(1e-12)
        return a.T.float().numpy().copy()


class Reconstructor(nn.Module):
    """LeNet on the channel-stacked pair ``(x1, x2)`` ``[B, 2C, H, W]`` -> logits ``[B, K]``, ``eps_hat`` ``[B]``.

    The authors' ``LeNetShiftPredictor`` (width 2); the first convolution is padded
    so that 28x28 images (the paper's MNIST ones are 32x32) reach a 1x1 map; any
    ``H, W >= 28`` works (features are averaged over space). Smaller images are
    enlarged to 28x28 (nearest, each pixel repeated) before the first layer, so a
    user's 8 or 16 px generator trains with the same network.
    """

    MIN_SIZE = 28

    def __init__(self, k: int, channels: int = 1, width: int = 2):
        super().__init__()
        self.convnet = nn.Sequential(
            nn.Conv2d(2 * channels, 3 * width, 5, padding=2), nn.BatchNorm2d(3 * width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(3 * width, 8 * width, 5), nn.BatchNorm2d(8 * width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8 * width, 60 * width, 5), nn.BatchNorm2d(60 * width), nn.ReLU(),
        )

        def head(out: int) -> nn.Sequential:
            return nn.Sequential(nn.Linear(60 * width, 42 * width), nn.BatchNorm1d(42 * width), nn.ReLU(),
                                 nn.Linear(42 * width, out))

        self.fc_logits, self.fc_shift = head(k), head(1)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([x1, x2], dim=1)
        if min(x.shape[-2:]) < self.MIN_SIZE:
            size = (max(self.MIN_SIZE, x.shape[-2]), max(self.MIN_SIZE, x.shape[-1]))
            x = torch.nn.functional.interpolate(x, size=size, mode="nearest")
        features = self.convnet(x).mean(dim=(-1, -2))
        return self.fc_logits(features), self.fc_shift(features)[:, 0]


class _Block(nn.Module):
    """ResNet's basic block: two 3x3 convolutions with batch norm, and the (projected) input added back."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + (x if self.down is None else self.down(x)))


class ResNetReconstructor(nn.Module):
    """ResNet-18 on the channel-stacked pair ``(x1, x2)`` ``[B, 2C, H, W]`` -> logits ``[B, K]``, ``eps_hat`` ``[B]``.

    The authors' ``ResNetShiftPredictor``: torchvision's ``resnet18`` (untrained) with
    its first convolution taking the ``2C`` channels of the pair, the 512 features of
    its average pool, and two linear heads, one for ``k`` and one for ``eps``. Written
    out here (torchvision is not a dependency), with torchvision's initialisation.
    """

    def __init__(self, k: int, channels: int = 3, widths: tuple[int, ...] = (64, 128, 256, 512)):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(2 * channels, widths[0], 7, 2, 3, bias=False), nn.BatchNorm2d(widths[0]),
                                  nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        blocks, cin = [], widths[0]
        for i, w in enumerate(widths):
            blocks += [_Block(cin, w, 1 if i == 0 else 2), _Block(w, w, 1)]
            cin = w
        self.blocks = nn.Sequential(*blocks)
        self.fc_logits, self.fc_shift = nn.Linear(cin, k), nn.Linear(cin, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.blocks(self.stem(torch.cat([x1, x2], dim=1))).mean(dim=(-1, -2))
        return self.fc_logits(features), self.fc_shift(features)[:, 0]


RESNET_MIN_SIZE = 64  # images this large (both sides) get the ResNet, as the authors' 64 px and larger GANs did


def reconstructor(k: int, shape: tuple[int, int, int] | int) -> nn.Module:
    """The reconstructor for images ``shape = (C, H, W)``: :class:`Reconstructor` (LeNet) below 64 px,
    :class:`ResNetReconstructor` from 64 px on both sides (a bare channel count: the LeNet)."""
    if isinstance(shape, int):
        return Reconstructor(k, shape)
    c, h, w = (int(d) for d in shape)
    return ResNetReconstructor(k, c) if min(h, w) >= RESNET_MIN_SIZE else Reconstructor(k, c)


# --- one step -----------------------------------------------------------------------------------------------------


def vb_loss(logits: torch.Tensor, eps_hat: torch.Tensor, k: torch.Tensor, eps: torch.Tensor,
            shift_weight: float = 0.25) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``CE(logits, k) + shift_weight·mean|eps_hat - eps|`` (SPEC §8); returns (total, ce, shift term)."""
    ce = F.cross_entropy(logits.float(), k)
    shift = (eps_hat.float() - eps).abs().mean()
    return ce + shift_weight * shift, ce, shift


def sample_batch(gen: torch.Generator, b: int, n: int, k: int, eps_max: float = 6.0,
                 eps_min: float = 0.5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``z ~ N(0, I)`` ``[b, n]``, ``k ~ U{0..K-1}`` ``[b]``, ``eps = eps_max·U[-1, 1]`` ``[b]``.

    Shifts smaller than ``eps_min`` in magnitude are pushed out to ``±eps_min``, as in
    the authors' code, so every pair differs visibly.
    """
    z = torch.randn(b, n, generator=gen)
    idx = torch.randint(0, k, (b,), generator=gen)
    eps = eps_max * (2 * torch.rand(b, generator=gen) - 1)
    eps = torch.where(eps.abs() < eps_min, torch.where(eps < 0, -eps_min, eps_min), eps)
    return z, idx, eps


def seed_of(*parts) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


def step_generator(seed: int, method: str, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed_of(seed, METHODS.index(method), step))


def image_pair(G, z, shift, learn, s: DiscoverSettings):
    """``G(z)`` and ``G(z + shift)``; only the second carries gradients, and only when ``A`` is learned."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=s.bf16):
        if learn:
            with torch.no_grad():
                x1 = G(z)
            return x1, G(z + shift)
        with torch.no_grad():  # fixed A: one batch of 2B is cheaper than two of B
            return G(torch.cat([z, z + shift])).chunk(2)


def reconstruction_loss(G, A: DirectionMatrix, R, z, k, eps, s: DiscoverSettings, learn: bool = True):
    """The SPEC §8 loss of one batch: images of ``z`` and ``z + eps·A e_k``, ``R``'s guesses, ``vb_loss``.

    Returns (total, ce, shift term, accuracy of the batch).
    """
    shift = A(k, eps)
    x1, x2 = image_pair(G, z, shift, learn, s)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=s.bf16):
        logits, eps_hat = R(x1, x2)
    total, ce, sh = vb_loss(logits, eps_hat, k, eps, s.shift_weight)
    acc = (logits.argmax(1) == k).float().mean()
    return total, ce, sh, acc
