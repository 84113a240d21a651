"""Run folders: reading a run's result files and finding the bundle that made it.

A finished run records the bundle it analysed: ``summary.json`` (``corrkit apcr
--out``) holds the bundle card's path and file hashes, ``invert.json`` (``corrkit
export invert``) the path and the generator's hash. Figures and the report both
need that bundle back. The recorded path may be gone (runs are copied between
machines), so the built-in bundle is tried next; images of a run are only drawn by
a generator with the recorded hash, since another one would draw another model.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Mapping

from corrkit.errors import CorrkitError


def read_result(path: str | os.PathLike) -> dict | None:
    """A result JSON file as a dict (a bare value as ``{"value": ...}``); ``None``, with a warning, when unreadable."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        warnings.warn(f"{path} skipped: {exc}", stacklevel=2)
        return None
    return data if isinstance(data, dict) else {"value": data}


def read_summary(run_dir: str | os.PathLike) -> dict:
    """``summary.json`` of a run folder, or ``{}`` when there is none (or it is unreadable)."""
    path = Path(run_dir) / "summary.json"
    return (read_result(path) or {}) if path.is_file() else {}


def recorded_bundle(summary: Mapping | None = None, invert: Mapping | None = None) -> tuple[str | None, str | None]:
    """``(path, generator SHA-256)`` that a run's ``summary.json`` (else its ``invert.json``) records, ``None`` each.

    Parameters
    ----------
    summary, invert : dict, optional
        The contents of ``summary.json`` (its ``bundle`` card) and of ``invert.json``.
    """
    card = (summary or {}).get("bundle") or {}
    invert = invert or {}
    return (card.get("path") or invert.get("bundle"),
            (card.get("files") or {}).get("generator") or invert.get("generator_sha256"))


def find_bundle(path: str | os.PathLike | None, generator_sha256: str | None = None, *,
                same_generator: bool = False):
    """The bundle at ``path``, else the built-in bundle; ``None`` when neither loads.

    With ``same_generator`` a candidate only counts when it has a generator whose
    hash is ``generator_sha256`` (any generator when no hash was recorded).
    """
    from corrkit._core.bundle import builtin_path, load_bundle

    for candidate in (path, builtin_path()):
        if not candidate or not Path(candidate).is_dir():
            continue
        try:
            bundle = load_bundle(candidate)
        except CorrkitError:
            continue
        if not same_generator:
            return bundle
        if bundle.generator is not None and (generator_sha256 is None
                                             or bundle.hashes().get("generator") == generator_sha256):
            return bundle
    return None


def run_bundle(run_dir: str | os.PathLike):
    """The bundle whose generator made a run's images, or ``None`` (with a warning) when it is not at hand."""
    bundle = find_bundle(*recorded_bundle(read_summary(run_dir)), same_generator=True)
    if bundle is None:
        warnings.warn("the generator this run was made with is not available (path gone or its hash differs); "
                      "traversal grids are skipped", stacklevel=2)
    return bundle
