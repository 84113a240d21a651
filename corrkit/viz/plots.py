"""Plots of the paper (Li et al., ICPR 2020) from plain arrays, as PNG (extra ``figures``).

Every function takes NumPy arrays, lists or dicts of numbers (never a result
object or a model), so it can draw results of any command: score curves and APCR
histograms of :mod:`corrkit.methods.sequential`, the intersection ratio of the
controlling sets, the translation matrix, the direction-method yardstick, flip
rates and t-SNE maps. Each returns the PNG bytes and, with ``out`` set, writes them
atomically. Images of the generator are drawn by :mod:`corrkit.viz.images`.

matplotlib is imported inside the functions and driven through
:class:`matplotlib.figure.Figure` with the Agg canvas, never through
``pyplot``: no global backend is switched and no figure is left open.
"""

from __future__ import annotations

import io as _bytes_io
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from corrkit._core import io
from corrkit._core.defaults import DELTA, TOP_K
from corrkit.errors import CorrkitError, MissingExtraError

DPI = 100


def _figure(width: float, height: float):
    """A constrained-layout Figure of exactly ``width x height`` inches at :data:`DPI`."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingExtraError("matplotlib", "figures") from None
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _finish(fig, out: str | os.PathLike | None) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = _bytes_io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white")
    data = buf.getvalue()
    if out is not None:
        io.write_bytes(Path(out), data)
    return data


def _class_colors(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _grid_shape(n: int, max_cols: int = 5) -> tuple[int, int]:
    cols = min(n, max_cols)
    return -(-n // cols), cols


def _check(a, ndim: int, what: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != ndim or 0 in a.shape:
        raise CorrkitError(f"{what} must be a non-empty {ndim}-d array, got shape {list(a.shape)}")
    return a


def _classes(classes: Sequence[str] | None, n: int) -> list[str]:
    names = [str(c) for c in classes] if classes is not None else [str(j) for j in range(n)]
    if len(names) != n:
        raise CorrkitError(f"{len(names)} class names for {n} classes")
    return names


def direction_name(i: int, axes: bool = True) -> str:
    """``z37`` for a latent axis, ``d37`` for row 37 of a direction matrix."""
    return f"z{i}" if axes else f"d{i}"


def score_curves(curves, apcr, classes=None, *, delta: float = DELTA, top: int = 3, axes: bool = True,
                 curves_sd=None, counts=None, out=None) -> bytes:
    """Paper Fig. 3: mean ``S_j`` along the top-``top`` directions of each class ``j``.

    Parameters
    ----------
    curves : float [K, 2m+1, C, C]
        ``curves[i, k+m, j, l]`` (SPEC §2); the panel of class ``j`` plots
        ``curves[i, :, j, j]`` for its ``top`` directions by APCR.
    apcr : float [K, C]
    delta : float
        Step length; the x axis is ``k * delta``.
    curves_sd : float [K, 2m+1, C], optional, with counts : int [C]
        The spread over each class's codes of its own score: each line gets a band of
        its mean's 95% normal interval, ``± 1.96 sd / sqrt(n - 1)`` (classes with one code get none).
    """
    curves, apcr = _check(curves, 4, "curves"), _check(apcr, 2, "apcr")
    band = curves_sd is not None and counts is not None
    k_dirs, n_steps, c = curves.shape[:3]
    names = _classes(classes, c)
    m = (n_steps - 1) // 2
    x = np.arange(-m, m + 1) * float(delta)
    rows, cols = _grid_shape(c)
    fig = _figure(3.0 * cols, 2.6 * rows + 0.4)
    axs = fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False)
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]
    for j in range(rows * cols):
        ax = axs.flat[j]
        if j >= c:
            ax.set_visible(False)
            continue
        for r, i in enumerate(np.argsort(-apcr[:, j], kind="stable")[:top]):
            color = palette[r % len(palette)]
            ax.plot(x, curves[i, :, j, j], marker="o", ms=3, lw=1.6, color=color,
                    label=f"{direction_name(int(i), axes)} ({apcr[i, j]:.2f})")
            if band and counts[j] > 1:
                half = 1.96 * np.asarray(curves_sd)[i, :, j] / np.sqrt(counts[j] - 1)
                ax.fill_between(x, curves[i, :, j, j] - half, curves[i, :, j, j] + half, color=color, alpha=0.18,
                                lw=0)
        ax.axvline(0, color="0.6", lw=0.8, ls=":")
        ax.set_title(names[j], fontsize=10)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best", title="dir (APCR)", title_fontsize=7, framealpha=0.8)
    for ax in axs[-1]:
        ax.set_xlabel("step k·δ")
    for ax in axs[:, 0]:
        ax.set_ylabel("mean S_j")
    fig.suptitle("Class score along the strongest directions of each class"
                 + (" (bands: 95% interval of the mean)" if band else ""), fontsize=12)
    return _finish(fig, out)


def apcr_histograms(apcr, classes=None, *, bins: int = 20, s: float = 1.0, out=None) -> bytes:
    """Paper Fig. 4: histogram of APCR over directions, one panel per class.

    The dashed line marks the threshold ``mean + s*std`` of the threshold-mode
    controlling set (SPEC §2).
    """
    apcr = _check(apcr, 2, "apcr")
    c = apcr.shape[1]
    names = _classes(classes, c)
    rows, cols = _grid_shape(c)
    fig = _figure(3.0 * cols, 2.3 * rows + 0.4)
    axs = fig.subplots(rows, cols, sharex=True, squeeze=False)
    finite = apcr[np.isfinite(apcr)]
    edges = np.linspace(0.0, max(float(finite.max()) if finite.size else 0.0, 1e-6), bins + 1)
    colors = _class_colors(c)
    for j in range(rows * cols):
        ax = axs.flat[j]
        if j >= c:
            ax.set_visible(False)
            continue
        col = apcr[:, j]
        ax.set_title(names[j], fontsize=10)
        if not np.isfinite(col).any():  # a class without codes has no APCR: say so, draw nothing
            ax.text(0.5, 0.5, "no codes", ha="center", va="center", transform=ax.transAxes, color="0.4")
            continue
        ax.hist(col, bins=edges, color=colors[j], alpha=0.85, edgecolor="white", lw=0.5)
        ax.axvline(col.mean() + s * col.std(), color="k", ls="--", lw=1)
        ax.grid(alpha=0.3, axis="y")
    for ax in axs[-1]:
        ax.set_xlabel("APCR")
    for ax in axs[:, 0]:
        ax.set_ylabel("directions")
    fig.suptitle(f"APCR over {apcr.shape[0]} directions (dashed: mean + {s:g}·std)", fontsize=12)
    return _finish(fig, out)


def apcr_heatmap(apcr, classes=None, *, top: int = TOP_K, axes: bool = True, out=None) -> bytes:
    """APCR as directions x classes; dots mark each class's top-``top`` set ``C_j^seq``."""
    apcr = _check(apcr, 2, "apcr")
    k, c = apcr.shape
    names = _classes(classes, c)
    fig = _figure(1.0 + 0.55 * c, min(max(4.0, 0.075 * k + 1.6), 16.0))
    ax = fig.add_subplot()
    im = ax.imshow(apcr, aspect="auto", cmap="magma", interpolation="nearest")
    for j in range(c):
        best = np.argsort(-apcr[:, j], kind="stable")[:top]
        ax.scatter(np.full(len(best), j), best, s=9, c="#00e5ff", marker="o", edgecolors="black", linewidths=0.4)
    ax.set_xticks(range(c), names, rotation=45, ha="right", fontsize=8)
    step = max(1, int(np.ceil(k / 20)))
    ax.set_yticks(range(0, k, step), [direction_name(i, axes) for i in range(0, k, step)], fontsize=7)
    ax.set_ylabel("direction")
    fig.colorbar(im, ax=ax, label="APCR", shrink=0.6)
    ax.set_title(f"APCR (dots: top {top} per class)", fontsize=11)
    return _finish(fig, out)


