"""Ranking and controlling-set selection (SPEC §2)."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from corrkit.kernels._config import CACHE, FASTMATH, PARALLEL


@njit(parallel=PARALLEL, fastmath=FASTMATH, cache=CACHE)
def _rank(scores, out):
    n, c = scores.shape
    for j in prange(c):
        col = scores[:, j].copy()
        for t in range(n):
            if np.isnan(col[t]):
                col[t] = -np.inf  # NaN ranks last
        # stable descending order: sort -score ascending with mergesort; ties keep index order
        out[:, j] = np.argsort(-col, kind="mergesort")


def rank(scores: np.ndarray) -> np.ndarray:
    """Dims of each class sorted by score, descending (ties by index, NaN last).

    Parameters
    ----------
    scores : float [K, C]

    Returns
    -------
    int64 [K, C]; column ``j`` is the ranking for class ``j``.
    """
    scores = np.ascontiguousarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"scores must be [K, C], got shape {scores.shape}")
    out = np.empty(scores.shape, dtype=np.int64)
    if scores.size:
        _rank(scores, out)
    return out


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """``[C, k]`` int64: the ``k`` highest-scoring dims per class (SPEC §2 ``C_j^seq``)."""
    if k < 1 or k > scores.shape[0]:
        raise ValueError(f"k={k} must be between 1 and the number of directions ({scores.shape[0]})")
    return rank(scores)[:k].T.copy()


@njit(parallel=PARALLEL, fastmath=FASTMATH, cache=CACHE)
def _threshold(scores, s, out):
    n, c = scores.shape
    for j in prange(c):
        total = 0.0
        cnt = 0
        for t in range(n):
            if not np.isnan(scores[t, j]):
                total += scores[t, j]
                cnt += 1
        if cnt == 0:
            continue
        mean = total / cnt
        var = 0.0
        for t in range(n):
            if not np.isnan(scores[t, j]):
                var += (scores[t, j] - mean) ** 2
        cut = mean + s * np.sqrt(var / cnt)
        for t in range(n):
            out[t, j] = scores[t, j] >= cut


def threshold_mask(scores: np.ndarray, s: float = 1.0) -> np.ndarray:
    """``[K, C]`` bool: dims with score ``>= mean + s * std`` over dims (population std), per class."""
    scores = np.ascontiguousarray(scores, dtype=np.float64)
    out = np.zeros(scores.shape, dtype=np.bool_)
    if scores.size:
        _threshold(scores, float(s), out)
    return out
