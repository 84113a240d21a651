"""A ConvTranspose read by a stride-2 conv, as phases on a grid, equals the plain graph within 1e-5 relative."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from corrkit._core.rewrite_into_conv import conv_transpose_into_conv
from tests.test_rewrite_transpose import _conv_transpose_numpy, _model, _run, _same

DECONVS = {"k4 p1": dict(kernel=4, pads=[1, 1, 1, 1]), "k3 p1 op1": dict(kernel=3, pads=[1, 1, 1, 1], op=1),
           "k2 p0": dict(kernel=2, pads=[0, 0, 0, 0])}
CONVS = {"k4 p1": (4, 1), "k3 p1": (3, 1), "k2 p0": (2, 0)}
# kernel 4 pad 1 and kernel 3 pad 1 output-padding 1 hold phases on different grids (one row more, or not);
# each consumer lands on a 2x2 window of either except kernel 2 pad 0 on the bigger grid (4x the products)
TAKEN = {(d, c) for d in DECONVS for c in CONVS} - {("k4 p1", "k2 p0"), ("k3 p1 op1", "k4 p1"),
                                                       ("k2 p0", "k4 p1")}


def _pair(rng, deconv, conv, cin=5, cout=3, act="Tanh", bias=True, co=7, conv_attrs=None):
    """x -> ConvTranspose (stride 2, output twice x) -> act -> Identity -> Conv (stride 2) -> y, random weights."""
    d, (kc, pc) = DECONVS[deconv], CONVS[conv]
    k = d["kernel"]
    inits = {"w": (rng.standard_normal((cin, cout, k, k)) / np.sqrt(cin * 4)).astype(np.float32),
             "k": rng.standard_normal((co, cout, kc, kc)).astype(np.float32),
             "kb": rng.standard_normal(co).astype(np.float32)}
    ins = ["x", "w"]
    if bias:
        inits["b"] = rng.standard_normal(cout).astype(np.float32)
        ins.append("b")
    extra = dict(output_padding=[d["op"]] * 2) if d.get("op") else {}
    nodes = [helper.make_node("ConvTranspose", ins, ["t"], strides=[2, 2], pads=d["pads"], **extra)]
    src = "t"
    if act:
        nodes.append(helper.make_node(act, ["t"], ["a"]))
        src = "a"
    nodes.append(helper.make_node("Identity", [src], ["img"]))
    nodes.append(helper.make_node("Conv", ["img", "k", "kb"], ["y"], name="classifier_conv",
                                  **(conv_attrs or dict(strides=[2, 2], pads=[pc] * 4))))
    return nodes, inits


@pytest.mark.parametrize("deconv", list(DECONVS))
@pytest.mark.parametrize("conv", list(CONVS))
@pytest.mark.parametrize("act,bias", [("Tanh", True), ("Sigmoid", False), (None, True)])
def test_phases_read_by_a_strided_conv_match_the_plain_graph(rng, deconv, conv, act, bias):
    nodes, inits = _pair(rng, deconv, conv, act=act, bias=bias)
    plain = _model(nodes, inits, [2, 5, 6, 5])
    new, n = conv_transpose_into_conv(plain)
    assert n == ((deconv, conv) in TAKEN)
    if n:
        ops = [x.op_type for x in new.graph.node]
        assert "ConvTranspose" not in ops and ops.count("Conv") == 2
        # the 12 phase channels padded to one 16-channel block; kernel 4 pad 1's grid has rows off the image
        assert ops.count("Mul") == (deconv == "k4 p1")
        w = {i.name: i for i in new.graph.initializer}[new.graph.node[0].input[1]]
        assert w.dims[0] == 16
    _same(new, plain, rng.standard_normal((2, 5, 6, 5)).astype(np.float32))


def test_the_masked_rows_matter(rng):
    """Without the mask the classifier's edge pixels would read the grid's partial sums: the rewrite is not a no-op."""
    nodes, inits = _pair(rng, "k4 p1", "k4 p1", act="Sigmoid")
    plain = _model(nodes, inits, [2, 5, 6, 5])
    new, _ = conv_transpose_into_conv(plain)
    mask = next(i for i in new.graph.initializer if i.name.endswith("/edge_mask"))
    assert tuple(mask.dims) == (1, 16, 7, 6)
    unmasked = _model([x for x in new.graph.node if x.op_type != "Mul"], {}, [2, 5, 6, 5])
    unmasked.graph.initializer.extend(new.graph.initializer)
    mul = next(x for x in new.graph.node if x.op_type == "Mul")
    for x in unmasked.graph.node:
        x.input[:] = [mul.input[0] if i == mul.output[0] else i for i in x.input]
    x = rng.standard_normal((2, 5, 6, 5)).astype(np.float32)
    want, got, wrong = _run(plain, x), _run(new, x), _run(unmasked, x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * np.abs(want).max())
    # interior outputs agree, edge rows and columns do not
    np.testing.assert_allclose(wrong[:, :, 1:-1, 1:-1], want[:, :, 1:-1, 1:-1], rtol=1e-5, atol=1e-5)
    assert np.abs(wrong[:, :, 0] - want[:, :, 0]).max() > 1e-2


def test_against_the_definition(rng):
    """The rewritten graph against NumPy: ConvTranspose by its definition, tanh, a stride-2 conv by its definition."""
    nodes, inits = _pair(rng, "k4 p1", "k4 p1", cin=4, cout=3, co=5)
    new, n = conv_transpose_into_conv(_model(nodes, inits, [3, 4, 5, 6]))
    x = rng.standard_normal((3, 4, 5, 6)).astype(np.float32)
    img = np.tanh(_conv_transpose_numpy(x.astype(np.float64), inits["w"].astype(np.float64), 2, [1, 1, 1, 1])
                  + inits["b"][None, :, None, None])
    pad = np.pad(img, ((0, 0), (0, 0), (1, 1), (1, 1)))
    k = inits["k"].astype(np.float64)
    want = np.zeros((3, 5, 5, 6))
    for i in range(5):
        for j in range(6):
            want[:, :, i, j] = np.einsum("bchw,ochw->bo", pad[:, :, 2 * i:2 * i + 4, 2 * j:2 * j + 4], k)
    want += inits["kb"][None, :, None, None]
    assert n == 1
    np.testing.assert_allclose(_run(new, x), want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("case", ["stride 1", "grouped", "dilated", "asymmetric pads", "image read twice",
                                  "unknown size", "weights from an input"])
def test_other_pairs_are_left_alone(rng, case):
    attrs = {"stride 1": dict(strides=[1, 1], pads=[1, 1, 1, 1]),
             "grouped": dict(strides=[2, 2], pads=[1, 1, 1, 1], group=3),
             "dilated": dict(strides=[2, 2], pads=[1, 1, 1, 1], dilations=[2, 2]),
             "asymmetric pads": dict(strides=[2, 2], pads=[1, 1, 2, 2])}.get(case)
    nodes, inits = _pair(rng, "k4 p1", "k4 p1", conv_attrs=attrs)
    shape = [2, 5, 6, 5]
    if case == "grouped":
        inits["k"] = inits["k"][:6, :1]
        inits["kb"] = inits["kb"][:6]
    if case == "image read twice":
        nodes.append(helper.make_node("ReduceMean", ["img"], ["m"], keepdims=0))
    if case == "unknown size":
        shape = [2, 5, "h", "w"]
    if case == "weights from an input":
        del inits["k"]
    m = _model(nodes, inits, shape)
    if case == "image read twice":
        m.graph.output.append(helper.make_tensor_value_info("m", 1, None))
    if case == "weights from an input":
        m.graph.input.append(helper.make_tensor_value_info("k", 1, [7, 3, 4, 4]))
    assert conv_transpose_into_conv(m)[1] == 0
