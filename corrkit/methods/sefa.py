"""SeFa: closed-form factorisation of the latent space (SPEC §7).

Shen & Zhou, "Closed-Form Factorization of Latent Semantics in GANs" (CVPR 2021,
arXiv 2007.06600), Eq. 5-6: the directions ``n`` that the first layer ``y = A z + b``
of the generator moves most, ``argmax ||A n||^2`` subject to ``||n|| = 1``, are the
eigenvectors of ``AᵀA`` with the largest eigenvalues. The first layer is read from
the generator's ONNX graph, so no torch is needed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from corrkit._core.onnx_graph import GraphIndex, attrs
from corrkit.errors import BundleError

# Ops that move the latent's values without mixing them (the batch stays the batch).
PASSTHROUGH = {"Reshape", "Flatten", "Unsqueeze", "Squeeze", "Identity", "Cast"}
# Ops that read only the latent's shape (torch's ``z.view(z.size(0), ...)`` adds them).
SHAPE_ONLY = {"Shape", "Size"}
LINEAR = {"Gemm", "MatMul", "ConvTranspose", "Conv"}


@dataclass
class SefaResult:
    """Directions found by SeFa.

    Attributes
    ----------
    directions : ndarray, float32, shape [K, N]
        Orthonormal rows, eigenvectors of ``AᵀA`` by descending eigenvalue; each
        row's largest-magnitude entry is positive.
    eigenvalues : ndarray, float64, shape [K]
        Eigenvalues of ``AᵀA`` (rows of ``A`` unit-normalised), descending.
    layer : str
        Which ONNX node gave ``A`` and how it was read.
    """

    directions: np.ndarray
    eigenvalues: np.ndarray
    layer: str

    def save(self, path: str | os.PathLike) -> None:
        """Write ``directions`` and ``eigenvalues`` to an ``.npz`` file, atomically."""
        from corrkit._core.io import write_npz

        write_npz(path, directions=self.directions, eigenvalues=self.eigenvalues)


class _Graph(GraphIndex):
    """A generator's graph index and its one latent input."""

    def __init__(self, model):
        super().__init__(model)
        # Old exporters also list initializers as graph inputs.
        inputs = [i for i in model.graph.input if i.name not in self.consts]
        if len(inputs) != 1:
            raise BundleError(f"the generator has {len(inputs)} inputs; SeFa needs one latent input")
        self.latent = inputs[0]

    def const(self, name: str, node) -> np.ndarray:
        if name not in self.consts:
            raise BundleError(f"{node.op_type} node {node.name!r}: input {name!r} is not a constant weight; "
                              "SeFa needs the first layer's weight stored in the model")
        return np.asarray(self.consts[name], dtype=np.float64)


def _latent_size(vi) -> int | None:
    """N of a latent input ``[B, N]`` or ``[B, N, 1, 1]``; None when a dim is symbolic."""
    dims = [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]
    if len(dims) < 2 or any(d is None for d in dims[1:]):
        return None
    return int(np.prod(dims[1:]))


def _gemm(node, src: str, g: _Graph) -> np.ndarray:
    # Y = alpha * A' B' + beta C, where A' = Aᵀ if transA, B' = Bᵀ if transB.
    at = attrs(node)
    alpha, ta, tb = float(at.get("alpha", 1.0)), at.get("transA", 0), at.get("transB", 0)
    if node.input[0] == src and not ta:  # z [B, N] @ B' [N, M]
        w = g.const(node.input[1], node)
        return alpha * (w if tb else w.T)
    if node.input[1] == src and tb:  # A' [M, N] @ zᵀ [N, B]
        w = g.const(node.input[0], node)
        return alpha * (w.T if ta else w)
    raise BundleError(f"Gemm node {node.name!r} mixes the latent across the batch (transA={ta}, transB={tb}); "
                      "SeFa needs z [B, N] times a weight")


def _matmul(node, src: str, g: _Graph) -> np.ndarray:
    if node.input[0] == src:  # z [B, N] @ W [N, M]
        w = g.const(node.input[1], node)
        if w.ndim == 2:
            return w.T
    else:  # W [M, N] @ z [B, N, 1]
        w = g.const(node.input[0], node)
        if w.ndim == 2:
            return w
    raise BundleError(f"MatMul node {node.name!r} has a {w.ndim}-D weight; SeFa needs a 2-D weight")


