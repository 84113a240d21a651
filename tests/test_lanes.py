"""Lanes: a batch's rows split across single-thread sessions give one session's rows, bit for bit."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from corrkit._core.engine import Engine
from corrkit._core.lanes import default_lanes, lane_threads
from corrkit.errors import BundleError
from tests import user_models as um


def test_the_threads_are_shared_out_among_the_lanes():
    assert [default_lanes(t) for t in (1, 2, 3, 16)] == [1, 2, 2, 2]
    assert lane_threads(2, 2) == [1, 1]
    assert lane_threads(3, 2) == [2, 1]
    assert lane_threads(16, 2) == [8, 8]
    assert lane_threads(1, 2) == [1, 1]  # every lane has a thread


def _torch_pair(tmp_path):
    torch = pytest.importorskip("torch")
    from corrkit._core.bundle import create_bundle

    g, q = um.torch_dcgan(torch, 5, spread=True)
    gp, qp = tmp_path / "G.onnx", tmp_path / "Q.onnx"
    with torch.no_grad():  # as a user exports them: the defaults, a batch of 2 baked in
        torch.onnx.export(g, (torch.randn(2, 16, 1, 1),), str(gp))
        torch.onnx.export(q, (torch.randn(2, 3, 32, 32),), str(qp))
    return torch, g, q, create_bundle(gp, qp, tmp_path / "bundle", classifier_output="logits", force=True)


def test_lanes_give_the_rows_of_one_session_and_of_torch(tmp_path):
    torch, g, q, b = _torch_pair(tmp_path)
    one = Engine(b, device="cpu", threads=2, lanes=1, batch_size=16, autotune=False)
    two = Engine(b, device="cpu", threads=2, lanes=2, batch_size=16, autotune=False)
    assert (one.lanes, two.lanes) == (1, 2) and two.rewrites == one.rewrites
    z = np.random.default_rng(3).standard_normal((40, 16)).astype(np.float32)
    for n in (1, 2, 3, 7, 16, 40):  # 1 row: the first lane alone; 3 and 7: halves of unequal size
        np.testing.assert_array_equal(two.probabilities(z[:n]), one.probabilities(z[:n]), err_msg=f"{n} rows")
    with torch.no_grad():  # torch in float64 the reference; torch's own fp32 says how near fp32 gets to it
        zt = torch.from_numpy(z).reshape(40, 16, 1, 1)
        fp32 = torch.softmax(q(g(zt)), 1).numpy()
        want = torch.softmax(q.double()(g.double()(zt.double())), 1).numpy()
    assert np.abs(two.probabilities(z) - want).max() <= 2 * np.abs(fp32 - want).max() + 1e-6


def test_a_run_on_lanes_is_the_run_on_one_session(tmp_path):
    from corrkit.methods.sequential import apcr

    b = _bundle(um.pair(tmp_path / "export", batch=None))
    runs = [apcr(b, samples_per_class=4, steps=2, engine=Engine(b, device="cpu", threads=2, lanes=n, batch_size=24))
            for n in (1, 2)]
    for key in ("apcr", "curves", "latents"):
        np.testing.assert_array_equal(getattr(runs[1], key), getattr(runs[0], key), err_msg=key)


def _bundle(p: um.Pair):
    from corrkit._core.bundle import from_pair

    return from_pair(p.generator, p.classifier, classifier_output="logits")


def test_rows_that_cannot_be_split_run_on_one_session(tmp_path):
    p = um.pair(tmp_path / "fixed", batch=4, external=False)
    um.pin_batch(p)  # its batch of 4 cannot be freed: chunks of exactly 4 rows, never halves
    e = Engine(_bundle(p), device="cpu", threads=2, lanes=2, batch_size=8)
    assert e.fixed_batch == 4 and e.lanes == 1
    z = np.random.default_rng(1).standard_normal((11, um.N)).astype(np.float32)
    np.testing.assert_allclose(e.probabilities(z), p.onnxruntime_probabilities(z), rtol=1e-5, atol=1e-7)
    assert Engine(_bundle(um.pair(tmp_path / "free", batch=None)), device="cpu", threads=1).lanes == 1


def test_a_failure_in_the_second_lane_is_one_error():
    """Rows must come in pairs here: 7 rows split 4 + 3, and the second lane's session fails."""
    n = 4
    nodes = [helper.make_node("Reshape", ["z", "pairs"], ["p"]), helper.make_node("Reshape", ["p", "rows"], ["r"]),
             helper.make_node("Softmax", ["r"], ["probs"], axis=-1)]
    init = [numpy_helper.from_array(np.array([-1, 2, n], np.int64), "pairs"),
            numpy_helper.from_array(np.array([-1, n], np.int64), "rows")]
    g = helper.make_graph(nodes, "pairs", [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["b", n])],
                          [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["b", n])], init)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    e = Engine(model, device="cpu", threads=2, lanes=2, batch_size=8, autotune=False)
    z = np.random.default_rng(0).standard_normal((8, n)).astype(np.float32)
    np.testing.assert_allclose(e.probabilities(z), np.exp(z) / np.exp(z).sum(1, keepdims=True), rtol=1e-6)
    with pytest.raises(BundleError, match="onnxruntime failed while running the model on a batch of 7"):
        e.probabilities(z[:7])
