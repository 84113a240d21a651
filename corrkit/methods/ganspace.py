"""GANSpace: principal components of an early activation, carried back to the latent (issue 18).

Härkönen, Hertzmann, Lehtinen, Paris, "GANSpace: Discovering Interpretable GAN Controls"
(NeurIPS 2020, arXiv 2004.02546), Section 2, the recipe it uses for BigGAN: draw codes
``z ~ N(0, I)``, record an intermediate activation ``y = G'(z)``, fit PCA to ``y``, and map
the principal components back to latent directions by regressing the codes on their PCA
coordinates, ``z ≈ U x`` with ``x = V (y − mean) / stdev`` (least squares; the columns of ``U``,
unit-normalised, are the directions). The activation is a named tensor of the generator's
ONNX graph, made the one output of a pruned copy, so no torch is needed.

**The default layer (choice).** The output of the first node the latent feeds, followed through
the reshaping ops SeFa also follows (:data:`corrkit.methods.sefa.PASSTHROUGH`): for a DCGAN
(and the built-in bundle) the first ``Gemm``, i.e. ``y = A z + b``. There the PCA of ``y`` is
that of ``A z``, so the directions are the right singular vectors of ``A`` ordered by singular
value: SeFa without its row normalisation. ``layer=`` picks a deeper (non-linear) tensor.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from corrkit._core.defaults import SEED
from corrkit.errors import BundleError, CorrkitError

# Prior codes fitted by default: the GANSpace repository's smallest N (it regresses on max(10_000, N)).
SAMPLES = 10_000
MAX_SAMPLES = 1_000_000
# Activations held in memory for the PCA (float32 samples × units).
MAX_ACTIVATION_BYTES = 4 << 30


@dataclass
class GanspaceResult:
    """Directions found by GANSpace.

    Attributes
    ----------
    directions : ndarray, float32, shape [K, N]
        Unit rows, latent directions of the principal components by descending explained
        variance; each row's largest-magnitude entry is positive.
    explained_variance : ndarray, float64, shape [K]
        Share of the activation's total variance each component explains.
    layer : str
        The activation tensor the PCA was fitted to, and why it was picked.
    samples : int
        Prior codes drawn.
    """

    directions: np.ndarray
    explained_variance: np.ndarray
    layer: str
    samples: int

    def summary(self) -> dict:
        return {"layer": self.layer, "n_directions": len(self.directions), "samples": self.samples,
                "explained_variance": self.explained_variance.tolist()}

    def save(self, path: str | os.PathLike) -> None:
        """``directions``, ``explained_variance`` and ``layer`` (a one-string array) to an ``.npz``, atomically.

        The format ``corrkit sefa --out`` writes, so ``corrkit compare --directions`` and
        :func:`corrkit.methods.compare.load_directions` read it.
        """
        from corrkit._core.io import write_npz

        write_npz(path, directions=self.directions, explained_variance=self.explained_variance,
                  layer=np.array([self.layer]))


def w_ganspace(bundle, *, samples: int = SAMPLES, components: int | None = None, seed: int = SEED) -> GanspaceResult:
    """GANSpace on a StyleGAN-family bundle in W or W+: the principal components of ``w`` itself.

    Härkönen et al. (2020, Section 2) do PCA of ``w = M(z)`` over prior samples for StyleGAN; the
    directions are the components (in W; :func:`corrkit._core.style.space_directions` lifts them
    to the chosen layers in W+). The samples are drawn in Z and mapped, with the space's truncation.
    """
    from sklearn.decomposition import PCA

    from corrkit._core.style import w_view

    w = w_view(bundle).draw(np.random.default_rng(seed), samples).astype(np.float64)
    k = min(components or w.shape[1], w.shape[1], samples)
    pca = PCA(n_components=k, svd_solver="full").fit(w)
    d = pca.components_
    d = d * np.sign(d[np.arange(k), np.abs(d).argmax(1)])[:, None]  # largest entry positive
    return GanspaceResult(d.astype(np.float32), pca.explained_variance_ratio_.astype(np.float64),
                          "w (the mapping network's output)", int(samples))


def runnable_generator(source):
    """The generator of ``source`` (a Bundle, a bundle folder, a generator ``.onnx`` or None) in corrkit's one form.

    A bare ``.onnx`` is a generator (as for SeFa) and is brought to ``z [B, N]`` float32 by the
    same conventions a bundle applies (:mod:`corrkit._core.conventions`).
    """
    from corrkit._core.bundle import Bundle, load_bundle

    if isinstance(source, Bundle):
        return source.runnable_generator()
    if source is not None and Path(source).is_file():
        from corrkit._core.conventions import flat_latent, float32_boundary, free_batch
        from corrkit._core.onnx_files import load_onnx

        model, _ = free_batch(float32_boundary(load_onnx(source, "generator")))
        return flat_latent(model)
    return load_bundle(source).runnable_generator()


def default_layer(model) -> tuple[str, str]:
    """``(tensor, why)``: the output of the first node the latent feeds, past reshaping ops (see the module)."""
    from corrkit._core.onnx_graph import GraphIndex
    from corrkit.methods.sefa import PASSTHROUGH, SHAPE_ONLY

    g = GraphIndex(model)
    z = model.graph.input[0].name
    found, frontier = [], [z]
    while frontier:
        name = frontier.pop()
        for node in g.consumers.get(name, []):
            if node.op_type in SHAPE_ONLY:
                continue
            if node.op_type in PASSTHROUGH and node.input[0] == name:
                frontier.append(node.output[0])
            else:
                found.append(node)
    if len(found) != 1:
        seen = ", ".join(f"{n.op_type} {n.output[0]!r}" for n in found) or "nothing"
        raise BundleError(f"the latent input {z!r} feeds {seen}; GANSpace's default layer is the one node it feeds: "
                          "name the activation to fit with --layer NAME")
    node = found[0]
    return node.output[0], f"{node.op_type} {node.name or node.output[0]!r}: the first layer after the latent"


def activation_model(model, layer: str):
    """A copy of ``model`` whose one output is tensor ``layer``, pruned to the nodes it needs."""
    import onnx
    from onnx import TensorProto, helper

    nodes = list(model.graph.node)
    producers = {out: i for i, node in enumerate(nodes) for out in node.output}
    if layer not in producers:
        inputs = {i.name for i in model.graph.input} | {t.name for t in model.graph.initializer}
        what = "an input or a weight, not an activation" if layer in inputs else "not a tensor of the generator"
        some = ", ".join(repr(n.output[0]) for n in nodes[:8])
        raise BundleError(f"--layer {layer!r} is {what}; node outputs of the generator include {some}")
    needed, todo = set(), [layer]
    while todo:
        i = producers.get(todo.pop())
        if i is None or i in needed:
            continue
        needed.add(i)
        todo.extend(nodes[i].input)
    m = onnx.ModelProto()
    m.CopyFrom(model)
    keep = [node for i, node in enumerate(m.graph.node) if i in needed]
    elem = TensorProto.FLOAT
    try:  # the tensor's type, from shape inference on the pruned graph (fp16 graphs hold fp16 activations)
        probe = onnx.ModelProto()
        probe.CopyFrom(m)
        del probe.graph.node[:]
        probe.graph.node.extend(keep)
        inferred = onnx.shape_inference.infer_shapes(probe)
        for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
            if vi.name == layer and vi.type.tensor_type.elem_type:
                elem = vi.type.tensor_type.elem_type
    except Exception:  # noqa: BLE001  (a custom op: run it as float and let onnxruntime say otherwise)
        pass
    del m.graph.node[:]
    m.graph.node.extend(keep)
    del m.graph.output[:]
    m.graph.output.append(helper.make_tensor_value_info(layer, elem, None))
    used = {x for n in keep for x in n.input}
    kept_inits = [t for t in m.graph.initializer if t.name in used]
    del m.graph.initializer[:]
    m.graph.initializer.extend(kept_inits)
    return m


def activations(model, z: np.ndarray, batch: int = 512) -> np.ndarray:
    """The pruned ``model``'s output for codes ``z [S, N]``, flattened to float32 ``[S, units]``."""
    from corrkit._core.conventions import cpu_session, run_rows
    from corrkit._core.engine import cpu_count

    try:
        session = cpu_session(model, threads=cpu_count())
    except Exception as exc:  # noqa: BLE001  (onnxruntime's own error types)
        raise BundleError(f"the generator cut at {model.graph.output[0].name!r} does not load in onnxruntime: "
                          f"{str(exc).splitlines()[0]}") from None
    y = run_rows(session, np.ascontiguousarray(z, np.float32), batch)
    return np.asarray(y, np.float32).reshape(len(z), -1)


