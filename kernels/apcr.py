"""APCR accumulation kernels (Li et al., ICPR 2020, Eq. 1-3; SPEC §2).

The intervention grid is a flat sequence of points ``p`` in code-major order::

    p = (code * K + i) * (2m) + s,   s in [0, 2m),  k = s - m if s < m else s - m + 1

so step ``k = 0`` is not part of the grid (it is the base point, evaluated once per
code). A batch is a contiguous range ``[p0, p0 + B)``. The kernel adds the batch's
contributions into float64 sums; each direction ``i`` owns its own slots and a
direction's slots are always filled in ascending ``p`` order, so the sums are the
same bit for bit whatever the batch size or thread count.

Beside the sums over codes the kernel keeps what the error bars need (SPEC §11):
each code's own APCR sum ``contrib_sum [K, M]`` (``sum_k |S_j(z^(i,k)) - S_j(z)| / S_j(z)``
for the code's class ``j``; APCR is its class mean over ``2m``) and the sums of squares of
the own-class score ``curves_sq_sum [K, 2m+1, C]`` (the spread of a score curve). A
code's slots are written by the batches that hold its points only, so shards fold them
exactly like the other sums.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from corrkit.kernels._config import CACHE, FASTMATH


# Serial on purpose: one batch is O(rows x classes) work (microseconds), far less than
# a parallel region's fork/join (measured 6 ms with Numba's omp layer beside
# onnxruntime's threads on this 2-core machine), and the cores belong to onnxruntime.
@njit(fastmath=FASTMATH, cache=CACHE)
def _accumulate(probs, p0, base, labels, n_dirs, m, curves_sum, apcr_sum, up_sum, down_sum, contrib_sum,
                curves_sq_sum, c0):
    n_rows = probs.shape[0]
    n_cls = probs.shape[1]
    per_code = n_dirs * 2 * m
    c_lo = p0 // per_code
    c_hi = (p0 + n_rows - 1) // per_code
    per_code_sums = contrib_sum.shape[1] > 0
    for i in range(n_dirs):
        for c in range(c_lo, c_hi + 1):
            j = labels[c]
            if j < 0:
                continue
            b_j = np.float64(base[c, j])
            first = (c * n_dirs + i) * 2 * m
            for s in range(2 * m):
                r = first + s - p0
                if r < 0 or r >= n_rows:
                    continue
                kk = s if s < m else s + 1  # curve index k + m, skipping k = 0
                for q in range(n_cls):
                    curves_sum[i, kk, j, q] += probs[r, q]
                p_j = np.float64(probs[r, j])
                d = p_j - b_j
                apcr_sum[i, j] += abs(d) / b_j
                if per_code_sums:
                    contrib_sum[i, c - c0] += abs(d) / b_j
                    curves_sq_sum[i, kk, j] += p_j * p_j
                if s < m:
                    down_sum[i, j] += d
                else:
                    up_sum[i, j] += d


def new_sums(n_dirs: int, m: int, n_classes: int, n_codes: int = 0) -> dict[str, np.ndarray]:
    """Zeroed float64 accumulators for a grid of ``n_dirs`` directions, ``2m+1`` steps and ``n_codes`` codes.

    ``n_codes = 0`` keeps no per-code sums (``contrib_sum`` is ``[K, 0]``): the class means only.
    """
    return {
        "curves_sum": np.zeros((n_dirs, 2 * m + 1, n_classes, n_classes)),
        "apcr_sum": np.zeros((n_dirs, n_classes)),
        "up_sum": np.zeros((n_dirs, n_classes)),
        "down_sum": np.zeros((n_dirs, n_classes)),
        "contrib_sum": np.zeros((n_dirs, n_codes)),
        "curves_sq_sum": np.zeros((n_dirs, 2 * m + 1, n_classes if n_codes else 0)),
    }


def accumulate(sums: dict[str, np.ndarray], probs: np.ndarray, p0: int, base: np.ndarray,
               labels: np.ndarray, m: int) -> None:
    """Add one batch of grid probabilities to ``sums`` in place.

    Parameters
    ----------
    sums : dict of float64 arrays from :func:`new_sums`
    probs : float32 [B, C]
        ``S(z^(i,k))`` for grid points ``p0 .. p0 + B - 1``.
    p0 : int
        Flat index of the first row.
    base : float32 [M, C]
        ``S(z)`` for every code (the ``k = 0`` point).
    labels : int64 [M]
        Class of each code (``-1``: not in any class set, skipped).
    m : int
        Steps on each side.
    """
    curves = sums["curves_sum"]
    n_dirs, n_steps, n_cls, _ = curves.shape
    probs = np.ascontiguousarray(probs, dtype=np.float32)
    base = np.ascontiguousarray(base, dtype=np.float32)
    labels = np.ascontiguousarray(labels, dtype=np.int64)
    if n_steps != 2 * m + 1 or m < 1:
        raise ValueError(f"sums hold {n_steps} steps, m={m} needs {2 * m + 1}")
    if probs.ndim != 2 or probs.shape[1] != n_cls or base.shape != (len(labels), n_cls):
        raise ValueError(f"probs {probs.shape}, base {base.shape}, labels {labels.shape} do not fit C={n_cls}")
    if len(probs) == 0:
        return
    if p0 < 0 or p0 + len(probs) > len(labels) * n_dirs * 2 * m:
        raise ValueError(f"rows {p0}..{p0 + len(probs)} fall outside the grid")
    contrib = sums.get("contrib_sum")
    if contrib is None:
        contrib = np.zeros((n_dirs, 0))
    c0 = int(sums.get("contrib_first", 0))  # a shard's per-code sums hold its own codes only (corrkit._core.shards)
    per_code = n_dirs * 2 * m
    first, last = p0 // per_code, (p0 + len(probs) - 1) // per_code
    sq = sums.get("curves_sq_sum")
    if contrib.shape[1] and (contrib.shape[0] != n_dirs or first < c0 or last - c0 >= contrib.shape[1]
                             or sq is None or sq.shape != (n_dirs, n_steps, n_cls)):
        raise ValueError(f"per-code sums {contrib.shape} from code {c0} do not hold codes {first}..{last} of "
                         f"[K, M] = [{n_dirs}, {len(labels)}]")
    if sq is None or not contrib.shape[1]:
        sq = np.zeros((n_dirs, n_steps, 0))
    _accumulate(probs, int(p0), base, labels, n_dirs, m, curves, sums["apcr_sum"], sums["up_sum"],
                sums["down_sum"], contrib, sq, c0)


def finalize(sums: dict[str, np.ndarray], base: np.ndarray, labels: np.ndarray, m: int) -> dict[str, np.ndarray]:
    """Turn sums into ``curves [K, 2m+1, C, C]``, ``apcr``, ``up``, ``down [K, C]`` (float64).

    Means are over the codes of each class (and over steps for APCR, up, down);
    a class with no codes gets NaN. With per-code sums, also ``contributions [K, M]``
    (each code's own APCR: ``apcr[:, j]`` is their mean over the codes of class ``j``) and
    ``curves_sd [K, 2m+1, C]`` (the standard deviation over a class's codes of its own score).
    """
    curves_sum = sums["curves_sum"]
    n_dirs, _, n_cls, _ = curves_sum.shape
    counts = np.bincount(labels[labels >= 0], minlength=n_cls).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        inv = np.where(counts > 0, 1.0 / counts, np.nan)
        base_sum = np.zeros((n_cls, n_cls))
        np.add.at(base_sum, labels[labels >= 0], base[labels >= 0].astype(np.float64))
        curves = curves_sum * inv[None, None, :, None]
        curves[:, m] = (base_sum * inv[:, None])[None]
        apcr = sums["apcr_sum"] * inv[None, :] / (2 * m)
        up = sums["up_sum"] * inv[None, :] / m
        down = sums["down_sum"] * inv[None, :] / m
    out = {"curves": curves, "apcr": apcr, "up": up, "down": down, "counts": counts.astype(np.int64)}
    contrib = sums.get("contrib_sum")
    if contrib is not None and contrib.shape[1]:
        out["contributions"] = contrib / (2 * m)
        own = np.einsum("iskk->isk", curves)  # mean own-class score [K, 2m+1, C]
        with np.errstate(invalid="ignore", divide="ignore"):
            sq = sums["curves_sq_sum"] * inv[None, None, :]
            base_sq = np.zeros(n_cls)
            sel = labels >= 0
            np.add.at(base_sq, labels[sel], base[sel, labels[sel]].astype(np.float64) ** 2)
            sq[:, m] = (base_sq * inv)[None]
            out["curves_sd"] = np.sqrt(np.maximum(sq - own ** 2, 0.0))
    return out