def _bar_series(series: Mapping[str, Sequence[float]], what: str, each: str) -> dict[str, np.ndarray]:
    """Check ``{label: float [C]}``: each series a non-empty 1-d array, all of one length C.

    ``what`` names a series in the shape error, ``each`` in the length error.
    """
    series = {str(k): _check(v, 1, f"{what} {k!r}") for k, v in series.items()}
    c = len(next(iter(series.values())))
    if any(len(v) != c for v in series.values()):
        raise CorrkitError(f"every {each} needs one value per class")
    return series


def _bar_axes(series: dict[str, np.ndarray], classes, *, inches_per_class: float, palette: Sequence | None = None,
              mean_lines: bool = False, errors: Mapping | None = None):
    """Bars grouped by class, one per series and labelled with its mean; returns the figure and its axes.

    ``palette`` colours the series in turn (default: matplotlib's Set2); ``mean_lines`` adds a dashed line at
    each series' mean in its colour; ``errors`` ``{label: [C] of (lo, hi) or None}`` draws each bar's 95%
    interval as a whisker (an unbounded end to the top of the axes).
    """
    c = len(next(iter(series.values())))
    names = _classes(classes, c)
    fig = _figure(max(6.0, inches_per_class * c + 2.0), 4.2)
    ax = fig.add_subplot()
    if palette is None:
        from matplotlib import colormaps

        cmap = colormaps["Set2"]
        palette = [cmap(i) for i in range(cmap.N)]
    width = 0.8 / len(series)
    for s, (label, v) in enumerate(series.items()):
        color = palette[s % len(palette)]
        xs = np.arange(c) + (s - (len(series) - 1) / 2) * width
        ax.bar(xs, v, width * 0.95, color=color, label=f"{label} (mean {v.mean():.2f})")
        spans = (errors or {}).get(label)
        if spans is not None:
            for x, y, span in zip(xs, v, spans):
                if span is not None and np.isfinite(y):
                    lo, hi = span[0], span[1] if span[1] is not None else np.inf
                    ax.vlines(x, lo, min(hi, 1e9), color="0.15", lw=1)
        if mean_lines:
            ax.axhline(v.mean(), color=color, ls="--", lw=1)
    ax.set_xticks(range(c), names, rotation=30, ha="right", fontsize=9)
    ax.grid(alpha=0.3, axis="y")
    return fig, ax