def ganspace(source=None, *, layer: str | None = None, samples: int = SAMPLES, components: int | None = None,
             seed: int = SEED, progress=None) -> GanspaceResult:
    """Latent directions of the principal components of an activation (Härkönen et al. 2020, Section 2).

    Parameters
    ----------
    source : Bundle, path or None
        The generator: a bundle, a bundle folder, a generator ``.onnx`` file, or None for the
        built-in bundle.
    layer : str, optional
        Name of the activation tensor; default: the output of the first layer after the latent.
    samples : int
        Prior codes ``z ~ N(0, I)`` drawn with ``numpy.random.default_rng(seed)``; the PCA and the
        regression both use them.
    components : int, optional
        Principal components kept, ``K`` (default: the latent size ``N``, at most the units and samples).

    Returns
    -------
    GanspaceResult
        ``directions`` float32 [K, N], ``explained_variance`` float64 [K] (descending).
    """
    from sklearn.decomposition import PCA

    from corrkit._core.grid import check_seed, check_whole

    check_whole(samples, "--samples", 2, MAX_SAMPLES)
    check_seed(seed)
    if components is not None:
        check_whole(components, "--components", 1)
    style = getattr(source, "style", None)
    if style is not None and style.space.name != "z":
        if layer is not None:
            raise CorrkitError("--layer picks an activation for GANSpace in Z; in W and W+ the PCA is of w itself")
        return w_ganspace(source, samples=samples, components=components, seed=seed)
    model = runnable_generator(source)
    n = model.graph.input[0].type.tensor_type.shape.dim[1].dim_value
    name, why = (layer, "given") if layer is not None else default_layer(model)
    cut = activation_model(model, name)
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((samples, n)).astype(np.float32)
    units = activations(cut, z[:2]).shape[1]
    if samples * units * 4 > MAX_ACTIVATION_BYTES:
        raise CorrkitError(f"{samples:,} samples of {name!r} ({units:,} units) need "
                           f"{samples * units * 4 / 2**30:.1f} GiB; lower --samples or pick a smaller --layer")
    y = activations(cut, z)
    if progress:
        progress("ganspace", 1, 2)
    if not np.isfinite(y).all():
        raise BundleError(f"the activation {name!r} holds NaN or infinite values on prior codes; pick another --layer")
    k = min(components or n, units, samples)
    if components is not None and components > k:
        raise CorrkitError(f"--components {components} is more than the {k} that {samples} samples of "
                           f"{units} units give")
    # full SVD: exact and needs no random state (sklearn's takes seeds below 2**32 only)
    pca = PCA(n_components=k, svd_solver="full")
    x = pca.fit_transform(y)  # PCA coordinates [S, K]
    stdev = np.sqrt(pca.explained_variance_)
    if not (stdev > 0).all():
        raise BundleError(f"the activation {name!r} varies in fewer than {k} directions on prior codes; "
                          "lower --components or pick another --layer")
    # The repository's regression: codes on the scaled coordinates, z ≈ (x / stdev) M, M's rows the directions.
    m = np.linalg.lstsq((x / stdev).astype(np.float64), z.astype(np.float64), rcond=None)[0]
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    if not (norms > 0).all():
        raise BundleError(f"a principal component of {name!r} does not depend on the latent; pick another --layer")
    d = m / norms
    lead = d[np.arange(len(d)), np.abs(d).argmax(axis=1)]
    d = d * np.where(lead < 0, -1.0, 1.0)[:, None]
    if progress:
        progress("ganspace", 2, 2)
    return GanspaceResult(directions=d.astype(np.float32), samples=int(samples), layer=f"{name} ({why})",
                          explained_variance=pca.explained_variance_ratio_.astype(np.float64))
