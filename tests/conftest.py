from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest

# The suite's measured batch sizes live in a folder of their own, never the user's cache (CLI subprocesses inherit it).
os.environ["CORRKIT_CACHE"] = tempfile.mkdtemp(prefix="corrkit-test-cache-")
# ... and the batch size is the memory budget's unless a test asks for the measurement (tests/test_autotune.py):
# timing each of the suite's hundreds of small models would cost minutes and say nothing.
os.environ["CORRKIT_AUTOTUNE"] = "0"

import corrkit
from corrkit._core.bundle import builtin_path, load_bundle
from tests import onnx_fixtures as fx


@pytest.fixture(scope="session")
def bundle():
    return load_bundle(builtin_path())


@pytest.fixture(scope="session")
def dirs():
    """Six seeded unit directions in the built-in bundle's 100-d latent space (small grids)."""
    d = np.random.default_rng(7).normal(size=(6, 100))
    return (d / np.linalg.norm(d, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="module")
def known_model(tmp_path_factory):
    """The known-answer model ``fx.KNOWN_W`` as a bundle, its ``fx.KNOWN_RUN`` apcr run, and a folder holding both
    (the model as ``lin.onnx``, the run saved in ``run/``); one per test module."""
    d = tmp_path_factory.mktemp("known")
    bundle = load_bundle(fx.matmul_logits(d / "lin.onnx", fx.KNOWN_W), classifier_output="logits")
    run = corrkit.apcr(bundle, **fx.KNOWN_RUN, execution=corrkit.Execution(device="cpu"))
    run.save(d / "run")
    return bundle, run, d