def controlling_set_bars(ir: Mapping[str, Sequence[float]] | Sequence[float], classes=None, *,
                         reference: float | None = None, title: str = "Intersection ratio of controlling sets",
                         out=None) -> bytes:
    """Paper Table 1 as bars: per-class intersection ratio ``IR_j`` (SPEC §4).

    Parameters
    ----------
    ir : float [C], or {label: float [C]}
        One bar series per entry (e.g. ``{"seq vs gradient": ..., "seq vs zeroth-order": ...}``).
    reference : float, optional
        A horizontal reference (e.g. the paper's mean 0.75).
    """
    series = _bar_series({"IR": ir} if not isinstance(ir, Mapping) else ir, "intersection ratio",
                         "intersection-ratio series")
    fig, ax = _bar_axes(series, classes, inches_per_class=0.8,
                        palette=["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3"], mean_lines=True)
    if reference is not None:
        ax.axhline(reference, color="0.3", ls=":", lw=1.2, label=f"reference {reference:.2f}")
    ax.set_ylim(0, 1.22)  # headroom for the legend above the bars
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_ylabel("|C_seq ∩ C_opt| / k")
    ax.legend(fontsize=8, loc="upper center", ncol=len(series) + (reference is not None), frameon=False)
    ax.set_title(title, fontsize=11)
    return _finish(fig, out)


