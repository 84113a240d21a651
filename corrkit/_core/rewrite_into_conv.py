"""An exact rewrite where a generator meets its classifier (SPEC §10): phases read by a strided conv, never interleaved.

A DCGAN's last ConvTranspose(4, 2, 1) writes the image; a strided classifier's first
Conv(4, 2, 1) reads it back two rows and columns at a time. In the phase form
(:func:`~corrkit._core.rewrite_phases.conv_transpose_phase_form`) the conv before the
interleave holds the image as four phase channel blocks on a grid of ``(H + 1) x (W + 1)``
positions: block ``2 beta_y + beta_x`` at grid row ``P`` is image row ``2 P + beta_y - 1``.
A stride-2 conv reads image rows ``2 i - p + t``, which are grid rows ``i + u`` of block
``beta``, with ``u, beta`` the quotient and remainder of ``t - p + 1`` by 2: kernel 4 pad 1
reads ``u`` in ``{0, 1}`` only, so the classifier's conv is a 2x2 conv of the phase grid with
its taps rearranged, and the image is never interleaved (onnxruntime's interleave of a
full-resolution image costs more than the convolutions on either side of it). The grid's
rows and columns that fall outside the image (row ``-1`` of block 0, row ``2 H`` of block 1)
hold partial sums there, where the classifier's padding reads zeros: a constant 0/1 mask
multiplies them out after the activations. The phase conv's outputs are padded with zero
channels to a multiple of ``pad_to`` (onnxruntime's 16-channel blocked layout; the 12
channels of an RGB image would be padded by its reorders anyway).

Taken for a plain doubling ConvTranspose (the phase form's conditions) followed only by
single-input elementwise activations and one ungrouped, undilated stride-2 Conv with
symmetric explicit pads, constant float32 weights and known spatial sizes, whose taps fall
on a 2x2 window of the grid with its output size unchanged (kernel 4 pad 1, kernel 3 pad 1,
kernel 2 pad 0) and at most twice its multiply-adds (kernel 2 pad 0 on kernel 4 pad 1's grid
reads 16 of every 64 products). It changes only the order of float additions; an infinite partial sum on
the masked rows would become NaN (the engine rejects non-finite outputs either way).
Torch-free: onnx and numpy only.
"""

from __future__ import annotations

import numpy as np

from corrkit._core.onnx_graph import attrs
from corrkit._core.rewrite import apply_replacements as _apply
from corrkit._core.rewrite_phases import _axis_plan, _phase_conv
from corrkit._core.rewrite_transpose import (_activations_on, _bias, _copy, _doubling_transposes, _float32_weights,
                                             _Index, _Shapes)


