"""Figures of the paper (Li et al., ICPR 2020) from plain arrays, as PNG (extra ``figures``).

Every function takes NumPy arrays, lists or dicts (never a result object), so it
can draw results of any command: :mod:`corrkit.methods.sequential`, the controlling-set
comparison, manipulation, translation or the direction-method yardstick. Each
returns the PNG bytes and, with ``out`` set, writes them atomically.

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


def score_curves(curves, apcr, classes=None, *, delta: float = 1.0, top: int = 3, axes: bool = True,
                 out=None) -> bytes:
    """Paper Fig. 3: mean ``S_j`` along the top-``top`` directions of each class ``j``.

    Parameters
    ----------
    curves : float [K, 2m+1, C, C]
        ``curves[i, k+m, j, l]`` (SPEC §2); the panel of class ``j`` plots
        ``curves[i, :, j, j]`` for its ``top`` directions by APCR.
    apcr : float [K, C]
    delta : float
        Step length; the x axis is ``k * delta``.
    """
    curves, apcr = _check(curves, 4, "curves"), _check(apcr, 2, "apcr")
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
            ax.plot(x, curves[i, :, j, j], marker="o", ms=3, lw=1.6, color=palette[r % len(palette)],
                    label=f"{direction_name(int(i), axes)} ({apcr[i, j]:.2f})")
        ax.axvline(0, color="0.6", lw=0.8, ls=":")
        ax.set_title(names[j], fontsize=10)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best", title="dir (APCR)", title_fontsize=7, framealpha=0.8)
    for ax in axs[-1]:
        ax.set_xlabel("step k·δ")
    for ax in axs[:, 0]:
        ax.set_ylabel("mean S_j")
    fig.suptitle("Class score along the strongest directions of each class", fontsize=12)
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
    edges = np.linspace(0.0, max(float(apcr.max()), 1e-6), bins + 1)
    colors = _class_colors(c)
    for j in range(rows * cols):
        ax = axs.flat[j]
        if j >= c:
            ax.set_visible(False)
            continue
        col = apcr[:, j]
        ax.hist(col, bins=edges, color=colors[j], alpha=0.85, edgecolor="white", lw=0.5)
        ax.axvline(col.mean() + s * col.std(), color="k", ls="--", lw=1)
        ax.set_title(names[j], fontsize=10)
        ax.grid(alpha=0.3, axis="y")
    for ax in axs[-1]:
        ax.set_xlabel("APCR")
    for ax in axs[:, 0]:
        ax.set_ylabel("directions")
    fig.suptitle(f"APCR over {apcr.shape[0]} directions (dashed: mean + {s:g}·std)", fontsize=12)
    return _finish(fig, out)


def apcr_heatmap(apcr, classes=None, *, top: int = 10, axes: bool = True, out=None) -> bytes:
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
              mean_lines: bool = False):
    """Bars grouped by class, one per series and labelled with its mean; returns the figure and its axes.

    ``palette`` colours the series in turn (default: matplotlib's Set2); ``mean_lines`` adds a dashed line at
    each series' mean in its colour.
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
        ax.bar(np.arange(c) + (s - (len(series) - 1) / 2) * width, v, width * 0.95, color=color,
               label=f"{label} (mean {v.mean():.2f})")
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


def _mosaic(images: np.ndarray, lo: float, hi: float, pad: int, band: int) -> np.ndarray:
    """Images on a white canvas, ``pad`` pixels apart, with a ``band`` of pixels under each row for text."""
    r, s, h, w = images.shape
    canvas = np.ones((r * (h + pad + band) + pad, s * (w + pad) + pad), np.float32)
    norm = np.clip((images - lo) / (hi - lo), 0.0, 1.0)
    for a in range(r):
        for b in range(s):
            y, x = pad + a * (h + pad + band), pad + b * (w + pad)
            canvas[y:y + h, x:x + w] = norm[a, b]
    return canvas


def image_grid(images, *, row_labels: Sequence[str] | None = None, col_labels: Sequence[str] | None = None,
               cell_text=None, title: str | None = None, value_range: tuple[float, float] = (-1.0, 1.0),
               cell_inches: float = 0.62, out=None) -> bytes:
    """Rows = codes (or directions), columns = intervention steps (SPEC §5 pictures).

    Parameters
    ----------
    images : float [R, S, H, W]
        Grey images in ``value_range`` (the generator's output range).
    row_labels, col_labels : list of str, optional
    cell_text : [R, S] of str or float, optional
        Written under each image (e.g. the class probability).
    """
    images = _check(images, 4, "images")
    r, s, h, w = images.shape
    pad = max(1, h // 14)
    band = h * 3 // 10 if cell_text is not None else 0
    canvas = _mosaic(images, *map(float, value_range), pad, band)
    # Room for the labels and the title, which a fixed-aspect image does not make by itself.
    left = 0.3 + 0.075 * max((len(str(t)) for t in row_labels), default=0) if row_labels is not None else 0.2
    top = (0.45 if title else 0.1) + (0.3 if col_labels is not None else 0.0)
    width = max(left + s * cell_inches + 0.3, 0.09 * len(title or "") + 0.4)
    fig = _figure(width, top + r * cell_inches * (h + pad + band) / (h + pad) + 0.15)
    ax = fig.add_subplot()
    ax.imshow(canvas, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    centres_x = pad + np.arange(s) * (w + pad) + w / 2 - 0.5
    centres_y = pad + np.arange(r) * (h + pad + band) + h / 2 - 0.5
    ax.set_xticks(centres_x, list(col_labels) if col_labels is not None else [])
    ax.set_yticks(centres_y, list(row_labels) if row_labels is not None else [])
    ax.xaxis.tick_top()
    ax.tick_params(length=0, labelsize=8)
    for side in ax.spines.values():
        side.set_visible(False)
    if cell_text is not None:
        text = np.asarray(cell_text, dtype=object)
        if text.shape != (r, s):
            raise CorrkitError(f"cell_text has shape {list(text.shape)}, images need [{r}, {s}]")
        for a in range(r):
            for b in range(s):
                v = text[a, b]
                label = f"{v:.2f}" if isinstance(v, (float, np.floating)) else str(v)
                ax.text(centres_x[b], pad + a * (h + pad + band) + h + band / 2 - 0.5, label, ha="center",
                        va="center", fontsize=7, color="0.15")
    if title:
        ax.set_title(title, fontsize=10)
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
                      ylabel: str = "strongest APCR") -> bytes:
    """SPEC §9: per direction method, the strongest APCR reached for each class.

    Parameters
    ----------
    strongest : {method: float [C]}
    """
    if not strongest:
        raise CorrkitError("no methods to compare")
    return _grouped_bars(strongest, classes, ylabel, out, title="Direction methods on one yardstick (SPEC §9)")


def _grouped_bars(series: Mapping[str, Sequence[float]], classes, ylabel: str, out, title: str = "") -> bytes:
    series = _bar_series(series, "series", "method")
    fig, ax = _bar_axes(series, classes, inches_per_class=0.9)
    ax.set_ylabel(ylabel)
    top = float(np.nanmax([np.nanmax(v) for v in series.values()]))
    ax.set_ylim(0, 1.2 * top if top > 0 else 1.0)  # headroom for the legend above the bars
    ax.legend(fontsize=8, loc="upper center", ncol=min(len(series), 4), frameon=False)
    ax.set_title(title, fontsize=11)
    return _finish(fig, out)


# --- images from the generator (onnxruntime, torch-free) ---------------------------------------------------------


def generate(bundle, z, batch_size: int = 256) -> np.ndarray:
    """Images of the bundle's generator for codes ``z`` float32 ``[B, N]``: float32 ``[B, H, W]``.

    The first channel is kept (the built-in generator is grey).
    """
    import onnxruntime as ort

    from corrkit._core.engine import cpu_count

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = cpu_count()
    session = ort.InferenceSession(bundle.generator_model().SerializeToString(), so,
                                   providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    z = np.ascontiguousarray(z, dtype=np.float32)
    parts = [session.run(None, {name: z[s:s + batch_size]})[0] for s in range(0, len(z), batch_size)]
    images = np.concatenate(parts)
    return images[:, 0] if images.ndim == 4 else images


def _is_axes(directions: np.ndarray) -> bool:
    d = np.asarray(directions)
    return d.shape[0] <= d.shape[1] and np.array_equal(d, np.eye(d.shape[0], d.shape[1], dtype=d.dtype))


def _walk(bundle, result, rows: list[tuple[int, int, np.ndarray]], steps, delta):
    """Images and class probabilities along ``(class j, direction i, code z)`` rows: [R, S, H, W], [R, S]."""
    from corrkit._core.engine import Engine

    m = int(steps or result.params.get("steps", 3))
    d = float(delta or result.params.get("delta", 1.0))
    ks = np.arange(-m, m + 1, dtype=np.float32) * d
    z = np.stack([z0[None, :] + ks[:, None] * result.directions[i][None, :] for _, i, z0 in rows])
    flat = z.reshape(-1, z.shape[-1]).astype(np.float32)
    images = generate(bundle, flat)
    probs = Engine(bundle, device="cpu").probabilities(flat).reshape(len(rows), len(ks), -1)
    score = np.stack([probs[r, :, j] for r, (j, _, _) in enumerate(rows)])
    return images.reshape(len(rows), len(ks), *images.shape[1:]), score, [f"{k:+g}" for k in ks]


def _codes_of(result, j: int) -> np.ndarray:
    z = result.latents[np.asarray(result.labels) == j]
    if len(z) == 0:
        raise CorrkitError(f"class {result.classes[j]!r} has no codes in this run; nothing to traverse")
    return z


def traversal_grid(bundle, result, class_j: int, *, top: int = 3, codes: int = 2, steps: int | None = None,
                   delta: float | None = None, out=None) -> bytes:
    """Generator images along the top-``top`` directions of class ``class_j`` (rows), steps as columns.

    Parameters
    ----------
    bundle : Bundle
        The bundle the run was made with (its ``generator.onnx`` draws the images).
    result : APCRResult
        Uses ``apcr``, ``directions``, ``latents``, ``labels``, ``classes`` and ``params``.
    codes : int
        Codes of ``Z_j`` shown per direction (one row each).
    steps, delta : optional
        ``m`` and step length (default: the run's).

    Under each image: ``S_j`` of that image.
    """
    j = int(class_j)
    z0 = _codes_of(result, j)[:codes]
    best = np.argsort(-result.apcr[:, j], kind="stable")[:top]
    rows = [(j, int(i), z) for i in best for z in z0]
    images, score, cols = _walk(bundle, result, rows, steps, delta)
    axes = _is_axes(result.directions)
    labels = [f"{direction_name(i, axes)} ({result.apcr[i, j]:.2f})" for _, i, _ in rows]
    name = result.classes[j]
    return image_grid(images, row_labels=labels, col_labels=cols, cell_text=score,
                      title=f"{name}: top {len(best)} directions by APCR (S_{name} under each image)", out=out)


def traversal_overview(bundle, result, *, steps: int | None = None, delta: float | None = None, out=None) -> bytes:
    """One row per class: its strongest direction applied to its first code."""
    rows, labels = [], []
    axes = _is_axes(result.directions)
    for j, name in enumerate(result.classes):
        if not np.any(np.asarray(result.labels) == j):
            continue
        i = int(np.argmax(result.apcr[:, j]))
        rows.append((j, i, _codes_of(result, j)[0]))
        labels.append(f"{name} · {direction_name(i, axes)}")
    if not rows:
        raise CorrkitError("the run has no codes to traverse")
    images, score, cols = _walk(bundle, result, rows, steps, delta)
    return image_grid(images, row_labels=labels, col_labels=cols, cell_text=score,
                      title="Strongest direction of each class (own-class probability under each image)", out=out)


# --- every figure a run folder allows ------------------------------------------------------------------------------

def _per_class(value, classes: list[str] | None) -> np.ndarray:
    """A per-class list (``None`` read as NaN), or a ``{class name: number}`` dict, as float [C]."""
    if isinstance(value, dict) and "per_class" in value:
        value = value["per_class"]
    if isinstance(value, dict) and classes and all(c in value for c in classes):
        value = [value[c] for c in classes]
    return np.array([np.nan if v is None else v for v in value], dtype=np.float64)


def _control_figure(d: dict, classes) -> bytes:
    """``control.json`` (:meth:`corrkit.methods.control.ControlResult.to_json`): IR bars, the paper's Table 1 beside."""
    series = {"this model": _per_class(d["intersection_ratio"], classes)}
    if d.get("paper"):
        series["paper, Table 1"] = _per_class(d["paper"], classes)
    return controlling_set_bars(series, classes, title=f"Intersection ratio of the top-{d.get('k', 10)} "
                                "controlling sets (sequential vs optimisation)")


def _translate_figure(d: dict, classes) -> bytes:
    """``translate.json`` (:meth:`corrkit.methods.translate.TranslationResult.to_json`): the success matrix."""
    m = np.array([_per_class(row, None) for row in d["success"]])
    return translation_matrix(m, classes, alpha=d.get("alpha"))


def _compare_figure(d: dict, classes) -> bytes:
    """``compare.json`` (:func:`corrkit.methods.compare.compare`): strongest APCR per class per method."""
    return method_comparison({k: _per_class(v["strongest_apcr"], classes) for k, v in d["methods"].items()}, classes)


def _manipulate_figure(d: dict, classes) -> bytes:
    """``manipulate.json`` (``ManipulationResult.to_json``): flip rate per set and class."""
    per = d.get("per_class") or [d]
    names = [str(m["class"]) for m in per]
    sets = list(per[0]["flip_rate"])
    return _grouped_bars({f"{s} {d.get('top_k', '')}".strip(): [m["flip_rate"][s] for m in per] for s in sets},
                         names, "flip rate", None,
                         title=f"Concept manipulation: share of codes leaving their class (α = {d.get('alpha')})")


JSON_FIGURES = {  # result file -> (figure file, drawer); the drawers follow the writers' to_json()
    "control.json": ("intersection_ratio.png", _control_figure),
    "translate.json": ("translation_matrix.png", _translate_figure),
    "compare.json": ("compare.png", _compare_figure),
    "manipulate.json": ("flip_rate.png", _manipulate_figure),
}


def _json_figures(run_dir: Path, classes: list[str] | None, skip) -> dict[str, bytes]:
    import json
    import warnings

    figs: dict[str, bytes] = {}
    for source, (name, make) in JSON_FIGURES.items():
        path = run_dir / source
        if not path.is_file() or name in skip:
            continue
        try:
            data = json.loads(path.read_text())
            names = [str(x) for x in data.get("classes") or classes or []] or None
            figs[name] = make(data, names)
        except (CorrkitError, KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            warnings.warn(f"{path}: no figure drawn ({type(exc).__name__}: {exc})", stacklevel=2)
    return figs


def run_bundle(result):
    """The bundle a run was made with, or ``None`` (with a warning) when its generator is not at hand.

    The run's ``summary.json`` records the bundle path and file hashes; the
    built-in bundle is tried when the path is gone. A generator whose hash
    differs would draw images of another model, so it is refused.
    """
    import warnings

    from corrkit._core.bundle import builtin_path, load_bundle

    card = result.bundle_card or {}
    recorded = (card.get("files") or {}).get("generator")
    for candidate in (card.get("path"), builtin_path()):
        if not candidate or not Path(candidate).is_dir():
            continue
        try:
            b = load_bundle(candidate)
        except CorrkitError:
            continue
        if b.generator is not None and (recorded is None or b.hashes().get("generator") == recorded):
            return b
    warnings.warn("the generator this run was made with is not available (path gone or its hash differs); "
                  "traversal grids are skipped", stacklevel=2)
    return None


def render_run(run_dir: str | os.PathLike, *, skip: Sequence[str] = (), bundle=None,
               traversals: bool = True) -> dict[str, bytes]:
    """Every figure a run folder allows, as ``{file name: PNG bytes}`` (names in ``skip`` are not drawn).

    ``apcr.npz`` + ``summary.json`` (``corrkit apcr --out``) give the score curves,
    APCR histograms and heatmap, and (with the run's generator) traversal grids;
    the files of :data:`JSON_FIGURES` give intersection-ratio bars, the
    translation matrix, the method comparison and flip-rate bars.
    """
    run_dir = Path(run_dir)
    skip = set(skip)
    figs: dict[str, bytes] = {}
    classes = None
    if (run_dir / "apcr.npz").is_file():
        from corrkit.methods.sequential import APCRResult

        r = APCRResult.load(run_dir)
        classes, axes, delta = r.classes, _is_axes(r.directions), float(r.params.get("delta", 1.0))
        draw = {
            "curves.png": lambda: score_curves(r.curves, r.apcr, classes, delta=delta, axes=axes),
            "apcr_hist.png": lambda: apcr_histograms(r.apcr, classes),
            "apcr_heatmap.png": lambda: apcr_heatmap(r.apcr, classes, axes=axes),
        }
        for name, make in draw.items():
            if name not in skip:
                figs[name] = make()
        wanted = ["traversal_overview.png"] + [f"traversal_{j:02d}.png" for j in range(len(classes))]
        if traversals and any(n not in skip for n in wanted):
            b = bundle if bundle is not None else run_bundle(r)
            if b is not None and b.generator is not None:
                if wanted[0] not in skip:
                    figs[wanted[0]] = traversal_overview(b, r)
                for j, name in enumerate(wanted[1:]):
                    if name not in skip and np.any(r.labels == j):
                        figs[name] = traversal_grid(b, r, j)
    figs.update(_json_figures(run_dir, classes, skip))
    return figs


def write_run_figures(run_dir: str | os.PathLike, out: str | os.PathLike | None = None, *, bundle=None,
                      traversals: bool = True) -> list[Path]:
    """Write every figure :func:`render_run` can draw into ``out`` (default: the run folder)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CorrkitError(f"{run_dir} is not a folder; give the --out folder of a corrkit run")
    figs = render_run(run_dir, bundle=bundle, traversals=traversals)
    if not figs:
        raise CorrkitError(f"{run_dir} holds nothing to draw: expected apcr.npz (corrkit apcr --out), control.json, "
                           "translate.json, compare.json or manipulate.json")
    out = Path(out) if out is not None else run_dir
    paths = []
    for name, data in figs.items():
        io.write_bytes(out / name, data)
        paths.append(out / name)
    return paths
