"""Mapping/synthesis bundles (SPEC §12): checking a mapping, synthesis and classifier triple, and writing its folder.

The folder holds ``mapping.onnx``, ``synthesis.onnx``, ``classifier.onnx``, ``w_avg.npy`` when
the model has a mean ``w``, and ``bundle.json`` with a ``style`` block. What the pair becomes
in each space is :mod:`corrkit._core.style`; loading and writing share :mod:`corrkit._core.bundle`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from corrkit._core.bundle import (Bundle, _check_bundle_target, _check_output_kind, _check_range, _write_bundle,
                                  check_generator_range, settle_output_kind)
from corrkit._core.onnx_files import _check_rank2, _latent_input, io_shapes, load_onnx
from corrkit._core.style import Style
from corrkit.errors import BundleError


def _synthesis_input(dims: list, w_dim: int, path, n_layers: int | None) -> tuple[int, bool]:
    """``(L, per_layer)`` of a synthesis input ``ws [B, L, Nw]`` or ``w [B, Nw]``, checked against the mapping."""
    shown = "[" + ", ".join("batch" if not isinstance(d, int) else str(d) for d in dims) + "]"
    if len(dims) == 3 and all(isinstance(d, int) and d > 0 for d in dims[1:]) and dims[2] == w_dim:
        if n_layers is not None and n_layers != dims[1]:
            raise BundleError(f"bundle.json says n_layers {n_layers}, but synthesis {path} takes {dims[1]} layers")
        return dims[1], True
    if len(dims) == 2 and dims[1] == w_dim:
        return int(n_layers or 1), False
    raise BundleError(f"synthesis input of {path} has shape {shown}; expected ws [batch, L, {w_dim}] or w [batch, "
                      f"{w_dim}] (the mapping network's w has {w_dim} values)")


def _check_w_avg(w_avg, w_dim: int) -> np.ndarray | None:
    if w_avg is None:
        return None
    a = np.asarray(w_avg, dtype=np.float64)
    if a.shape not in ((w_dim,), (1, w_dim)) or not np.isfinite(a).all():
        raise BundleError(f"w_avg must be {w_dim} finite numbers (the mean of the mapping's w), got shape {a.shape}")
    return a.reshape(w_dim).astype(np.float32)


def from_style(mapping, synthesis, classifier, *, classes=None, generator_output_range=(-1, 1),
               classifier_input_range=(-1, 1), classifier_output="auto", w_avg=None, n_layers: int | None = None,
               meta=None, path=None, class_input: str | None = None) -> Bundle:
    """Check a mapping/synthesis/classifier triple (SPEC §12) and describe it as a :class:`Bundle` in Z.

    The mapping takes ``z [B, Nz]`` (or ``[B, Nz, 1, 1]``) to ``w [B, Nw]``; the synthesis
    takes ``ws [B, L, Nw]`` (or one ``w [B, Nw]``) to an image the classifier reads.
    ``w_avg`` (``[Nw]``) enables truncation. Use :meth:`Bundle.in_space` for W and W+.
    ``class_input`` names a class-conditional mapping's class input (an index for the
    classifier's classes, or a one-hot row): the code then ends with one coordinate per
    class, whose argmax is the class (:func:`corrkit._core.style.conditional_mapping`).
    """
    mapping, synthesis, classifier = Path(mapping), Path(synthesis), Path(classifier)
    s, q = (load_onnx(f, role) for f, role in ((synthesis, "synthesis"), (classifier, "classifier")))
    n_cls = _check_rank2(io_shapes(q)[1], "classifier output", classifier)
    kind, n_cond = "index", 0
    if class_input:
        from corrkit._core.style import load_conditional_mapping

        m, kind, n_cond = load_conditional_mapping(mapping, class_input, n_cls)
    else:
        m = load_onnx(mapping, "mapping")
    (m_in, m_out), (s_in, s_out), (q_in, q_out) = io_shapes(m), io_shapes(s), io_shapes(q)
    n_z = _latent_input(m_in, mapping)
    n_w = _check_rank2(m_out, "mapping output", mapping)
    layers, per_layer = _synthesis_input(s_in, n_w, synthesis, n_layers)
    c = _check_rank2(q_out, "classifier output", classifier)
    fixed = lambda dims: list(dims[1:]) if all(isinstance(d, int) for d in dims[1:]) else None  # noqa: E731
    if fixed(s_out) and fixed(q_in) and fixed(s_out) != fixed(q_in):
        raise BundleError(f"synthesis output {s_out[1:]} does not match classifier input {q_in[1:]} "
                          "(per-sample shapes)")
    classes = list(classes) if classes is not None else [str(i) for i in range(c)]
    if len(classes) != c:
        raise BundleError(f"{len(classes)} class names given, but the classifier has {c} outputs")
    declared = _check_output_kind(classifier_output)
    style = Style(mapping=mapping, synthesis=synthesis, z_dim=n_z, w_dim=n_w, n_layers=layers, per_layer=per_layer,
                  w_avg=_check_w_avg(w_avg, n_w), class_input=class_input or None, n_cond=n_cond, cond_kind=kind)
    b = Bundle(
        latent_dim=n_z, n_classes=c, classes=classes, classifier_output=declared, generator=synthesis,
        classifier=classifier, path=path, style=style,
        generator_output_range=_check_range(generator_output_range, "generator output range"),
        classifier_input_range=_check_range(classifier_input_range, "classifier input range"),
        image_shape=tuple(fixed(s_out)) if fixed(s_out) else None, meta=meta or {},
    )
    b.classifier_output = settle_output_kind(b, declared)
    check_generator_range(b)
    return b


def load_style_folder(path: Path, meta: dict, classifier_output: str | None) -> Bundle:
    """A bundle folder whose ``bundle.json`` has a ``style`` block (its files, and ``w_avg``)."""
    spec = meta["style"]
    w_avg = None
    if spec.get("w_avg"):
        f = path / spec["w_avg"]
        try:
            w_avg = np.load(f, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise BundleError(f"{f} cannot be read as a .npy array ({exc}); write it with numpy.save") from None
    b = from_style(path / spec.get("mapping", "mapping.onnx"), path / spec.get("synthesis", "synthesis.onnx"),
                   path / "classifier.onnx", classes=meta.get("classes"),
                   generator_output_range=meta.get("generator_output_range", (-1, 1)),
                   classifier_input_range=meta.get("classifier_input_range", (-1, 1)),
                   classifier_output=classifier_output or meta.get("classifier_output", "auto"), w_avg=w_avg,
                   n_layers=spec.get("n_layers"), meta=meta, path=path,
                   class_input=(spec.get("class_input") or {}).get("name"))
    for key, got in (("z_dim", b.style.z_dim), ("w_dim", b.style.w_dim), ("latent_dim", b.style.z_dim)):
        want = spec.get(key) if key != "latent_dim" else meta.get(key)
        if want is not None and int(want) != got:
            raise BundleError(f"{path / 'bundle.json'} says {key} {want}, the models have {got}")
    return b


def create_style_bundle(mapping, synthesis, classifier, out, *, classes=None, generator_output_range=(-1, 1),
                        classifier_input_range=(-1, 1), classifier_output="auto", w_avg=None,
                        force: bool = False, extra_files: dict[str, bytes] | None = None,
                        provenance: dict | None = None, metrics: dict | None = None,
                        class_input: str | None = None) -> Bundle:
    """A bundle folder from a mapping, a synthesis and a classifier ONNX (SPEC §12), as :func:`create_bundle`.

    ``w_avg`` (the mean ``w``, ``[Nw]``, for truncation) is an array or a ``.npy`` path.
    The folder holds ``mapping.onnx``, ``synthesis.onnx``, ``classifier.onnx``,
    ``w_avg.npy`` when given, and ``bundle.json`` with a ``style`` block.
    """
    out = Path(out)
    _check_bundle_target(out, force)
    if isinstance(w_avg, (str, os.PathLike)):
        try:
            w_avg = np.load(w_avg, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise BundleError(f"--w-avg {w_avg} cannot be read as a .npy array ({exc})") from None
    b = from_style(mapping, synthesis, classifier, classes=classes, generator_output_range=generator_output_range,
                   classifier_input_range=classifier_input_range, classifier_output=classifier_output, w_avg=w_avg,
                   class_input=class_input)
    st = b.style
    card = {
        "format": 1, "latent_dim": st.z_dim, "latent_distribution": "normal", "classes": b.classes,
        "style": {"mapping": "mapping.onnx", "synthesis": "synthesis.onnx",
                  "w_avg": "w_avg.npy" if st.w_avg is not None else None,
                  "z_dim": st.z_dim, "w_dim": st.w_dim, "n_layers": st.n_layers,
                  **({"class_input": {"name": st.class_input, "classes": st.n_cond, "kind": st.cond_kind}}
                     if st.class_input else {})},
        "image_shape": list(b.image_shape) if b.image_shape else None,
        "generator_output_range": list(b.generator_output_range),
        "classifier_input_range": list(b.classifier_input_range),
        "classifier_output": b.classifier_output,
        "provenance": provenance or {"created_by": "corrkit bundle create",
                                     **{k: str(Path(v).resolve()) for k, v in (("mapping", mapping),
                                        ("synthesis", synthesis), ("classifier", classifier))}},
        "metrics": metrics or {},
    }
    models = {"mapping.onnx": st.mapping, "synthesis.onnx": st.synthesis, "classifier.onnx": b.classifier}
    return _write_bundle(out, models, card, force, extra_files,
                         {"w_avg.npy": st.w_avg} if st.w_avg is not None else None)


def split_generator(generator, w_name: str, folder) -> tuple[Path, Path]:
    """``(mapping.onnx, synthesis.onnx)`` in ``folder``: one generator graph cut at its tensor ``w_name``.

    ``w_name`` is the generator's ``w [B, Nw]`` (the synthesis then takes one ``w``: Z and W) or
    the per-layer ``ws [B, L, Nw]`` a StyleGAN broadcasts it to (W+ too; the mapping then ends
    with ``ws[:, 0]``, checked on prior samples to be one ``w`` repeated). The parts are
    ``onnx.utils.Extractor``'s; the cut's shape is read by running the mapping part on two
    prior samples. Refused when the image also depends on ``z`` by another path (the synthesis
    would need an input besides ``w_name``): then ``w_name`` is not where the generator splits.
    """
    import onnx
    from onnx import helper, numpy_helper

    from corrkit._core.conventions import cpu_session
    from corrkit._core.onnx_files import _dims

    model = load_onnx(generator, "generator")
    inferred = onnx.shape_inference.infer_shapes(model)
    if w_name not in {o for n in inferred.graph.node for o in n.output}:
        raise BundleError(f"--split-at {w_name!r} is no tensor of {generator} (a node output); give the name of "
                          f"its w (netron shows the names)")
    z, image = model.graph.input[0].name, model.graph.output[0].name
    ex = onnx.utils.Extractor(inferred)
    mapping, synthesis = ex.extract_model([z], [w_name]), ex.extract_model([w_name], [image])
    if z in {i for n in synthesis.graph.node for i in n.input}:
        raise BundleError(f"the image of {generator} reads {z!r} by another path than {w_name!r}; split at the "
                          f"tensor every path from z goes through")
    dims = [d if isinstance(d, int) and d > 0 else 2 for d in _dims(model.graph.input[0])]
    probe = cpu_session(mapping).run(None, {z: np.random.default_rng(0).standard_normal(dims).astype(np.float32)})[0]
    if probe.ndim == 3:
        if not np.array_equal(probe, np.repeat(probe[:, :1], probe.shape[1], axis=1)):
            raise BundleError(f"{w_name!r} holds different w per layer for one z; split at the w every layer "
                              f"shares (or at its broadcast ws)")
        mapping.graph.initializer.append(numpy_helper.from_array(np.array(0, np.int64), "corrkit/first_layer"))
        mapping.graph.node.append(helper.make_node("Gather", [w_name, "corrkit/first_layer"], ["w"], axis=1))
        del mapping.graph.output[:]
        mapping.graph.output.append(helper.make_tensor_value_info("w", onnx.TensorProto.FLOAT, ["batch",
                                                                                              probe.shape[2]]))
    elif probe.ndim != 2:
        raise BundleError(f"{w_name!r} has shape {list(probe.shape)} on a batch of {dims[0]}; expected w [B, Nw] "
                          f"or ws [B, L, Nw]")
    shape = ["batch", *probe.shape[1:]]
    for part, vi in ((mapping, mapping.graph.output[0]), (synthesis, synthesis.graph.input[0])):
        del part.graph.value_info[:]  # shapes are inferred again on load
        if part is synthesis or probe.ndim == 2:
            vi.CopyFrom(helper.make_tensor_value_info(vi.name, onnx.TensorProto.FLOAT, shape))
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / "mapping.onnx", folder / "synthesis.onnx"
    for part, p in zip((mapping, synthesis), paths):
        onnx.save(part, str(p))
    return paths
