"""Exact rewrites for the generators users bring (SPEC §10): DCGAN-style ConvTranspose stages.

onnxruntime's CPU ConvTranspose multiplies into a column buffer and scatters it back
(col2im); a stride-2 ConvTranspose is cheaper as ordinary convolutions of its
low-resolution input, one per output phase, interleaved once. Four rewrites, applied
in this order by :func:`transpose_rewrites`:

- :func:`fold_batchnorm`: an inference BatchNormalization read only from a Conv or
  ConvTranspose becomes a per-output-channel scale of that conv's weights and a bias.
- :func:`conv_transpose_1x1_gemm`: a ConvTranspose of a 1x1 input (a DCGAN's first layer,
  ``z [B, N, 1, 1]``) is one Gemm ``[B, N] x [N, C kh kw]`` and a Reshape.
- :func:`~corrkit._core.rewrite_phases.conv_transpose_phase_form`: a stride-2 ConvTranspose whose
  output is exactly twice its input is one convolution of the input with the four output phases as channel blocks,
  then one interleave (lining up the phases' windows, offset by one row for kernel 4 pad 1,
  keeps it at 2x2 taps instead of 3x3, for one extra row and column cropped afterwards).
  The interleave is a ConvTranspose (kernel 2, stride 2, one group per channel) with one-hot
  weights: onnxruntime's DepthToSpace is a general 6-D transpose and costs more than that
  scatter, which has no overlaps and four multiply-adds (one by 1.0, three by 0.0) per
  output pixel. Taken from a ``MIN_PHASE_SIDE`` (16) input side up.
- :func:`~corrkit._core.rewrite_phases.conv_transpose_phase_convs`: the same layers on smaller
  inputs (a DCGAN's 4x4 and 8x8 stages), where the lined-up windows' extra row and column
  cost too much: four convolutions, one per phase and only its own window, and a DepthToSpace.

The engine leaves layers to fewer than 16 channels (a generator's last, RGB layer) whole on
onnxruntime (``min_out_channels``, :data:`corrkit._core.engine.THIN_OUT_CHANNELS`), unless a
stride-2 conv reads them (the classifier's first): then
:func:`~corrkit._core.rewrite_into_conv.conv_transpose_into_conv` runs before the phase forms and
that conv reads the phases without an interleave. Each
changes only the order of float additions (and, for the fold, the rounding of the folded
weights). Torch-free: onnx and numpy only; float32 weights only.
"""

from __future__ import annotations

import numpy as np

from corrkit._core.onnx_graph import attrs, constants
from corrkit._core.rewrite import _PHASE_SAFE, apply_replacements as _apply


def _copy(model):
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    return m


def _consts(model) -> dict[str, np.ndarray]:
    """:func:`constants`, plus ``Identity`` of a constant (the TorchScript exporter's shared weights)."""
    values = constants(model)
    for n in model.graph.node:
        if n.op_type == "Identity" and n.input[0] in values:
            values[n.output[0]] = values[n.input[0]]
    return values


class _Index:
    def __init__(self, m):
        self.consts = _consts(m)
        self.consumers: dict[str, list] = {}
        self.producer = {}
        for node in m.graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
            for name in node.output:
                self.producer[name] = node
        self.outputs = {o.name for o in m.graph.output}

    def only_user(self, name):
        users = self.consumers.get(name, [])
        return users[0] if len(users) == 1 and name not in self.outputs else None

    def activations_after(self, node) -> list:
        """The single-input elementwise activations read only from ``node``'s output, in order."""
        chain, cur = [], self.only_user(node.output[0])
        while cur is not None and cur.op_type in _PHASE_SAFE and len(cur.input) == 1:
            chain.append(cur)
            cur = self.only_user(cur.output[0])
        return chain


def _renamed(node, inp: str, out: str):
    import onnx

    new = onnx.NodeProto()
    new.CopyFrom(node)
    new.name = out
    new.input[0], new.output[0] = inp, out
    return new