def _conv_transpose(node, g: _Graph) -> np.ndarray:
    # On a 1x1 input, output[co, y, x] = sum_ci z[ci] W[ci, co, y + pad_top, x + pad_left]:
    # the kernel itself, cropped by the pads, is the map.
    at = attrs(node)
    w = g.const(node.input[1], node)  # [N, Cout, kh, kw]
    if at.get("group", 1) != 1 or w.ndim != 4:
        raise BundleError(f"ConvTranspose node {node.name!r}: only 2-D, group=1 first layers are supported")
    p = list(at.get("pads", [0, 0, 0, 0]))
    if len(p) != 4 or min(p) < 0 or p[0] + p[2] >= w.shape[2] or p[1] + p[3] >= w.shape[3]:
        raise BundleError(f"ConvTranspose node {node.name!r}: pads {p} crop the whole {w.shape[2]}x{w.shape[3]} "
                          "kernel, so on a 1x1 latent the layer has no output; SeFa cannot read this first layer")
    w = w[:, :, p[0]:w.shape[2] - p[2], p[1]:w.shape[3] - p[3]]
    return w.reshape(w.shape[0], -1).T


def _conv(node, g: _Graph) -> np.ndarray:
    w = g.const(node.input[1], node)  # [Cout, N, 1, 1]
    if attrs(node).get("group", 1) != 1 or w.ndim != 4 or w.shape[2:] != (1, 1):
        raise BundleError(f"Conv node {node.name!r} on the latent has kernel {list(w.shape)}; "
                          "SeFa reads only 1x1, group=1 convolutions on a 1x1 latent")
    return w.reshape(w.shape[0], w.shape[1])


def first_linear_map(model) -> tuple[np.ndarray, str]:
    """The first layer of a generator as a matrix (SPEC §7).

    Follows the latent input through reshaping ops to the first ``Gemm``,
    ``MatMul``, ``ConvTranspose`` or ``Conv`` (on a 1×1 latent).

    Parameters
    ----------
    model : onnx.ModelProto
        Generator mapping ``z [B, N]`` (or ``[B, N, 1, 1]``) to images.

    Returns
    -------
    A : ndarray, float64, shape [M, N]
        Maps ``z`` to the layer's ``M`` pre-activations (bias left out).
    description : str
        The node and weight ``A`` came from.

    Raises
    ------
    BundleError
        When the latent does not feed exactly one such layer; the message names what it feeds.
    """
    g = _Graph(model)
    z = g.latent.name
    found, other, frontier = [], [], [z]
    while frontier:
        name = frontier.pop()
        for node in g.consumers.get(name, []):
            if node.op_type in SHAPE_ONLY:
                continue
            if node.op_type in PASSTHROUGH and node.input[0] == name:
                frontier.append(node.output[0])
            elif node.op_type in LINEAR and name in node.input[:2]:
                found.append((node, name))
            else:
                other.append(node)
    if len(found) != 1 or other:
        seen = [g.chain(n) for n in other] + [n.op_type for n, _ in found]
        raise BundleError(f"the latent input {z!r} feeds {', '.join(seen) or 'nothing'}; SeFa needs exactly one "
                          "Gemm/MatMul/ConvTranspose/Conv as first layer, reached only through "
                          f"{'/'.join(sorted(PASSTHROUGH))}")
    node, src = found[0]
    if node.op_type.startswith("Conv") and node.input[0] != src:
        raise BundleError(f"{node.op_type} node {node.name!r} takes the latent as its weight; SeFa cannot read it")
    read = {"Gemm": lambda: _gemm(node, src, g), "MatMul": lambda: _matmul(node, src, g),
            "ConvTranspose": lambda: _conv_transpose(node, g), "Conv": lambda: _conv(node, g)}
    a = read[node.op_type]()
    n = _latent_size(g.latent)
    if n is not None and a.shape[1] != n:
        raise BundleError(f"{node.op_type} node {node.name!r} maps {a.shape[1]} inputs, the latent has {n}; "
                          "SeFa needs the first layer to see the whole latent at one spatial position")
    weight = node.input[1] if node.input[0] == src else node.input[0]
    return a, f"{node.op_type} {node.name or node.output[0]!r} (weight {weight!r}): A [{a.shape[0]}, {a.shape[1]}]"


