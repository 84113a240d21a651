"""The generator that discovery trains against: a bundle's, as a frozen torch module.

In this order: the user's ``package.module:factory`` (with its weights); the
built-in bundle's shipped torch generator (:mod:`corrkit.export.weights`); the
bundle's own ``generator.onnx`` converted to torch (:mod:`corrkit.export.convert`).
Each is checked against the bundle's ONNX generator before any training, and then
frozen with its batch norms folded into the convolutions where that is exact.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from corrkit.errors import BundleError
from corrkit.export import weights as _weights
from corrkit.export.discover.settings import DiscoverSettings


def image_shape(G: nn.Module, latent_dim: int) -> tuple[int, int, int]:
    """``(C, H, W)`` of ``G``'s images; a :class:`BundleError` when they are not ``[B, C, H, W]``."""
    with torch.no_grad():
        probe = G(torch.zeros(2, latent_dim))
    if probe.ndim != 4:
        raise BundleError(f"the reconstructor needs images [B, C, H, W]; G gives {list(probe.shape)}")
    return tuple(int(d) for d in probe.shape[1:])


def image_channels(G: nn.Module, latent_dim: int) -> int:
    return image_shape(G, latent_dim)[0]


def prepare_generator(G: nn.Module, s: DiscoverSettings) -> nn.Module:
    """``G`` frozen: eval mode, no parameter gradients, batch norms folded into convolutions, channels-last.

    Folding (``torch.fx``) is exact up to rounding and removes the batch norms that
    dominate a bf16 step on CPU; a generator that cannot be traced, or whose folded
    copy differs, is used as it is.
    """
    G = G.eval()
    for p in G.parameters():
        p.requires_grad_(False)
    if not getattr(G, "_bn_folded", False):
        G = _fold_batch_norms(G)
    return G.to(memory_format=torch.channels_last) if s.channels_last else G


def _fold_batch_norms(G: nn.Module) -> nn.Module:
    try:
        with warnings.catch_warnings():  # the module imports deprecated torch.jit helpers
            warnings.simplefilter("ignore", DeprecationWarning)
            from torch.fx.experimental.optimization import fuse

        folded = fuse(G)
        n = getattr(G, "latent_dim", None) or next(m for m in G.modules() if isinstance(m, nn.Linear)).in_features
        z = torch.randn(4, n, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            ok = torch.allclose(folded(z), G(z), atol=1e-4)
    except Exception:  # any module torch.fx cannot trace
        return G
    if not ok:
        return G
    for p in folded.parameters():
        p.requires_grad_(False)
    folded._bn_folded = True
    return folded.eval()


def load_generator(bundle, torch_generator: str | None = None, generator_weights: str | Path | None = None):
    """The bundle's generator as a torch module (eval mode).

    ``torch_generator`` as ``"package.module:factory"`` (a callable returning the
    ``nn.Module``; a class works) with, unless the factory loads its own weights,
    ``generator_weights``, a ``state_dict`` file, comes first. Without it: the
    built-in bundle's shipped generator (``corrkit/export/weights/generator.pt``, the
    paper's DCGAN; with ``generator_weights``, that network with those weights, for
    any bundle), and for any other
    bundle its ``generator.onnx`` converted to torch
    (:func:`corrkit.export.convert.torch_generator`). The torch module is checked
    against the bundle's ONNX generator on seeded codes
    (:func:`corrkit.export.weights.check_generator`).
    """
    from corrkit.export import convert

    hint = "give --generator-weights with the generator's state_dict"
    if torch_generator is None:
        if generator_weights is None and not convert.is_builtin(bundle):
            if bundle.generator is None:
                raise BundleError("discovery needs the generator; a fused model has none: give the generator and "
                                  "classifier as a bundle (`corrkit bundle create`)")
            return convert.torch_generator(bundle)  # checked against onnxruntime there
        G = _weights.load_generator(generator_weights, bundle.latent_dim, hint=hint)
    else:
        G = _from_factory(torch_generator)
        if generator_weights is not None:
            path = Path(generator_weights)
            if not path.is_file():
                raise BundleError(f"{path} does not exist; {hint}")
            _weights.load_into(G, path)
        G.eval()
    if bundle.generator is not None:
        _weights.check_generator(G, bundle)
    return G


def _from_factory(torch_generator: str) -> nn.Module:
    return _weights.module_from_factory(torch_generator, "--torch-generator")
