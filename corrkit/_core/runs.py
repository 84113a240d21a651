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

import numpy as np

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


# The arrays of an APCR run's ``apcr.npz``: name -> (kind, shape in the run's sizes), with K directions,
# C classes, S = 2m+1 steps, M codes and N latent dims (:class:`corrkit.methods.sequential.APCRResult`).
RUN_ARRAYS = {
    "apcr": ("float", "KC"), "up": ("float", "KC"), "down": ("float", "KC"), "curves": ("float", "KSCC"),
    "counts": ("int", "C"), "latents": ("float", "MN"), "labels": ("int", "M"), "base": ("float", "MC"),
    "directions": ("float", "KN"), "classes": ("str", "C"),
}
# Kept since error bars landed (SPEC §11); optional, so runs saved before them still load.
OPTIONAL_ARRAYS = {"contributions": ("float", "KM"), "curves_sd": ("float", "KSC")}
_KINDS = {"float": lambda dt: np.issubdtype(dt, np.floating), "int": lambda dt: np.issubdtype(dt, np.integer),
          "str": lambda dt: dt.kind == "U"}


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v, lo: float = -np.inf) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) and v >= lo


def _arrays_problem(a: Mapping) -> str | None:
    """What is wrong with an APCR run's arrays (names, kinds, shapes, labels, counts, finite values), or ``None``."""
    sizes: dict[str, int] = {}
    # the arrays every run has first (their sizes define the run's), then those kept since error bars landed
    for table in (RUN_ARRAYS, OPTIONAL_ARRAYS):
        for name, (kind, dims) in table.items():
            if name not in a:
                if table is OPTIONAL_ARRAYS:
                    continue
                return f"apcr.npz has no array `{name}`"
            v = a[name]
            if not _KINDS[kind](v.dtype):
                return f"`{name}` holds {v.dtype}, expected {kind}s"
            if v.ndim != len(dims):
                return f"`{name}` has shape {list(v.shape)}, expected [{', '.join(dims)}]"
            for d, n in zip(dims, v.shape):
                if sizes.setdefault(d, n) != n:
                    return f"`{name}` has shape {list(v.shape)}, which does not fit the other arrays ({d} = {sizes[d]})"
        if table is RUN_ARRAYS and (min(sizes.values()) < 1 or sizes["S"] % 2 == 0 or sizes["S"] < 3):
            return f"array sizes {sizes} are impossible (every size >= 1, S = 2m+1 steps >= 3)"
    labels, counts, c = a["labels"], a["counts"], sizes["C"]
    if labels.min() < 0 or labels.max() >= c:
        return f"`labels` outside the classes 0..{c - 1}"
    if np.bincount(labels, minlength=c).tolist() != counts.tolist():
        return "`counts` does not match `labels`"
    for name in ("latents", "base", "directions"):
        if not np.isfinite(a[name]).all():
            return f"`{name}` holds NaN or infinite values"
    seen = counts > 0  # a class with no codes has NaN scores (kernels.apcr.finalize); every other is finite
    for name in ("apcr", "up", "down"):
        if not np.isfinite(a[name][:, seen]).all():
            return f"`{name}` holds NaN or infinite values for a class with codes"
    if not np.isfinite(a["curves"][:, :, seen]).all():
        return "`curves` holds NaN or infinite values for a class with codes"
    if (a["apcr"][:, seen] < 0).any():
        return "`apcr` holds negative values (APCR is a mean of absolute changes)"
    if "contributions" in a:
        x = a["contributions"]
        if not np.isfinite(x).all() or (x < 0).any():
            return "`contributions` holds negative, NaN or infinite values"
        for j in np.flatnonzero(seen):
            if not np.allclose(x[:, labels == j].mean(axis=1), a["apcr"][:, j], rtol=1e-9, atol=1e-12):
                return "`contributions` do not average to `apcr` over each class's codes"
    if "curves_sd" in a and not ((a["curves_sd"][:, :, seen] >= 0).all()):
        return "`curves_sd` holds negative or NaN values for a class with codes"
    return None


