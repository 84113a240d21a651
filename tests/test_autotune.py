"""The measured batch size: chosen within the budget, kept once chosen, recorded in a run."""

from __future__ import annotations

import json

import numpy as np
from corrkit._core import autotune
from corrkit._core.engine import Engine, bytes_per_point


def test_candidates_are_powers_of_two_up_to_the_budget():
    assert autotune.candidates(100) == [16, 32, 64, 100]
    assert autotune.candidates(64) == [16, 32, 64]
    assert autotune.candidates(3) == [16]


def test_choose_takes_the_smallest_batch_near_the_best():
    assert autotune.choose({16: 100.0, 32: 150.0, 64: 152.0, 128: 140.0}) == 32
    assert autotune.choose({16: 100.0, 32: 90.0}) == 16


def test_measure_stops_past_the_knee():
    """Rows per second peak at 32: 64 and 128 are measured, found slower, and nothing beyond."""
    import time

    rate = {16: 1000.0, 32: 2000.0, 64: 1000.0, 128: 1200.0, 256: 8000.0}

    def run(z):  # the fixed per-batch work is added by measure(): leave it out here
        time.sleep(max(len(z) / rate[len(z)] - autotune.PER_BATCH_SECONDS, 0.0))
        return np.zeros((len(z), 2), np.float32)

    rates = autotune.measure(run, 4, 256)
    assert sorted(rates) == [16, 32, 64, 128]
    assert autotune.choose(rates) == 32


def test_engine_batch_is_measured_once_then_read_back(tmp_path, monkeypatch, bundle):
    monkeypatch.setenv("CORRKIT_CACHE", str(tmp_path))
    model = bundle.fused_model()
    a = Engine(model, device="cpu", autotune=True)
    assert a.batch_source == "autotuned"
    table = json.loads((tmp_path / "batch_sizes.json").read_text())
    (entry,) = table.values()
    assert entry["batch_size"] == a.batch_size
    assert a.batch_size == autotune.choose({int(k): v for k, v in entry["points_per_second"].items()})
    b = Engine(model, device="cpu", autotune=True)
    assert (b.batch_size, b.batch_source) == (a.batch_size, "autotuned, cached")
    assert Engine(model, device="cpu", batch_size=7, autotune=True).batch_source == "given"
    monkeypatch.setenv("CORRKIT_AUTOTUNE", "1")
    assert Engine(model, device="cpu").batch_source == "autotuned, cached"  # measuring is the default
    assert Engine(model, device="cpu", autotune=False).batch_source == "memory budget"


def test_bytes_per_point_follows_liveness():
    """A chain x -> Relu -> Relu -> y holds at most two of its tensors at once, not all three."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 1000])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 1000])
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["h"]), helper.make_node("Relu", ["h"], ["y"])],
                          "chain", [x], [y])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(m)
    assert bytes_per_point(m) == 2 * 1000 * 4


def test_bytes_per_point_measures_what_shape_inference_cannot_see():
    """A reshape to a shape computed from values (as a modulated conv's is) hides every shape after it
    from ONNX shape inference; the estimate then takes them from one batch-1 run: the conv's input
    [3, 8, 8] and its output [16, 8, 8] are alive together, by hand 3·64·4 + 16·64·4 bytes."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 192)).astype(np.float32), "w"),
             numpy_helper.from_array(np.array([3.0, 8.0, 8.0], np.float32), "dims"),
             numpy_helper.from_array(np.array([-1], np.int64), "batch"),
             numpy_helper.from_array(rng.standard_normal((16, 3, 3, 3)).astype(np.float32), "k")]
    nodes = [helper.make_node("MatMul", ["z", "w"], ["h"]),
             helper.make_node("ReduceMin", ["h"], ["lo"], keepdims=0),
             helper.make_node("Mul", ["lo", "lo"], ["sq"]),
             helper.make_node("Sub", ["sq", "sq"], ["zero"]),  # 0, but only a run knows it
             helper.make_node("Add", ["dims", "zero"], ["fdims"]),
             helper.make_node("Cast", ["fdims"], ["idims"], to=TensorProto.INT64),
             helper.make_node("Concat", ["batch", "idims"], ["shape"], axis=0),
             helper.make_node("Reshape", ["h", "shape"], ["img"]),
             helper.make_node("Conv", ["img", "k"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("ReduceMean", ["c"], ["y"], axes=[2, 3], keepdims=0)]
    g = helper.make_graph(nodes, "hidden", [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["b", 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 16])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    assert bytes_per_point(m) == (3 + 16) * 64 * 4
