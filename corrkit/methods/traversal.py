"""Traversals: generator images and class probabilities along a run's directions (SPEC §5 pictures).

A traversal row is one code ``z`` of class ``j`` walked along one direction ``d_i``
of an APCR run: ``z + k * delta * d_i`` for ``k in -m..m`` (the run's grid, ``k = 0``
included), with the image and ``S_j`` at every step. This module returns the arrays;
:mod:`corrkit.viz.figures` draws them.
"""

from __future__ import annotations

import numpy as np

from corrkit._core.defaults import DELTA, STEPS
from corrkit.errors import CorrkitError

Row = tuple[int, int, np.ndarray]  # (class j, direction i, code z float32 [N])


def codes_of(result, j: int) -> np.ndarray:
    """The codes of ``Z_j`` in an APCR run, float32 ``[M_j, N]``; an error when the class has none."""
    z = result.latents[np.asarray(result.labels) == j]
    if len(z) == 0:
        raise CorrkitError(f"class {result.classes[j]!r} has no codes in this run; nothing to traverse")
    return z


def top_rows(result, j: int, top: int = 3, codes: int = 2) -> list[Row]:
    """Class ``j``'s ``top`` directions by APCR, each walked from its first ``codes`` codes (direction-major)."""
    z0 = codes_of(result, j)[:codes]
    best = np.argsort(-result.apcr[:, j], kind="stable")[:top]
    return [(j, int(i), z) for i in best for z in z0]


def strongest_rows(result) -> list[Row]:
    """One row per class with codes: its strongest direction by APCR, walked from its first code."""
    rows = [(j, int(np.argmax(result.apcr[:, j])), codes_of(result, j)[0])
            for j in range(len(result.classes)) if np.any(np.asarray(result.labels) == j)]
    if not rows:
        raise CorrkitError("the run has no codes to traverse")
    return rows


def walk(bundle, result, rows: list[Row], steps: int | None = None, delta: float | None = None):
    """Images and own-class probabilities along traversal rows.

    Parameters
    ----------
    bundle : Bundle
        Its generator draws the images, its fused model gives the probabilities.
    result : APCRResult
        Supplies ``directions`` and, by default, ``params["steps"]`` and ``params["delta"]``.
    rows : list of (j, i, z)
    steps, delta : optional
        ``m`` and the step length (default: the run's).

    Returns
    -------
    images : float32 [R, 2m+1, H, W] or [R, 2m+1, H, W, C]
        In [0, 1] (:func:`corrkit._core.engine.generate`).
    score : float32 [R, 2m+1]
        ``S_j`` of each image for its row's class ``j``.
    ks : float32 [2m+1]
        ``k * delta``, the offsets along the direction.
    """
    from corrkit._core.engine import Engine, generate

    m = int(steps or result.params.get("steps", STEPS))
    d = float(delta or result.params.get("delta", DELTA))
    ks = np.arange(-m, m + 1, dtype=np.float32) * d
    z = np.stack([z0[None, :] + ks[:, None] * result.directions[i][None, :] for _, i, z0 in rows])
    flat = z.reshape(-1, z.shape[-1]).astype(np.float32)
    images = generate(bundle, flat)
    probs = Engine(bundle, device="cpu").probabilities(flat).reshape(len(rows), len(ks), -1)
    score = np.stack([probs[r, :, j] for r, (j, _, _) in enumerate(rows)])
    return images.reshape(len(rows), len(ks), *images.shape[1:]), score, ks
