"""Figures of runs: traversals through the generator, and every figure a run folder allows (extra ``figures``).

Unlike :mod:`corrkit.viz.plots` (arrays in, PNG out), these take what a run left:
an :class:`~corrkit.methods.sequential.APCRResult` with the bundle it was made on
(traversal grids), a ``corrkit compare --out`` folder, or any run folder, whose
result files are dispatched to the plot that shows them (:func:`render_run`). The
numbers behind a traversal come from :mod:`corrkit.methods.traversal`; this module
only labels and draws them.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from corrkit._core import io
from corrkit._core.defaults import DELTA, TOP_K
from corrkit._core.grid import is_axes
from corrkit.errors import CorrkitError, MissingExtraError
from corrkit.viz.images import image_grid
from corrkit.viz.plots import (apcr_heatmap, apcr_histograms, controlling_set_bars, direction_name, grouped_bars,
                               method_comparison, score_curves, translation_matrix)


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
    from corrkit.methods.traversal import top_rows, walk

    j = int(class_j)
    rows = top_rows(result, j, top, codes)
    images, score, ks = walk(bundle, result, rows, steps, delta)
    axes = is_axes(result.directions)
    labels = [f"{direction_name(i, axes)} ({result.apcr[i, j]:.2f})" for _, i, _ in rows]
    name = result.classes[j]
    n_dirs = len({i for _, i, _ in rows})
    return image_grid(images, row_labels=labels, col_labels=[f"{k:+g}" for k in ks], cell_text=score,
                      title=f"{name}: top {n_dirs} directions by APCR (S_{name} under each image)", out=out)


def traversal_overview(bundle, result, *, steps: int | None = None, delta: float | None = None, out=None) -> bytes:
    """One row per class: its strongest direction applied to its first code."""
    from corrkit.methods.traversal import strongest_rows, walk

    rows = strongest_rows(result)
    axes = is_axes(result.directions)
    labels = [f"{result.classes[j]} · {direction_name(i, axes)}" for j, i, _ in rows]
    images, score, ks = walk(bundle, result, rows, steps, delta)
    return image_grid(images, row_labels=labels, col_labels=[f"{k:+g}" for k in ks], cell_text=score,
                      title="Strongest direction of each class (own-class probability under each image)", out=out)


def compare_figures(out: str | os.PathLike, summary: dict, bundle) -> list[Path]:
    """``compare.png`` and one ``traversal_<method>.png`` per direction set, into a ``corrkit compare --out`` folder.

    Parameters
    ----------
    summary : dict
        What :func:`corrkit.methods.compare.compare` returned (and wrote as ``compare.json``).
    bundle : Bundle
        The model compared; traversals need its generator and are skipped without one.

    The traversals walk the per-method runs that ``compare`` saved in ``out/<method>``.
    Without matplotlib (extra ``figures``) nothing is drawn and a warning says so.
    """
    from corrkit.methods.sequential import APCRResult

    out = Path(out)
    paths = [out / "compare.png"]
    try:
        method_comparison({k: v["strongest_apcr"] for k, v in summary["methods"].items()}, summary["classes"],
                          out=paths[0], errors=_errors(summary))
        if bundle.generator is not None:
            for name in summary["methods"]:
                if (out / name / "apcr.npz").is_file():  # sefa_top10 is a summary of the sefa run, not a run
                    paths.append(out / f"traversal_{name}.png")
                    traversal_overview(bundle, APCRResult.load(out / name), out=paths[-1])
    except MissingExtraError as exc:
        warnings.warn(f"no figures drawn: {exc}", stacklevel=2)
        return []
    return paths


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
    return controlling_set_bars(series, classes, title=f"Intersection ratio of the top-{d.get('k', TOP_K)} "
                                "controlling sets (sequential vs optimisation)")


def _translate_figure(d: dict, classes) -> bytes:
    """``translate.json`` (:meth:`corrkit.methods.translate.TranslationResult.to_json`): the success matrix."""
    m = np.array([_per_class(row, None) for row in d["success"]])
    return translation_matrix(m, classes, alpha=d.get("alpha"))


def _compare_figure(d: dict, classes) -> bytes:
    """``compare.json`` (:func:`corrkit.methods.compare.compare`): strongest APCR per class per method."""
    return method_comparison({k: _per_class(v["strongest_apcr"], classes) for k, v in d["methods"].items()}, classes,
                             errors=_errors(d))


def _errors(d: dict) -> dict | None:
    """``{method: per-class (lo, hi)}`` of a ``compare.json``'s strongest-APCR intervals, when it has them."""
    got = {k: v["strongest_apcr_interval"] for k, v in d.get("methods", {}).items()
           if isinstance(v, dict) and isinstance(v.get("strongest_apcr_interval"), list)}
    return got or None


def _manipulate_figure(d: dict, classes) -> bytes:
    """``manipulate.json`` (``ManipulationResult.to_json``): flip rate per set and class."""
    per = d.get("per_class") or [d]
    names = [str(m["class"]) for m in per]
    sets = list(per[0]["flip_rate"])
    return grouped_bars({f"{s} {d.get('top_k', '')}".strip(): [m["flip_rate"][s] for m in per] for s in sets},
                        names, ylabel="flip rate",
                        title=f"Concept manipulation: share of codes leaving their class (α = {d.get('alpha')})")


JSON_FIGURES = {  # result file -> (figure file, drawer); the drawers follow the writers' to_json()
    "control.json": ("intersection_ratio.png", _control_figure),
    "translate.json": ("translation_matrix.png", _translate_figure),
    "compare.json": ("compare.png", _compare_figure),
    "manipulate.json": ("flip_rate.png", _manipulate_figure),
}


def _json_figures(run_dir: Path, classes: list[str] | None, skip) -> dict[str, bytes]:
    import json

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


def render_run(run_dir: str | os.PathLike, *, skip: Sequence[str] = (), bundle=None,
               traversals: bool = True) -> dict[str, bytes]:
    """Every figure a run folder allows, as ``{file name: PNG bytes}`` (names in ``skip`` are not drawn).

    ``apcr.npz`` + ``summary.json`` (``corrkit apcr --out``) give the score curves,
    APCR histograms and heatmap, and (with the run's generator, found by
    :func:`corrkit._core.runs.run_bundle` unless ``bundle`` is given) traversal grids;
    the files of :data:`JSON_FIGURES` give intersection-ratio bars, the
    translation matrix, the method comparison and flip-rate bars.
    """
    run_dir = Path(run_dir)
    skip = set(skip)
    figs: dict[str, bytes] = {}
    classes = None
    if (run_dir / "apcr.npz").exists() or (run_dir / "summary.json").exists():  # one without the other: refused
        from corrkit._core.runs import run_bundle
        from corrkit.methods.sequential import APCRResult

        r = APCRResult.load(run_dir)
        classes, axes, delta = r.classes, is_axes(r.directions), float(r.params.get("delta", DELTA))
        draw = {
            "curves.png": lambda: score_curves(r.curves, r.apcr, classes, delta=delta, axes=axes,
                                                 curves_sd=r.curves_sd, counts=r.counts),
            "apcr_hist.png": lambda: apcr_histograms(r.apcr, classes),
            "apcr_heatmap.png": lambda: apcr_heatmap(r.apcr, classes, axes=axes),
        }
        for name, make in draw.items():
            if name not in skip:
                figs[name] = make()
        wanted = ["traversal_overview.png"] + [f"traversal_{j:02d}.png" for j in range(len(classes))]
        if traversals and any(n not in skip for n in wanted):
            b = run_bundle(run_dir, bundle)
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
