"""One exception family for everything a user can get wrong.

The CLI catches :class:`CorrkitError` (and only it), prints the message on one
line and exits with code 1. Messages say what to do, not only what failed.
"""

from __future__ import annotations


class CorrkitError(Exception):
    """Base of every error corrkit raises on bad input or missing resources."""


class DataError(CorrkitError):
    """The Fashion-MNIST files are missing or damaged."""


class BundleError(CorrkitError):
    """A bundle or ONNX model is missing, malformed or of the wrong shape."""


class ModelOutputError(CorrkitError):
    """A model produced NaN/inf or outputs that are neither probabilities nor logits."""


class GridError(CorrkitError):
    """Intervention-grid parameters (steps, delta, directions, latents) are impossible."""


class MissingExtraError(CorrkitError):
    """An optional dependency (torch, ray, matplotlib ...) is not installed."""

    def __init__(self, package: str, extra: str, note: str = ""):
        super().__init__(
            f"this command needs {package}, which is not installed; "
            f"install it with: pip install 'corrkit[{extra}]'" + (f" ({note})" if note else "")
        )
