"""The one way corrkit reads torch weights: ``torch.load(weights_only=True)``, errors as one line.

Weight and checkpoint files come from folders a user names (``--work``,
``--weights``), so nothing is ever unpickled: ``weights_only=True`` admits only
tensors and plain containers, and a file holding anything else is refused.
The shipped weights of the built-in bundle live in this folder.
"""

from __future__ import annotations

from pathlib import Path

from corrkit.errors import BundleError

DIR = Path(__file__).parent


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
