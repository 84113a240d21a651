"""Exact graph rewrites of the fused model (SPEC §10), torch-free, at load time.

Nearest-neighbour upsampling by 2 followed by a 3x3 convolution (stride 1, pad 1)
reads each input pixel through only 2x2 distinct sums of taps per output phase, so
it needs 16 instead of 36 multiply-adds per input pixel and channel pair (2.25x
fewer on those layers). :func:`subpixel_phase_form` (the engine's default) uses
that as four 2x2 convolutions and keeps the result in phase form;
The same pair as one ConvTranspose (kernel 4, stride 2, pad 1) is exact too but
slower on onnxruntime's CPU; the benchmarks keep that form for comparison.
:func:`thin_conv_split` serves onnxruntime's blocked kernels. Only the order of
float additions changes.
"""

from __future__ import annotations

import numpy as np

from corrkit._core.onnx_graph import GraphIndex, attrs, constants

_NEAREST_FLOOR = {("asymmetric", "floor"), ("half_pixel", "round_prefer_floor"),
                  ("pytorch_half_pixel", "round_prefer_floor")}


def _nearest_2x(n, consts) -> bool:
    """``n`` is a Resize that repeats each pixel 2x2 (nearest, floor-style coordinates)."""
    if n.op_type != "Resize":
        return False
    a = attrs(n)
    scales = consts.get(n.input[2]) if len(n.input) > 2 and n.input[2] else None
    return (a.get("mode", b"nearest").decode() == "nearest" and scales is not None
            and (a.get("coordinate_transformation_mode", b"half_pixel").decode(),
                 a.get("nearest_mode", b"round_prefer_floor").decode()) in _NEAREST_FLOOR
            and scales.tolist() == [1.0, 1.0, 2.0, 2.0])


def _plain_3x3(conv, consts) -> np.ndarray | None:
    """Weights of ``conv`` if it is a 3x3, pad 1, stride 1, ungrouped Conv with constant weights and bias."""
    if conv is None or conv.op_type != "Conv":
        return None
    a = attrs(conv)
    w = consts.get(conv.input[1])
    ok = (w is not None and w.ndim == 4 and w.shape[2:] == (3, 3) and a.get("group", 1) == 1
          and list(a.get("pads", [0] * 4)) == [1, 1, 1, 1] and list(a.get("strides", [1, 1])) == [1, 1]
          and list(a.get("dilations", [1, 1])) == [1, 1] and a.get("auto_pad", b"NOTSET") == b"NOTSET"
          and (len(conv.input) < 3 or conv.input[2] in consts))
    return w if ok else None


def apply_replacements(m, replace: dict, drop: set, new_inits: list):
    """Rebuild ``m``'s node list: a node whose ``id`` is in ``replace`` becomes those nodes, one in ``drop`` goes."""
    out = []
    for node in m.graph.node:
        if id(node) in replace:
            out.extend(replace[id(node)])
        elif id(node) not in drop:
            out.append(node)
    _replace_graph(m, out, new_inits)
    return m


def _replace_graph(m, nodes: list, new_inits: list) -> None:
    """Swap in ``nodes``, add ``new_inits`` and drop initializers no node reads any more."""
    used = {i for n in nodes for i in n.input} | {o.name for o in m.graph.output}
    nodes = [n for n in nodes if n.op_type != "Constant" or n.output[0] in used]
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    m.graph.initializer.extend(new_inits)
    keep = [i for i in m.graph.initializer if i.name in used]
    del m.graph.initializer[:]
    m.graph.initializer.extend(keep)


_ROWS = (np.array([[1, 0, 0], [0, 1, 1]], np.float64), np.array([[1, 1, 0], [0, 0, 1]], np.float64))


