"""corrkit: what does each latent variable of a GAN control?

Torch-free: this package, ``corrkit.kernels`` and ``corrkit.cli`` never import torch.
"""

from __future__ import annotations

__version__ = "0.1.0"

from corrkit.errors import CorrkitError  # noqa: E402


def versions() -> dict[str, str]:
    """Versions of corrkit and the packages its numbers depend on."""
    import numba
    import numpy
    import onnx
    import onnxruntime

    return {"corrkit": __version__, "numpy": numpy.__version__, "numba": numba.__version__,
            "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}


def apcr(*args, **kwargs):
    """Sequential-intervention APCR; see :func:`corrkit.methods.sequential.apcr`."""
    from corrkit.methods.sequential import apcr as _apcr

    return _apcr(*args, **kwargs)


def load_bundle(path=None, **kwargs):
    """Load a bundle; see :func:`corrkit._core.bundle.load_bundle`."""
    from corrkit._core.bundle import load_bundle as _load

    return _load(path, **kwargs)


__all__ = ["CorrkitError", "apcr", "load_bundle", "versions", "__version__"]
