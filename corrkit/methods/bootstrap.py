"""Percentile-bootstrap error bars for APCR (SPEC §11).

APCR is a mean over each class's codes of a per-code contribution (the code's mean
over ``k != 0`` of ``|S_j(z^(i,k)) - S_j(z)| / S_j(z)``, SPEC §2), so resampling each
class's codes with replacement gives its sampling spread. A resample is a multinomial
count vector over the class's ``n`` codes, so one resample's APCR for every
direction is a matrix product and ``B = 1000`` resamples cost one ``[K, n] @ [n, B]``.

With fewer than two codes in a class the resamples are all the same code and a
percentile interval would have zero width, claiming a certainty one code cannot
give; such a class gets the widest honest interval, ``[0, inf]`` (APCR is >= 0),
and NaN inclusion probabilities.
"""

from __future__ import annotations

import numpy as np

from corrkit._core import defaults


def bootstrap_apcr(contrib: np.ndarray, labels: np.ndarray, n_classes: int, *, top: int = defaults.TOP_K,
                   samples: int = defaults.BOOTSTRAP_SAMPLES, seed: int = defaults.BOOTSTRAP_SEED,
                   level: float = defaults.BOOTSTRAP_LEVEL, point: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Intervals of APCR and inclusion probabilities of each class's top-``top`` directions.

    Parameters
    ----------
    contrib : float [K, M]
        Per-code contributions; ``contrib[:, labels == j].mean(1)`` is ``APCR[:, j]``.
    labels : int [M]
        Class of each code (``-1``: in no class, ignored).
    n_classes, top, samples, seed, level :
        ``C``; the ``k`` of the top-``k``; ``B``; the generator seed; the interval's coverage.
    point : float [K, C], optional
        The run's APCR (its kernel sums, equal to the contributions' class means to rounding):
        reported and ranked (:func:`corrkit.kernels.ranking.top_k`) as the run's own top-``k``.

    Returns
    -------
    dict with ``apcr`` [K, C] (the point values), ``lo``, ``hi`` [K, C] (percentiles
    ``(1 - level) / 2`` and ``(1 + level) / 2``), ``top`` int [C, k] (the point top-``k``,
    descending) and ``inclusion`` [C, k] (share of resamples in which each stays in the top ``k``).
    A class with no codes has NaN everywhere and ``top`` -1.
    """
    from corrkit.kernels.ranking import top_k

    contrib = np.asarray(contrib, dtype=np.float64)
    labels = np.asarray(labels)
    if contrib.ndim != 2 or labels.shape != (contrib.shape[1],):
        raise ValueError(f"contributions {contrib.shape} and labels {labels.shape} do not fit [K, M] and [M]")
    if not (0 < level < 1) or int(samples) < 1:
        raise ValueError(f"level must lie in (0, 1) and samples be >= 1 (got {level}, {samples})")
    n_dirs = contrib.shape[0]
    k = min(int(top), n_dirs)
    rng = np.random.default_rng(seed)
    q = [100 * (1 - level) / 2, 100 * (1 + level) / 2]
    apcr = np.full((n_dirs, n_classes), np.nan)
    lo, hi = apcr.copy(), apcr.copy()
    tops = np.full((n_classes, k), -1, np.int64)
    inclusion = np.full((n_classes, k), np.nan)
    for j in range(n_classes):
        x = contrib[:, labels == j]
        n = x.shape[1]
        if n == 0:
            continue
        apcr[:, j] = x.mean(axis=1) if point is None else point[:, j]
        tops[j] = top_k(apcr[:, j:j + 1], k)[0]
        if n < 2:
            lo[:, j], hi[:, j] = 0.0, np.inf
            continue
        w = rng.multinomial(n, np.full(n, 1.0 / n), size=int(samples)).T / n  # [n, B]
        means = x @ w  # [K, B]
        lo[:, j], hi[:, j] = np.percentile(means, q, axis=1)
        # a member stays in the top k while fewer than k directions beat it in that resample
        beaten = (means[None, :, :] > means[tops[j]][:, None, :]).sum(axis=1)  # [k, B]
        inclusion[j] = (beaten < k).mean(axis=1)
    return {"apcr": apcr, "lo": lo, "hi": hi, "top": tops, "inclusion": inclusion}
