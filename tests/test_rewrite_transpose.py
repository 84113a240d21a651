"""The ConvTranspose rewrites equal the plain graph within 1e-5 relative (SPEC §10)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from corrkit._core.rewrite_phases import conv_transpose_phase_convs, conv_transpose_phase_form, phase_taps
from corrkit._core.rewrite_transpose import conv_transpose_1x1_gemm, fold_batchnorm, transpose_rewrites


def _model(nodes, inits, shape, name="x"):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def _run(model, x, name="x"):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    s = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return s.run(None, {name: x})[0].astype(np.float64)


def _same(new, plain, x, name="x"):
    a, b = _run(plain, x, name), _run(new, x, name)
    assert a.shape == b.shape
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6 * np.abs(a).max())


def _transpose(rng, cin, cout, k, bias=True, act="Relu", **kw):
    """x -> ConvTranspose -> act -> y, random weights."""
    inits = {"w": rng.standard_normal((cin, cout, *k)).astype(np.float32)}
    ins = ["x", "w"]
    if bias:
        inits["b"] = rng.standard_normal(cout).astype(np.float32)
        ins.append("b")
    nodes = [helper.make_node("ConvTranspose", ins, ["t" if act else "y"], name="ct", **kw)]
    if act:
        nodes.append(helper.make_node(act, ["t"], ["y"]))
    return nodes, inits


def _conv_transpose_numpy(x, w, stride, pads, output_padding=(0, 0)):
    """ConvTranspose by its definition: input ``i`` through tap ``t`` lands on output ``i s - pad_begin + t``."""
    b, _, h, wd = x.shape
    _, cout, kh, kw = w.shape
    oh = (h - 1) * stride - pads[0] - pads[2] + kh + output_padding[0]
    ow = (wd - 1) * stride - pads[1] - pads[3] + kw + output_padding[1]
    out = np.zeros((b, cout, oh, ow))
    for i in range(h):
        for j in range(wd):
            for ty in range(kh):
                for tx in range(kw):
                    y, xx = i * stride - pads[0] + ty, j * stride - pads[1] + tx
                    if 0 <= y < oh and 0 <= xx < ow:
                        out[:, :, y, xx] += x[:, :, i, j] @ w[:, :, ty, tx]
    return out


@pytest.mark.parametrize("k,pad,op", [(4, 1, 0), (3, 1, 1), (2, 0, 0), (6, 2, 0)])
def test_phase_taps_follow_the_definition(rng, k, pad, op):
    """Output row ``2Y + a`` sums input ``Y + d`` times tap ``a + pad - 2d`` over ``d`` in ``phase_taps``."""
    x, w = rng.normal(size=(2, 3, 5, 4)), rng.normal(size=(3, 2, k, k))
    want = _conv_transpose_numpy(x, w, 2, [pad] * 4, (op, op))
    assert want.shape[2:] == (10, 8)
    taps = phase_taps(k, pad)
    for a in (0, 1):
        for b in (0, 1):
            got = np.zeros((2, 2, 5, 4))
            xp = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))
            for dy in taps[a]:
                for dx in taps[b]:
                    got += np.einsum("bchw,co->bohw", xp[:, :, 2 + dy:7 + dy, 2 + dx:6 + dx],
                                     w[:, :, a + pad - 2 * dy, b + pad - 2 * dx])
            np.testing.assert_allclose(got, want[:, :, a::2, b::2], rtol=1e-10, atol=1e-10)
    # onnxruntime's ConvTranspose agrees with the definition
    nodes, inits = _transpose(rng, 3, 2, (k, k), bias=False, act=None, strides=[2, 2], pads=[pad] * 4,
                              output_padding=[op, op])
    inits["w"] = w.astype(np.float32)
    np.testing.assert_allclose(_run(_model(nodes, inits, ["B", 3, 5, 4]), x.astype(np.float32)), want,
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("interleave", ["grouped_transpose", "depth_to_space"])
@pytest.mark.parametrize("k,pads,op,cin,cout,hw,bias", [
    ((4, 4), [1, 1, 1, 1], [0, 0], 5, 7, (5, 7), True),
    ((4, 4), [1, 1, 1, 1], [0, 0], 16, 3, (9, 8), False),
    ((3, 3), [1, 1, 1, 1], [1, 1], 4, 6, (6, 5), True),
    ((2, 2), [0, 0, 0, 0], [0, 0], 3, 1, (7, 7), True),
    ((4, 3), [1, 1, 1, 1], [0, 1], 6, 4, (4, 9), False),  # kernel 4 pad 1 rows, kernel 3 pad 1 op 1 columns
    ((4, 4), [0, 0, 2, 2], [0, 0], 3, 5, (5, 6), True),  # asymmetric pads
    ((6, 6), [2, 2, 2, 2], [0, 0], 2, 3, (3, 4), True),
])
def test_phase_form_matches_conv_transpose(rng, interleave, k, pads, op, cin, cout, hw, bias):
    nodes, inits = _transpose(rng, cin, cout, k, bias=bias, strides=[2, 2], pads=pads, output_padding=op)
    plain = _model(nodes, inits, ["B", cin, *hw])
    new, count = conv_transpose_phase_form(plain, interleave, min_side=0)
    assert count == 1
    assert "ConvTranspose" not in [n.op_type for n in new.graph.node] or interleave == "grouped_transpose"
    _same(new, plain, rng.standard_normal((3, cin, *hw)).astype(np.float32))


def test_phase_form_skips_small_inputs(rng):
    """Inputs known to be under ``min_side`` (16) are left to the per-phase convolutions (slower there, not wrong)."""
    nodes, inits = _transpose(rng, 4, 4, (4, 4), strides=[2, 2], pads=[1, 1, 1, 1])
    assert conv_transpose_phase_form(_model(nodes, inits, ["B", 4, 8, 8]))[1] == 0
    assert conv_transpose_phase_form(_model(nodes, inits, ["B", 4, 16, 8]))[1] == 0
    assert conv_transpose_phase_form(_model(nodes, inits, ["B", 4, 16, 16]))[1] == 1
    assert conv_transpose_phase_form(_model(nodes, inits, ["B", 4, "h", "w"]))[1] == 1  # unknown: rewritten


@pytest.mark.parametrize("k,pads,op,cin,cout,hw,bias,act", [
    ((4, 4), [1, 1, 1, 1], [0, 0], 5, 7, (4, 4), True, "Relu"),
    ((4, 4), [1, 1, 1, 1], [0, 0], 16, 3, (8, 5), False, "LeakyRelu"),
    ((3, 3), [1, 1, 1, 1], [1, 1], 4, 6, (6, 5), True, "Relu"),
    ((2, 2), [0, 0, 0, 0], [0, 0], 3, 1, (7, 7), True, None),
    ((4, 3), [1, 1, 1, 1], [0, 1], 6, 4, (4, 9), False, "Tanh"),  # kernel 4 pad 1 rows, kernel 3 pad 1 op 1 columns
    ((6, 6), [2, 2, 2, 2], [0, 0], 2, 3, (3, 4), True, "Relu"),
])
def test_phase_convs_match_conv_transpose(rng, k, pads, op, cin, cout, hw, bias, act):
    """One Conv per output phase (inputs under ``max_side``), Concat, DepthToSpace: the plain layer within 1e-5."""
    nodes, inits = _transpose(rng, cin, cout, k, bias=bias, act=act, strides=[2, 2], pads=pads, output_padding=op)
    plain = _model(nodes, inits, [3, cin, *hw])
    new, count = conv_transpose_phase_convs(plain)
    assert count == 1
    ops = [n.op_type for n in new.graph.node]
    assert ops.count("Conv") == 4 and "ConvTranspose" not in ops and ops.count("DepthToSpace") == 1
    assert ops.count(act) == (4 if act else 0)  # the activation runs on each phase
    x = rng.standard_normal((3, cin, *hw)).astype(np.float32)
    _same(new, plain, x)
    want = _conv_transpose_numpy(x.astype(np.float64), inits["w"].astype(np.float64), 2, pads, op)
    if bias:
        want += inits["b"][None, :, None, None]
    if act is None:  # the definition, independent of onnxruntime's ConvTranspose
        np.testing.assert_allclose(_run(new, x), want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_phase_convs_need_known_small_inputs_and_windows_with_offset_0(rng):
    nodes, inits = _transpose(rng, 4, 4, (4, 4), strides=[2, 2], pads=[1, 1, 1, 1])
    assert conv_transpose_phase_convs(_model(nodes, inits, ["B", 4, 16, 8]))[1] == 0  # a side >= max_side
    assert conv_transpose_phase_convs(_model(nodes, inits, ["B", 4, 16, 8]), max_side=17)[1] == 1
    assert conv_transpose_phase_convs(_model(nodes, inits, ["B", 4, "h", "w"]))[1] == 0  # unknown
    # kernel 3 pads (2, 0) output_padding 1: phase 1 reads input offset 1 only, which a Conv's padding cannot reach
    nodes, inits = _transpose(rng, 4, 4, (3, 3), strides=[2, 2], pads=[2, 2, 0, 0], output_padding=[1, 1])
    m = _model(nodes, inits, ["B", 4, 4, 4])
    assert phase_taps(3, 2)[1] == [1] and _run(m, np.ones((1, 4, 4, 4), np.float32)).shape == (1, 4, 8, 8)
    assert conv_transpose_phase_convs(m)[1] == 0
    assert transpose_rewrites(m)[1] == {}


@pytest.mark.parametrize("kw", [
    dict(strides=[3, 3], pads=[1, 1, 1, 1]),
    dict(strides=[2, 2], pads=[0, 0, 0, 0]),  # kernel 4 pad 0: 2H + 2, not 2H
    dict(strides=[2, 2], pads=[1, 1, 1, 1], dilations=[2, 2]),
    dict(strides=[2, 2], pads=[1, 1, 1, 1], group=2),
    dict(strides=[2, 2], output_shape=[10, 10]),
    dict(strides=[2, 2], auto_pad="SAME_UPPER"),
    dict(strides=[1, 1], pads=[1, 1, 1, 1]),
])
def test_other_conv_transposes_are_left_alone(rng, kw):
    cin = 4
    nodes, inits = _transpose(rng, cin, 3, (4, 4), **kw)
    if kw.get("group") == 2:
        inits["w"], inits["b"] = inits["w"][:, :3], np.tile(inits["b"], 2)
    m = _model(nodes, inits, ["B", cin, 5, 5])
    _run(m, rng.standard_normal((1, cin, 5, 5)).astype(np.float32))  # a valid graph
    assert conv_transpose_phase_form(m, min_side=0)[1] == 0
    assert conv_transpose_phase_convs(m, max_side=99)[1] == 0
    assert transpose_rewrites(m)[1] == {}


def test_weights_from_a_graph_input_are_left_alone(rng):
    nodes = [helper.make_node("ConvTranspose", ["x", "x"], ["y"], strides=[2, 2], pads=[1, 1, 1, 1])]
    m = _model(nodes, {}, [4, 4, 4, 4])
    assert conv_transpose_phase_form(m, min_side=0)[1] == 0


def _bn(rng, c, x, y, tag):
    inits = {f"{tag}.s": rng.uniform(0.5, 1.5, c), f"{tag}.b": rng.normal(0, 0.3, c),
             f"{tag}.m": rng.normal(0, 0.5, c), f"{tag}.v": rng.uniform(0.3, 2.0, c)}
    node = helper.make_node("BatchNormalization", [x, *inits], [y], epsilon=1e-3)
    return node, {k: v.astype(np.float32) for k, v in inits.items()}


@pytest.mark.parametrize("op,group,bias", [("Conv", 1, True), ("Conv", 3, False), ("ConvTranspose", 1, False),
                                           ("ConvTranspose", 3, True)])
def test_batchnorm_fold(rng, op, group, bias):
    """BN after a conv folds into it; a BN before a conv (zero padding sits after it) does not."""
    cin, cout = 6, 9
    shape = (cout, cin // group, 3, 3) if op == "Conv" else (cin, cout // group, 3, 3)
    inits = {"w": rng.standard_normal(shape).astype(np.float32)}
    ins = ["bn0", "w"] + (["b"] if bias else [])
    if bias:
        inits["b"] = rng.standard_normal(cout).astype(np.float32)
    bn0, i0 = _bn(rng, cin, "x", "bn0", "pre")
    bn1, i1 = _bn(rng, cout, "c", "y", "post")
    nodes = [bn0, helper.make_node(op, ins, ["c"], pads=[1, 1, 1, 1], group=group), bn1]
    plain = _model(nodes, {**inits, **i0, **i1}, ["B", cin, 7, 6])
    new, count = fold_batchnorm(plain)
    assert count == 1
    assert [n.op_type for n in new.graph.node] == ["BatchNormalization", op]
    _same(new, plain, rng.standard_normal((2, cin, 7, 6)).astype(np.float32))


def test_batchnorm_not_folded_when_the_conv_output_is_read_twice(rng):
    inits = {"w": rng.standard_normal((3, 3, 3, 3)).astype(np.float32)}
    bn, i1 = _bn(rng, 3, "c", "n", "bn")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), bn,
             helper.make_node("Add", ["c", "n"], ["y"])]
    assert fold_batchnorm(_model(nodes, {**inits, **i1}, ["B", 3, 5, 5]))[1] == 0


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("via", ["reshape", "input"])
def test_1x1_conv_transpose_becomes_gemm(rng, bias, via):
    n, c = 10, 7
    nodes, inits = _transpose(rng, n, c, (4, 3), bias=bias, act="LeakyRelu", strides=[2, 2])
    if via == "reshape":  # conventions.flat_latent's form: z [B, N] -> Reshape [-1, N, 1, 1]
        nodes[0].input[0] = "x4"
        nodes.insert(0, helper.make_node("Reshape", ["z", "shape"], ["x4"]))
        inits["shape"] = np.array([-1, n, 1, 1], np.int64)
        plain, name, x = _model(nodes, inits, ["B", n], "z"), "z", rng.standard_normal((5, n))
    else:
        plain, name, x = _model(nodes, inits, ["B", n, 1, 1]), "x", rng.standard_normal((5, n, 1, 1))
    new, count = conv_transpose_1x1_gemm(plain)
    assert count == 1
    ops = [m.op_type for m in new.graph.node]
    flatten = [] if via == "reshape" else ["Flatten"]  # the Reshape's own 2D input is used
    assert ops == [*flatten, "Gemm", "LeakyRelu", "Reshape"]
    _same(new, plain, x.astype(np.float32), name)


def test_gemm_needs_a_known_1x1_input_and_no_pads(rng):
    nodes, inits = _transpose(rng, 5, 4, (4, 4), strides=[1, 1])
    assert conv_transpose_1x1_gemm(_model(nodes, inits, ["B", 5, 2, 2]))[1] == 0
    assert conv_transpose_1x1_gemm(_model(nodes, inits, ["B", 5, "h", "w"]))[1] == 0
    nodes, inits = _transpose(rng, 5, 4, (4, 4), strides=[1, 1], pads=[1, 1, 1, 1])
    assert conv_transpose_1x1_gemm(_model(nodes, inits, ["B", 5, 1, 1]))[1] == 0


def _dcgan_graph(rng, n=12, chans=(16, 8, 4), out=3):
    """z [B, n] -> Reshape -> ConvTranspose(4, 1, 0) + BN + ReLU -> ConvTranspose(4, 2, 1) + BN + ReLU ... -> Tanh."""
    nodes = [helper.make_node("Reshape", ["z", "shape"], ["h0"])]
    inits = {"shape": np.array([-1, n, 1, 1], np.int64)}
    cin, x = n, "h0"
    for i, c in enumerate((*chans, out)):
        inits[f"w{i}"] = (rng.standard_normal((cin, c, 4, 4)) / np.sqrt(cin * 4)).astype(np.float32)
        kw = dict(strides=[1, 1]) if i == 0 else dict(strides=[2, 2], pads=[1, 1, 1, 1])
        nodes.append(helper.make_node("ConvTranspose", [x, f"w{i}"], [f"c{i}"], **kw))
        if c == out:
            nodes.append(helper.make_node("Tanh", [f"c{i}"], ["y"]))
            break
        bn, bi = _bn(rng, c, f"c{i}", f"n{i}", f"bn{i}")
        nodes += [bn, helper.make_node("Relu", [f"n{i}"], [f"h{i + 1}"])]
        inits.update(bi)
        cin, x = c, f"h{i + 1}"
    return _model(nodes, inits, ["B", n], "z")


def test_all_four_on_a_dcgan_graph(rng):
    plain = _dcgan_graph(rng)
    new, counts = transpose_rewrites(plain)
    # the 4x4 and 8x8 inputs are under MIN_PHASE_SIDE: one conv per phase; the 16x16 input: the one-conv form
    assert counts == {"batchnorm_fold": 3, "conv_transpose_1x1_gemm": 1, "conv_transpose_phase_form": 1,
                      "conv_transpose_phase_convs": 2}
    assert "ConvTranspose" not in [n.op_type for n in new.graph.node if not n.name.endswith("/interleave")]
    assert [n.op_type for n in new.graph.node].count("BatchNormalization") == 0
    _same(new, plain, rng.standard_normal((4, 12)).astype(np.float32), "z")


def test_the_rewrites_in_turn_infer_shapes_once(rng, monkeypatch):
    """One shape inference serves the chain; each rewrite alone, inferring its own shapes, gives the same graph."""
    import corrkit._core.rewrite_transpose as rt
    plain = _dcgan_graph(rng, chans=(16, 8, 4, 16))  # the 32x32 layer in one-conv phase form
    alone = plain
    for step in (rt.fold_batchnorm, rt.conv_transpose_1x1_gemm, conv_transpose_phase_form, conv_transpose_phase_convs):
        alone, k = step(alone)
        assert k
    calls, infer = [], rt._spatial_dims
    monkeypatch.setattr(rt, "_spatial_dims", lambda m: calls.append(1) or infer(m))
    chained, counts = transpose_rewrites(plain, into_conv=True)
    assert len(calls) == 1 and len(counts) == 4
    assert chained.SerializeToString() == alone.SerializeToString()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torch_dcgan_through_the_engine(tmp_path):
    """A DCGAN as torch exports it (TorchScript exporter: BatchNormalization kept) gives the plain probabilities."""
    torch = pytest.importorskip("torch")

    from corrkit._core.bundle import create_bundle
    from corrkit._core.engine import Engine
    from tests.user_models import torch_dcgan

    g, q = torch_dcgan(torch, 5)
    gp, qp = tmp_path / "generator.onnx", tmp_path / "classifier.onnx"
    with torch.no_grad():
        torch.onnx.export(g, (torch.randn(2, 16, 1, 1),), str(gp), dynamo=False)
        torch.onnx.export(q, (torch.randn(2, 3, 32, 32),), str(qp), dynamo=False)
    b = create_bundle(gp, qp, tmp_path / "bundle", classifier_output="logits", force=True)
    z = np.random.default_rng(0).standard_normal((24, 16)).astype(np.float32)
    fast = Engine(b, device="cpu", batch_size=8, autotune=False)
    plain = Engine(b, device="cpu", batch_size=8, autotune=False, rewrite=False)
    # its 8-channel layer stays whole on onnxruntime (THIN_OUT_CHANNELS); the 16-channel one: four convs; the
    # RGB layer is read by the classifier's stride-2 conv: phases on a grid, never interleaved
    assert fast.rewrites == {"batchnorm_fold": 3, "conv_transpose_1x1_gemm": 1, "conv_transpose_phase_convs": 1,
                             "conv_transpose_into_conv": 1}
    assert plain.rewrites == {}
    p, want = fast.probabilities(z), plain.probabilities(z)
    np.testing.assert_allclose(p, want, rtol=1e-5, atol=1e-7)


def test_the_engine_leaves_layers_to_few_channels_whole_on_onnxruntime(rng):
    """The onnxruntime form: layers to >= 16 channels in phase form (both kinds), thinner ones (RGB) as exported."""
    from corrkit._core.engine import THIN_OUT_CHANNELS, rewritten

    plain = _dcgan_graph(rng, chans=(32, 32, 16, 8, 16), out=3)  # 4x4 ... 64x64: 16 out on a 32x32 input, then RGB
    new, counts = rewritten(plain)
    assert counts == {"batchnorm_fold": 5, "conv_transpose_1x1_gemm": 1, "conv_transpose_phase_convs": 2,
                      "conv_transpose_phase_form": 1}
    consts = {i.name: i for i in new.graph.initializer}
    whole = [n for n in new.graph.node if n.op_type == "ConvTranspose" and not n.name.endswith("/interleave")]
    assert sorted(consts[n.input[1]].dims[1] for n in whole) == [3, 8]
    assert all(consts[n.input[1]].dims[1] < THIN_OUT_CHANNELS for n in whole)
    _same(new, plain, rng.standard_normal((4, 12)).astype(np.float32), "z")


def test_the_openvino_shape_rewrites_every_stride_2_layer_with_depth_to_space(rng):
    """``--mode bf16``'s generator form: DepthToSpace interleaves, the 4x4-input layer too, still exact."""
    from corrkit._core.engine import rewritten

    plain = _dcgan_graph(rng)
    new, counts = rewritten(plain, backend="openvino")
    assert counts == {"batchnorm_fold": 3, "conv_transpose_1x1_gemm": 1, "conv_transpose_phase_form": 3}
    ops = [n.op_type for n in new.graph.node]
    assert ops.count("DepthToSpace") == 3 and "ConvTranspose" not in ops
    z = rng.standard_normal((4, 12)).astype(np.float32)
    _same(new, plain, z, "z")
    ov = pytest.importorskip("openvino")
    from corrkit._core.openvino import Session

    got = Session(new, precision="fp32", threads=1, chunk=4).run(None, {"z": z})[0]
    want = _run(plain, z, "z")
    assert ov is not None and np.abs(got - want).max() <= 1e-5 * np.abs(want).max()


