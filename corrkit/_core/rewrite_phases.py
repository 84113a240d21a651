"""An exact rewrite for stride-2 ConvTransposes on small inputs (SPEC §10): one convolution per output phase.

:func:`~corrkit._core.rewrite_transpose.conv_transpose_phase_form` makes the four output
phases with one convolution whose window covers all of them, at the price of one more row
and column of conv positions: on a 4x4 input that is 25 positions for 16 pixels, more than
the col2im it saves. Four convolutions, each reading only its own phase's window with its
own padding, make exactly the 16; a Concat and one DepthToSpace (DCR) interleave them. On
a 4x4 input onnxruntime's CPU kernels run this in 0.7-0.8x the ConvTranspose's time
(benchmarks/RESULTS.md); from 16x16 up the single convolution wins, so the form is taken
below ``max_side`` only.

It changes only the order of float additions. Torch-free: onnx and numpy only; float32 weights only.
"""

from __future__ import annotations

import numpy as np

from corrkit._core.rewrite import apply_replacements as _apply
from corrkit._core.rewrite_transpose import (MIN_PHASE_SIDE, _activations_on, _bias, _copy, _doubles,
                                             _Index, _plain_transposes, _Shapes, phase_taps)


def _phase_kernel(w: np.ndarray, pad_begin: tuple[int, int], dy: list[int], dx: list[int], a: int, b: int):
    """Phase ``(a, b)``'s Conv weights ``[Cout, Cin, len(dy), len(dx)]``.

    Output ``(2 Y + a, 2 X + b)`` reads input ``(Y + d_y, X + d_x)`` through the transposed
    kernel's tap ``(a + pad_y - 2 d_y, b + pad_x - 2 d_x)``.
    """
    cin, cout = w.shape[:2]
    k = np.zeros((cout, cin, len(dy), len(dx)), np.float32)
    for iy, d_y in enumerate(dy):
        for ix, d_x in enumerate(dx):
            k[:, :, iy, ix] = w[:, :, a + pad_begin[0] - 2 * d_y, b + pad_begin[1] - 2 * d_x].T
    return k


def conv_transpose_phase_convs(model, max_side: int = MIN_PHASE_SIDE, min_out_channels: int = 1, shapes=None):
    """Stride-2 ConvTranspose with output exactly twice an input smaller than ``max_side`` -> four Convs + DepthToSpace.

    Taken when the output is exactly ``2 H x 2 W`` (as for the one-conv phase form), each phase's
    input window contains offset 0 (so its padding is non-negative: kernel 4 pad 1, kernel 3 pad 1
    output_padding 1, kernel 2 pad 0, ...), the weights are constant float32, the layer is
    ungrouped and undilated, and its input's sides are known and below ``max_side``. Phase
    ``(a, b)``'s Conv has kernel ``len(d_y) x len(d_x)`` and pads ``(-min d, max d)`` per axis;
    the bias goes to each; the elementwise activations right after the ConvTranspose run on each
    phase (onnxruntime fuses them into its Conv). Layers with fewer than ``min_out_channels``
    outputs are left whole. ``shapes``: the graph's shapes where the caller has them
    (:func:`~corrkit._core.rewrite_transpose.transpose_rewrites`). Returns the model and the count.
    """
    from onnx import helper, numpy_helper

    m = _copy(model)
    idx = _Index(m)
    shapes = _Shapes(m) if shapes is None else shapes
    replace, drop, new_inits = {}, set(), []
    for n, w, a in _plain_transposes(m, idx):
        sides = shapes.get(n.input[0], [None] * 4)[2:]
        if not _doubles(w, a) or len(sides) != 2 or any(s is None or s >= max_side for s in sides):
            continue
        if w.shape[1] < min_out_channels:
            continue
        kh, kw = w.shape[2:]
        pb = a["pads"][:2]
        taps = (phase_taps(kh, pb[0]), phase_taps(kw, pb[1]))
        if None in taps or any(min(ds) > 0 or max(ds) < 0 for axis in taps for ds in axis):
            continue
        cout = w.shape[1]
        tag = n.name or n.output[0]
        bias = _bias(n, idx.consts, cout).astype(np.float32)
        new_inits.append(numpy_helper.from_array(bias, tag + "/phase_b"))
        nodes, phases, chain = [], [], []
        for pa in (0, 1):
            for pbx in (0, 1):
                dy, dx = taps[0][pa], taps[1][pbx]
                name = f"{tag}/phase{pa}{pbx}"
                new_inits.append(numpy_helper.from_array(_phase_kernel(w, tuple(pb), dy, dx, pa, pbx), name + "_w"))
                nodes.append(helper.make_node("Conv", [n.input[0], name + "_w", tag + "/phase_b"], [name], name=name,
                                              kernel_shape=[len(dy), len(dx)],
                                              pads=[-min(dy), -min(dx), max(dy), max(dx)]))
                chain, out = _activations_on(idx, n, name, nodes, name + "_act")
                phases.append(out)
        last = chain[-1] if chain else n
        nodes += [helper.make_node("Concat", phases, [tag + "/phases"], name=tag + "/phases", axis=1),
                  helper.make_node("DepthToSpace", [tag + "/phases"], [last.output[0]], name=tag + "/d2s",
                                   blocksize=2, mode="DCR")]
        replace[id(last)] = nodes
        drop.update(id(x) for x in [n, *chain])
    if not replace:
        return m, 0
    return _apply(m, replace, drop, new_inits), len(replace)