def _card_problem(card) -> str | None:
    """What is wrong with the ``bundle`` card of a run's ``summary.json`` (the fields corrkit reads), or ``None``."""
    if not isinstance(card, dict):
        return f"`bundle` is a {type(card).__name__}, expected an object"
    strings = lambda v: isinstance(v, dict) and all(isinstance(x, str) for x in v.values())  # noqa: E731
    checks = {
        "path": lambda v: isinstance(v, str),
        "files": strings,
        "models": lambda v: isinstance(v, dict) and all(isinstance(m, dict) and strings(m) for m in v.values()),
        "latent_dim": _is_int,
        "classes": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
        "classifier_output": lambda v: isinstance(v, str),
        "generator_output_range": lambda v: isinstance(v, list) and len(v) == 2 and all(map(_is_number, v)),
        "classifier_input_range": lambda v: isinstance(v, list) and len(v) == 2 and all(map(_is_number, v)),
    }
    for key, ok in checks.items():
        if card.get(key) is not None and not ok(card[key]):
            return f"`bundle.{key}` is {card[key]!r:.60}, not what `corrkit apcr` writes"
    return None


def top_lists(apcr, counts, classes, k: int) -> dict:
    """``summary.json``'s ``top``: per class its ``k`` strongest directions with their APCR.

    A class without codes has no ranking: ``None``, not a list of NaNs.
    """
    from corrkit.kernels.ranking import top_k

    sets = top_k(apcr, k)
    return {classes[j]: None if counts[j] == 0 else
            [{"direction": int(i), "apcr": float(apcr[i, j])} for i in sets[j]] for j in range(len(classes))}


def interval_lists(boot: Mapping, classes) -> dict:
    """``summary.json``'s ``intervals``: per class, for each of its top-``k`` directions, the 95%
    percentile-bootstrap interval of its APCR and its inclusion probability (SPEC §11).

    ``hi`` is ``None`` (unbounded) and ``inclusion`` ``None`` for a class with one code; a class
    without codes has ``None`` instead of a list.
    """
    from corrkit._core import defaults

    def number(v):
        return None if not np.isfinite(v) else round(float(v), 6)

    per_class = {}
    for j, name in enumerate(classes):
        if boot["top"][j, 0] < 0:
            per_class[name] = None
            continue
        per_class[name] = [{"direction": int(i), "lo": number(boot["lo"][i, j]), "hi": number(boot["hi"][i, j]),
                            "inclusion": number(boot["inclusion"][j, r])} for r, i in enumerate(boot["top"][j])]
    return {"method": "percentile bootstrap over each class's codes", "level": defaults.BOOTSTRAP_LEVEL,
            "samples": defaults.BOOTSTRAP_SAMPLES, "seed": defaults.BOOTSTRAP_SEED, "top": per_class}


