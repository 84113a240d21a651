"""A StyleGAN2-architecture generator in torch: mapping ``z -> w`` and synthesis ``ws -> image`` (SPEC §12).

Karras et al., "Analyzing and Improving the Image Quality of StyleGAN" (CVPR 2020): a mapping
network (pixel norm, then ``n_mlp`` equalised-lr linear layers with leaky ReLU, lr multiplier 0.01)
takes ``z`` to ``w``; the synthesis network starts from a learned constant and runs, per
resolution, a modulated and demodulated 3×3 convolution after a 2× upsampling, a second one, and a
modulated 1×1 toRGB whose output is added to the upsampled RGB of the resolution below (the skip
architecture). The ``w`` indices follow the official layout: ``L = 2 log2(res / base) + 2`` style
layers; the base conv reads ``w_0``, the base toRGB and the first conv of the next resolution read
``w_1``, and so on, the last toRGB reads ``w_{L-1}``. Noise inputs are fixed per-pixel buffers (so
the generator is a function of ``ws``), each with its learned strength.

Modulation and demodulation are written in the **scaling form**: the input channels are scaled
by the style ``s``, the convolution uses the layer's own shared weight, and the output channels
are scaled by the demodulation coefficients ``d_o = (sum_{i,k} (W_{o,i,k} s_i)^2 + eps)^(-1/2)``.
That is the same function as the grouped-convolution form of the official code (per-sample
weights ``W s`` demodulated, then one convolution with ``groups = B``), but it exports to ONNX at
a symbolic batch: ONNX's ``Conv`` takes ``group`` as a constant attribute, so the grouped form
needs the batch as a constant, and ``torch.onnx.export`` with a dynamic batch refuses it ("ONNX
export of convolution for kernel of unknown shape", torch 2.13). ``fused=True`` builds the grouped
form, to show both (tests/test_style_spaces.py).

Used by the tests and benchmarks (random weights: ``TINY``, ``CONFIG_256``) and by the trained
built-in style bundle (:data:`FASHION`, :mod:`corrkit.export.train_style`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class StyleConfig:
    resolution: int = 16
    z_dim: int = 12
    w_dim: int = 16
    n_mlp: int = 8
    channels: dict = field(default_factory=lambda: {4: 8, 8: 8, 16: 8})
    lr_mul: float = 0.01
    image_channels: int = 3
    base: int = 4  # side of the learned constant; resolution = base * 2**k

    @property
    def n_layers(self) -> int:
        return 2 * int(round(math.log2(self.resolution / self.base))) + 2


TINY = StyleConfig()
CONFIG_256 = StyleConfig(resolution=256, z_dim=512, w_dim=512, n_mlp=8,
                         channels={4: 512, 8: 512, 16: 512, 32: 512, 64: 512, 128: 256, 256: 128})


class EqualLinear(nn.Module):
    """``y = x (W c)ᵀ + b lr_mul`` with ``c = lr_mul / sqrt(in)`` (equalised learning rate)."""

    def __init__(self, n_in: int, n_out: int, bias_init: float = 0.0, lr_mul: float = 1.0, act: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_out, n_in) / lr_mul)
        self.bias = nn.Parameter(torch.full((n_out,), float(bias_init)))
        self.scale, self.lr_mul, self.act = lr_mul / math.sqrt(n_in), lr_mul, act

    def forward(self, x):
        y = F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)
        return F.leaky_relu(y, 0.2) * math.sqrt(2) if self.act else y


class Mapping(nn.Module):
    """``z [B, Nz] -> w [B, Nw]``; ``w_avg`` is the mean ``w`` of seeded prior samples (for truncation)."""

    def __init__(self, cfg: StyleConfig):
        super().__init__()
        dims = [cfg.z_dim] + [cfg.w_dim] * cfg.n_mlp
        self.layers = nn.ModuleList(EqualLinear(a, b, lr_mul=cfg.lr_mul, act=True) for a, b in zip(dims, dims[1:]))
        self.register_buffer("w_avg", torch.zeros(cfg.w_dim))

    def forward(self, z):
        x = z * torch.rsqrt(torch.mean(z * z, dim=1, keepdim=True) + 1e-8)
        for layer in self.layers:
            x = layer(x)
        return x

    @torch.no_grad()
    def update_w_avg(self, samples: int = 4096, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.w_avg.copy_(self(torch.randn(samples, self.layers[0].weight.shape[1], generator=g)).mean(0))


class ModulatedConv(nn.Module):
    """A modulated (and by default demodulated) convolution; ``up`` doubles the resolution first."""

    def __init__(self, c_in: int, c_out: int, k: int, w_dim: int, demodulate: bool = True, up: bool = False,
                 fused: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in, k, k))
        self.scale = 1 / math.sqrt(c_in * k * k)
        self.style = EqualLinear(w_dim, c_in, bias_init=1.0)  # the affine A_l of SeFa (SPEC §12)
        self.demodulate, self.up, self.fused, self.pad = demodulate, up, fused, k // 2

    def forward(self, x, w):
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        s = self.style(w)  # [B, Cin]
        weight = self.weight * self.scale
        if self.fused:  # the official grouped form: per-sample weights, one conv with groups = B
            b, c, h, wd = x.shape
            wt = weight[None] * s[:, None, :, None, None]
            if self.demodulate:
                wt = wt * torch.rsqrt(wt.pow(2).sum([2, 3, 4], keepdim=True) + 1e-8)
            y = F.conv2d(x.reshape(1, b * c, h, wd), wt.reshape(-1, *wt.shape[2:]), padding=self.pad, groups=b)
            return y.reshape(b, -1, *y.shape[2:])
        y = F.conv2d(x * s[:, :, None, None], weight, padding=self.pad)
        if self.demodulate:  # d[b, o] = (sum_i s[b, i]^2 sum_k W[o, i, k]^2 + eps)^-1/2
            d = torch.rsqrt(F.linear(s * s, weight.pow(2).sum([2, 3])) + 1e-8)
            y = y * d[:, :, None, None]
        return y


class StyledConv(nn.Module):
    def __init__(self, c_in, c_out, w_dim, size, up=False, fused=False, seed=0):
        super().__init__()
        self.conv = ModulatedConv(c_in, c_out, 3, w_dim, up=up, fused=fused)
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("noise", torch.randn(1, 1, size, size, generator=g))
        self.noise_strength = nn.Parameter(torch.tensor(0.1))
        self.bias = nn.Parameter(torch.zeros(1, c_out, 1, 1))

    def forward(self, x, w):
        y = self.conv(x, w) + self.noise_strength * self.noise + self.bias
        return F.leaky_relu(y, 0.2) * math.sqrt(2)


class ToRGB(nn.Module):
    def __init__(self, c_in, w_dim, image_channels, fused=False):
        super().__init__()
        self.conv = ModulatedConv(c_in, image_channels, 1, w_dim, demodulate=False, fused=fused)
        self.bias = nn.Parameter(torch.zeros(1, image_channels, 1, 1))

    def forward(self, x, w, skip=None):
        y = self.conv(x, w) + self.bias
        if skip is not None:
            y = y + F.interpolate(skip, scale_factor=2, mode="bilinear", align_corners=False)
        return y


class Synthesis(nn.Module):
    """``ws [B, L, Nw] -> image [B, 3, res, res]``, in about [-1, 1] (a tanh at the end keeps it there)."""

    def __init__(self, cfg: StyleConfig, fused: bool = False):
        super().__init__()
        ch, wd = cfg.channels, cfg.w_dim
        self.n_layers = cfg.n_layers
        b = cfg.base
        self.const = nn.Parameter(torch.randn(1, ch[b], b, b))
        self.conv1 = StyledConv(ch[b], ch[b], wd, b, fused=fused, seed=1)
        self.to_rgb1 = ToRGB(ch[b], wd, cfg.image_channels, fused=fused)
        self.convs, self.to_rgbs = nn.ModuleList(), nn.ModuleList()
        c_in, res = ch[b], 2 * b
        while res <= cfg.resolution:
            self.convs.append(StyledConv(c_in, ch[res], wd, res, up=True, fused=fused, seed=2 * res))
            self.convs.append(StyledConv(ch[res], ch[res], wd, res, fused=fused, seed=2 * res + 1))
            self.to_rgbs.append(ToRGB(ch[res], wd, cfg.image_channels, fused=fused))
            c_in, res = ch[res], res * 2

    def forward(self, ws):
        x = self.const.expand(ws.shape[0], -1, -1, -1)
        x = self.conv1(x, ws[:, 0])
        rgb = self.to_rgb1(x, ws[:, 1])
        i = 1
        for up, conv, to_rgb in zip(self.convs[::2], self.convs[1::2], self.to_rgbs):
            x = up(x, ws[:, i])
            x = conv(x, ws[:, i + 1])
            rgb = to_rgb(x, ws[:, i + 2], rgb)
            i += 2
        return torch.tanh(rgb)

    def style_layers(self) -> list[ModulatedConv]:
        """The modulated conv whose style reads ``w_l``, per ``l``, as genforce/sefa's ``layer{l}`` /
        ``output{l // 2}``: the 3×3 conv where one reads ``w_l``, the last toRGB for ``l = L - 1``."""
        convs = [self.conv1.conv] + [c.conv for c in self.convs]
        return convs + [self.to_rgbs[-1].conv]


class Generator(nn.Module):
    """Mapping, truncation and synthesis: ``z -> image`` (the torch reference of the whole chain)."""

    def __init__(self, cfg: StyleConfig = TINY, seed: int = 0, fused: bool = False):
        super().__init__()
        torch.manual_seed(seed)
        self.cfg = cfg
        self.mapping = Mapping(cfg)
        self.synthesis = Synthesis(cfg, fused=fused)
        self.mapping.update_w_avg()

    @property
    def latent_dim(self) -> int:
        return self.cfg.z_dim

    def forward(self, z, psi: float = 1.0):
        w = self.mapping(z)
        if psi != 1.0:
            w = self.mapping.w_avg + psi * (w - self.mapping.w_avg)
        return self.synthesis(w[:, None].expand(-1, self.cfg.n_layers, -1))



def export_onnx(module, args, path, input_names, output_names):
    """``module`` to ONNX at ``path`` with ``torch.onnx.export`` (TorchScript exporter, opset 17), the batch
    of every named input and output symbolic: how the style networks here are exported."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), dynamo=False, opset_version=17, input_names=input_names,
                          output_names=output_names,
                          dynamic_axes={n: {0: "batch"} for n in list(input_names) + list(output_names)})
    return path


FASHION = StyleConfig(resolution=28, base=7, z_dim=64, w_dim=64, n_mlp=4,
                      channels={7: 128, 14: 64, 28: 32}, image_channels=1)
"""The built-in style bundle's generator: 28x28 grey Fashion-MNIST, 6 style layers (7, 14, 28 px)."""
