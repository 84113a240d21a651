"""Exact graph rewrites equal the plain graph within 1e-5 relative (SPEC §10)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from corrkit._core.engine import Engine
from benchmarks.conv_transpose_form import transpose_weights, upsample_conv_to_conv_transpose
from corrkit._core.rewrite import phase_conv_weights, subpixel_phase_form, subpixel_weights, thin_conv_split


def _run(model, z):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    s = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return s.run(None, {"z": z})[0].astype(np.float64)


def _conv2_only(m):
    return subpixel_phase_form(m, interleave=False)


def _default_chain(m):
    m, n = subpixel_phase_form(m)
    m, k = thin_conv_split(m, max_out=4)
    return m, (n, k)


@pytest.mark.parametrize("rewrite,expected", [(thin_conv_split, 1), (upsample_conv_to_conv_transpose, 2),
                                              (subpixel_phase_form, 2), (_conv2_only, 1), (_default_chain, (2, 1))])
def test_rewrite_matches_plain_graph(bundle, rewrite, expected):
    plain = bundle.fused_model()
    new, count = rewrite(plain)
    assert count == expected
    z = np.random.default_rng(0).standard_normal((32, 100)).astype(np.float32)
    a, b = _run(plain, z), _run(new, z)
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7)


def _upsample_conv_numpy(x, w):
    """Reference: nearest 2x upsampling then 3x3 conv, pad 1 (plain loops over taps)."""
    up = x.repeat(2, axis=2).repeat(2, axis=3)
    p = np.pad(up, ((0, 0), (0, 0), (1, 1), (1, 1)))
    h, wd = up.shape[2:]
    out = np.zeros((x.shape[0], w.shape[0], h, wd))
    for dy in range(3):
        for dx in range(3):
            out += np.einsum("bchw,oc->bohw", p[:, :, dy:dy + h, dx:dx + wd], w[:, :, dy, dx])
    return out


def test_transpose_and_subpixel_weights_by_hand(rng):
    x = rng.normal(size=(2, 3, 4, 5))
    w = rng.normal(size=(2, 3, 3, 3))
    want = _upsample_conv_numpy(x, w)
    # ConvTranspose(k=4, s=2, p=1): out[2i + ky - 1] += x[i] * W'[ky]
    wt = transpose_weights(w).astype(np.float64)
    full = np.zeros((2, 2, 2 * 4 + 2, 2 * 5 + 2))
    for ky in range(4):
        for kx in range(4):
            full[:, :, ky:ky + 8:2, kx:kx + 10:2] += np.einsum("bchw,co->bohw", x, wt[:, :, ky, kx])
    np.testing.assert_allclose(full[:, :, 1:-1, 1:-1], want, rtol=1e-5, atol=1e-5)
    # sub-pixel: phase (a, b) is a 2x2 conv with pads [top, left, bottom, right]
    for p, (k, pads) in enumerate(subpixel_weights(w)):
        a, b = divmod(p, 2)
        xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
        phase = sum(np.einsum("bchw,oc->bohw", xp[:, :, ty:ty + 4, tx:tx + 5], k[:, :, ty, tx].astype(np.float64))
                    for ty in range(2) for tx in range(2))
        np.testing.assert_allclose(phase, want[:, :, a::2, b::2], rtol=1e-5, atol=1e-5)


def _conv3x3_numpy(x, w):
    p = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    h, wd = x.shape[2:]
    return sum(np.einsum("bchw,oc->bohw", p[:, :, dy:dy + h, dx:dx + wd], w[:, :, dy, dx])
               for dy in range(3) for dx in range(3))


def test_phase_conv_weights_by_hand(rng):
    """A 3x3 conv on an image equals the phase-form conv on its four phases (DCR order)."""
    x = rng.normal(size=(2, 3, 6, 8))
    w = rng.normal(size=(2, 3, 3, 3))
    want = _conv3x3_numpy(x, w)
    phases = np.concatenate([x[:, :, a::2, b::2] for a in (0, 1) for b in (0, 1)], axis=1)
    got = _conv3x3_numpy(phases, phase_conv_weights(w).astype(np.float64))
    for p in range(4):
        a, b = divmod(p, 2)
        np.testing.assert_allclose(got[:, 2 * p:2 * p + 2], want[:, :, a::2, b::2], rtol=1e-6, atol=1e-6)


def test_engine_applies_rewrites_and_plain_agrees(bundle):
    z = np.random.default_rng(1).standard_normal((16, 100)).astype(np.float32)
    e = Engine(bundle, device="cpu")
    assert e.rewrites == {"subpixel_phase_form": 2, "thin_conv_split": 1}
    plain = Engine(bundle, device="cpu", rewrite=False)
    assert plain.rewrites == {}
    np.testing.assert_allclose(e.probabilities(z), plain.probabilities(z), rtol=1e-5, atol=1e-7)


def test_subpixel_leaves_other_resizes_alone(bundle):
    """Linear upsampling is not a sub-pixel pattern: nothing is rewritten."""
    m = bundle.fused_model()
    for n in m.graph.node:
        if n.op_type == "Resize":
            for a in n.attribute:
                if a.name == "mode":
                    a.s = b"linear"
    assert subpixel_phase_form(m)[1] == 0
