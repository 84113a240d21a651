"""Mapping/synthesis generators (SPEC §12): the spaces Z, W and W+ as one latent -> image graph each.

A StyleGAN-family bundle holds a mapping network ``M: z [B, Nz] -> w [B, Nw]`` and a
synthesis network taking ``ws [B, L, Nw]`` (one ``w`` per style layer) or one
``w [B, Nw]``. corrkit's engine runs one latent -> probabilities graph, so each
space is presented to it as a generator whose input is that space's code:

- **Z**: ``z -> M -> truncation -> ws = [w] * L -> synthesis`` (codes are ``N(0, I)``);
- **W**: ``w -> ws = [w] * L -> synthesis`` (codes are ``trunc(M(z))`` for prior ``z``);
- **W+**: ``ws`` flattened to ``[B, L * Nw]`` (codes as W, repeated per layer).

An intervention ``w + k delta d`` on chosen layers only is a direction of W+ with ``d``
on those layers' blocks and zero elsewhere (:func:`lift`), so every method runs on W+
unchanged. Truncation ``w_avg + psi (w - w_avg)`` is left out entirely when ``psi == 1``,
so that case equals no truncation bit for bit.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from corrkit.errors import BundleError

SPACES = ("z", "w", "w+")


@dataclass(frozen=True)
class Space:
    """Where interventions happen: ``name`` (z, w, w+), truncation ``psi``, and, in W+, layer groups.

    ``layers`` is a tuple of groups (tuples of layer indices); ``None`` is every layer as one
    group. A direction moves the union of the groups; ``by_layer`` ranks each group apart.
    """

    name: str = "z"
    truncation: float = 1.0
    layers: tuple[tuple[int, ...], ...] | None = None
    by_layer: bool = False

    def record(self) -> dict:
        """What a result records of the space (JSON-ready)."""
        return {"space": self.name, "truncation": self.truncation,
                "layers": [list(g) for g in self.layers] if self.layers is not None else None,
                "by_layer": self.by_layer}


@dataclass
class Style:
    """What corrkit knows of a mapping/synthesis pair, and the space it is presented in."""

    mapping: Path
    synthesis: Path
    z_dim: int
    w_dim: int
    n_layers: int
    per_layer: bool  # the synthesis takes ws [B, L, Nw] (else one w [B, Nw] for every layer)
    w_avg: np.ndarray | None = None
    space: Space = Space()
    # A class-conditional mapping: its class input's name, class count K and kind ("index": integer
    # [B] or [B, 1]; "onehot": float [B, K]). z_dim then counts K more coordinates (conditional_mapping).
    class_input: str | None = None
    n_cond: int = 0
    cond_kind: str = "index"

    @property
    def latent_dim(self) -> int:
        return {"z": self.z_dim, "w": self.w_dim, "w+": self.n_layers * self.w_dim}[self.space.name]

    def layer_groups(self) -> tuple[tuple[int, ...], ...]:
        return self.space.layers if self.space.layers is not None else (tuple(range(self.n_layers)),)

    def moved_layers(self) -> list[int]:
        """Every style layer a direction of this space moves (the union of the groups), sorted."""
        return sorted({i for g in self.layer_groups() for i in g})


def parse_layers(text: str | None, n_layers: int) -> tuple[tuple[int, ...], ...] | None:
    """``"0-3,8"`` as layer groups ``((0, 1, 2, 3), (8,))``; ``None``/empty for every layer.

    Each comma-separated item is a group (a layer or an inclusive range); indices are
    checked against the synthesis network's ``n_layers`` style layers.
    """
    if text is None or not str(text).strip():
        return None
    groups = []
    for item in str(text).split(","):
        lo, dash, hi = item.strip().partition("-")
        try:
            a = int(lo)
            b = int(hi) if dash else a
        except ValueError:
            raise BundleError(f"--layers takes layer indices and ranges like 0-3,8; got {text!r}") from None
        if not 0 <= a <= b < n_layers:
            raise BundleError(f"--layers {item.strip()!r}: the synthesis network has style layers 0-{n_layers - 1}")
        groups.append(tuple(range(a, b + 1)))
    seen = [layer for g in groups for layer in g]
    if len(set(seen)) != len(seen):
        raise BundleError(f"--layers {text!r} names a layer twice; give each layer once")
    return tuple(groups)


def check_space(style: Style | None, space: Space) -> Space:
    """``space`` when this bundle can be analysed in it; else one error that says what can."""
    if space.name not in SPACES:
        raise BundleError(f"--space {space.name!r} is not one of {', '.join(SPACES)}")
    psi = float(space.truncation)
    if not np.isfinite(psi):
        raise BundleError(f"--truncation must be a finite number (1 for none), got {space.truncation}")
    if style is None:
        if space.name != "z" or psi != 1.0 or space.layers is not None or space.by_layer:
            raise BundleError("--space w/w+, --truncation and --layers need a mapping/synthesis bundle "
                              "(`corrkit bundle create --mapping M.onnx --synthesis S.onnx ...`); this generator "
                              "has one latent space, z")
        return space
    if psi != 1.0 and style.w_avg is None:
        raise BundleError("--truncation needs w_avg, the mean of w; this bundle has none (bundle create --w-avg "
                          "FILE.npy)")
    if (space.layers is not None or space.by_layer) and space.name != "w+":
        raise BundleError("--layers and --by-layer choose style layers, which only W+ has: add --space w+")
    if space.name == "w+" and not style.per_layer:
        raise BundleError("this synthesis network takes one w [B, Nw] for every layer, so there is no W+; "
                          "export it with a per-layer input ws [B, L, Nw]")
    return replace(space, truncation=psi)


def lift(directions: np.ndarray, style: Style) -> np.ndarray:
    """Directions of W (``[K, Nw]``, rows normalised) as directions of W+ on the space's layers.

    Every layer of a group moves by the whole step (SPEC §12: ``w_l + k delta d``), so a
    lifted row has norm ``sqrt(layers)``; the method must not normalise it again. With
    ``by_layer`` each group gets its own copy of every direction: rows are group-major,
    ``[G * K, L * Nw]``. Directions already of W+'s width are returned as they are.
    """
    d = np.asarray(directions, np.float32)
    n_w, n_l = style.w_dim, style.n_layers
    if d.ndim != 2 or d.shape[1] not in (n_w, n_l * n_w):
        raise BundleError(f"directions have shape {d.shape}; in W+ give [K, {n_w}] (lifted to the chosen layers) "
                          f"or [K, {n_l * n_w}]")
    if d.shape[1] == n_l * n_w:
        return d
    norms = np.linalg.norm(d, axis=1, keepdims=True)
    if (norms == 0).any():
        raise BundleError("a direction is all zeros; every direction needs a length")
    d = d / norms
    groups = style.layer_groups() if style.space.by_layer else (sum(style.layer_groups(), ()),)
    out = np.zeros((len(groups), len(d), n_l, n_w), np.float32)
    for g, layers in enumerate(groups):
        out[g][:, list(layers)] = d[:, None, :]
    return out.reshape(len(groups) * len(d), n_l * n_w)


def space_directions(bundle, directions: np.ndarray | None) -> tuple[np.ndarray | None, bool]:
    """``(directions, normalise)`` for a method on ``bundle``'s space.

    In W+ the directions of W (default: its axes) are lifted to the chosen layers and
    must not be normalised again (:func:`lift`); elsewhere they pass as given.
    """
    style = getattr(bundle, "style", None)
    if style is None or style.space.name != "w+":
        return directions, True
    d = np.eye(style.w_dim, dtype=np.float32) if directions is None else directions
    return lift(d, style), False


def conditional_mapping(model, class_input: str, n_cond: int):
    """A class-conditional mapping ``(z, c) -> w`` as one-input ``zc [B, Nz + K] -> w``: ``(model, kind, K)``.

    ``K`` is the one-hot input's width, or ``n_cond`` for an index input.

    The last ``K`` coordinates of the code choose the class by their argmax (fed to the class
    input as an index, or as a one-hot row). Drawn ``N(0, I)`` like the rest, they give every class
    the same chance (the argmax of ``K`` iid normals is uniform), so codes are still drawn in Z
    as ``N(0, I)`` (SPEC §12); in Z an intervention may move them, and a class changes where the
    argmax flips; in W and W+ the class is part of ``w``.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = {t.name for t in model.graph.initializer}
    ins = [vi for vi in model.graph.input if vi.name not in inits]
    cls = next((vi for vi in ins if vi.name == class_input), None)
    others = [vi for vi in ins if vi.name != class_input]
    if cls is None or len(others) != 1:
        names = ", ".join(vi.name for vi in ins)
        raise BundleError(f"--class-input {class_input!r}: the mapping's inputs are {names}; name its class "
                          f"input (the other one is z)")
    z = others[0]
    elem = cls.type.tensor_type.elem_type
    dims = [d.dim_value if d.HasField("dim_value") else None for d in cls.type.tensor_type.shape.dim]
    zdims = [d.dim_value if d.HasField("dim_value") else None for d in z.type.tensor_type.shape.dim]
    n_z = zdims[1] if len(zdims) >= 2 else None
    integer = elem in (TensorProto.INT64, TensorProto.INT32)
    if integer and len(dims) in (1, 2) and (len(dims) == 1 or dims[1] == 1):
        kind = "index"
    elif elem == TensorProto.FLOAT and len(dims) == 2 and dims[1]:
        kind, n_cond = "onehot", dims[1]
    else:
        raise BundleError(f"class input {class_input!r} has shape {dims}; expected an integer [B] or [B, 1] "
                          f"index or a float [B, K] one-hot row")
    if n_z is None or len(zdims) not in (2, 4) or not n_cond or n_cond < 2:
        raise BundleError(f"the mapping's z has shape {zdims} and {n_cond} classes; expected z [B, Nz] and K >= 2")
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    const = lambda name, v: g.initializer.append(numpy_helper.from_array(np.asarray(v), name))  # noqa: E731
    const("cz/z_start", np.array([0], np.int64)); const("cz/z_end", np.array([n_z], np.int64))
    const("cz/c_end", np.array([n_z + n_cond], np.int64)); const("cz/axis", np.array([1], np.int64))
    nodes = [helper.make_node("Slice", ["zc", "cz/z_start", "cz/z_end", "cz/axis"], ["cz/z"]),
             helper.make_node("Slice", ["zc", "cz/z_end", "cz/c_end", "cz/axis"], ["cz/u"]),
             helper.make_node("ArgMax", ["cz/u"], ["cz/k"], axis=1, keepdims=0)]
    if len(zdims) == 4:
        const("cz/z_shape", np.array([-1, n_z, 1, 1], np.int64))
        nodes.append(helper.make_node("Reshape", ["cz/z", "cz/z_shape"], [z.name]))
    else:
        nodes.append(helper.make_node("Identity", ["cz/z"], [z.name]))
    if kind == "index":
        last = "cz/k" if len(dims) == 1 else "cz/k1"
        if len(dims) == 2:
            const("cz/k_shape", np.array([-1, 1], np.int64))
            nodes.append(helper.make_node("Reshape", ["cz/k", "cz/k_shape"], ["cz/k1"]))
        nodes.append(helper.make_node("Cast", [last], [class_input], to=elem))
    else:
        const("cz/depth", np.array(n_cond, np.int64)); const("cz/values", np.array([0.0, 1.0], np.float32))
        nodes.append(helper.make_node("OneHot", ["cz/k", "cz/depth", "cz/values"], [class_input], axis=-1))
    old = list(g.node)
    del g.node[:]
    g.node.extend(nodes + old)
    keep = [vi for vi in g.input if vi.name in inits]
    del g.input[:]
    g.input.extend([helper.make_tensor_value_info("zc", TensorProto.FLOAT, ["batch", n_z + n_cond])] + keep)
    return m, kind, n_cond


