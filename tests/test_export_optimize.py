"""Gradient optimisation on the torch modules (export/optimize.py) and its agreement with the zeroth-order one."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from corrkit.cli.main import app
from corrkit._core.engine import Engine
from corrkit.errors import BundleError
from corrkit.export.optimize import check_matches, load_modules, loss_and_grad, optimize_bundle, optimize_gradient
from corrkit.methods.optimize import (OptimizedWeights, ProbeStream, intervention_scale, optimize, perturbation_matrix,
                              probe_basis, zo_gradient, zo_gradient_codes)
from corrkit._core.execution import Execution

CPU = Execution(device="cpu")

runner = CliRunner()


class LinearSoftmax(torch.nn.Module):
    def __init__(self, w):
        super().__init__()
        self.w = torch.tensor(w, dtype=torch.float32)

    def forward(self, z):
        return torch.softmax(z @ self.w, dim=1)


def test_torch_loss_by_hand():
    # S = softmax(z W) with 2 classes; one code; every number below written out by hand
    w_model = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    z = np.array([[0.0, 0.0]], np.float32)
    v = np.array([np.arctanh(0.5), np.arctanh(-0.5)])  # w = (0.5, -0.5), ||w|| = sqrt(0.5)
    scale = np.full((1, 2), 2.0, np.float32)  # xi = 2: z+ = (1, -1), z- = (-1, 1)
    s0 = np.array([0.5])
    grad, val = loss_and_grad(LinearSoftmax(w_model), z, s0, 0, scale, v, 0.2)
    s_plus = 1 / (1 + np.exp(-2.0))  # S_0(z+) = sigmoid(1 - (-1))
    assert val == pytest.approx(-(s_plus - 0.5) + 0.2 * np.sqrt(0.5), rel=1e-6)
    # d/dw_0 of -(S_0(z + 2w) - 1/2) = -2 * S_0 (1 - S_0); d/dw_1 = +2 * S_0 (1 - S_0); times (1 - w^2) = 0.75
    d = 2 * s_plus * (1 - s_plus)
    reg = 0.2 * np.array([0.5, -0.5]) / np.sqrt(0.5) * 0.75
    np.testing.assert_allclose(grad, np.array([-d, d]) * 0.75 + reg, rtol=1e-5)


@pytest.fixture(scope="module")
def torch_model(bundle):
    torch.set_num_threads(1)
    return load_modules(bundle)


@pytest.fixture(scope="module")
def codes(bundle):
    from corrkit._core.codesets import class_sets

    return class_sets(Engine(bundle, device="cpu"), 10, n=2, tau=0.5, seed=0)


def test_torch_modules_match_the_bundle(torch_model, codes):
    assert check_matches(torch_model, codes.latents, codes.base) < 1e-4
    with pytest.raises(BundleError, match="disagree"):
        check_matches(torch_model, codes.latents, np.roll(codes.base, 1, axis=1))


def test_zeroth_order_gradient_matches_autograd_on_the_builtin_models(bundle, torch_model, codes):
    engine = Engine(bundle, device="cpu")
    j = 3
    rows = np.flatnonzero(codes.labels == j)
    z, s0 = codes.latents[rows], codes.base[rows, j]
    rng = np.random.default_rng(0)
    scale = intervention_scale(z, rng.uniform(2, 4, len(z)).astype(np.float32), "paper")
    v = np.full(100, 0.5) + rng.normal(0, 0.5, 100) - 0.6  # a point past the early shrinking, |w| mixed
    for lam in (0.0, 0.2):
        want, val = loss_and_grad(torch_model, z, s0, j, scale, v, lam)
        u = perturbation_matrix(rng, 100, 100, "orthogonal")
        got, zo_val = zo_gradient(engine.probabilities, z, s0, j, scale, v, u, 2e-3, lam)
        assert zo_val == pytest.approx(val, abs=1e-5)
        cos = got @ want / np.linalg.norm(got) / np.linalg.norm(want)
        assert cos > 0.97, (lam, cos)
        per_code = np.stack([perturbation_matrix(rng, 100, 100, "orthogonal") for _ in z])
        got, zo_val = zo_gradient_codes(engine.probabilities, z, s0, j, scale, v, per_code, 1e-2, lam)
        assert zo_val == pytest.approx(val, abs=1e-5)
        cos = got @ want / np.linalg.norm(got) / np.linalg.norm(want)
        assert cos > 0.97, ("codes", lam, cos)


def test_banded_probes_beat_isotropic_ones_against_autograd(bundle, torch_model):
    """Same probe count (4 per code), the SeFa-banded estimate is nearer the exact gradient."""
    from corrkit._core.codesets import class_sets

    engine = Engine(bundle, device="cpu")
    sets = class_sets(engine, 10, n=16, tau=0.5, seed=0)
    j = 7
    rows = np.flatnonzero(sets.labels == j)
    z, s0 = sets.latents[rows], sets.base[rows, j]
    rng = np.random.default_rng(1)
    scale = intervention_scale(z, rng.uniform(2, 4, len(z)).astype(np.float32), "paper")
    v = np.full(100, 0.5) + rng.normal(0, 0.5, 100) - 0.6
    want, _ = loss_and_grad(torch_model, z, s0, j, scale, v, 0.0)
    basis, where = probe_basis(bundle)
    assert where.startswith("sefa") and np.allclose(basis @ basis.T, np.eye(100), atol=1e-12)

    def cosines(make):
        out = []
        for seed in range(6):
            u, weight = make(np.random.default_rng(seed)).take(range(len(z)))
            got, _ = zo_gradient_codes(engine.probabilities, z, s0, j, scale, v, u, 1e-2, 0.0, weight)
            out.append(got @ want / np.linalg.norm(got) / np.linalg.norm(want))
        return np.array(out)

    banded = cosines(lambda r: ProbeStream(r, 100, 4, basis=basis))
    flat = cosines(lambda r: ProbeStream(r, 100, 4, basis=None))  # isotropic: the codes estimator's probes
    assert banded.mean() > flat.mean() + 0.2, (banded, flat)
    assert banded.mean() > 0.5, banded


def test_gradient_and_zeroth_order_follow_the_same_descent(bundle, torch_model):
    kw = dict(iterations=4, batch_size=2, samples_per_class=2, classes=[5], seed=1)
    grad = optimize_gradient(bundle, model=torch_model, **kw)
    zo = optimize(bundle, execution=CPU, perturbations=100, sigma=2e-3, estimator="codes", **kw)  # P = N: exact
    w0 = np.tanh(0.5)
    moved_g, moved_z = grad.w[5] - w0, zo.w[5] - w0
    assert np.abs(moved_g).max() > 1e-3
    assert moved_g @ moved_z / np.linalg.norm(moved_g) / np.linalg.norm(moved_z) > 0.97
    np.testing.assert_allclose(grad.loss[5], zo.loss[5], atol=1e-5)
    assert np.array_equal(grad.w[0], np.full(100, w0, np.float32))  # classes not asked for stay at the start
    assert grad.settings["method"] == "gradient" and grad.settings["torch_vs_onnx_max_abs_diff"] < 1e-4


def test_optimize_bundle_stores_weights_and_cli(bundle, tmp_path):
    res, path = optimize_bundle(bundle, tmp_path / "w.npz", iterations=2, samples_per_class=2, classes=[0])
    back = OptimizedWeights.load(path)
    assert np.array_equal(back.w, res.w) and back.w.shape == (10, 100)
    assert back.settings["lr"] == 0.05 and back.settings["objective"] == "paper"
    assert not list(tmp_path.glob(".*tmp"))
    out = tmp_path / "cli.npz"
    r = runner.invoke(app, ["export", "optimize", "--iterations", "1", "--objective", "authors", "--out", str(out),
                            "--samples-per-class", "1",
                            "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output)
    assert summary["settings"]["objective"] == "authors" and np.load(out)["w"].shape == (10, 100)
    r = runner.invoke(app, ["export", "optimize", "--objective", "nope", "--out", str(out)])
    assert r.exit_code == 1 and "objective" in r.output
