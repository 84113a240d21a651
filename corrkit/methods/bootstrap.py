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
    q = [100 * (1 - level) / 2, 100 * (1 + level) / 2]
    apcr = np.full((n_dirs, n_classes), np.nan)
    lo, hi = apcr.copy(), apcr.copy()
    tops = np.full((n_classes, k), -1, np.int64)
    inclusion = np.full((n_classes, k), np.nan)
    weights = resample_weights(labels, n_classes, samples=samples, seed=seed)
    for j in range(n_classes):
        x = contrib[:, labels == j]
        if x.shape[1] == 0:
            continue
        apcr[:, j] = x.mean(axis=1) if point is None else point[:, j]
        tops[j] = top_k(apcr[:, j:j + 1], k)[0]
        if weights[j] is None:
            lo[:, j], hi[:, j] = 0.0, np.inf
            continue
        means = x @ weights[j]  # [K, B]
        lo[:, j], hi[:, j] = np.percentile(means, q, axis=1)
        # a member stays in the top k while fewer than k directions beat it in that resample
        for r, i in enumerate(tops[j]):  # one member at a time: [K, B] at most in memory
            inclusion[j, r] = ((means > means[i]).sum(axis=0) < k).mean()
    return {"apcr": apcr, "lo": lo, "hi": hi, "top": tops, "inclusion": inclusion}


def resample_weights(labels: np.ndarray, n_classes: int, *, samples: int = defaults.BOOTSTRAP_SAMPLES,
                     seed: int = defaults.BOOTSTRAP_SEED) -> list[np.ndarray | None]:
    """The resamples of every class's codes: per class ``j`` float64 ``[n_j, B]``, column ``b`` the
    multinomial counts of resample ``b`` over its ``n_j`` codes (in run order) divided by ``n_j``, so
    that ``values @ w`` is each resample's mean; ``None`` for a class with fewer than two codes.

    Drawn class by class from one seeded generator, so every number of a run (APCR, the
    intersection ratio, flip rates, translation successes) is resampled with the same resamples.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    out: list[np.ndarray | None] = []
    for j in range(n_classes):
        n = int((labels == j).sum())
        out.append(None if n < 2 else rng.multinomial(n, np.full(n, 1.0 / n), size=int(samples)).T / n)
    return out


def percentiles(values: np.ndarray, level: float = defaults.BOOTSTRAP_LEVEL) -> tuple[float, float]:
    """``(lo, hi)``: the ``(1 - level) / 2`` and ``(1 + level) / 2`` percentiles of resampled values ``[B]``."""
    lo, hi = np.percentile(np.asarray(values, np.float64), [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return float(lo), float(hi)


def mean_interval(draws: list[np.ndarray], spans: list, complete: bool = True,
                  level: float = defaults.BOOTSTRAP_LEVEL) -> tuple[float, float] | None:
    """The interval of the mean of several resampled statistics (one ``[B]`` per class or pair, resample ``b``
    of each drawn together, :func:`resample_weights`), as control, translate and compare report it.

    ``None`` when not ``complete`` (a member had one code) or nothing was measured; when the mean does not
    vary over the resamples, the mean of the members' own intervals ``spans`` (``(lo, hi)`` each) instead of
    a zero-width one.
    """
    if not (draws and complete):
        return None
    pooled = np.mean(draws, axis=0)
    if np.ptp(pooled) <= 1e-12:
        return tuple(float(v) for v in np.mean(np.asarray(spans, np.float64), axis=0))
    return percentiles(pooled, level)


def constant_share_interval(value: float, n: int, level: float = defaults.BOOTSTRAP_LEVEL) -> tuple[float, float]:
    """The exact (Clopper–Pearson) interval of a share when all ``n`` codes had the same outcome.

    Resampling such codes gives the same share every time, a zero-width interval that
    would claim certainty (0 flips in 8 codes is not a flip rate of exactly 0). **Choice:** there
    the exact binomial interval is given instead: ``[0, 1 - a^(1/n)]`` for no successes and
    ``[a^(1/n), 1]`` for all, ``a = (1 - level) / 2``.
    """
    a = (1 - level) / 2
    edge = a ** (1.0 / n)
    return (0.0, 1.0 - edge) if value < 0.5 else (edge, 1.0)


def share_interval(x: np.ndarray, w: np.ndarray, level: float = defaults.BOOTSTRAP_LEVEL):
    """``((lo, hi), resampled shares [B])`` of 0/1 outcomes ``x [n]`` under resamples ``w [n, B]``."""
    x = np.asarray(x, np.float64)
    b = x @ w
    if x.min() == x.max():
        return constant_share_interval(float(x[0]), len(x), level), b
    return percentiles(b, level), b


def share_intervals(outcomes: list[np.ndarray | None], weights: list[np.ndarray | None],
                    level: float = defaults.BOOTSTRAP_LEVEL):
    """Intervals of per-class shares and of their pooled share, from the classes' resamples.

    Parameters
    ----------
    outcomes : per class float or bool ``[n_j]`` (a code's 0/1 outcome, in run order), or ``None`` (not measured)
    weights : :func:`resample_weights`

    Returns
    -------
    ``(per_class, pooled)``: per class ``(lo, hi)`` or ``None`` (not measured), ``(0, 1)`` for a class
    with one code (one code cannot bound a share); ``pooled`` the interval of the share over all
    measured codes (resample ``b`` of every class together; when that has no spread, every class being
    alike, the size-weighted mean of the classes' own intervals), ``None`` when a measured class has one code.
    """
    per_class, parts, total, complete = [], [], 0, True
    for x, w in zip(outcomes, weights):
        if x is None:
            per_class.append(None)
            continue
        x = np.asarray(x, np.float64)
        if w is None:
            per_class.append((0.0, 1.0))
            complete = False
            continue
        if len(x) != w.shape[0]:
            raise ValueError(f"{len(x)} outcomes for a class whose resamples cover {w.shape[0]} codes")
        span, b = share_interval(x, w, level)  # b [B]: each resample's share
        per_class.append(span)
        parts.append(b * len(x))
        total += len(x)
    if not (complete and parts):
        return per_class, None
    pooled = sum(parts) / total
    if np.ptp(pooled) <= 1e-12:  # every class's codes alike: the classes' own intervals, weighted by size
        sizes = [len(x) for x in outcomes if x is not None]
        spans = [v for v in per_class if v is not None]
        return per_class, tuple(float(sum(n * v[e] for n, v in zip(sizes, spans)) / total) for e in (0, 1))
    return per_class, percentiles(pooled, level)