def _float32_weights(conv, consts) -> np.ndarray | None:
    """Constant float32 weights (and a constant bias, if any) of ``conv``, else None."""
    w = consts.get(conv.input[1]) if len(conv.input) > 1 else None
    if w is None or w.dtype != np.float32 or w.ndim < 3:
        return None
    if len(conv.input) > 2 and conv.input[2] and conv.input[2] not in consts:
        return None
    return w


def _bias(conv, consts, channels: int) -> np.ndarray:
    if len(conv.input) > 2 and conv.input[2]:
        return consts[conv.input[2]].astype(np.float64)
    return np.zeros(channels)


# ---------------------------------------------------------------- BatchNormalization folding

def fold_batchnorm(model):
    """Fold every inference BatchNormalization read only from a Conv/ConvTranspose into its weights.

    ``BN(y) = (y - mean) s + B`` with ``s = scale / sqrt(var + eps)``, per output channel:
    Conv weights ``[Cout, Cin/g, k...]`` scale along axis 0, ConvTranspose weights
    ``[Cin, Cout/g, k...]`` along axis 1 within each group; the new bias is
    ``(b - mean) s + B``. Computed in float64, stored float32. Returns the model and the count.
    """
    from onnx import numpy_helper

    m = _copy(model)
    idx = _Index(m)
    replace, drop, new_inits = {}, set(), []
    for bn in m.graph.node:
        if bn.op_type != "BatchNormalization" or len(bn.input) != 5:
            continue
        a = attrs(bn)
        conv = idx.producer.get(bn.input[0])
        params = [idx.consts.get(x) for x in bn.input[1:]]
        if (a.get("training_mode", 0) or a.get("spatial", 1) != 1 or any(o for o in bn.output[1:])
                or conv is None or conv.op_type not in ("Conv", "ConvTranspose") or id(conv) in replace
                or idx.only_user(conv.output[0]) is not bn or any(p is None or p.ndim != 1 for p in params)):
            continue
        w = _float32_weights(conv, idx.consts)
        if w is None:
            continue
        group = attrs(conv).get("group", 1)
        cout = w.shape[0] if conv.op_type == "Conv" else w.shape[1] * group
        scale, shift, mean, var = (p.astype(np.float64) for p in params)
        if any(p.shape != (cout,) for p in (scale, shift, mean, var)):
            continue
        s = scale / np.sqrt(var + a.get("epsilon", 1e-5))
        if conv.op_type == "Conv":
            wf = w * s.reshape(-1, *[1] * (w.ndim - 1))
        else:  # [g * Cin/g, Cout/g, k...] -> scale channel j of group gi by s[gi * Cout/g + j]
            cin = w.shape[0]
            wf = (w.reshape(group, cin // group, *w.shape[1:]).astype(np.float64)
                  * s.reshape(group, 1, -1, *[1] * (w.ndim - 2))).reshape(w.shape)
        bf = (_bias(conv, idx.consts, cout) - mean) * s + shift
        tag = (conv.name or conv.output[0]) + "/bn_folded"
        new_inits += [numpy_helper.from_array(wf.astype(np.float32), tag + "/w"),
                      numpy_helper.from_array(bf.astype(np.float32), tag + "/b")]
        new = _renamed(conv, conv.input[0], bn.output[0])
        new.name = conv.name
        del new.input[1:]
        new.input.extend([tag + "/w", tag + "/b"])
        replace[id(conv)] = [new]
        drop.add(id(bn))
    if not replace:
        return m, 0
    return _apply(m, replace, drop, new_inits), len(replace)


# ---------------------------------------------------------------- ConvTranspose of a 1x1 input

def _spatial_dims(model) -> dict[str, list]:
    """Shapes (ints, or None where unknown) of every tensor onnx's shape inference can tell."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:
        return {}
    out = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        t = vi.type.tensor_type
        if t.HasField("shape"):
            out[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
    return out


class _Shapes:
    """:func:`_spatial_dims` of one graph, inferred on first use.

    The rewrites keep the names of the tensors they read and write at their boundaries, so one
    inference of the graph they start from serves each of them in turn (:func:`transpose_rewrites`).
    """

    def __init__(self, model):
        self._model, self._dims = model, None

    def get(self, name: str, default=None):
        if self._dims is None:
            self._dims = _spatial_dims(self._model)
        return self._dims.get(name, default)


def _plain_transpose(node, w) -> dict | None:
    """Attributes of an ungrouped, undilated, explicitly padded 2D ConvTranspose, else None."""
    a = attrs(node)
    if (w.ndim != 4 or a.get("group", 1) != 1 or list(a.get("dilations", [1, 1])) != [1, 1]
            or a.get("auto_pad", b"NOTSET") != b"NOTSET" or "output_shape" in a
            or list(a.get("kernel_shape", w.shape[2:])) != list(w.shape[2:])):
        return None
    return {"strides": list(a.get("strides", [1, 1])), "pads": list(a.get("pads", [0, 0, 0, 0])),
            "output_padding": list(a.get("output_padding", [0, 0]))}


def _doubles(w: np.ndarray, a: dict) -> bool:
    """A stride-2 ConvTranspose whose output is exactly ``2 H x 2 W`` (``k + output_padding - pads == 2`` per axis)."""
    pb, pe, op = a["pads"][:2], a["pads"][2:], a["output_padding"]
    return (a["strides"] == [2, 2] and max(op) <= 1
            and all(k + o - p0 - p1 == 2 for k, o, p0, p1 in zip(w.shape[2:], op, pb, pe)))


def _plain_transposes(m, idx):
    """``(node, float32 weights, attributes)`` of each ungrouped, undilated ConvTranspose with constant weights."""
    for n in m.graph.node:
        if n.op_type != "ConvTranspose":
            continue
        w = _float32_weights(n, idx.consts)
        a = _plain_transpose(n, w) if w is not None else None
        if a is not None:
            yield n, w, a


def _doubling_transposes(m, idx):
    """:func:`_plain_transposes` whose output is exactly twice their input (:func:`_doubles`)."""
    return ((n, w, a) for n, w, a in _plain_transposes(m, idx) if _doubles(w, a))


def _activations_on(idx, n, out: str, nodes: list, prefix: str):
    """Append copies of the activations right after ``n``, reading ``out``, to ``nodes``: ``(chain, new out)``."""
    chain = idx.activations_after(n)
    for j, act in enumerate(chain):
        nodes.append(_renamed(act, out, f"{prefix}{j}"))
        out = nodes[-1].output[0]
    return chain, out


def conv_transpose_1x1_gemm(model, shapes=None):
    """ConvTranspose (pads 0, no output padding) of a ``[B, N, 1, 1]`` input -> Gemm + Reshape.

    With one input pixel, output pixel ``(y, x)`` of channel ``o`` is ``sum_n z[n] W[n, o, y, x]``
    whatever the stride: ``[B, N] x W.reshape(N, C kh kw)`` plus the bias repeated ``kh kw``
    times. The 2D input is the Reshape/Flatten's own input where the 1x1 came from one, else
    a Flatten. Activations right after move before the Reshape (onnxruntime fuses them into
    the Gemm). ``shapes``: the graph's :class:`_Shapes` where the caller has them. Returns the
    model and the count.
    """
    from onnx import helper, numpy_helper

    m = _copy(model)
    idx = _Index(m)
    shapes = _Shapes(m) if shapes is None else shapes
    replace, drop, new_inits = {}, set(), []
    for n, w, a in _plain_transposes(m, idx):
        if any(a["pads"]) or any(a["output_padding"]):
            continue
        shape = shapes.get(n.input[0])
        if shape is None or len(shape) != 4 or shape[2:] != [1, 1] or shape[1] != w.shape[0]:
            continue
        cin, cout, kh, kw = w.shape
        tag = n.name or n.output[0]
        src = idx.producer.get(n.input[0])
        flat = src.input[0] if src is not None and src.op_type in ("Reshape", "Unsqueeze", "Flatten") and (
            shapes.get(src.input[0], [None, None])[1:] == [cin]) else None
        nodes = []
        if flat is not None and idx.only_user(src.output[0]) is n:
            drop.add(id(src))
        if flat is None:
            flat = tag + "/flat"
            nodes.append(helper.make_node("Flatten", [n.input[0]], [flat], name=flat, axis=1))
        ins = [flat, tag + "/gemm_w", tag + "/gemm_b"]
        new_inits += [numpy_helper.from_array(np.ascontiguousarray(w.reshape(cin, cout * kh * kw)), ins[1]),
                      numpy_helper.from_array(np.repeat(_bias(n, idx.consts, cout), kh * kw).astype(np.float32),
                                              ins[2]),
                      numpy_helper.from_array(np.array([-1, cout, kh, kw], np.int64), tag + "/gemm_shape")]
        out = tag + "/gemm"
        nodes.append(helper.make_node("Gemm", ins, [out], name=out))
        chain, out = _activations_on(idx, n, out, nodes, tag + "/act")
        last = chain[-1] if chain else n
        nodes.append(helper.make_node("Reshape", [out, tag + "/gemm_shape"], [last.output[0]], name=tag + "/unflat"))
        replace[id(last)] = nodes
        drop.update(id(x) for x in [n, *chain])
    if not replace:
        return m, 0
    return _apply(m, replace, drop, new_inits), len(replace)


MIN_PHASE_SIDE = 16  # onnxruntime CPU, from 16x16 inputs up; smaller ones: rewrite_phases


def transpose_rewrites(model, phase_form: bool = True, interleave: str = "grouped_transpose",
                       min_side: int = MIN_PHASE_SIDE, min_out_channels: int = 1, into_conv: bool = False):
    """The four rewrites in order (fold first, so the others see folded weights): ``(model, counts)``.

    ``phase_form=False`` keeps stride-2 ConvTransposes whole. ``interleave``, ``min_side`` and
    ``min_out_channels`` are :func:`~corrkit._core.rewrite_phases.conv_transpose_phase_form`'s:
    onnxruntime's CPU kernels want the grouped transpose from 16x16 inputs up and one convolution per phase below
    (:func:`~corrkit._core.rewrite_phases.conv_transpose_phase_convs`, for inputs known to be
    under ``min_side``); OpenVINO (``--mode bf16``) wants DepthToSpace on every layer, because
    its one-hot grouped deconvolution is slow while its convolutions run on AMX
    (benchmarks/RESULTS.md). ``into_conv``: a layer read by a stride-2 conv (a generator's last layer
    and its classifier's first) first becomes phases that conv reads directly, whatever its channels
    (:func:`~corrkit._core.rewrite_into_conv.conv_transpose_into_conv`; onnxruntime's form).
    """
    from corrkit._core.rewrite_into_conv import conv_transpose_into_conv
    from corrkit._core.rewrite_phases import conv_transpose_phase_convs, conv_transpose_phase_form

    counts = {}
    model, k = fold_batchnorm(model)
    if k:
        counts["batchnorm_fold"] = k
    shapes = _Shapes(model)  # inferred once, on the folded graph, when a rewrite first asks
    steps = [("conv_transpose_1x1_gemm", conv_transpose_1x1_gemm)]
    if phase_form and into_conv:
        steps.append(("conv_transpose_into_conv", conv_transpose_into_conv))
    if phase_form:
        steps.append(("conv_transpose_phase_form",
                      lambda m, shapes: conv_transpose_phase_form(m, interleave=interleave, min_side=min_side,
                                                                  min_out_channels=min_out_channels, shapes=shapes)))
        if min_side > 1:
            steps.append(("conv_transpose_phase_convs", lambda m, shapes: conv_transpose_phase_convs(
                m, max_side=min_side, min_out_channels=min_out_channels, shapes=shapes)))
    for name, fn in steps:
        model, k = fn(model, shapes=shapes)
        if k:
            counts[name] = k
    return model, counts