def load_conditional_mapping(path, class_input: str, n_cond: int):
    """:func:`conditional_mapping` of the ONNX file at ``path`` (checked as :func:`load_onnx` checks)."""
    import onnx

    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise BundleError(f"mapping {path} is not a valid ONNX model ({first[:200]})") from None
    return conditional_mapping(model, class_input, n_cond)


def direction_dim(bundle) -> int:
    """Size of the directions a method finds for ``bundle``'s space: ``Nw`` in W and W+ (lifted to
    the layers by :func:`space_directions`), else the latent size."""
    style = getattr(bundle, "style", None)
    return style.w_dim if style is not None and style.space.name != "z" else bundle.latent_dim


def w_view(bundle):
    """A W+ view's bundle in W with the same truncation (where a method fits its directions); else itself."""
    style = getattr(bundle, "style", None)
    if style is None or style.space.name != "w+":
        return bundle
    return bundle.in_space(Space("w", style.space.truncation))


def space_graph(mapping, synthesis, style: Style):
    """One ONNX graph: the space's code ``z [B, latent_dim]`` -> the synthesis network's image."""
    from onnx import compose, helper, numpy_helper

    from corrkit._core.fuse import _align, _rename_input, common_batch

    batch = common_batch(mapping, synthesis, "the mapping and synthesis networks")
    (m, s), opset, onnx = _align([mapping, synthesis])
    m, s = compose.add_prefix(m, "m/"), compose.add_prefix(s, "s/")
    space, n_w, n_l = style.space, style.w_dim, style.n_layers
    s_in = s.graph.input[0].name
    nodes, inits = [], list(s.graph.initializer)

    def const(name, value):
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    if space.name == "w+":
        nodes.append(helper.make_node("Reshape", ["z", const("space/ws_shape", np.array([-1, n_l, n_w], np.int64))],
                                      [s_in]))
    else:
        w = "z"
        if space.name == "z":
            inits += list(m.graph.initializer)
            nodes += [_rename_input(n, m.graph.input[0].name, "z") for n in m.graph.node]
            w = m.graph.output[0].name
            if space.truncation != 1.0:
                avg = const("space/w_avg", style.w_avg.astype(np.float32).reshape(1, n_w))
                psi = const("space/psi", np.array(space.truncation, np.float32))
                nodes += [helper.make_node("Sub", [w, avg], ["space/w_centred"]),
                          helper.make_node("Mul", ["space/w_centred", psi], ["space/w_scaled"]),
                          helper.make_node("Add", ["space/w_scaled", avg], ["space/w"])]
                w = "space/w"
        if style.per_layer:
            nodes += [helper.make_node("Reshape", [w, const("space/w_shape", np.array([-1, 1, n_w], np.int64))],
                                       ["space/w_row"]),
                      helper.make_node("Tile", ["space/w_row", const("space/repeats", np.array([1, n_l, 1],
                                                                                            np.int64))], [s_in])]
        else:
            nodes.append(helper.make_node("Identity", [w], [s_in]))
    nodes += list(s.graph.node)
    image = s.graph.output[0]
    graph = helper.make_graph(
        nodes, f"corrkit_{space.name.replace('+', 'plus')}_space",
        [helper.make_tensor_value_info("z", onnx.TensorProto.FLOAT, [batch, style.latent_dim])], [image],
        initializer=inits, value_info=list(m.graph.value_info) * (space.name == "z") + list(s.graph.value_info))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = s.ir_version
    return model


def truncate(w: np.ndarray, style: Style) -> np.ndarray:
    """``w_avg + psi (w - w_avg)`` in float32 (``w`` itself when ``psi == 1``)."""
    psi = style.space.truncation
    if psi == 1.0:
        return w
    avg = style.w_avg.astype(np.float32)
    return ((w - avg) * np.float32(psi) + avg).astype(np.float32)


def to_space(w: np.ndarray, style: Style) -> np.ndarray:
    """Truncated ``w [B, Nw]`` as the space's codes: itself in W, repeated per layer and flattened in W+."""
    w = truncate(np.asarray(w, np.float32), style)
    if style.space.name == "w+":
        return np.ascontiguousarray(np.tile(w, (1, style.n_layers)))
    return w


def models_digest(mapping_sha: str, synthesis_sha: str) -> str:
    """One SHA-256 for the pair (what a run's ``files.generator`` records for a mapping/synthesis bundle)."""
    return hashlib.sha256(f"mapping:{mapping_sha}\nsynthesis:{synthesis_sha}\n".encode()).hexdigest()