def _generator_model(source):
    """A generator ModelProto from a ModelProto, a Bundle, a bundle folder, a .onnx file or None."""
    from corrkit._core.bundle import Bundle, load_bundle
    from corrkit._core.onnx_files import load_onnx

    if hasattr(source, "graph"):
        return source
    if isinstance(source, Bundle):
        return source.generator_model()
    if source is not None and Path(source).is_file():
        return load_onnx(source, "generator")  # a bare .onnx given to SeFa is a generator, not a fused model
    return load_bundle(source).generator_model()


def sefa(source=None, layers: list[int] | None = None) -> SefaResult:
    """Closed-form directions of a generator (Shen & Zhou 2021, Eq. 5-6; SPEC §7).

    Parameters
    ----------
    source : onnx.ModelProto, Bundle, path or None
        The generator: a model, a bundle, a bundle folder, a generator ``.onnx`` file,
        or None for the built-in bundle. A mapping/synthesis bundle is factorised on its
        style layers (:func:`style_sefa`).
    layers : list of int, optional
        Style layers of a mapping/synthesis bundle (default: all).

    Returns
    -------
    SefaResult
        ``directions`` float32 [N, N] (rows), ``eigenvalues`` float64 [N], descending.
    """
    from corrkit._core.bundle import Bundle, as_bundle

    model_or_file = hasattr(source, "graph") or (
        source is not None and not isinstance(source, Bundle) and Path(source).is_file())
    if not model_or_file:
        source = as_bundle(source)
        if source.style is not None:
            return style_sefa(source, layers)
    if layers is not None:
        raise BundleError("--layers picks style layers of a mapping/synthesis bundle; this generator has none")
    a, layer = first_linear_map(_generator_model(source))
    return _factorise(a, layer)


def sefa_in_space(bundle) -> np.ndarray:
    """SeFa directions for ``bundle``'s space: the generator's (plain), or the style-layer SeFa of the
    layers the space moves (a mapping/synthesis bundle; directions of W, lifted by
    :func:`corrkit._core.style.space_directions`)."""
    if bundle.style is None:
        return sefa(bundle).directions
    return style_sefa(bundle, bundle.style.moved_layers()).directions


def _factorise(a: np.ndarray, layer: str) -> SefaResult:
    """SPEC §7 on the map ``a`` [M, N]: rows unit-normed, eigenvectors of ``aᵀa`` by descending eigenvalue."""
    if not np.isfinite(a).all():
        raise BundleError(f"the generator's first layer, {layer}, holds NaN or infinite weights; SeFa has "
                          "nothing to factorise: check or re-export the generator")
    # As the official code: each output unit's weights to unit norm, so that loud units
    # do not dominate. All-zero rows (cropped-out or dead units) stay zero.
    with np.errstate(over="ignore", invalid="ignore"):  # weights too large to square are refused just below
        norms = np.linalg.norm(a, axis=1, keepdims=True)
        a = a / np.where(norms > 0, norms, 1.0)
    if a.size == 0 or not np.isfinite(a).all() or not a.any():
        # Every direction would be an eigenvector of a zero AᵀA: any answer would be made up.
        raise BundleError(f"the generator's first layer, {layer}, has no usable weights (none, all zero, or too "
                          "large to normalise); SeFa's directions would be arbitrary: check or re-export the "
                          "generator")
    values, vectors = np.linalg.eigh(a.T @ a)  # ascending, columns
    order = np.argsort(values)[::-1]
    values, d = values[order], vectors[:, order].T
    # eigh's signs are arbitrary; pin them so results are reproducible across BLAS builds.
    lead = d[np.arange(len(d)), np.abs(d).argmax(axis=1)]
    d = d * np.where(lead < 0, -1.0, 1.0)[:, None]
    return SefaResult(directions=d.astype(np.float32), eigenvalues=values.astype(np.float64), layer=layer)


