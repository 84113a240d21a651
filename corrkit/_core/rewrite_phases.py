"""Exact rewrites of a stride-2 ConvTranspose into its output phases (SPEC §10).

:func:`conv_transpose_phase_form` makes the four output phases of a stride-2 ConvTranspose
whose output is exactly twice its input with one convolution whose window covers all of them
(:func:`_axis_plan`), then interleaves them once; :mod:`~corrkit._core.rewrite_transpose`
describes the form and applies it in turn with the others (``transpose_rewrites``).

On small inputs the one window costs one more row and column of conv positions: on a 4x4 input
that is 25 positions for 16 pixels, more than the col2im it saves. :func:`conv_transpose_phase_convs`
makes each phase with its own convolution, reading only its own window with its own padding
(exactly the 16); a Concat and one DepthToSpace (DCR) interleave them. On a 4x4 input
onnxruntime's CPU kernels run this in 0.7-0.8x the ConvTranspose's time (benchmarks/RESULTS.md);
from 16x16 up the single convolution wins, so that form is taken below ``max_side`` only.

Each changes only the order of float additions. Torch-free: onnx and numpy only; float32 weights only.
"""

from __future__ import annotations

import numpy as np

from corrkit._core.rewrite import apply_replacements as _apply
from corrkit._core.rewrite_transpose import (MIN_PHASE_SIDE, _activations_on, _bias, _copy, _doubling_transposes,
                                             _Index, _Shapes)


