"""The one way corrkit reads and writes torch weights, and checks torch modules against a bundle's ONNX.

Weight and checkpoint files come from folders a user names (``--work``,
``--weights``), so nothing is ever unpickled: ``weights_only=True`` admits only
tensors and plain containers, and a file holding anything else is refused.
The shipped weights of the built-in bundle live in this folder (:data:`DIR`).

Work done on the torch modules (gradients, inversion, learned directions) only
means something for a bundle when they are the functions its ONNX files compute,
so every such command first runs :func:`check_matches` with one tolerance,
:data:`MATCH_ATOL`: the one every export was validated to
(:class:`corrkit.export.onnx_export.ExportConfig`), so the weights an ONNX file
was exported from always pass.
"""

from __future__ import annotations

import io as _bytes_io
import math
from pathlib import Path

import numpy as np

from corrkit.errors import BundleError

DIR = Path(__file__).parent
MATCH_ATOL = 1e-4


def load_state(path: str | Path) -> dict:
    """A state dict (or checkpoint dict) from ``path``, on the CPU, without unpickling code.

    Raises :class:`BundleError` naming the file when it is missing, damaged, or
    holds objects other than tensors and plain containers.
    """
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise BundleError(f"{path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BundleError(f"{path} is not a plain torch weights file ({first[:200]})") from None
    if not isinstance(state, dict):
        raise BundleError(f"{path} holds a {type(state).__name__}, not a state dict")
    return state


def load_into(module, path: str | Path):
    """``module.load_state_dict(load_state(path))``; a shape or key mismatch is a :class:`BundleError`."""
    try:
        module.load_state_dict(load_state(path))
    except RuntimeError as exc:
        raise BundleError(f"{path} does not fit {type(module).__name__} ({str(exc).splitlines()[0]})") from None
    return module


def save_state(obj, path: str | Path) -> None:
    """``torch.save(obj)`` to ``path`` atomically (:func:`corrkit._core.io.write_bytes`): a killed
    writer leaves the previous file, never half of one."""
    import torch

    from corrkit._core import io

    buf = _bytes_io.BytesIO()
    torch.save(obj, buf)
    io.write_bytes(path, buf.getvalue())


# --- the paper's modules with the shipped (or given) weights ------------------------------------------------------


def _frozen(module):
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def load_generator(path: str | Path | None = None, latent_dim: int | None = None, *, hint: str = ""):
    """The paper's :class:`~corrkit.export.models.Generator`, eval mode and frozen, from a state dict file.

    Parameters
    ----------
    path : the ``state_dict`` file (default: the built-in bundle's ``generator.pt``)
    latent_dim : N (default: the Generator's)
    hint : what to do when ``path`` is missing (the option that names it)
    """
    from corrkit.export.models import LATENT_DIM, Generator

    path = Path(path) if path is not None else DIR / "generator.pt"
    if not path.is_file():
        raise BundleError(f"{path} does not exist" + (f"; {hint}" if hint else ""))
    return _frozen(load_into(Generator(latent_dim or LATENT_DIM), path))


def load_modules(weights: str | Path | None = None, latent_dim: int | None = None, n_classes: int = 10, *,
                 hint: str = ""):
    """The paper's Generator and Classifier from ``weights/{generator,classifier}.pt``, eval mode and frozen.

    ``weights`` is a folder (default: :data:`DIR`, the built-in bundle's); ``hint`` as for :func:`load_generator`.

    Returns
    -------
    (Generator, Classifier)
    """
    from corrkit.export.models import Classifier

    weights = Path(weights) if weights is not None else DIR
    g = load_generator(weights / "generator.pt", latent_dim, hint=hint)
    path = weights / "classifier.pt"
    if not path.is_file():
        raise BundleError(f"{path} does not exist" + (f"; {hint}" if hint else ""))
    return g, _frozen(load_into(Classifier(n_classes), path))


# --- torch against ONNX -------------------------------------------------------------------------------------------


def check_matches(got: np.ndarray, want: np.ndarray, what: str, fix: str, atol: float = MATCH_ATOL) -> float:
    """Max ``|torch - ONNX|`` of the same outputs; a :class:`BundleError` above ``atol`` (or on other shapes).

    Parameters
    ----------
    got, want : float arrays of one shape, the torch and the ONNX outputs on the same inputs
    what : what was compared, for the message (``"generator"``, ...)
    fix : what to do about a mismatch
    """
    got, want = np.asarray(got), np.asarray(want)
    diff = float(np.max(np.abs(got - want))) if got.shape == want.shape else math.inf
    if not np.isfinite(diff) or diff > atol:
        shapes = "" if got.shape == want.shape else f", shapes {list(got.shape)} and {list(want.shape)}"
        raise BundleError(f"torch and ONNX disagree on the {what} (max |torch - onnx| = {diff:.3g} > {atol:g}"
                          f"{shapes}); {fix}")
    return diff


def check_generator(G, bundle, n: int = 8) -> float:
    """:func:`check_matches` of a torch generator and the bundle's generator on ``n`` seeded codes.

    The ONNX images come from :func:`corrkit._core.engine.generate`, in [0, 1] and
    clipped; they are mapped back to the generator's output range, and the torch
    images are clipped to it and laid out the same way (``[B, H, W]`` grey,
    ``[B, H, W, C]`` colour), so the difference is in the generator's units.
    """
    import torch

    from corrkit._core.engine import generate

    have = getattr(G, "latent_dim", bundle.latent_dim)
    if have != bundle.latent_dim:
        raise BundleError(f"the bundle's latent size is {bundle.latent_dim}, the torch generator's {have}")
    z = np.random.default_rng(0).standard_normal((n, bundle.latent_dim)).astype(np.float32)
    with torch.no_grad():
        got = G(torch.from_numpy(z)).float().numpy()
    lo, hi = map(float, bundle.generator_output_range)
    got = np.clip(got, lo, hi)
    if got.ndim == 4:
        got = got[:, 0] if got.shape[1] == 1 else got.transpose(0, 2, 3, 1)
    want = lo + generate(bundle, z).astype(np.float64) * (hi - lo)
    return check_matches(got, want, "generator's images",
                         "give the torch weights this bundle's generator.onnx was exported from")


def module_from_factory(spec: str, option: str = "--generator"):
    """The ``nn.Module`` that ``"package.module:factory"`` builds (a class or any callable returning one)."""
    import importlib

    from torch import nn

    mod, _, name = str(spec).partition(":")
    if not mod or not name:
        raise BundleError(f"{option} must be 'package.module:factory', got {spec!r}")
    try:
        module = getattr(importlib.import_module(mod), name)()
    except (ImportError, AttributeError, TypeError) as exc:
        raise BundleError(f"cannot build a module from {spec!r}: {exc}") from None
    if not isinstance(module, nn.Module):
        raise BundleError(f"{spec} returned {type(module).__name__}, not a torch nn.Module")
    return module