def test_int8_calibration_takes_as_many_samples_as_fit_its_memory(monkeypatch):
    """A hand-counted graph: z [B, 6] -> MatMul [B, 50] -> Relu [B, 50] -> MatMul [B, 3]: 400 bytes a row
    of intermediates (the two [B, 50] tensors); the output is not held."""
    from corrkit._core import quantize

    inits = {"a": np.ones((6, 50), np.float32), "b": np.ones((50, 3), np.float32)}
    nodes = [helper.make_node("MatMul", ["x", "a"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "b"], ["y"])]
    m = _model(nodes, inits, ["B", 6])
    assert quantize.activation_bytes_per_row(m) == 400
    monkeypatch.setattr(quantize, "CALIBRATION_BYTES", 400 * 100)
    assert quantize.calibration_rows(m) == 100
    monkeypatch.setattr(quantize, "CALIBRATION_BYTES", 400 * 5)
    assert quantize.calibration_rows(m) == 32  # never under 32
    monkeypatch.setattr(quantize, "CALIBRATION_BYTES", 400 * 10_000)
    assert quantize.calibration_rows(m) == 512  # never over 512


def test_int8_calibration_whose_rows_are_not_a_multiple_of_its_batch(bundle):
    """100 calibration rows (a 256-px DCGAN's memory allows such counts) in batches of at most 64: they
    are split 50 + 50, since onnxruntime's percentile calibrator fails on a shorter last batch; the
    quantized graph runs and stays close to fp32."""
    from corrkit._core.engine import Engine
    from corrkit._core.quantize import quantize_int8

    fp32 = Engine(bundle, device="cpu")
    q = quantize_int8(fp32.model, bundle.latent_dim, n_calib=100)
    assert sum(n.op_type == "QuantizeLinear" for n in q.graph.node) > 0
    z = np.random.default_rng(1).standard_normal((16, bundle.latent_dim)).astype(np.float32)
    p8, p32 = _run(q, z, "z"), fp32.probabilities(z)
    assert np.abs(p8 - p32).mean() < 0.05 and np.allclose(p8.sum(1), 1, atol=1e-4)
