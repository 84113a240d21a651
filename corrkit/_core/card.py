"""The one schema of ``bundle.json``, checked on every load.

``bundle.json`` is a file users write and edit by hand, so every field that corrkit
reads is checked here, once, before anything uses it: a card that says
``latent_dim: "six"`` or ``classes: 3`` is refused with its path and the field's
name instead of failing later somewhere else. Keys corrkit does not know are kept
as they are (a card may carry notes of its own).
"""

from __future__ import annotations

import math
import os

from corrkit._core.bundle import OUTPUT_KINDS
from corrkit.errors import BundleError

LATENT_DISTRIBUTIONS = ("normal",)  # codes are drawn from N(0, I); a card saying otherwise is not what corrkit runs
RANGES = ("generator_output_range", "classifier_input_range")
DICTS = ("provenance", "metrics", "onnx_sha256")
PROVENANCE_DICTS = ("classifier_training", "gan_training")  # the report reads their "settings"


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _problem(meta) -> str | None:
    """What is wrong with a parsed ``bundle.json``, or ``None``."""
    if not isinstance(meta, dict):
        return f"it holds a JSON {type(meta).__name__}, expected an object {{...}}"
    if "format" in meta and not (_is_int(meta["format"]) and meta["format"] == 1):
        return f"format is {meta['format']!r}; this corrkit reads format 1"
    if "latent_dim" in meta and not (_is_int(meta["latent_dim"]) and meta["latent_dim"] >= 1):
        return f"latent_dim must be a whole number >= 1, got {meta['latent_dim']!r}"
    if "latent_distribution" in meta and meta["latent_distribution"] not in LATENT_DISTRIBUTIONS:
        return (f"latent_distribution is {meta['latent_distribution']!r}; corrkit draws codes from "
                f"{' or '.join(LATENT_DISTRIBUTIONS)} N(0, I) only")
    classes = meta.get("classes")
    if classes is not None:
        if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
            return f"classes must be a non-empty list of names (strings), got {classes!r:.80}"
        if len(set(classes)) != len(classes):
            return "classes has repeated names; every class needs its own name"
    for key in RANGES:
        if key not in meta:
            continue
        r = meta[key]
        if not (isinstance(r, list) and len(r) == 2 and all(_is_number(v) and math.isfinite(v) for v in r)):
            return f"{key} must be two finite numbers [lo, hi], got {r!r:.80}"
        if not r[0] < r[1]:
            return f"{key} must have lo < hi, got {r}"
    kind = meta.get("classifier_output", OUTPUT_KINDS[0])
    if not isinstance(kind, str) or kind not in OUTPUT_KINDS + ("auto",):
        return f"classifier_output must be one of {', '.join(OUTPUT_KINDS)} or auto, got {kind!r:.80}"
    shape = meta.get("image_shape")
    if shape is not None and not (isinstance(shape, list) and 1 <= len(shape) <= 4
                                  and all(_is_int(d) and d >= 1 for d in shape)):
        return f"image_shape must be a list of 1-4 whole numbers >= 1 (e.g. [1, 28, 28]) or null, got {shape!r:.80}"
    if "name" in meta and not isinstance(meta["name"], str):
        return f"name must be a string, got {meta['name']!r:.80}"
    for key in DICTS:
        if key in meta and not isinstance(meta[key], dict):
            return f"{key} must be an object {{...}}, got {type(meta[key]).__name__}"
    for key in PROVENANCE_DICTS:
        value = (meta.get("provenance") or {}).get(key)
        if value is not None and not isinstance(value, dict):
            return f"provenance.{key} must be an object {{...}}, got {type(value).__name__}"
    style = meta.get("style")
    if style is not None:
        if not isinstance(style, dict):
            return f"style must be an object {{mapping, synthesis, w_avg, z_dim, w_dim, n_layers}}, got {style!r:.80}"
        for key in ("mapping", "synthesis", "w_avg"):
            v = style.get(key)
            if v is not None and not (isinstance(v, str) and v and "/" not in v and "\\" not in v and v != ".."):
                return f"style.{key} must be a file name inside the bundle folder, got {v!r:.80}"
        for key in ("z_dim", "w_dim", "n_layers"):
            if key in style and not (_is_int(style[key]) and style[key] >= 1):
                return f"style.{key} must be a whole number >= 1, got {style[key]!r:.80}"
        cond = style.get("class_input")
        if cond is not None and not (isinstance(cond, dict) and isinstance(cond.get("name"), str) and cond["name"]):
            return f"style.class_input must be {{name: the mapping's class input, classes, kind}}, got {cond!r:.80}"
    roles = ("generator", "classifier", "model")
    inputs, outputs = meta.get("inputs"), meta.get("outputs")
    if inputs is not None and not (isinstance(inputs, dict) and all(
            r in roles and isinstance(v, dict) and all(isinstance(n, str) for n in v) for r, v in inputs.items())):
        return f"inputs must be {{role: {{input name: value}}}} with roles {', '.join(roles)}, got {inputs!r:.80}"
    if outputs is not None and not (isinstance(outputs, dict) and all(
            r in roles and isinstance(v, str) for r, v in outputs.items())):
        return f"outputs must be {{role: output name}} with roles {', '.join(roles)}, got {outputs!r:.80}"
    return None


def check_card(meta, path: str | os.PathLike) -> dict:
    """``meta``, the parsed ``bundle.json`` at ``path``, when it fits the schema; else a :class:`BundleError`.

    Checked when present: ``format`` (1), ``latent_dim`` (int >= 1), ``latent_distribution``
    (``normal``), ``classes`` (distinct strings; their number is checked against the
    classifier by the loader), both ranges (two finite numbers, lo < hi),
    ``classifier_output`` (logits, probabilities or auto), ``inputs`` (``{role: {name: value}}``),
    ``outputs`` (``{role: name}``), ``image_shape`` (1-4 ints >= 1 or
    null), ``name`` (str), ``provenance``, ``metrics``, ``onnx_sha256`` (objects).
    Unknown keys are allowed.
    """
    problem = _problem(meta)
    if problem is not None:
        raise BundleError(f"{path} is not a valid bundle card: {problem}; fix it, or write a new bundle with "
                          "`corrkit bundle create`")
    return meta
