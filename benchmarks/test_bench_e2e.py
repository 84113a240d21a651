"""End-to-end points per second: corrkit against the raw session and PyTorch (same run, same model).

One point is one latent code through the generator and the classifier.
"""

from __future__ import annotations

import numpy as np
import pytest

from corrkit._core.bench import engine_call, raw_session
from corrkit._core.bundle import load_bundle
from corrkit.methods.sequential import apcr

BATCH = 256
GROUP = "points/s on the built-in bundle, CPU"


@pytest.fixture(scope="module")
def bundle():
    return load_bundle()


def test_raw_onnxruntime_session(benchmark, bundle, record):
    run = raw_session(bundle, BATCH)
    run()
    benchmark.pedantic(run, rounds=10, iterations=1)
    record(benchmark, GROUP, "onnxruntime raw sessions, model as exported", BATCH)


@pytest.mark.parametrize("mode", ["fp32", "int8"])
def test_corrkit_engine(benchmark, bundle, record, mode):
    run, _ = engine_call(bundle, BATCH, device="cpu", mode=mode)
    run()
    benchmark.pedantic(run, rounds=10, iterations=1)
    record(benchmark, GROUP, f"corrkit engine {mode}", BATCH)


def _rewritten(bundle, which):
    from benchmarks.conv_transpose_form import upsample_conv_to_conv_transpose
    from corrkit._core.rewrite import subpixel_phase_form, thin_conv_split

    m = bundle.fused_model()
    if which == "subpixel, conv2 only":
        m = subpixel_phase_form(m, interleave=False)[0]
    elif which == "ConvTranspose":
        m = upsample_conv_to_conv_transpose(m)[0]
    return thin_conv_split(m, max_out=4)[0]


@pytest.mark.parametrize("which", ["none", "thin conv only", "subpixel, conv2 only", "ConvTranspose"])
def test_engine_rewrite_variants(benchmark, bundle, record, which):
    """The engine (fp32) on other rewrite choices than its default, for the rewrites table."""
    from corrkit._core.engine import Engine

    model = bundle.fused_model() if which == "none" else _rewritten(bundle, which)
    e = Engine(model, device="cpu", batch_size=BATCH, rewrite=False)
    z = np.random.default_rng(0).standard_normal((BATCH, e.latent_dim)).astype(np.float32)
    e.probabilities(z)
    benchmark.pedantic(e.probabilities, args=(z,), rounds=10, iterations=1)
    record(benchmark, GROUP, f"corrkit engine fp32, rewrites: {which}", BATCH)


@pytest.mark.parametrize("mode", ["fp32", "int8"])
def test_corrkit_apcr_end_to_end(benchmark, bundle, record, mode):
    from corrkit._core.engine import Engine

    engine = Engine(bundle, device="cpu", mode=mode)  # int8: quantization happens here, once per bundle
    apcr(bundle, samples_per_class=1, steps=1, engine=engine, directions=np.eye(100, dtype=np.float32)[:2])
    out = {}

    def run():  # 8 codes/class x 100 axes x 4 steps: sampling, grid, inference, reductions (+ int8 fidelity check)
        out["r"] = apcr(bundle, samples_per_class=8, steps=2, engine=engine)

    benchmark.pedantic(run, rounds=2, iterations=1)
    if mode != "fp32":
        benchmark.extra_info["fidelity"] = out["r"].params["fidelity"]
        print(f"\n{mode} fidelity vs fp32: {out['r'].params['fidelity']}")
    r = out["r"]
    record(benchmark, GROUP, f"corrkit apcr end-to-end {mode} (grid+sampling+reduce)", r.points)


torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def modules():
    from corrkit.export.weights import load_modules as load_builtin_modules

    return load_builtin_modules()


def test_torch_paper_loop(benchmark, modules, record):
    g, q = modules
    z = torch.randn(16, 100)

    @torch.no_grad()
    def run():
        for i in range(16):
            torch.softmax(q(g(z[i:i + 1])), 1)

    run()
    benchmark.pedantic(run, rounds=3, iterations=1)
    record(benchmark, GROUP, "PyTorch paper-style loop, one code at a time", 16)


@pytest.mark.parametrize("layout,bf16", [("nchw", False), ("channels_last", False), ("channels_last", True)])
def test_torch_eager(benchmark, modules, record, layout, bf16):
    g, q = modules
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    g, q = g.to(memory_format=fmt), q.to(memory_format=fmt)
    z = torch.randn(BATCH, 100)

    @torch.no_grad()
    def run():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return torch.softmax(q(g(z).contiguous(memory_format=fmt)).float(), 1)

    run()
    benchmark.pedantic(run, rounds=10, iterations=1)
    record(benchmark, GROUP, f"PyTorch eager {'bf16' if bf16 else 'fp32'} {layout}", BATCH)


def test_sgemm_peak(benchmark, record):
    """The machine's attainable fp32 rate: one large MatMul on onnxruntime (2n³ FLOP per call).

    RESULTS.md divides each path's FLOP per second (points/s x FLOP per point) by this.
    """
    import onnxruntime as ort
    from onnx import TensorProto, helper

    n = 2048
    g = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "mm",
                          [helper.make_tensor_value_info(x, TensorProto.FLOAT, [n, n]) for x in "ab"],
                          [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])])
    s = ort.InferenceSession(helper.make_model(g).SerializeToString(), providers=["CPUExecutionProvider"])
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    s.run(None, {"a": a, "b": a})
    benchmark.pedantic(s.run, args=(None, {"a": a, "b": a}), rounds=5, iterations=1)
    record(benchmark, "fp32 GFLOP/s, onnxruntime MatMul 2048^3 (attainable peak)", "MatMul", 2 * n**3 / 1e9)
