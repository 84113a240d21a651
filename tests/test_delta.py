"""``--mode bf16-delta`` (corrkit._core.delta): the difference graph is the plain graph to summation order.

The base graph runs a code alone; the delta graph takes the change of each row from it and
the code's base tensors. In fp32 (onnxruntime, or OpenVINO without the bf16 casts) that must
give the plain graph's probabilities within 1e-5 relative (SPEC §10), for every rule the
builder has: linear nodes on Δ alone, every other node on the full value. In bf16 it must be
much closer to fp32 than the same graph in plain bf16, since it rounds changes, not activations.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from corrkit._core.delta import BASE, LOW, difference_graphs

N = 12


def _session(model):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def through_differences(model, z0: np.ndarray, dz: np.ndarray) -> np.ndarray:
    """Probabilities at ``z0 + dz`` by the base graph (at ``z0``) and the delta graph (on ``dz``), in fp32."""
    base, delta, names = difference_graphs(model)
    name = model.graph.input[0].name
    b = _session(base)
    got = dict(zip([o.name for o in b.get_outputs()], b.run(None, {name: z0[None]})))
    got[name] = z0[None]
    feeds = {name: dz, **{BASE + t: got[t] for t in names}}
    return _session(delta).run(None, feeds)[0]


def _same(model, z0, dz, rtol=1e-5):
    want = _session(model).run(None, {model.graph.input[0].name: z0[None] + dz})[0]
    got = through_differences(model, z0, dz)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * np.abs(want).max())
    return want


def every_rule(rng) -> "onnx.ModelProto":  # noqa: F821
    """z [B, 12] through one node of each kind the builder treats differently, to 5 probabilities.

    Shapes: [B, 3, 2, 2] -> Conv [8, 2, 2] -> ConvTranspose [4, 4, 4] -> Pad [4, 6, 6] -> MaxPool [4, 5, 5]
    -> Resize [4, 10, 10] -> AveragePool [4, 5, 5] -> Concat [8, 5, 5] -> DepthToSpace [2, 10, 10] -> 200 -> 10 -> 5.
    """
    def w(*shape, s=0.5):
        return rng.normal(0, s, shape).astype(np.float32)

    c = dict(shape=np.array([-1, 3, 2, 2], np.int64), wc=w(8, 3, 3, 3), bc=w(8, s=0.1),
             g=np.abs(w(8)) + 0.5, be=w(8, s=0.1), mu=w(8, s=0.1), var=np.abs(w(8)) + 0.5,
             wt=w(8, 4, 4, 4), bt=w(4, s=0.1), k=w(1, 4, 1, 1), pads=np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64),
             scales=np.array([1, 1, 2, 2], np.float32),
             wg=w(2 * 10 * 10, 10, s=0.1), bg=w(10, s=0.1), wm=w(10, 5), two=np.array(2.0, np.float32))
    nodes = [
        helper.make_node("Mul", ["z", "z"], ["zz"]),  # z itself used non-linearly: a StyleGAN-like normalisation
        helper.make_node("ReduceMean", ["zz"], ["ms"], axes=[1], keepdims=1),
        helper.make_node("Sqrt", ["ms"], ["rms"]),
        helper.make_node("Div", ["z", "rms"], ["zn"]),
        helper.make_node("Reshape", ["zn", "shape"], ["x"]),
        helper.make_node("Conv", ["x", "wc", "bc"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "g", "be", "mu", "var"], ["n1"]),
        helper.make_node("LeakyRelu", ["n1"], ["a1"], alpha=0.2),
        helper.make_node("ConvTranspose", ["a1", "wt", "bt"], ["t1"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["t1"], ["a2"]),
        helper.make_node("Mul", ["a2", "k"], ["s2"]),  # scaling by a constant
        helper.make_node("Add", ["s2", "a2"], ["r2"]),  # a residual: two changing tensors
        helper.make_node("Pad", ["r2", "pads"], ["p2"]),
        helper.make_node("MaxPool", ["p2"], ["m2"], kernel_shape=[2, 2], strides=[1, 1]),  # non-linear pooling
        helper.make_node("Resize", ["m2", "", "scales"], ["u2"], mode="nearest"),
        helper.make_node("AveragePool", ["u2"], ["v2"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Concat", ["v2", "v2"], ["cat"], axis=1),
        helper.make_node("DepthToSpace", ["cat"], ["d2"], blocksize=2),
        helper.make_node("Tanh", ["d2"], ["h2"]),
        helper.make_node("Mul", ["h2", "h2"], ["q2"]),  # a product of two changing tensors
        helper.make_node("Sub", ["two", "q2"], ["o2"]),  # a constant minus a changing tensor
        helper.make_node("Transpose", ["o2"], ["tr"], perm=[0, 1, 3, 2]),
        helper.make_node("Flatten", ["tr"], ["f"]),
        helper.make_node("Gemm", ["f", "wg", "bg"], ["gm"]),
        helper.make_node("Sigmoid", ["gm"], ["sg"]),
        helper.make_node("MatMul", ["sg", "wm"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    graph = helper.make_graph(nodes, "every_rule", [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["B", N])],
                              [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["B", 5])],
                              [numpy_helper.from_array(v, k) for k, v in c.items()])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def _steps(rng, n_rows, scale=0.5):
    dz = np.zeros((n_rows, N), np.float32)
    dz[np.arange(n_rows), rng.integers(0, N, n_rows)] = rng.choice([-2, -1, 1, 2], n_rows) * scale
    return dz


def test_every_rule_gives_the_plain_graph(rng):
    model = every_rule(rng)
    z0 = rng.standard_normal(N).astype(np.float32)
    want = _same(model, z0, _steps(rng, 24))
    assert np.ptp(want, axis=0).max() > 1e-3  # the steps move the output: the comparison can fail


def test_linear_nodes_run_on_changes_alone_and_the_rest_on_full_values(rng):
    """Which node went which way: the rule the precision split relies on."""
    _, delta, names = difference_graphs(every_rule(rng))
    low = {n.op_type for n in delta.graph.node if n.name.startswith(LOW)}
    full = {n.op_type for n in delta.graph.node if n.name and not n.name.startswith(LOW)}
    assert {"Conv", "ConvTranspose", "Gemm", "MatMul", "Pad", "Resize", "AveragePool", "Concat", "DepthToSpace",
            "Transpose", "Flatten", "Reshape"} <= low
    assert {"LeakyRelu", "Relu", "MaxPool", "Tanh", "Sigmoid", "Softmax", "Sqrt", "Div"} <= full
    assert "z" in names  # the input's own value feeds its non-linear use
    assert not any(t.startswith(BASE) for t in names)


def test_the_builtin_bundle_and_a_dcgan_through_their_rewrites(bundle, rng):
    from benchmarks.scale_models import LATENT
    from corrkit._core.engine import rewritten

    for model in (bundle.fused_model(), rewritten(bundle.fused_model(), backend="delta")[0]):
        z0 = rng.standard_normal(bundle.latent_dim).astype(np.float32)
        dz = np.zeros((16, bundle.latent_dim), np.float32)
        dz[np.arange(16), np.arange(16)] = np.tile([-1.0, 1.0], 8)
        _same(model, z0, dz)
    torch = pytest.importorskip("torch")
    from benchmarks.scale_models import models

    g, q = models(64)
    assert torch is not None and LATENT == 128


def test_a_model_whose_batch_is_fixed_is_refused(tmp_path):
    """A [4, P] constant added to every row (as in tests/test_openvino.py): the batch cannot be freed."""
    from corrkit._core.bundle import create_bundle
    from corrkit._core.engine import Engine
    from corrkit.errors import BundleError
    from tests.user_models import pair, pin_batch

    pytest.importorskip("openvino")
    p = pair(tmp_path / "raw", batch=4, external=False)
    pin_batch(p)
    b = create_bundle(p.generator, p.classifier, tmp_path / "b", classifier_output="logits", force=True)
    with pytest.raises(BundleError, match="batch dimension is free"):
        Engine(b, device="cpu", mode="bf16-delta", autotune=False)


def test_ray_refuses_the_openvino_modes():
    from corrkit._core.execution import Execution
    from corrkit.errors import GridError

    for mode in ("bf16", "ov-fp32", "bf16-delta"):
        with pytest.raises(GridError, match="with --ray use --mode fp32 or int8"):
            Execution(executor="ray", mode=mode)
    Execution(executor="ray", mode="int8")


def _grid_rows(rng, latent_dim, n_codes=3, per_code=40, step=0.5):
    codes = rng.standard_normal((n_codes, latent_dim)).astype(np.float32)
    idx = np.repeat(np.arange(n_codes), per_code)
    axes = rng.integers(0, latent_dim, len(idx))
    z = codes[idx].copy()
    z[np.arange(len(idx)), axes] += step * rng.choice([-2.0, -1.0, 1.0, 2.0], len(idx)).astype(np.float32)
    return z, codes, idx


def test_the_openvino_session_in_fp32_is_the_plain_graph(bundle, rng):
    """The session's plumbing (base tensors fed once per code, static chunks, padding) without the bf16 casts."""
    pytest.importorskip("openvino")
    from corrkit._core.delta import DeltaSession
    from corrkit._core.engine import rewritten

    model = rewritten(bundle.fused_model(), backend="delta")[0]
    s = DeltaSession(model, threads=1, chunk=16, precision="fp32")
    z, codes, idx = _grid_rows(rng, bundle.latent_dim)
    want = _session(bundle.fused_model()).run(None, {"z": z})[0]
    got = s.run(z, codes, idx)
    assert np.abs(got - want).max() <= 1e-4 and s.low_ops == 0


