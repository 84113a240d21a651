"""The (nearest 2x Resize -> 3x3 Conv) pair as one ConvTranspose: exact, kept only as a benchmark row.

onnxruntime's CPU ConvTranspose is slower than the engine's phase form
(:func:`corrkit._core.rewrite.subpixel_phase_form`), so production never uses it.
"""

from __future__ import annotations

import numpy as np

from corrkit._core.onnx_graph import GraphIndex
from corrkit._core.rewrite import _nearest_2x, _plain_3x3, _replace_graph


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
    idx = GraphIndex(m)
    consts, consumers, graph_outputs = idx.consts, idx.consumers, idx.outputs
    drop, replace, new_inits = set(), {}, []
    for n in m.graph.node:
        if n.output[0] in graph_outputs or not _nearest_2x(n, consts):
            continue
        users = consumers.get(n.output[0], [])
        conv = users[0] if len(users) == 1 else None
        w = _plain_3x3(conv, consts)
        if w is None:
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