def _summary_problem(s: Mapping, a: Mapping) -> str | None:
    """What is wrong with a run's ``summary.json`` given its (checked) arrays, or ``None``.

    Its numbers must be those of the arrays: ``counts``, ``classes`` and the ``top``
    lists are compared with what ``apcr.npz`` gives (the report shows them).
    """
    from corrkit._core.grid import MAX_STEPS

    params = s.get("params")
    if not isinstance(params, dict):
        return "`params` is missing or not an object"
    k, n_steps = a["apcr"].shape[0], a["curves"].shape[1]
    if "steps" in params and not (_is_int(params["steps"]) and 1 <= params["steps"] <= MAX_STEPS
                                  and 2 * params["steps"] + 1 == n_steps):
        return f"`params.steps` is {params['steps']!r:.40}, the curves have {n_steps} steps (2m+1)"
    if "delta" in params and not (_is_number(params["delta"]) and params["delta"] > 0):
        return f"`params.delta` is {params['delta']!r:.40}, expected a number > 0"
    if "n_directions" in params and params["n_directions"] != k:
        return f"`params.n_directions` is {params['n_directions']!r:.40}, the run has {k} directions"
    if not isinstance(s.get("provider"), str):
        return "`provider` is missing or not a string"
    if not (_is_int(s.get("points")) and s["points"] >= 0):
        return "`points` is missing or not a whole number >= 0"
    if not _is_number(s.get("seconds"), 0):
        return "`seconds` is missing or not a number >= 0"
    for key in ("points_per_second", "resumed_from"):
        if s.get(key) is not None and not _is_number(s[key], 0):
            return f"`{key}` is {s[key]!r:.40}, expected a number >= 0"
    if s.get("versions") is not None and not isinstance(s["versions"], dict):
        return "`versions` is not an object"
    if s.get("bundle") is not None and (problem := _card_problem(s["bundle"])):
        return problem
    classes = [str(c) for c in a["classes"]]
    if s.get("counts") is not None and s["counts"] != a["counts"].tolist():
        return "`counts` differs from apcr.npz's"
    if s.get("classes") is not None and s["classes"] != classes:
        return "`classes` differs from apcr.npz's"
    top = s.get("top")
    if top is not None:
        lengths = {len(v) for v in top.values() if isinstance(v, list)} if isinstance(top, dict) else set()
        if len(lengths) != 1 or not 1 <= min(lengths) <= k:
            return "`top` is not one list of directions per class"
        want = top_lists(a["apcr"], a["counts"], classes, lengths.pop())
        if json.dumps(want) != json.dumps(top):
            return "`top` differs from the controlling sets of apcr.npz's APCR"
    if s.get("intervals") is not None and not isinstance(s["intervals"], dict):
        return "`intervals` is not an object"
    return None


def check_apcr_run(arrays: Mapping, summary, run_dir: str | os.PathLike) -> None:
    """Refuse an APCR run folder whose ``apcr.npz`` arrays or ``summary.json`` are not what ``corrkit apcr`` writes.

    The one check of a run's files, after :meth:`~corrkit.methods.sequential.APCRResult.load`
    matched their hashes: names, dtypes and shapes (``apcr [K, C]``, ``curves [K, 2m+1, C, C]``
    ...), labels inside the classes, counts that match them, finite values where a class
    has codes, and a summary whose types and numbers agree with the arrays.
    """
    if not isinstance(summary, dict):
        problem = f"summary.json holds a JSON {type(summary).__name__}, expected an object"
    else:
        problem = _arrays_problem(arrays) or _summary_problem(summary, arrays)
    if problem is not None:
        raise CorrkitError(f"{run_dir} is not a sound `corrkit apcr` run: {problem}; rerun `corrkit apcr` with "
                           "--out to make it again")


def recorded_bundle(summary: Mapping | None = None, invert: Mapping | None = None) -> tuple[str | None, str | None]:
    """``(path, generator SHA-256)`` that a run's ``summary.json`` (else its ``invert.json``) records, ``None`` each.

    Parameters
    ----------
    summary, invert : dict, optional
        The contents of ``summary.json`` (its ``bundle`` card) and of ``invert.json``.
    """
    def text(d, key):  # these files may be edited by hand: a value that is not text records nothing
        value = d.get(key) if isinstance(d, Mapping) else None
        return value if isinstance(value, str) and value else None

    card = (summary or {}).get("bundle") or {}
    invert = invert or {}
    files = card.get("files") if isinstance(card, Mapping) else None
    return (text(card, "path") or text(invert, "bundle"),
            text(files, "generator") or text(invert, "generator_sha256"))


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


def recorded_models(card: Mapping):
    """The bundle a run's card names by its model files (absolute paths, SHA-256 checked), or ``None``.

    Runs made from ``--generator``/``--classifier`` (no bundle folder) are found this way.
    """
    from corrkit._core.bundle import from_pair
    from corrkit._core.onnx_files import role_inputs, sha256

    models = card.get("models") or {}
    if models.get("mapping"):
        return _recorded_style(card, models)
    g, q = models.get("generator") or {}, models.get("classifier") or {}
    paths = [Path(m["path"]) for m in (g, q) if m.get("path")]
    if len(paths) != 2 or not all(p.is_file() for p in paths):
        return None
    if any(sha256(p) != m.get("sha256") for p, m in zip(paths, (g, q))):
        return None
    try:
        return from_pair(*paths, classes=card.get("classes"),
                         generator_output_range=card.get("generator_output_range") or (-1, 1),
                         classifier_input_range=card.get("classifier_input_range") or (-1, 1),
                         classifier_output=card.get("classifier_output") or "logits",
                         inputs=role_inputs(card.get("inputs")), outputs=card.get("outputs"))
    except CorrkitError:
        return None


