"""corrkit: what does each latent variable of a GAN control?

Torch-free: this package, ``corrkit.kernels`` and ``corrkit.cli`` never import torch.
"""

from __future__ import annotations

__version__ = "0.1.0"


def _find_checkout_subpackages() -> None:
    """Make ``corrkit.kernels``, ``corrkit.cli`` and ``corrkit.export`` importable from the source checkout.

    Installed, those folders sit inside the package; in the checkout they sit beside
    ``corrkit/`` (pyproject maps them). Python puts the current folder first on the
    path of ``python -c``, ``python -m`` and of Ray's workers, so there the
    checkout's ``corrkit/`` is found before the installed one and would miss them.
    A finder appended to ``sys.meta_path`` maps just those three names to the
    checkout's folders; when installed it is never added.
    """
    import importlib.abc
    import importlib.util
    import sys
    from pathlib import Path

    here = Path(__file__).resolve().parent
    root = here.parent
    if (here / "kernels").is_dir() or not (root / "kernels" / "__init__.py").is_file():
        return
    folders = {f"corrkit.{name}": root / name for name in ("kernels", "cli", "export")}

    class CheckoutFinder(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname, path=None, target=None):
            folder = folders.get(fullname)
            if folder is None:
                return None
            return importlib.util.spec_from_file_location(fullname, folder / "__init__.py",
                                                          submodule_search_locations=[str(folder)])

    if not any(type(f).__name__ == "CheckoutFinder" for f in sys.meta_path):
        sys.meta_path.append(CheckoutFinder())


_find_checkout_subpackages()

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