@pytest.mark.skipif(not __import__("corrkit._core.openvino", fromlist=["x"]).available(),
                    reason="this CPU has no native bf16 in OpenVINO's view")
def test_bf16_on_changes_rounds_with_the_change_and_is_row_independent(bundle, rng):
    """Its error shrinks with the step (plain bf16's does not: it rounds whole activations), and at small
    steps it is far below plain bf16's (measured on the built-in bundle: step 0.01 5e-5 vs 0.014;
    0.1: 5e-4 vs 9e-3; 0.5, where a step moves probabilities by up to 0.9: 0.015 vs 0.056)."""
    from corrkit._core.delta import DeltaSession
    from corrkit._core.engine import rewritten
    from corrkit._core.openvino import Session

    model = rewritten(bundle.fused_model(), backend="delta")[0]
    s = DeltaSession(model, threads=2, chunk=16)
    plain = Session(rewritten(bundle.fused_model(), backend="openvino")[0], precision="bf16", threads=2, chunk=16)
    reference = _session(bundle.fused_model())
    errors = {}
    for step in (0.01, 0.1):
        z, codes, idx = _grid_rows(rng, bundle.latent_dim, step=step)
        want = reference.run(None, {"z": z})[0]
        errors[step] = (np.abs(s.run(z, codes, idx) - want).max(), np.abs(plain.run(None, {"z": z})[0] - want).max())
    assert s.low_ops > 0
    assert errors[0.01][0] < errors[0.1][0] / 3, errors  # shrinks with the change
    assert all(e < p / 4 for e, p in errors.values()), errors
    z, codes, idx = _grid_rows(rng, bundle.latent_dim)
    got = s.run(z, codes, idx)
    # a row's probabilities do not depend on its neighbours: codes in another order, rows split differently
    order = rng.permutation(len(z))
    again = s.run(z[order], codes[::-1].copy(), (len(codes) - 1 - idx)[order])
    assert np.array_equal(again, got[order])
    assert np.array_equal(s.run(z[:7], codes, idx[:7]), got[:7])


