"""The CPU comparison on a GPU: corrkit on onnxruntime-gpu against PyTorch eager and torch.compile.

Skipped unless onnxruntime's CUDA provider and a CUDA device are present
(``pip install 'corrkit[gpu]'``; ../shared/GPU.md). Batch 16,384, as the H100 anchors
of the performance issue.
"""

from __future__ import annotations

import numpy as np
import pytest

from corrkit._core.bundle import load_bundle
from corrkit._core.engine import Engine, cuda_available

BATCH = 16_384
GROUP = "points/s on the built-in bundle, CUDA"
pytestmark = pytest.mark.skipif(not cuda_available(), reason="needs onnxruntime-gpu and a CUDA device")


@pytest.fixture(scope="module")
def bundle():
    return load_bundle()


@pytest.mark.parametrize("io_binding", [True, False])
def test_corrkit_engine_cuda(benchmark, bundle, record, io_binding):
    e = Engine(bundle, device="cuda", batch_size=BATCH, io_binding=io_binding)
    z = np.random.default_rng(0).standard_normal((BATCH, e.latent_dim)).astype(np.float32)
    e.probabilities(z)
    benchmark.pedantic(e.probabilities, args=(z,), rounds=10, iterations=1)
    record(benchmark, GROUP, f"corrkit engine fp32 CUDA, io_binding={io_binding}", BATCH)


def test_corrkit_apcr_cuda(benchmark, bundle, record):
    from corrkit.methods.sequential import apcr

    r = benchmark.pedantic(apcr, args=(bundle,), kwargs=dict(device="cuda"), rounds=2, iterations=1)
    record(benchmark, GROUP, "corrkit apcr end-to-end fp32 CUDA, default grid", r.points)


@pytest.mark.parametrize("compiled", [False, True])
def test_torch_cuda_fp16(benchmark, record, compiled):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA device")
    from corrkit.export.weights import load_modules as load_builtin_modules

    g, q = (m.cuda().half().to(memory_format=torch.channels_last) for m in load_builtin_modules())

    def f(z):
        return torch.softmax(q(g(z)).float(), 1)

    f = torch.compile(f) if compiled else f
    z = torch.randn(BATCH, 100, device="cuda", dtype=torch.half)

    @torch.no_grad()
    def run():
        out = f(z)
        torch.cuda.synchronize()
        return out

    for _ in range(3):
        run()
    benchmark.pedantic(run, rounds=10, iterations=1)
    record(benchmark, GROUP, f"PyTorch {'torch.compile' if compiled else 'eager'} fp16 CUDA", BATCH)
