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


# The public API: name -> module that defines it. Imported on first use (PEP 562), so that
# ``import corrkit`` stays light and each name is the real object, with its real signature.
_API = {
    "Bundle": "corrkit._core.bundle", "load_bundle": "corrkit._core.bundle", "create_bundle": "corrkit._core.bundle",
    "Engine": "corrkit._core.engine", "generate": "corrkit._core.engine", "Execution": "corrkit._core.execution",
    "apcr": "corrkit.methods.sequential", "APCRResult": "corrkit.methods.sequential",
    "sefa": "corrkit.methods.sefa", "SefaResult": "corrkit.methods.sefa",
    "ganspace": "corrkit.methods.ganspace", "GanspaceResult": "corrkit.methods.ganspace",
    "interfacegan": "corrkit.methods.interfacegan", "InterfaceganResult": "corrkit.methods.interfacegan",
    "project_boundary": "corrkit.methods.interfacegan",
    "optimize": "corrkit.methods.optimize", "OptimizedWeights": "corrkit.methods.optimize",
    "OptimizeSettings": "corrkit.methods.objective",
    "control": "corrkit.methods.control", "ControlResult": "corrkit.methods.control",
    "intersection_ratio": "corrkit.methods.control",
    "manipulate": "corrkit.methods.manipulate", "ManipulationResult": "corrkit.methods.manipulate",
    "translate": "corrkit.methods.translate", "TranslationResult": "corrkit.methods.translate",
    "compare": "corrkit.methods.compare", "latent_space": "corrkit.methods.latent_space",
}


def __getattr__(name: str):
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'corrkit' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = ["CorrkitError", "versions", "__version__", *_API]