def subpixel_weights(w: np.ndarray) -> list[tuple[np.ndarray, list[int]]]:
    """3x3 conv after 2x nearest upsampling -> four 2x2 convs, one per output phase ``(a, b)``.

    Phase ``a = 0`` (even output rows) reads input rows ``i-1, i`` with taps
    ``w[0]`` and ``w[1] + w[2]``; phase ``a = 1`` reads rows ``i, i+1`` with
    ``w[0] + w[1]`` and ``w[2]``; columns likewise. Returns ``(kernel [Cout, Cin, 2, 2], pads)``
    in phase order (0,0), (0,1), (1,0), (1,1).
    """
    w = w.astype(np.float64)
    out = []
    for a in (0, 1):
        for b in (0, 1):
            k = np.einsum("ry,ocyx,sx->ocrs", _ROWS[a], w, _ROWS[b])
            out.append((k.astype(np.float32), [1 - a, 1 - b, a, b]))
    return out


THIN = "/thin"  # suffix of the names thin_conv_split gives its two convolutions (corrkit._core.quantize skips them)


def thin_conv_split(model, max_out: int = 1):
    """Split 3x3 convolutions with ``<= max_out`` output channels into 1x1 (taps) + 3x3 (shift-and-sum).

    onnxruntime's blocked (NCHWc) kernels pad a one-channel output to a full block,
    which makes the generator's last layer (64 -> 1 grey channel) cost as much as a
    16-channel one. ``Conv(64 -> 1, 3x3)`` equals ``Conv(64 -> 9 taps, 1x1)`` followed
    by ``Conv(9 -> 1, 3x3)`` whose weights pick tap ``t`` at offset ``t``: the same
    products, summed in another order.
    """
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    consts = constants(m)
    nodes, inits, count = [], [], 0
    for n in m.graph.node:
        a = attrs(n) if n.op_type == "Conv" else {}
        w = consts.get(n.input[1]) if n.op_type == "Conv" else None
        if (w is None or w.shape[0] > max_out or w.shape[2:] != (3, 3) or a.get("group", 1) != 1
                or list(a.get("strides", [1, 1])) != [1, 1] or list(a.get("dilations", [1, 1])) != [1, 1]):
            nodes.append(n)
            continue
        cout, cin = w.shape[:2]
        taps = w.transpose(0, 2, 3, 1).reshape(cout * 9, cin, 1, 1)  # row (o, dy, dx)
        pick = np.zeros((cout, cout * 9, 3, 3), np.float32)
        for o in range(cout):
            for t in range(9):
                pick[o, o * 9 + t, t // 3, t % 3] = 1.0
        base = f"{n.name or n.output[0]}{THIN}"
        inits += [numpy_helper.from_array(taps.astype(np.float32), base + "/taps"),
                  numpy_helper.from_array(pick, base + "/pick")]
        nodes.append(helper.make_node("Conv", [n.input[0], base + "/taps"], [base + "/tapout"], kernel_shape=[1, 1],
                                      name=base + "/taps_conv"))
        ins = [base + "/tapout", base + "/pick"] + ([n.input[2]] if len(n.input) > 2 else [])
        nodes.append(helper.make_node("Conv", ins, list(n.output), kernel_shape=[3, 3],
                                      pads=list(a.get("pads", [0, 0, 0, 0])), name=base + "/pick_conv"))
        count += 1
    _replace_graph(m, nodes, inits)
    return m, count


_PHASE_SAFE = {"LeakyRelu", "Relu", "Tanh", "Sigmoid", "Elu", "Selu", "Softplus", "Identity"}


def phase_conv_weights(w: np.ndarray) -> np.ndarray:
    """3x3 conv (pad 1) on a 2x-interleaved input -> one 3x3 conv on its four phases.

    The input ``X [Cin, 2H, 2W]`` is held as ``P [4 Cin, H, W]`` with
    ``X[c, 2y+a, 2x+b] = P[(2a+b) Cin + c, y, x]`` (DepthToSpace's DCR order); the
    output is held the same way. Output row ``2y + c + dy`` is input phase
    ``(c + dy) mod 2`` at phase row ``y + floor((c + dy) / 2)``. Returns ``[4 Cout, 4 Cin, 3, 3]``.
    """
    cout, cin = w.shape[:2]
    out = np.zeros((4 * cout, 4 * cin, 3, 3), np.float64)
    for c in (0, 1):
        for d in (0, 1):
            for dy in (-1, 0, 1):
                a, oy = (c + dy) % 2, (c + dy) // 2
                for dx in (-1, 0, 1):
                    b, ox = (d + dx) % 2, (d + dx) // 2
                    o, i = (2 * c + d) * cout, (2 * a + b) * cin
                    out[o:o + cout, i:i + cin, oy + 1, ox + 1] += w[:, :, dy + 1, dx + 1]
    return out.astype(np.float32)


def subpixel_phase_form(model, interleave: bool = True):
    """Replace every (nearest 2x Resize -> 3x3 Conv) by sub-pixel convolutions, kept in phase form.

    Conv ``A`` after the upsampling becomes four 2x2 phase convs
    (:func:`subpixel_weights`: 16 instead of 36 multiply-adds per input pixel and
    channel pair, and no upsampled tensor is ever made), each followed by a copy of
    the activations after ``A`` (they act per element), then one channel Concat.
    When the next node is another 3x3 conv ``B``, ``B`` runs on the phase tensor
    (:func:`phase_conv_weights`) and only its output goes through DepthToSpace;
    otherwise the phases go through DepthToSpace at once (only when ``interleave``).
    Returns the new model and the number of (Resize, Conv) pairs rewritten.
    """
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    idx = GraphIndex(m)
    consts, consumers, graph_outputs = idx.consts, idx.consumers, idx.outputs

    def only_user(name):
        users = consumers.get(name, [])
        return users[0] if len(users) == 1 and name not in graph_outputs else None

    def renamed(node, inp, out):
        new = onnx.NodeProto()
        new.CopyFrom(node)
        new.name = out
        new.input[0], new.output[0] = inp, out
        return new

    drop, replace, new_inits = set(), {}, []
    for n in m.graph.node:
        if id(n) in drop or not _nearest_2x(n, consts):
            continue
        conv_a = only_user(n.output[0])
        wa = _plain_3x3(conv_a, consts)
        if wa is None or id(conv_a) in drop:
            continue
        chain, cur = [], only_user(conv_a.output[0])
        while cur is not None and cur.op_type in _PHASE_SAFE and len(cur.input) == 1:
            chain.append(cur)
            cur = only_user(cur.output[0])
        wb = _plain_3x3(cur, consts) if cur is not None and id(cur) not in drop else None
        if wb is None and not interleave:
            continue
        tag = conv_a.name or conv_a.output[0]
        nodes, phases = [], []
        for p, (k, pads) in enumerate(subpixel_weights(wa)):
            ins = [n.input[0], f"{tag}/phase{p}/w"] + list(conv_a.input[2:])
            new_inits.append(numpy_helper.from_array(k, ins[1]))
            out = f"{tag}/phase{p}/conv"
            nodes.append(helper.make_node("Conv", ins, [out], name=out, kernel_shape=[2, 2], pads=pads))
            for j, act in enumerate(chain):
                nodes.append(renamed(act, out, f"{tag}/phase{p}/act{j}"))
                out = nodes[-1].output[0]
            phases.append(out)
        nodes.append(helper.make_node("Concat", phases, [f"{tag}/phases"], name=f"{tag}/phases", axis=1))
        last = chain[-1] if chain else conv_a
        if wb is None:
            nodes.append(helper.make_node("DepthToSpace", [f"{tag}/phases"], [last.output[0]], name=f"{tag}/d2s",
                                          blocksize=2, mode="DCR"))
        else:
            btag = cur.name or cur.output[0]
            ins = [f"{tag}/phases", f"{btag}/phase_w"]
            new_inits.append(numpy_helper.from_array(phase_conv_weights(wb), ins[1]))
            if len(cur.input) > 2:
                ins.append(f"{btag}/phase_b")
                new_inits.append(numpy_helper.from_array(np.tile(consts[cur.input[2]], 4), ins[2]))
            nodes.append(helper.make_node("Conv", ins, [f"{btag}/phase_out"], name=f"{btag}/phase_conv",
                                          kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
            nodes.append(helper.make_node("DepthToSpace", [f"{btag}/phase_out"], list(cur.output),
                                          name=f"{btag}/d2s", blocksize=2, mode="DCR"))
            last = cur
        replace[id(last)] = nodes
        drop.update(id(x) for x in [n, conv_a, *chain, last])
    if not replace:
        return m, 0
    return apply_replacements(m, replace, drop, new_inits), len(replace)
