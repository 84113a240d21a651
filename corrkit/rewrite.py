"""Exact graph rewrites of the fused model (SPEC §10), torch-free, at load time.

``upsample_conv_to_conv_transpose``: nearest-neighbour upsampling by 2 followed by
a 3x3 convolution (stride 1, pad 1) equals one ConvTranspose with kernel 4,
stride 2, pad 1, whose weights are sums of the 3x3 taps that land on the same
input pixel. It does 16 instead of 36 multiply-adds per input pixel and channel
pair (2.25x fewer on those layers). Only the order of float additions changes.
"""

from __future__ import annotations

import numpy as np

_NEAREST_FLOOR = {("asymmetric", "floor"), ("half_pixel", "round_prefer_floor"),
                  ("pytorch_half_pixel", "round_prefer_floor")}


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _const_values(model) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    vals = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant":
            a = _attrs(n)
            if "value" in a:
                vals[n.output[0]] = numpy_helper.to_array(a["value"])
    return vals


def transpose_weights(w: np.ndarray) -> np.ndarray:
    """3x3 conv weights ``[Cout, Cin, 3, 3]`` after 2x nearest upsampling -> ConvTranspose ``[Cin, Cout, 4, 4]``.

    Output row ``2i + ky - 1`` reads upsampled rows ``2i + ky - 2 + dy``; those
    map back to input row ``i`` exactly when ``dy`` is ``2 - ky`` or ``3 - ky``.
    """
    w = w.astype(np.float64)
    out = np.zeros((w.shape[1], w.shape[0], 4, 4))
    for ky in range(4):
        dys = [d for d in (2 - ky, 3 - ky) if 0 <= d <= 2]
        for kx in range(4):
            dxs = [d for d in (2 - kx, 3 - kx) if 0 <= d <= 2]
            out[:, :, ky, kx] = sum(w[:, :, dy, dx] for dy in dys for dx in dxs).T
    return out.astype(np.float32)


def upsample_conv_to_conv_transpose(model):
    """Return a copy of ``model`` with every (nearest 2x Resize -> 3x3 Conv) pair fused; and the count."""
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    consts = _const_values(m)
    consumers: dict[str, list] = {}
    for n in m.graph.node:
        for name in n.input:
            consumers.setdefault(name, []).append(n)
    graph_outputs = {o.name for o in m.graph.output}
    drop, replace, new_inits = set(), {}, []
    for n in m.graph.node:
        if n.op_type != "Resize" or n.output[0] in graph_outputs:
            continue
        a = _attrs(n)
        mode = a.get("mode", b"nearest").decode()
        ctm = a.get("coordinate_transformation_mode", b"half_pixel").decode()
        nm = a.get("nearest_mode", b"round_prefer_floor").decode()
        scales = consts.get(n.input[2]) if len(n.input) > 2 and n.input[2] else None
        if mode != "nearest" or (ctm, nm) not in _NEAREST_FLOOR or scales is None:
            continue
        if scales.tolist() != [1.0, 1.0, 2.0, 2.0]:
            continue
        users = consumers.get(n.output[0], [])
        if len(users) != 1 or users[0].op_type != "Conv":
            continue
        conv = users[0]
        ca = _attrs(conv)
        w = consts.get(conv.input[1])
        if (w is None or w.shape[2:] != (3, 3) or list(ca.get("pads", [0] * 4)) != [1, 1, 1, 1]
                or list(ca.get("strides", [1, 1])) != [1, 1] or ca.get("group", 1) != 1
                or list(ca.get("dilations", [1, 1])) != [1, 1]):
            continue
        wname = conv.input[1] + "/as_conv_transpose"
        new_inits.append(numpy_helper.from_array(transpose_weights(w), wname))
        inputs = [n.input[0], wname] + ([conv.input[2]] if len(conv.input) > 2 else [])
        replace[id(conv)] = helper.make_node("ConvTranspose", inputs, list(conv.output), name=conv.name + "/ct",
                                             kernel_shape=[4, 4], strides=[2, 2], pads=[1, 1, 1, 1])
        drop.add(id(n))
    if not replace:
        return m, 0
    _replace_graph(m, [replace.get(id(n), n) for n in m.graph.node if id(n) not in drop], new_inits)
    return m, len(replace)


def _replace_graph(m, nodes: list, new_inits: list) -> None:
    """Swap in ``nodes``, add ``new_inits`` and drop initializers no node reads any more."""
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    m.graph.initializer.extend(new_inits)
    used = {i for n in m.graph.node for i in n.input}
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


def upsample_conv_to_subpixel(model):
    """Like :func:`upsample_conv_to_conv_transpose`, as four 2x2 convs + DepthToSpace (16 MACs per tap)."""
    from onnx import helper, numpy_helper

    fused_ct, count = upsample_conv_to_conv_transpose(model)  # a copy, fused or not
    if not count:
        return fused_ct, 0
    # The 3x3 weights, read once from the original model: fusing dropped their initializers.
    consts = _const_values(model)
    nodes, inits = [], []
    for n in fused_ct.graph.node:
        if n.op_type != "ConvTranspose" or not n.name.endswith("/ct"):
            nodes.append(n)
            continue
        w3 = consts[n.input[1].removesuffix("/as_conv_transpose")]
        phases = []
        for p, (k, pads) in enumerate(subpixel_weights(w3)):
            kname, oname = f"{n.name}/phase{p}/w", f"{n.name}/phase{p}/out"
            inits.append(numpy_helper.from_array(k, kname))
            ins = [n.input[0], kname] + ([n.input[2]] if len(n.input) > 2 else [])
            nodes.append(helper.make_node("Conv", ins, [oname], kernel_shape=[2, 2], pads=pads))
            phases.append(oname)
        nodes.append(helper.make_node("Concat", phases, [n.name + "/phases"], axis=1))
        nodes.append(helper.make_node("DepthToSpace", [n.name + "/phases"], list(n.output), blocksize=2, mode="DCR"))
    _replace_graph(fused_ct, nodes, inits)
    return fused_ct, count


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
    consts = _const_values(m)
    nodes, inits, count = [], [], 0
    for n in m.graph.node:
        a = _attrs(n) if n.op_type == "Conv" else {}
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
        base = f"{n.name or n.output[0]}/thin"
        inits += [numpy_helper.from_array(taps.astype(np.float32), base + "/taps"),
                  numpy_helper.from_array(pick, base + "/pick")]
        nodes.append(helper.make_node("Conv", [n.input[0], base + "/taps"], [base + "/tapout"], kernel_shape=[1, 1]))
        ins = [base + "/tapout", base + "/pick"] + ([n.input[2]] if len(n.input) > 2 else [])
        nodes.append(helper.make_node("Conv", ins, list(n.output), kernel_shape=[3, 3],
                                      pads=list(a.get("pads", [0, 0, 0, 0]))))
        count += 1
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    m.graph.initializer.extend(inits)
    return m, count