def _user_dcgan(folder):
    """An RGB ConvTranspose DCGAN and a strided-conv classifier, exported by ``torch.onnx.export``'s defaults."""
    torch = pytest.importorskip("torch")
    from tests.user_models import torch_dcgan

    g, q = torch_dcgan(torch, 4, seed=1, spread=True)
    folder.mkdir(parents=True, exist_ok=True)
    gp, qp = folder / "G.onnx", folder / "Q.onnx"
    with torch.no_grad():
        torch.onnx.export(g, (torch.randn(2, 16, 1, 1),), str(gp))
        torch.onnx.export(q, (torch.randn(2, 3, 32, 32),), str(qp))
    return gp, qp


@pytest.mark.skipif(not __import__("corrkit._core.openvino", fromlist=["x"]).available(),
                    reason="this CPU has no native bf16 in OpenVINO's view")
def test_apcr_bf16_delta_on_a_users_dcgan_keeps_the_fp32_codes_and_ranking(tmp_path):
    """``corrkit apcr G.onnx Q.onnx --mode bf16-delta`` as a user runs it: the same code sets as fp32 (they are
    drawn in fp32), APCR close to the fp32 run's on the whole grid, the fidelity line printed, and --ray refused."""
    import json

    from typer.testing import CliRunner

    from corrkit.cli.main import app

    gp, qp = _user_dcgan(tmp_path / "user")
    args = ["apcr", "--generator", str(gp), "--classifier", str(qp), "--output", "logits", "--samples-per-class", "3",
            "--steps", "2", "--device", "cpu", "--batch-size", "64"]
    runner = CliRunner()
    runs = {}
    for mode in ("fp32", "bf16-delta"):
        r = runner.invoke(app, [*args, "--mode", mode, "--out", str(tmp_path / mode)])
        assert r.exit_code == 0, r.output
        runs[mode] = np.load(tmp_path / mode / "apcr.npz")
        summary = json.loads((tmp_path / mode / "summary.json").read_text())
        assert summary["params"]["mode"] == mode
    assert "fidelity" in r.output and "bf16-delta" in r.output
    fid = summary["params"]["fidelity"]
    a, b = runs["bf16-delta"], runs["fp32"]
    assert np.array_equal(a["latents"], b["latents"]) and np.array_equal(a["labels"], b["labels"])
    diff = np.nanmax(np.abs(a["apcr"] - b["apcr"]))
    assert 0 < diff < 0.02 and 0 < fid["max_abs_delta_apcr"] < 0.02, (diff, fid)
    assert fid["min_top10_overlap"] >= 0.9
    r = runner.invoke(app, [*args, "--mode", "bf16-delta", "--ray", "local"])
    assert r.exit_code == 1 and r.output.count("error:") == 1 and "Traceback" not in r.output, r.output