def _recorded_style(card: Mapping, models: Mapping):
    """A mapping/synthesis run's models (paths and SHA-256 checked), in the space the run used, or ``None``."""
    from corrkit._core.style_bundle import from_style
    from corrkit._core.onnx_files import sha256

    parts = [models.get(r) or {} for r in ("mapping", "synthesis", "classifier")]
    paths = [Path(m["path"]) for m in parts if m.get("path")]
    if len(paths) != 3 or not all(p.is_file() for p in paths) or any(
            sha256(p) != m.get("sha256") for p, m in zip(paths, parts)):
        return None
    folder = paths[0].parent
    w_avg = folder / "w_avg.npy"
    try:
        bundle = from_style(*paths, classes=card.get("classes"),
                            generator_output_range=card.get("generator_output_range") or (-1, 1),
                            classifier_input_range=card.get("classifier_input_range") or (-1, 1),
                            classifier_output=card.get("classifier_output") or "logits",
                            w_avg=np.load(w_avg) if w_avg.is_file() else None)
        return in_recorded_space(bundle, card)
    except (CorrkitError, OSError, ValueError):
        return None


def in_recorded_space(bundle, card: Mapping):
    """``bundle`` in the space a run's card records (SPEC §12; Z when it records none)."""
    from corrkit._core.style import Space

    rec = card.get("style") if isinstance(card, Mapping) else None
    if bundle is None or bundle.style is None or not isinstance(rec, Mapping):
        return bundle
    layers = rec.get("layers")
    groups = tuple(tuple(int(x) for x in g) for g in layers) if isinstance(layers, list) else None
    return bundle.in_space(Space(str(rec.get("space", "z")), float(rec.get("truncation", 1.0)), groups,
                                 bool(rec.get("by_layer", False))))


def run_bundle(run_dir: str | os.PathLike, bundle=None):
    """The bundle whose generator made a run's images, or ``None`` (with a warning) when it is not at hand.

    Only a generator whose SHA-256 is the one the run recorded counts: the recorded
    model files, the recorded bundle folder, the built-in bundle, or ``bundle`` when
    the user points at the models (a mismatch there is an error). A run of a fused
    model recorded no generator: its pictures need one, and none is guessed.
    """
    summary = read_summary(run_dir)
    card = summary.get("bundle") or {}
    files = card.get("files") or {}
    path, want = recorded_bundle(summary)
    if bundle is not None:
        got = bundle.hashes().get("generator")
        if got is None:
            raise CorrkitError("the model given has no generator; pictures need one (a bundle folder, or "
                               "--generator and --classifier)")
        if want is not None and got != want:
            raise CorrkitError(f"the generator given is not the one {run_dir} was made with (SHA-256 "
                               f"{got[:12]}… vs {want[:12]}…)")
        return in_recorded_space(bundle, card)
    if want is None and files:
        warnings.warn("this run analysed a fused model, which has no separate generator: pictures need its "
                      "generator; rerun `corrkit apcr` on a bundle or with --generator/--classifier", stacklevel=2)
        return None
    found = recorded_models(card) if want is not None else None
    if found is not None and found.hashes().get("generator") != want:
        found = None  # the card's model list and its hashes disagree: trust neither
    found = found or in_recorded_space(find_bundle(path, want, same_generator=True), card)
    if found is None:
        warnings.warn("the generator this run was made with is not available (its file moved or its hash differs); "
                      "traversal grids are skipped: point at it with --model", stacklevel=2)
    return found
