"""Model bundles (SPEC §0): a generator and a classifier as ONNX, or one fused model.

A bundle folder holds ``generator.onnx``, ``classifier.onnx`` and ``bundle.json``.
Whatever the input, :meth:`Bundle.fused_model` gives one ONNX graph mapping a
latent batch ``z [B, N]`` to class probabilities ``[B, C]`` (fp32): generator,
then the linear map from the generator's output range to the classifier's input
range, then the classifier, then softmax when the classifier emits logits.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from corrkit._core import io
from corrkit._core.fuse import compose, wrap_fused
from corrkit._core.grid import check_value_range as _check_range
from corrkit._core.style import Style, load_conditional_mapping
from corrkit._core.onnx_files import (_check_rank2, _latent_input, external_files, io_shapes, load_onnx, role_inputs,
                                      sha256, split_inputs)
from corrkit.errors import BundleError

BUILTIN = Path(__file__).parents[1] / "bundle"
BUILTIN_STYLE = Path(__file__).parents[1] / "bundle_style"  # names: usable wherever a bundle folder is
BUILTIN_ATTRIBUTES = Path(__file__).parents[1] / "bundle_attributes"  # the generator with an attribute classifier
BUILTIN_NAMES = {"builtin": BUILTIN, "builtin:dcgan": BUILTIN, "builtin:style": BUILTIN_STYLE,
                 "builtin:attributes": BUILTIN_ATTRIBUTES}
OUTPUT_KINDS = ("logits", "probabilities", "sigmoid")  # sigmoid: attribute logits (corrkit._core.attributes)


def builtin_path() -> Path:
    """Folder of the bundle shipped inside the package."""
    return BUILTIN


@dataclass
class Bundle:
    """A generator/classifier pair (or one fused model) and what is known about it."""

    latent_dim: int
    n_classes: int
    classes: list[str]
    classifier_output: str
    generator: Path | None = None
    classifier: Path | None = None
    fused: Path | None = None
    path: Path | None = None
    generator_output_range: tuple[float, float] = (-1.0, 1.0)
    classifier_input_range: tuple[float, float] = (-1.0, 1.0)
    image_shape: tuple[int, ...] | None = None
    meta: dict = field(default_factory=dict)

    style: Style | None = None  # a mapping/synthesis pair (SPEC §12) and the space it is analysed in
    forms: dict = field(default_factory=dict)  # role -> "symbolic" | "freed" | "fixed" batch (conventions)
    io: dict = field(default_factory=dict)  # role -> {"inputs": {name: value}, "output": name} (bind_io)
    attributes: list | None = None  # classifier_output sigmoid: the A attribute names (classes: the 2A concepts)
    _loaded: dict = field(default_factory=dict, init=False, repr=False, compare=False)  # role -> runnable model

    def _runnable(self, path: Path, role: str):
        """``path`` loaded, with its batch dimension made symbolic where that is exact (:mod:`conventions`).

        Loading, checking and the batch check run once per bundle (a bundle is checked on
        load, then run by the engine, and draws pictures); each caller gets its own copy,
        since the graph builders edit what they are given.
        """
        import onnx

        from corrkit._core.conventions import flat_latent, float32_boundary, free_batch

        if role not in self._loaded and role == "generator" and self.style is not None:
            from corrkit._core.style import space_graph

            self._loaded[role] = space_graph(self._runnable(self.style.mapping, "mapping"),
                                             self._runnable(self.style.synthesis, "synthesis"), self.style)
        if role not in self._loaded:
            if role == "mapping" and self.style.class_input:  # (z, c) -> w as one input: style.conditional_mapping
                raw = load_conditional_mapping(path, self.style.class_input, self.style.n_cond)[0]
            else:
                raw = load_onnx(path, role, self.io.get(role))
            model, how = free_batch(float32_boundary(raw))
            self.forms[role] = how
            self._loaded[role] = flat_latent(model) if role in ("generator", "mapping") else model
        copy = onnx.ModelProto()
        copy.CopyFrom(self._loaded[role])
        return copy

    def fused_model(self, output_kind: str | None = None):
        """ONNX ModelProto mapping ``z [B, N]`` to probabilities ``[B, C]``.

        Its batch dimension is symbolic, or fixed when a part's could not be freed
        (the engine then feeds chunks of that size). ``output_kind="probabilities"``
        leaves out the softmax (the classifier's raw outputs, for detecting their kind).
        """
        kind = output_kind or self.classifier_output
        if self.fused is not None:
            return wrap_fused(self._runnable(self.fused, "model"), kind)
        g = self._runnable(self.generator, "generator")
        q = self._runnable(self.classifier, "classifier")
        return compose(g, q, self.generator_output_range, self.classifier_input_range, kind)

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` prior codes float32 ``[n, latent_dim]`` in the bundle's space, from ``rng``.

        Codes are drawn in Z, ``N(0, I)``; in W and W+ they are mapped (and truncated) by
        the mapping network (SPEC §12). For a plain generator this is
        ``rng.standard_normal((n, N)).astype(float32)``, as everywhere before.
        """
        if self.style is None or self.style.space.name == "z":
            return rng.standard_normal((n, self.latent_dim)).astype(np.float32)
        from corrkit._core.conventions import cpu_session, run_rows
        from corrkit._core.style import to_space

        z = rng.standard_normal((n, self.style.z_dim)).astype(np.float32)
        if "mapping/session" not in self._loaded:
            self._loaded["mapping/session"] = cpu_session(self._runnable(self.style.mapping, "mapping"))
        return to_space(run_rows(self._loaded["mapping/session"], z, 4096), self.style)

    def in_space(self, space) -> "Bundle":
        """This bundle analysed in ``space`` (a :class:`corrkit._core.style.Space`), checked; a new view.

        A plain generator has only Z (anything else is refused in one line); a
        mapping/synthesis bundle is presented to the engine as the space's code -> image graph.
        """
        import dataclasses

        from corrkit._core.style import check_space

        space = check_space(self.style, space)
        if self.style is None or space == self.style.space:
            return self
        style = dataclasses.replace(self.style, space=space)
        view = dataclasses.replace(self, style=style, latent_dim=style.latent_dim, forms=dict(self.forms))
        view._loaded.update({k: v for k, v in self._loaded.items() if k in ("mapping", "synthesis", "classifier")})
        return view

    def generator_model(self):
        """The generator as loaded from its file (SeFa reads its weights)."""
        if self.style is not None:
            raise BundleError("this is a mapping/synthesis bundle: SeFa factorises its style layers "
                              "(`corrkit sefa BUNDLE --layers ...`), not a first linear map of z")
        if self.generator is None:
            raise BundleError("this is a fused model with no separate generator; pass a bundle folder or G.onnx")
        return load_onnx(self.generator, "generator", self.io.get("generator"))

    def runnable_generator(self):
        """The generator ready to run on any batch (or, when fixed, on chunks of its batch size)."""
        if self.generator is None:
            raise BundleError("pictures need the generator; a fused model has none: give the generator and "
                              "classifier as a bundle (`corrkit bundle create`)")
        return self._runnable(self.generator, "generator")

    def runnable_classifier(self):
        """The classifier ready to run, as :meth:`runnable_generator` (a pair's; a fused model has none)."""
        if self.classifier is None:
            raise BundleError("this is a fused model with no separate classifier")
        return self._runnable(self.classifier, "classifier")

    def _files(self) -> dict[str, Path]:
        if self.style is not None:
            return {"mapping": self.style.mapping, "synthesis": self.style.synthesis, "classifier": self.classifier}
        files = {"generator": self.generator, "classifier": self.classifier, "fused": self.fused}
        return {k: v for k, v in files.items() if v is not None}

    def runnable_synthesis(self):
        """A mapping/synthesis bundle's synthesis network ready to run (``ws`` or ``w`` -> image)."""
        if self.style is None:
            raise BundleError("this bundle has one generator, no mapping/synthesis pair")
        return self._runnable(self.style.synthesis, "synthesis")

    def models(self) -> dict[str, dict]:
        """Each model file by role: its absolute path and SHA-256 (what a run records to find them again)."""
        return {k: {"path": str(Path(v).resolve()), "sha256": sha256(v)} for k, v in self._files().items()}

    def io_card(self) -> dict:
        """``inputs`` (``{role: {name: value}}``) and ``outputs`` (``{role: name}``) held or picked, when any."""
        inputs = {r: v["inputs"] for r, v in self.io.items() if v.get("inputs")}
        outputs = {r: v["output"] for r, v in self.io.items() if v.get("output")}
        return {**({"inputs": inputs} if inputs else {}), **({"outputs": outputs} if outputs else {})}

    def hashes(self, models: dict | None = None) -> dict[str, str]:
        """SHA-256 of each model file by role (its external data included).

        A mapping/synthesis bundle also gets ``generator``: one digest of the pair, so a run
        finds the generator that made its images whatever form it has.
        """
        out = {k: m["sha256"] for k, m in (models or self.models()).items()}
        if self.style is not None:
            from corrkit._core.style import models_digest

            out["generator"] = models_digest(out["mapping"], out["synthesis"])
        return out

    def card(self) -> dict:
        """The bundle's description as a JSON-ready dict (each model file hashed once)."""
        models = self.models()
        return {
            "path": str(Path(self.path or self.fused).resolve()) if (self.path or self.fused) else "",
            "latent_dim": self.latent_dim,
            "latent_distribution": self.meta.get("latent_distribution", "normal"),
            "n_classes": self.n_classes,
            "classes": list(self.attributes or self.classes),  # what the bundle is built from again
            "image_shape": list(self.image_shape) if self.image_shape else None,
            "generator_output_range": list(self.generator_output_range),
            "classifier_input_range": list(self.classifier_input_range),
            "classifier_output": self.classifier_output,
            "files": self.hashes(models),
            "models": models,
            **({"style": self.style_card()} if self.style is not None else {}),
            **self.io_card(),
            "provenance": self.meta.get("provenance", {}),
            "metrics": self.meta.get("metrics", {}),
        }


    def style_card(self) -> dict:
        """The mapping/synthesis pair's shape and the space a result was computed in."""
        s = self.style
        return {"z_dim": s.z_dim, "w_dim": s.w_dim, "n_layers": s.n_layers, "per_layer": s.per_layer,
                "w_avg": s.w_avg is not None, **s.space.record()}


def _check_output_kind(kind: str) -> str:
    if kind not in OUTPUT_KINDS + ("auto",):
        raise BundleError(f"classifier output kind {kind!r} is not one of {', '.join(OUTPUT_KINDS)} or auto")
    return kind


def check_generator_range(bundle: "Bundle", samples: int = 16, seed: int = 0) -> tuple[float, float]:
    """Observed min and max of the generator on prior samples; a warning when they leave the declared range.

    A tanh generator declared as ``0,1`` (or a [0, 255] one as ``-1,1``) would feed the
    classifier images it was never trained on and draw them clipped.
    """
    import warnings

    from corrkit._core.engine import generate

    z = bundle.draw(np.random.default_rng(seed), samples)
    lo, hi = bundle.generator_output_range
    img = generate(bundle, z, raw=True)
    got = float(img.min()), float(img.max())
    slack = 1e-3 * (hi - lo)
    if got[0] < lo - slack or got[1] > hi + slack:
        warnings.warn(f"the generator's outputs on {samples} prior samples span [{got[0]:.4g}, {got[1]:.4g}], outside "
                      f"the declared range [{lo:g}, {hi:g}]; declare its real range (--generator-range)",
                      stacklevel=3)
    return got


def settle_output_kind(bundle: "Bundle", declared: str, samples: int = 64, seed: int = 0) -> str:
    """The classifier's output kind, read from its outputs on ``samples`` prior codes, checked against ``declared``.

    Probabilities are rows that are non-negative and sum to 1 (within the engine's
    tolerance) on every sample; anything else is logits. ``auto`` takes what the
    sample shows; a declaration the sample contradicts is an error that says which
    kind the outputs look like, because softmax applied to probabilities (or not
    applied to logits) would flatten or distort every number after it.
    """
    from corrkit._core.conventions import cpu_session, run_rows
    from corrkit._core.engine import PROB_TOL
    from corrkit.errors import ModelOutputError

    try:
        session = cpu_session(bundle.fused_model("probabilities"))
        z = bundle.draw(np.random.default_rng(seed), samples)
        raw = run_rows(session, z)
    except Exception as exc:  # onnxruntime's errors: the model cannot run as exported
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BundleError(f"onnxruntime cannot run the model on prior samples: {first[:300]}") from None
    raw = np.asarray(raw, np.float64)
    if not np.isfinite(raw).all():
        raise ModelOutputError("the model produced NaN or infinite outputs on prior samples")
    if declared == "sigmoid":  # attribute logits: checked, and the bundle shows its 2A concepts
        from corrkit._core.attributes import settle_sigmoid
        return settle_sigmoid(bundle, raw)
    looks = "probabilities" if ((raw >= -PROB_TOL).all() and (np.abs(raw.sum(axis=1) - 1.0) <= PROB_TOL).all()) \
        else "logits"
    if declared in ("auto", looks):
        return looks
    if declared == "logits":
        raise ModelOutputError(f"the classifier outputs look like probabilities (all {samples} prior samples give "
                               "non-negative rows summing to 1), but they are declared logits: softmax would be "
                               "applied twice; declare --output probabilities (or auto)")
    raise ModelOutputError(f"the classifier outputs are not probabilities (a row sums to {raw.sum(axis=1)[0]:.4g} "
                           "on prior samples); if the model emits logits, declare it (--output logits, or auto)")


def from_pair(generator, classifier, *, classes=None, generator_output_range=(-1, 1),
              classifier_input_range=(-1, 1), classifier_output="auto", meta=None, path=None,
              inputs: dict | None = None, outputs: dict | None = None) -> Bundle:
    """Check a generator/classifier ONNX pair and describe it as a :class:`Bundle`.

    ``inputs`` holds extra model inputs at values (``{"label": 3}`` or
    ``{"generator.label": 3}``); ``outputs`` picks one output by name per role
    (``{"generator": "img"}``).
    """
    generator, classifier = Path(generator), Path(classifier)
    split = split_inputs(inputs, {"generator": generator, "classifier": classifier})
    io = {role: {"inputs": split[role], "output": (outputs or {}).get(role)} for role in split}
    io = {role: v for role, v in io.items() if v["inputs"] or v["output"]}
    g = load_onnx(generator, "generator", io.get("generator"))
    q = load_onnx(classifier, "classifier", io.get("classifier"))
    g_in, g_out = io_shapes(g)
    q_in, q_out = io_shapes(q)
    n = _latent_input(g_in, generator)
    c = _check_rank2(q_out, "classifier output", classifier)
    fixed = lambda dims: [d for d in dims[1:]] if all(isinstance(d, int) for d in dims[1:]) else None  # noqa: E731
    if fixed(g_out) and fixed(q_in) and fixed(g_out) != fixed(q_in):
        raise BundleError(
            f"generator output {g_out[1:]} does not match classifier input {q_in[1:]} (per-sample shapes)"
        )
    if classes is None:
        classes = [str(i) for i in range(c)]
    classes = list(classes)
    if len(classes) != c:
        raise BundleError(f"{len(classes)} class names given, but the classifier has {c} outputs")
    declared = _check_output_kind(classifier_output)
    b = Bundle(
        latent_dim=n, n_classes=c, classes=classes, classifier_output=declared,
        generator=generator, classifier=classifier, path=path,
        generator_output_range=_check_range(generator_output_range, "generator output range"),
        classifier_input_range=_check_range(classifier_input_range, "classifier input range"),
        image_shape=tuple(fixed(g_out)) if fixed(g_out) else None, meta=meta or {}, io=io,
    )
    b.classifier_output = settle_output_kind(b, declared)
    check_generator_range(b)
    return b


def from_fused(model_path, *, classes=None, classifier_output="auto") -> Bundle:
    """A single ONNX file mapping ``z [B, N]`` to probabilities or logits ``[B, C]``."""
    model_path = Path(model_path)
    m = load_onnx(model_path, "model")
    dims_in, dims_out = io_shapes(m)
    n = _check_rank2(dims_in, "model input", model_path)
    c = _check_rank2(dims_out, "model output", model_path)
    classes = list(classes) if classes is not None else [str(i) for i in range(c)]
    if len(classes) != c:
        raise BundleError(f"{len(classes)} class names given, but the model has {c} outputs")
    declared = _check_output_kind(classifier_output)
    b = Bundle(latent_dim=n, n_classes=c, classes=classes, classifier_output=declared, fused=model_path)
    b.classifier_output = settle_output_kind(b, declared)
    return b


def as_bundle(bundle: "Bundle | str | os.PathLike | None") -> Bundle:
    """``bundle`` itself, or :func:`load_bundle` of a path (``None``: the built-in bundle); what every method takes."""
    return bundle if isinstance(bundle, Bundle) else load_bundle(bundle)


def load_bundle(path: str | os.PathLike | None = None, *, classifier_output: str | None = None) -> Bundle:
    """Load the built-in bundle (``None`` or ``builtin``), ``builtin:style``, a bundle folder, or a fused ``.onnx``."""
    if path is not None and str(path) in BUILTIN_NAMES and not Path(path).exists():
        path = BUILTIN_NAMES[str(path)]
    path = builtin_path() if path is None else Path(path)
    if not path.exists():
        raise BundleError(f"{path} does not exist; give a bundle folder or an .onnx model")
    if path.is_file():
        return from_fused(path, classifier_output=classifier_output or "auto")
    card = path / "bundle.json"
    if not card.is_file():
        raise BundleError(f"{path} is a folder without bundle.json; create one with `corrkit bundle create`")
    from corrkit._core.card import check_card

    try:
        text = card.read_bytes()
    except OSError as exc:
        raise BundleError(f"{card} cannot be read ({exc.strerror or exc}); check its permissions") from None
    try:
        meta = json.loads(text.decode("utf-8"))
    except UnicodeDecodeError:
        raise BundleError(f"{card} is not UTF-8 text; save it as UTF-8 JSON") from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, over-long integers, deep nesting
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise BundleError(f"{card} is not valid JSON ({first})") from None
    meta = check_card(meta, card)
    if "style" in meta:
        from corrkit._core.style_bundle import load_style_folder

        return load_style_folder(path, meta, classifier_output)
    bundle = from_pair(
        path / "generator.onnx", path / "classifier.onnx", classes=meta.get("classes"),
        generator_output_range=meta.get("generator_output_range", (-1, 1)),
        classifier_input_range=meta.get("classifier_input_range", (-1, 1)),
        classifier_output=classifier_output or meta.get("classifier_output", "auto"), meta=meta, path=path,
        inputs=role_inputs(meta.get("inputs")), outputs=meta.get("outputs"),
    )
    if int(meta.get("latent_dim", bundle.latent_dim)) != bundle.latent_dim:
        raise BundleError(f"{card} says latent_dim {meta['latent_dim']}, generator.onnx takes {bundle.latent_dim}")
    return bundle


BUNDLE_FILES = ("generator.onnx", "classifier.onnx", "bundle.json", "mapping.onnx", "synthesis.onnx", "w_avg.npy")


def create_bundle(generator, classifier, out, *, classes=None, generator_output_range=(-1, 1),
                  classifier_input_range=(-1, 1), classifier_output="auto", force: bool = False,
                  extra_files: dict[str, bytes] | None = None,
                  provenance: dict | None = None, inputs: dict | None = None,
                  outputs: dict | None = None) -> Bundle:
    """Turn a user's ONNX pair into a bundle folder, after checking shapes and output kind.

    :func:`from_pair` runs the pair on prior samples (:func:`settle_output_kind`: NaN,
    shapes, and the output kind read or checked; the generator's range). The bundle is written into
    a fresh temporary folder beside ``out`` and renamed into place, so a failure
    leaves nothing behind. An existing ``out`` is refused; with ``force`` an existing
    *bundle* (a folder holding only bundle files) is replaced, never any other folder
    or file.
    """
    out = Path(out)
    _check_bundle_target(out, force)
    b = from_pair(generator, classifier, classes=classes, generator_output_range=generator_output_range,
                  classifier_input_range=classifier_input_range, classifier_output=classifier_output,
                  inputs=inputs, outputs=outputs)
    card = {
        "format": 1, "latent_dim": b.latent_dim, "latent_distribution": "normal", "classes": b.attributes or b.classes,
        "image_shape": list(b.image_shape) if b.image_shape else None,
        "generator_output_range": list(b.generator_output_range),
        "classifier_input_range": list(b.classifier_input_range),
        "classifier_output": b.classifier_output,
        **b.io_card(),
        "provenance": provenance or {"created_by": "corrkit bundle create", "generator": str(Path(generator).resolve()),
                                     "classifier": str(Path(classifier).resolve())},
        "metrics": {},
    }

    return _write_bundle(out, {"generator.onnx": b.generator, "classifier.onnx": b.classifier}, card, force,
                         extra_files)


def _write_bundle(out: Path, models: dict[str, Path], card: dict, force: bool,
                  extra_files: dict[str, bytes] | None = None, arrays: dict[str, np.ndarray] | None = None) -> Bundle:
    """Write a bundle folder atomically (a fresh folder renamed into place) and load it back.

    Models are copied byte for byte with their external data; when two models' data files
    share a name (or one takes a bundle file's name) each is saved again with its own.
    """
    def fill(tmp: Path) -> None:
        names = [f.name for m in models.values() for f in external_files(m)]
        clash = len(set(names)) != len(names) or bool(set(names) & set(BUNDLE_FILES))
        for name, src in models.items():
            _copy_model(src, tmp / name, resave=clash)
        for name, value in (arrays or {}).items():
            np.save(tmp / name, value)
        (tmp / "bundle.json").write_text(json.dumps(card, indent=2) + "\n")
        for name, data in (extra_files or {}).items():  # e.g. MODEL_CARD.md
            (tmp / Path(name).name).write_bytes(data)

    try:
        io.write_folder(out, fill, replace=force)
    except OSError as exc:
        raise BundleError(f"could not write the bundle to {out} ({exc.strerror or exc})") from None
    return load_bundle(out)


def _copy_model(src: Path, dst: Path, resave: bool = False) -> None:
    """Copy an ``.onnx`` file and its external-data files byte for byte (so its SHA-256 stays the same).

    With ``resave`` (the two models' data files share a name) the model is saved
    again with its data in ``<dst>.data``; its hash then changes with the file.
    """
    extra = external_files(src)
    if not resave:
        shutil.copyfile(src, dst)
        for f in extra:
            shutil.copyfile(f, dst.parent / f.name)
        return
    import onnx

    model = onnx.load(str(src))
    onnx.save_model(model, str(dst), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=dst.name + ".data", size_threshold=1024)


def _check_bundle_target(out: Path, force: bool) -> None:
    """Refuse an ``out`` that exists, unless ``force`` and it is a bundle folder we may replace."""
    if not out.exists() and not out.is_symlink():
        return
    if out.is_symlink() or not out.is_dir():
        raise BundleError(f"{out} exists and is not a folder; pick a new --out")
    entries = list(out.iterdir())
    if not entries:
        return
    is_bundle = (out / "bundle.json").is_file() and all(
        e.is_file() and not e.is_symlink() and (e.name in BUNDLE_FILES or e.suffix in (".md", ".npz", ".data"))
        for e in entries)
    if not force:
        what = "a bundle; pass --force to replace it" if is_bundle else "not empty; pick a new --out"
        raise BundleError(f"{out} already exists and is {what}")
    if not is_bundle:
        raise BundleError(f"{out} exists and is not a bundle folder (it holds other files); --force only "
                          "replaces a bundle: pick a new --out")
