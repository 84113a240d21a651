"""The OpenVINO backend (corrkit._core.openvino) against onnxruntime, and its determinism.

Tolerances: fp32 OpenVINO is onnxruntime up to summation order (max |dp| <= 1e-4 on
probabilities); bf16 rounds every convolution's inputs to 8 significant bits (max
|dp| <= 0.15 on the built-in model, nearly all rows keeping their argmax). Both are
well inside the gaps the tests would catch: a wrong layout, a dropped softmax or an
unconverted precision move probabilities by far more.
"""

from __future__ import annotations

import numpy as np
import pytest

ov = pytest.importorskip("openvino")

import onnx  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from corrkit._core import openvino as backend  # noqa: E402
from corrkit._core.conventions import cpu_session  # noqa: E402
from corrkit.errors import BundleError  # noqa: E402

FP32_TOL = 1e-4
BF16_TOL_SMALL = 0.05
BF16_TOL_BUILTIN = 0.15
BF16_ARGMAX = 0.98


def small_model(seed: int = 0) -> onnx.ModelProto:
    """``z [B, 16]`` -> Reshape ``[B, 4, 2, 2]`` -> Conv 3x3 (8 ch) -> Relu -> Flatten -> MatMul -> Softmax (5)."""
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(np.array([-1, 4, 2, 2], np.int64), "shape"),
             numpy_helper.from_array(rng.normal(0, 0.5, (8, 4, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.normal(0, 0.1, 8).astype(np.float32), "b"),
             numpy_helper.from_array(rng.normal(0, 0.5, (32, 5)).astype(np.float32), "m")]
    nodes = [helper.make_node("Reshape", ["z", "shape"], ["x"]),
             helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Flatten", ["r"], ["f"]),
             helper.make_node("MatMul", ["f", "m"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["probs"], axis=1)]
    graph = helper.make_graph(nodes, "small", [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", 16])],
                              [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 5])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture(scope="module")
def fused(bundle):
    return bundle.fused_model()


def _reference(model, z):
    return cpu_session(model, threads=1).run(None, {"z": z})[0]


def _z(n, d, seed=3):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def test_session_looks_like_onnxruntime():
    s = backend.Session(small_model(), precision="fp32", threads=1)
    assert [a.name for a in s.get_inputs()] == ["z"] and [a.name for a in s.get_outputs()] == ["probs"]
    assert s.get_inputs()[0].shape == ["batch", 16]
    out = s.run(None, {"z": _z(3, 16)})
    assert isinstance(out, list) and len(out) == 1 and out[0].shape == (3, 5) and out[0].dtype == np.float32
    assert s.run(["probs"], {"z": _z(0, 16)})[0].shape == (0, 5)


def test_fp32_matches_onnxruntime_on_a_small_graph():
    m, z = small_model(), _z(77, 16)  # 77: two full chunks of 32 and a padded one
    p = backend.Session(m, precision="fp32", threads=1).run(None, {"z": z})[0]
    assert np.abs(p - _reference(m, z)).max() <= FP32_TOL


def test_fp32_matches_onnxruntime_on_the_builtin_model(fused):
    z = _z(200, 100)
    p = backend.Session(fused, precision="fp32").run(None, {"z": z})[0]
    assert np.abs(p - _reference(fused, z)).max() <= FP32_TOL


@pytest.mark.skipif(not backend.available(), reason="this CPU has no native bf16")
def test_bf16_is_close_to_fp32(fused):
    m, z = small_model(), _z(64, 16)
    p = backend.Session(m, precision="bf16", threads=1).run(None, {"z": z})[0]
    assert np.abs(p - _reference(m, z)).max() <= BF16_TOL_SMALL
    z = _z(512, 100)
    p, ref = backend.Session(fused, precision="bf16").run(None, {"z": z})[0], _reference(fused, z)
    assert np.abs(p - ref).max() <= BF16_TOL_BUILTIN
    assert (p.argmax(1) == ref.argmax(1)).mean() >= BF16_ARGMAX
    assert np.abs(p - ref).max() > 1e-3  # bf16 really ran (OpenVINO's fp32 stays within 1e-5 here)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_same_rows_same_probabilities_across_calls_and_splits(fused, precision):
    if precision == "bf16" and not backend.available():
        pytest.skip("this CPU has no native bf16")
    s = backend.Session(fused, precision=precision)
    z = _z(100, 100)
    whole = s.run(None, {"z": z})[0]
    assert np.array_equal(whole, s.run(None, {"z": z})[0])
    for cuts in ([7, 50], [1, 33, 64, 99]):
        parts = np.concatenate([s.run(None, {"z": x})[0] for x in np.split(z, cuts)])
        assert np.array_equal(whole, parts)
    again = backend.Session(fused, precision=precision)  # a second compilation gives the same numbers
    assert np.array_equal(whole, again.run(None, {"z": z})[0])


def test_bad_inputs_are_corrkit_errors():
    s = backend.Session(small_model(), precision="fp32", threads=1)
    with pytest.raises(BundleError, match="shape"):
        s.run(None, {"z": _z(2, 15)})
    with pytest.raises(BundleError, match="one input"):
        s.run(None, {"x": _z(2, 16)})
    with pytest.raises(BundleError, match="precision"):
        backend.Session(small_model(), precision="fp16")


def test_missing_openvino_names_the_extra(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_openvino(name, *args, **kwargs):
        if name == "openvino" or name.startswith("openvino."):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_openvino)
    assert backend.available() is False
    from corrkit.errors import CorrkitError

    with pytest.raises(CorrkitError, match=r"pip install 'corrkit\[openvino\]'"):
        backend.Session(small_model(), precision="fp32")


@pytest.mark.skipif(not backend.available(), reason="this CPU has no native bf16 in OpenVINO's view")
def test_apcr_in_bf16_mode_reports_its_fidelity_against_fp32(bundle, dirs):
    """``--mode bf16`` end to end: the run says what it is and how far from fp32 it is, measured here too."""
    from corrkit._core.execution import Execution
    from corrkit.methods.sequential import apcr

    kw = dict(directions=dirs, samples_per_class=3, steps=2, seed=0)
    fast = apcr(bundle, execution=Execution(device="cpu", mode="bf16", batch_size=64), **kw)
    ref = apcr(bundle, execution=Execution(device="cpu", batch_size=64), **kw)
    assert fast.params["mode"] == "bf16"
    fid = fast.params["fidelity"]
    assert fid["max_abs_delta_apcr"] > 0  # bf16 really ran, and the check measured it
    # the run's fidelity check uses the first 2 codes per class: no larger than the whole run's difference allows
    same = (fast.labels == ref.labels).all() and np.array_equal(fast.latents, ref.latents)
    if same:  # the code sets agree (bf16 kept every argmax): compare the two runs directly
        assert np.nanmax(np.abs(fast.apcr - ref.apcr)) < 0.1
    assert 0 < fid["max_abs_delta_apcr"] < 0.1


def _pipeline(fused_model):
    """``--mode bf16``'s two sessions, with the generator part in OpenVINO fp32 (runs on any CPU)."""
    g, q, boundary = backend.split_at_classifier(fused_model)
    return backend.Pipeline(backend.Session(g, precision="fp32"), cpu_session(q, threads=1), boundary)


def test_split_pipeline_equals_the_fused_graph_on_the_builtin_model(fused):
    g, q, boundary = backend.split_at_classifier(fused)
    assert boundary.startswith("q/") and [i.name for i in g.graph.input] == ["z"]
    assert [o.name for o in q.graph.output] == ["probs"]
    assert not any(o.startswith("q/") for n in g.graph.node for o in n.output if o != boundary)
    assert all(o.startswith("q/") for n in q.graph.node[:-1] for o in n.output)  # then the softmax
    z = _z(70, 100)
    p = _pipeline(fused).run(None, {"z": z})[0]
    assert p.shape == (70, 10)
    assert np.abs(p - _reference(fused, z)).max() <= FP32_TOL


@pytest.mark.parametrize("fixed", [False, True])
def test_split_pipeline_on_a_user_pair_with_a_range_map_and_a_fixed_batch(tmp_path, fixed):
    """A [0, 1] generator (the range map sits at the boundary) exported with batch 4, freed or not."""

    from corrkit._core.bundle import create_bundle
    from tests import user_models as um

    p = um.pair(tmp_path / "pair", batch=4, external=False, generator_range=(0.0, 1.0), image=(3, 6, 6))
    if fixed:  # a [4, P] constant added to every row: the batch cannot be freed
        um.pin_batch(p)
    b = create_bundle(p.generator, p.classifier, tmp_path / "bundle", classifier_output="logits",
                      generator_output_range=(0.0, 1.0), force=True)
    model = b.fused_model()
    z = _z(11, um.N)  # 11: two chunks of 4 and a padded one when the batch is fixed
    out = _pipeline(model).run(None, {"z": z})[0]
    assert np.abs(out - p.onnxruntime_probabilities(z)).max() <= FP32_TOL


def test_a_users_fused_model_is_not_split():
    assert backend.split_at_classifier(small_model()) is None


@pytest.mark.skipif(not backend.available(), reason="this CPU has no native bf16 in OpenVINO's view")
def test_bf16_mode_keeps_the_classifier_in_fp32(bundle):
    from corrkit._core.engine import Engine

    z = _z(256, 100)
    e = Engine(bundle, device="cpu", mode="bf16", batch_size=64, autotune=False)
    assert "classifier" in e.provider
    whole = backend.Session(bundle.fused_model(), precision="bf16")  # everything in bf16, for comparison
    ref = Engine(bundle, device="cpu", batch_size=64, autotune=False).probabilities(z)
    mixed, full = np.abs(e.probabilities(z) - ref).max(), np.abs(whole.run(None, {"z": z})[0] - ref).max()
    assert mixed < full


def test_ov_fp32_mode_is_the_fp32_run_to_summation_order(bundle, dirs):
    """``--mode ov-fp32``: the generator on OpenVINO's fp32 kernels (any CPU); same code sets, APCR within 1e-4
    of the onnxruntime reference, top lists the same, and the run's own fidelity check says so."""
    from corrkit._core.execution import Execution
    from corrkit.methods.sequential import apcr

    kw = dict(directions=dirs, samples_per_class=3, steps=2, seed=0)
    fast = apcr(bundle, execution=Execution(device="cpu", mode="ov-fp32", batch_size=64), **kw)
    ref = apcr(bundle, execution=Execution(device="cpu", batch_size=64), **kw)
    assert fast.params["mode"] == "ov-fp32" and "OpenVINO" not in ref.provider
    assert np.array_equal(fast.labels, ref.labels) and np.array_equal(fast.latents, ref.latents)
    assert np.nanmax(np.abs(fast.apcr - ref.apcr)) < 1e-4
    assert np.array_equal(fast.controlling_set(3), ref.controlling_set(3))
    assert fast.params["fidelity"]["max_abs_delta_apcr"] < 1e-4