def style_maps(synthesis, n_layers: int) -> list[tuple[np.ndarray, str]]:
    """``A_l`` ``[S_l, Nw]`` of every style layer: the affine taking ``w_l`` to its style vector (SPEC §12).

    Read from the synthesis graph: a per-layer input ``ws [B, L, Nw]`` is split by
    ``Gather(axis=1, index l)`` (torch's ``ws[:, l]``), and a Gemm/MatMul with a constant
    weight after it (through reshapes) is ``A_l``; of several, the one feeding the larger
    convolution kernel. A synthesis taking one ``w``
    feeds every affine from it; they are taken in graph order.
    """
    g = _Graph(synthesis)
    src = g.latent.name
    found: dict[int, tuple[np.ndarray, str]] = {}

    def affines(name: str, depth: int = 0) -> list:
        """Every Gemm/MatMul with a constant weight that ``name`` reaches through reshapes."""
        hits = []
        for node in g.consumers.get(name, []):
            if node.op_type in PASSTHROUGH and depth < 4:
                hits += affines(node.output[0], depth + 1)
            if node.op_type in ("Gemm", "MatMul") and name in node.input[:2]:
                try:
                    a = (_gemm if node.op_type == "Gemm" else _matmul)(node, name, g)
                except BundleError:
                    continue
                hits.append((a, node.name or node.op_type, position[id(node)], node.output[0]))
        return hits

    position = {id(node): k for k, node in enumerate(synthesis.graph.node)}
    dims = synthesis.graph.input[0].type.tensor_type.shape.dim
    if len(dims) == 3:
        last: dict[int, tuple[int, int]] = {}
        for node in g.consumers.get(src, []):
            if node.op_type != "Gather" or attrs(node).get("axis", 0) != 1 or node.input[1] not in g.consts:
                continue
            index = np.asarray(g.consts[node.input[1]])
            if index.size != 1:
                continue
            layer = int(index.reshape(()))
            for hit in affines(node.output[0]):
                # Where two modules read w_l (StyleGAN2's 1x1 toRGB and the next block's first 3x3 conv), the
                # one whose style reaches the larger kernel is the conv: genforce/sefa's ``layer{l}``.
                rank = (_kernel_after(g, hit[3]), hit[2])
                if rank >= last.get(layer, (-1, -1)):
                    last[layer] = rank
                    found[layer] = (hit[0], f"{hit[1]} (layer {layer})")
    else:
        order = 0
        for node in synthesis.graph.node:
            if src in node.input[:2] and node.op_type in ("Gemm", "MatMul"):
                found[order] = ((_gemm if node.op_type == "Gemm" else _matmul)(node, src, g), node.name or "affine")
                order += 1
    missing = [layer for layer in range(n_layers) if layer not in found]
    if missing:
        raise BundleError(f"no style affine (a Gemm/MatMul with a constant weight after ws[:, l]) was found for "
                          f"style layer(s) {missing} of the synthesis network; SeFa on style layers needs them")
    return [found[layer] for layer in range(n_layers)]


def _kernel_after(g: _Graph, name: str, depth: int = 24) -> int:
    """Kernel area of the first convolution a style vector reaches (breadth first; 0 when none)."""
    frontier, seen = [name], set()
    for _ in range(depth):
        nxt = []
        for t in frontier:
            for node in g.consumers.get(t, []):
                if id(node) in seen:
                    continue
                seen.add(id(node))
                if node.op_type in ("Conv", "ConvTranspose") and node.input[1] in g.consts:
                    return int(np.prod(np.shape(g.consts[node.input[1]])[2:]))
                nxt += list(node.output)
        frontier = nxt
    return 0


def style_sefa(bundle, layers: list[int] | None = None) -> SefaResult:
    """SeFa on the style layers of a mapping/synthesis bundle, as genforce/sefa's ``factorize_weight``.

    The chosen layers' ``A_l`` are stacked row-wise, each row (one style unit) normalised,
    and ``AᵀA`` (``[Nw, Nw]``) eigen-decomposed (SPEC §12). The directions live in W.
    """
    st = bundle.style
    layers = list(range(st.n_layers)) if layers is None else sorted({int(x) for x in layers})
    if not layers or layers[0] < 0 or layers[-1] >= st.n_layers:
        raise BundleError(f"--layers must name style layers 0-{st.n_layers - 1}")
    maps = style_maps(bundle.runnable_synthesis(), st.n_layers)
    a = np.concatenate([maps[layer][0] for layer in layers], axis=0)
    return _factorise(a, f"style layers {','.join(map(str, layers))} ({len(a)} style units)")