def phase_taps(k: int, pad_begin: int) -> tuple[list[int], list[int]] | None:
    """Per output phase ``a`` of one axis of a stride-2 ConvTranspose: the input offsets it reads.

    ConvTranspose writes input ``i`` through tap ``t`` to output ``2 i - pad_begin + t``, so
    output ``2 Y + a`` reads input ``Y + d`` through tap ``t = a + pad_begin - 2 d``. Returns
    the sorted offsets ``d`` of phase 0 and of phase 1 (each contiguous), or None when a
    phase reads nothing.
    """
    out = []
    for a in (0, 1):
        ds = sorted((a + pad_begin - t) // 2 for t in range(k) if (a + pad_begin - t) % 2 == 0)
        if not ds:
            return None
        out.append(ds)
    return out[0], out[1]


def _axis_plan(k: int, pad_begin: int):
    """How one axis becomes one convolution: ``(shift, window, conv pads, crop)`` or None.

    Phase ``a`` is held at conv row ``P = Y + shift[a]``, so its window in conv rows is
    ``{d - shift[a]}``; the conv's window is their union. ``shift = (0, 1)`` lines up kernel 4
    pad 1's windows ``{-1, 0}`` and ``{0, 1}`` (2 taps instead of 3) at the price of one more
    row and a crop of one row after DepthToSpace, whose block for phase ``a`` is then
    ``1 - a``. The shift is taken only when it makes the window smaller.
    """
    taps = phase_taps(k, pad_begin)
    if taps is None:
        return None
    best = None
    for shift in ((0, 0), (0, 1)):
        e = [d - s for ds, s in zip(taps, shift) for d in ds]
        lo, hi = min(e), max(e)
        extra = max(shift)
        pads = (-lo, extra + hi)
        if min(pads) < 0:
            continue
        if best is None or hi - lo < best[1][1] - best[1][0]:
            best = (shift, (lo, hi), pads, extra)
    return best


def _phase_weights(w: np.ndarray, pads_begin: tuple[int, int], plans, order: str = "CRD") -> np.ndarray:
    """ConvTranspose weights ``[Cin, Cout, kh, kw]`` -> one Conv's ``[4 Cout, Cin, wh, ww]``.

    Block ``2 beta_y + beta_x`` holds phase ``(a, b)`` with ``beta = a`` unshifted, ``1 - a``
    shifted; its tap at window offset ``e`` is the transposed kernel's tap
    ``a + pad_begin - 2 (e + shift[a])``, zero where that is outside it. Output channel
    ``4 c + block`` (``order="CRD"``) or ``block Cout + c`` (``"DCR"``).
    """
    cin, cout, kh, kw = w.shape
    (sy, (ly, hy), _, cy), (sx, (lx, hx), _, cx) = plans
    out = np.zeros((4, cout, cin, hy - ly + 1, hx - lx + 1), np.float32)
    wt = w.transpose(1, 0, 2, 3)  # [Cout, Cin, kh, kw]
    for a in (0, 1):
        for b in (0, 1):
            block = 2 * (a if not cy else 1 - a) + (b if not cx else 1 - b)
            for ey in range(ly, hy + 1):
                ty = a + pads_begin[0] - 2 * (ey + sy[a])
                if not 0 <= ty < kh:
                    continue
                for ex in range(lx, hx + 1):
                    tx = b + pads_begin[1] - 2 * (ex + sx[b])
                    if 0 <= tx < kw:
                        out[block, :, :, ey - ly, ex - lx] = wt[:, :, ty, tx]
    if order == "CRD":
        out = out.transpose(1, 0, 2, 3, 4)
    return np.ascontiguousarray(out).reshape(4 * cout, cin, hy - ly + 1, hx - lx + 1)


def _interleave_weights(cout: int) -> np.ndarray:
    """``[4 Cout, 1, 2, 2]``: the one-hot kernel of a ConvTranspose (group Cout, stride 2) that
    writes channel ``4 c + 2 beta_y + beta_x`` to output pixel ``(2 P + beta_y, 2 Q + beta_x)`` of channel ``c``."""
    k = np.zeros((cout, 4, 1, 2, 2), np.float32)
    for blk in range(4):
        k[:, blk, 0, blk // 2, blk % 2] = 1.0
    return k.reshape(4 * cout, 1, 2, 2)


def _phase_conv(n, w, pads_begin, plans, bias, names: tuple[str, str, str], order: str = "CRD",
                channels: int | None = None):
    """``(initializers, node)``: the phase form's one Conv of ``n``'s input, making its four phases.

    ``names`` are its weights', bias' and output's; ``order`` as in :func:`_phase_weights`;
    ``channels`` pads its outputs with zero channels to that many (:mod:`~corrkit._core.rewrite_into_conv`).
    """
    from onnx import helper, numpy_helper

    pw = _phase_weights(w, tuple(pads_begin), plans, order)
    pbias = (np.repeat(bias, 4) if order == "CRD" else np.tile(bias, 4)).astype(np.float32)
    extra = (channels or len(pbias)) - len(pbias)
    if extra > 0:
        pw = np.concatenate([pw, np.zeros((extra, *pw.shape[1:]), np.float32)])
        pbias = np.concatenate([pbias, np.zeros(extra, np.float32)])
    (_, (ly, hy), (pty, pby), _), (_, (lx, hx), (ptx, pbx), _) = plans
    inits = [numpy_helper.from_array(pw, names[0]), numpy_helper.from_array(pbias, names[1])]
    node = helper.make_node("Conv", [n.input[0], *names[:2]], [names[2]], name=names[2],
                            kernel_shape=[hy - ly + 1, hx - lx + 1], pads=[pty, ptx, pby, pbx])
    return inits, node




def conv_transpose_phase_form(model, interleave: str = "grouped_transpose", min_side: int = MIN_PHASE_SIDE,
                              min_out_channels: int = 1, shapes=None):
    """Stride-2 ConvTranspose with output exactly twice its input -> one Conv to 4 Cout + an interleave.

    Taken when the output is exactly ``2 H x 2 W`` (``k + output_padding - pad_begin - pad_end
    == 2`` on both axes: kernel 4 pad 1, kernel 3 pad 1 output_padding 1, kernel 2 pad 0, ...),
    ungrouped, undilated, with constant float32 weights. One Conv of the low-resolution input
    makes all four phases as channel blocks (:func:`_phase_weights`); activations right after
    run on that conv's output (onnxruntime fuses them into it); then the phases are
    interleaved, with a one-pixel crop on each axis whose windows were lined up
    (:func:`_axis_plan`). ``interleave="grouped_transpose"``: a ConvTranspose (kernel 2,
    stride 2, group Cout) with one-hot weights whose pads do the crop (each output is one
    input times 1.0 plus three times 0.0: exact for finite values; an inf among the phases
    would turn its neighbours into NaN, which the engine rejects either way);
    ``"depth_to_space"``: DepthToSpace (DCR), then a Slice for the crop (slower on onnxruntime).
    Layers whose input is known to be smaller than ``min_side`` on a side are left as they
    are: there the extra row and column of the lined-up windows cost more than col2im saves
    (a 4x4 input makes 25 conv positions for 16 pixels). Layers with fewer than
    ``min_out_channels`` outputs are left whole too (``--mode bf16-delta``: OpenVINO's blocked
    bf16 layout pads a 3-channel image to 16 channels, and the interleave and crop of the phase
    form move that padded data at full resolution; its own bf16 deconvolution is faster there).
    Every other ConvTranspose is left alone too. ``shapes``: the graph's :class:`_Shapes` where the
    caller has them. Returns the model and the count.
    """
    from onnx import helper, numpy_helper

    if interleave not in ("grouped_transpose", "depth_to_space"):
        raise ValueError(f"interleave must be grouped_transpose or depth_to_space, not {interleave!r}")
    order = "CRD" if interleave == "grouped_transpose" else "DCR"
    m = _copy(model)
    idx = _Index(m)
    shapes = _Shapes(m) if shapes is None else shapes
    replace, drop, new_inits = {}, set(), []
    for n, w, a in _doubling_transposes(m, idx):
        if min_side > 1:
            sides = shapes.get(n.input[0], [None] * 4)[2:]
            if any(s is not None and s < min_side for s in sides):
                continue
        kh, kw = w.shape[2:]
        if w.shape[1] < min_out_channels:
            continue
        pb = a["pads"][:2]
        plans = (_axis_plan(kh, pb[0]), _axis_plan(kw, pb[1]))
        if None in plans:
            continue
        cout = w.shape[1]
        tag = n.name or n.output[0]
        out = tag + "/phases"
        inits, conv = _phase_conv(n, w, pb, plans, _bias(n, idx.consts, cout),
                                  (tag + "/phase_w", tag + "/phase_b", out), order)
        new_inits += inits
        nodes = [conv]
        cy, cx = plans[0][3], plans[1][3]
        chain, out = _activations_on(idx, n, out, nodes, tag + "/phase_act")
        last = chain[-1] if chain else n
        if order == "CRD":
            new_inits.append(numpy_helper.from_array(_interleave_weights(cout), tag + "/interleave_w"))
            nodes.append(helper.make_node("ConvTranspose", [out, tag + "/interleave_w"], [last.output[0]],
                                          name=tag + "/interleave", kernel_shape=[2, 2], strides=[2, 2],
                                          group=cout, pads=[cy, cx, cy, cx]))
        else:
            crop = [(axis, c) for axis, c in ((2, cy), (3, cx)) if c]
            d2s = last.output[0] if not crop else tag + "/d2s"
            nodes.append(helper.make_node("DepthToSpace", [out], [d2s], name=tag + "/d2s", blocksize=2, mode="DCR"))
            if crop:
                names = [f"{tag}/crop_{k}" for k in ("starts", "ends", "axes")]
                for name, v in zip(names, ([c for _, c in crop], [-c for _, c in crop], [ax for ax, _ in crop])):
                    new_inits.append(numpy_helper.from_array(np.array(v, np.int64), name))
                nodes.append(helper.make_node("Slice", [d2s, *names], [last.output[0]], name=tag + "/crop"))
        replace[id(last)] = nodes
        drop.update(id(x) for x in [n, *chain])
    if not replace:
        return m, 0
    return _apply(m, replace, drop, new_inits), len(replace)


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
    for n, w, a in _doubling_transposes(m, idx):
        sides = shapes.get(n.input[0], [None] * 4)[2:]
        if len(sides) != 2 or any(s is None or s >= max_side for s in sides):
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