def _grid_axis(k: int, p: int, crop: int, h: int):
    """One axis of the strided conv on the phase grid: ``(u per tap, beta per tap, pad begin, pad end)`` or None.

    The grid has ``h + crop`` rows; block ``beta`` at row ``P`` is image row ``2 P + beta - crop``.
    Tap ``t`` of output ``i`` reads image row ``2 i - p + t``: grid row ``i + u``, block ``beta``.
    None unless ``u`` spans at most two rows starting at or before 0 and the output keeps its size.
    """
    us = [(t - p + crop) // 2 for t in range(k)]
    betas = [(t - p + crop) % 2 for t in range(k)]
    lo, hi = min(us), max(us)
    if lo > 0 or hi - lo > 1:
        return None
    out = (2 * h + 2 * p - k) // 2 + 1
    grid = h + crop
    pb, pe = -lo, max(0, out - 1 + hi - (grid - 1))
    if grid + pb + pe - (hi - lo + 1) + 1 != out:
        return None
    return us, betas, pb, pe


def _strided_conv(c, consts):
    """``(weights, pads)`` of an ungrouped, undilated stride-2 Conv, symmetric pads, constant weights; else None."""
    if c is None or c.op_type != "Conv":
        return None
    k = _float32_weights(c, consts)
    a = attrs(c)
    if (k is None or k.ndim != 4 or a.get("group", 1) != 1 or list(a.get("dilations", [1, 1])) != [1, 1]
            or list(a.get("strides", [1, 1])) != [2, 2] or a.get("auto_pad", b"NOTSET") != b"NOTSET"
            or list(a.get("kernel_shape", k.shape[2:])) != list(k.shape[2:])):
        return None
    pads = list(a.get("pads", [0, 0, 0, 0]))
    return (k, pads[:2]) if pads[:2] == pads[2:] else None


def _edge_mask(channels: int, real: int, grid: tuple[int, int], crop: tuple[int, int], size: tuple[int, int]):
    """``[1, channels, gh, gw]``: 0 where a phase channel (``< real``) holds no image pixel, else 1.

    The padding channels stay 1: the conv on the grid has zero weights there.
    """
    mask = np.ones((channels, *grid), np.float32)
    for ch in range(real):
        by, bx = (ch % 4) // 2, ch % 2
        rows = [0 <= 2 * p + by - crop[0] < 2 * size[0] for p in range(grid[0])]
        cols = [0 <= 2 * q + bx - crop[1] < 2 * size[1] for q in range(grid[1])]
        mask[ch] = np.outer(rows, cols)
    return mask[None]


def _grid_kernel(k: np.ndarray, channels: int, axes) -> np.ndarray:
    """The strided conv's weights ``[Co, C, kh, kw]`` on the phase grid: ``[Co, channels, 2, 2]`` (or narrower).

    Tap ``(ty, tx)`` on input channel ``c`` moves to grid channel ``4 c + 2 beta_y + beta_x`` at
    window offset ``(u_y - min u_y, u_x - min u_x)`` (:func:`_grid_axis`).
    """
    (uy, by, _, _), (ux, bx, _, _) = axes
    co, ci, kh, kw = k.shape
    out = np.zeros((co, channels, max(uy) - min(uy) + 1, max(ux) - min(ux) + 1), np.float32)
    for ty in range(kh):
        for tx in range(kw):
            out[:, 4 * np.arange(ci) + 2 * by[ty] + bx[tx], uy[ty] - min(uy), ux[tx] - min(ux)] = k[:, :, ty, tx]
    return out


def conv_transpose_into_conv(model, pad_to: int = 16, shapes=None):
    """A doubling ConvTranspose read (through activations) by a stride-2 Conv -> phase conv, mask, conv on the phases.

    Returns the model and the count. See the module docstring for the conditions. ``shapes``: the
    graph's shapes where the caller has them (:func:`~corrkit._core.rewrite_transpose.transpose_rewrites`).
    """
    from onnx import helper, numpy_helper

    m = _copy(model)
    idx = _Index(m)
    shapes = _Shapes(m) if shapes is None else shapes
    replace, drop, new_inits = {}, set(), []
    for n, w, a in _doubling_transposes(m, idx):
        chain = idx.activations_after(n)
        c = idx.only_user((chain[-1] if chain else n).output[0])
        conv = _strided_conv(c, idx.consts) if c is not None and id(c) not in drop else None
        if conv is None:
            continue
        k, cpads = conv
        pb = a["pads"][:2]
        plans = (_axis_plan(w.shape[2], pb[0]), _axis_plan(w.shape[3], pb[1]))
        size = shapes.get(n.input[0], [None] * 4)[2:]
        if None in plans or len(size) != 2 or None in size or k.shape[1] != w.shape[1]:
            continue
        crop = (plans[0][3], plans[1][3])
        axes = tuple(_grid_axis(k.shape[2 + i], cpads[i], crop[i], size[i]) for i in (0, 1))
        if None in axes or 4 * np.prod([max(u) - min(u) + 1 for u, *_ in axes]) > 2 * k.shape[2] * k.shape[3]:
            continue  # not taps on the grid, or over twice the multiply-adds of the conv it replaces
        cout, tag = w.shape[1], n.name or n.output[0]
        real = 4 * cout  # channel 4 c + 2 beta_y + beta_x
        channels = -(-real // pad_to) * pad_to
        out = tag + "/grid"
        inits, grid_conv = _phase_conv(n, w, pb, plans, _bias(n, idx.consts, cout),
                                       (tag + "/grid_w", tag + "/grid_b", out), channels=channels)
        new_inits += inits
        nodes = [grid_conv]
        chain, out = _activations_on(idx, n, out, nodes, tag + "/grid_act")
        grid = (size[0] + crop[0], size[1] + crop[1])
        mask = _edge_mask(channels, real, grid, crop, size)
        if not mask.all():
            new_inits.append(numpy_helper.from_array(mask, tag + "/edge_mask"))
            nodes.append(helper.make_node("Mul", [out, tag + "/edge_mask"], [tag + "/edged"], name=tag + "/edges"))
            out = tag + "/edged"
        kg = _grid_kernel(k, channels, axes)
        cins = [out, c.name + "/grid_w"] + ([c.input[2]] if len(c.input) > 2 and c.input[2] else [])
        new_inits.append(numpy_helper.from_array(kg, cins[1]))
        (_, _, py0, py1), (_, _, px0, px1) = axes
        nodes.append(helper.make_node("Conv", cins, [c.output[0]], name=(c.name or c.output[0]) + "/on_grid",
                                      kernel_shape=list(kg.shape[2:]), pads=[py0, px0, py1, px1]))
        replace[id(c)] = nodes
        drop.update(id(x) for x in [n, *chain])
    if not replace:
        return m, 0
    return _apply(m, replace, drop, new_inits), len(replace)