def translation_matrix(success, classes=None, *, alpha: float | None = None, out=None) -> bytes:
    """Paper Fig. 6 as numbers: ``success[j, l]`` = share of ``Z_j`` classified as ``l`` after translation."""
    success = _check(success, 2, "success matrix")
    c = success.shape[0]
    if success.shape != (c, c):
        raise CorrkitError(f"the success matrix must be square, got {list(success.shape)}")
    names = _classes(classes, c)
    fig = _figure(1.8 + 0.6 * c, 1.4 + 0.55 * c)
    ax = fig.add_subplot()
    shown = success.copy()
    np.fill_diagonal(shown, np.nan)
    from matplotlib import colormaps

    cmap = colormaps["viridis"].with_extremes(bad="0.85")
    im = ax.imshow(shown, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    for j in range(c):
        for lbl in range(c):
            if j != lbl and np.isfinite(shown[j, lbl]):
                v = shown[j, lbl]
                ax.text(lbl, j, f"{v:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if v < 0.6 else "black")
    ax.set_xticks(range(c), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(c), names, fontsize=8)
    ax.set_xlabel("target class l")
    ax.set_ylabel("source class j")
    fig.colorbar(im, ax=ax, label="success rate", shrink=0.7)
    off = success[~np.eye(c, dtype=bool)]
    extra = f", α = {alpha:g}" if alpha is not None else ""
    ax.set_title(f"Class-to-class translation (mean {np.nanmean(off):.2f}{extra})", fontsize=11)
    return _finish(fig, out)


def method_comparison(strongest: Mapping[str, Sequence[float]], classes=None, *, out=None,
                      ylabel: str = "strongest APCR", errors: Mapping | None = None) -> bytes:
    """SPEC §9: per direction method, the strongest APCR reached for each class.

    Parameters
    ----------
    strongest : {method: float [C]}
    errors : {method: [C] of (lo, hi) or None}, optional
        95% intervals (SPEC §11), drawn as whiskers.
    """
    if not strongest:
        raise CorrkitError("no methods to compare")
    return grouped_bars(strongest, classes, ylabel=ylabel, title="Direction methods on one yardstick (SPEC §9)"
                        + (", 95% intervals" if errors else ""), out=out, errors=errors)


def grouped_bars(series: Mapping[str, Sequence[float]], classes=None, *, ylabel: str, title: str = "",
                 out=None, errors: Mapping | None = None) -> bytes:
    """Bars grouped by class, one per series ``{label: float [C]}`` (direction methods, flip rate per set)."""
    series = _bar_series(series, "series", "method")
    fig, ax = _bar_axes(series, classes, inches_per_class=0.9, errors=errors)
    ax.set_ylabel(ylabel)
    top = float(np.nanmax([np.nanmax(v) for v in series.values()]))
    ax.set_ylim(0, 1.2 * top if top > 0 else 1.0)  # headroom for the legend above the bars
    ax.legend(fontsize=8, loc="upper center", ncol=min(len(series), 4), frameon=False)
    ax.set_title(title, fontsize=11)
    return _finish(fig, out)


def tsne_figure(panels: Mapping[str, tuple[np.ndarray, np.ndarray]], classes, out=None) -> bytes:
    """Paper Fig. 1: one t-SNE scatter per panel ``{title: (embedding float [M, 2], labels int [M])}``, by class."""
    fig = _figure(5.2 * len(panels) + 1.8, 5.2)
    axs = fig.subplots(1, len(panels), squeeze=False)[0]
    colors = _class_colors(len(classes))
    for ax, (title, (emb, labels)) in zip(axs, panels.items()):
        for j, name in enumerate(classes):
            pts = emb[labels == j]
            ax.scatter(pts[:, 0], pts[:, 1], s=5, color=colors[j], label=name, alpha=0.8, lw=0)
        ax.set_title(title, fontsize=10)
        ax.set_xticks([]); ax.set_yticks([])
    axs[-1].legend(markerscale=3, fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return _finish(fig, out)
