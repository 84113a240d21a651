"""Zeroth-order optimisation (corrkit/optimize.py) against closed-form gradients of a linear-softmax model."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from typer.testing import CliRunner

from corrkit._core.bundle import load_bundle
from corrkit.cli.main import app
from corrkit.errors import GridError
from corrkit.methods.objective import OptimizeSettings as Settings
from corrkit.methods.objective import Schedule, data_term, intervention_scale, loss, regulariser_grad
from corrkit.methods.optimize import OptimizedWeights, agreement, code_sets, compare_with, optimize
from corrkit.methods.zeroth_order import (ProbeStream, band_probes, perturbation_matrix, zo_gradient,
                                          zo_gradient_codes)
from tests import onnx_fixtures as fx
from tests.naive import softmax
from corrkit._core.execution import Execution

CPU = Execution(device="cpu")

runner = CliRunner()
N, C = 12, 3


@pytest.fixture(scope="module")
def linear(tmp_path_factory):
    path = fx.linear_logits(tmp_path_factory.mktemp("lin") / "lin.onnx", n=N, c=C, seed=4)
    w = numpy_helper.to_array(onnx.load(path).graph.initializer[0]).astype(np.float64)
    return load_bundle(path, classifier_output="logits"), w


def probs64(w):
    return lambda z: softmax(np.asarray(z, np.float64) @ w)


def exact_grad(w_model, z, s0, j, scale, v, lam):
    """d/dv of the SPEC §3 loss for S = softmax(z W), written out by the chain rule."""
    w = np.tanh(v)
    zp, zm = z + scale * w, z - scale * w
    sp, sm = softmax(zp @ w_model), softmax(zm @ w_model)
    use_plus = np.abs(sp[:, j] - s0) >= np.abs(sm[:, j] - s0)
    ss, sign = np.where(use_plus[:, None], sp, sm), np.where(use_plus, 1, -1)
    grad_s = ss[:, j:j + 1] * (w_model[:, j][None] - ss @ w_model.T)  # dS_j/dz at z'
    d_w = -(np.sign(ss[:, j] - s0) * sign)[:, None] * scale * grad_s
    g = d_w.mean(0) * (1 - w * w)
    eps = 1e-6  # the regulariser by central differences, independent of regulariser_grad
    reg = np.array([(np.linalg.norm(np.tanh(v + eps * e)) - np.linalg.norm(np.tanh(v - eps * e))) / (2 * eps)
                    for e in np.eye(len(v))])
    return g + lam * reg


def test_loss_by_hand():
    s0, sp, sm = np.array([0.9, 0.6]), np.array([0.5, 0.7]), np.array([0.95, 0.1])
    w = np.array([0.6, 0.8])  # ||w|| = 1
    np.testing.assert_allclose(data_term(sp, sm, s0), [-0.4, -0.5])
    assert loss(sp, sm, s0, w, 0.2) == pytest.approx((-0.4 - 0.5) / 2 + 0.2)


def test_interventions():
    z = np.array([[1.0, -2.0, 4.0], [0.5, 0.5, 0.5]], np.float32)
    w = np.array([0.1, -0.2, 0.3], np.float32)
    a = intervention_scale(z, np.array([2.0, 3.0], np.float32), "paper")
    np.testing.assert_allclose(z + a * w, z + np.array([[2.0], [3.0]]) * w, rtol=1e-6)
    a = intervention_scale(z, np.zeros(2, np.float32), "authors")
    want = z * (1 + 10 * z.mean(1, keepdims=True) * w)  # the authors' z ⊙ (1 + 10 mean(z) w)
    np.testing.assert_allclose(z + a * w, want, rtol=1e-6)
    np.testing.assert_allclose(z - a * w, z * (1 - 10 * z.mean(1, keepdims=True) * w), rtol=1e-6)


def test_regulariser_gradient_matches_finite_differences():
    v = np.linspace(-1, 1.5, 7)
    eps = 1e-6
    fd = [(0.2 * np.linalg.norm(np.tanh(v + eps * e)) - 0.2 * np.linalg.norm(np.tanh(v - eps * e))) / (2 * eps)
          for e in np.eye(7)]
    np.testing.assert_allclose(regulariser_grad(v, 0.2), fd, rtol=1e-6, atol=1e-9)


def test_orthogonal_perturbations():
    u = perturbation_matrix(np.random.default_rng(0), 25, 10, "orthogonal")
    assert u.shape == (25, 10)
    np.testing.assert_allclose(u[:10] @ u[:10].T, 10 * np.eye(10), atol=1e-9)
    np.testing.assert_allclose(u[10:20] @ u[10:20].T, 10 * np.eye(10), atol=1e-9)
    g = perturbation_matrix(np.random.default_rng(0), 20000, 4, "gaussian")
    np.testing.assert_allclose(g.T @ g / len(g), np.eye(4), atol=0.05)


@pytest.mark.parametrize("objective", ["paper", "authors"])
def test_zeroth_order_gradient_matches_closed_form(linear, objective):
    _, w_model = linear
    rng = np.random.default_rng(1)
    z = rng.standard_normal((5, N)).astype(np.float32)
    j = 1
    s0 = softmax(z.astype(np.float64) @ w_model)[:, j]
    scale = intervention_scale(z, rng.uniform(2, 4, 5).astype(np.float32), objective)
    v = rng.uniform(-0.3, 0.8, N)
    want = exact_grad(w_model, z.astype(np.float64), s0, j, scale.astype(np.float64), v, 0.2)
    u = perturbation_matrix(rng, N, N, "orthogonal")  # P = N: central differences in a random basis
    got, lval = zo_gradient(probs64(w_model), z, s0, j, scale, v, u, 1e-4, 0.2)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-5)
    sp = softmax((z + scale * np.tanh(v)).astype(np.float32).astype(np.float64) @ w_model)[:, j]
    sm = softmax((z - scale * np.tanh(v)).astype(np.float32).astype(np.float64) @ w_model)[:, j]
    assert lval == pytest.approx(loss(sp, sm, s0, np.tanh(v).astype(np.float32), 0.2), rel=1e-5)
    many = perturbation_matrix(rng, 3000, N, "gaussian")
    est, _ = zo_gradient(probs64(w_model), z, s0, j, scale, v, many, 1e-3, 0.0)
    data = want - 0.2 * regulariser_grad(v, 1.0)
    assert est @ data / np.linalg.norm(est) / np.linalg.norm(data) > 0.95
    few = perturbation_matrix(rng, 2, N, "gaussian")
    est, _ = zo_gradient(probs64(w_model), z, s0, j, scale, v, few, 1e-3, 0.0)
    assert est @ data / np.linalg.norm(est) / np.linalg.norm(data) < 0.95  # the test can tell good from bad


@pytest.mark.parametrize("objective", ["paper", "authors"])
def test_per_code_gradient_matches_closed_form(linear, objective):
    _, w_model = linear
    rng = np.random.default_rng(2)
    j, b = 1, 200
    z = rng.standard_normal((b, N)).astype(np.float32)
    s0 = softmax(z.astype(np.float64) @ w_model)[:, j]
    scale = intervention_scale(z, rng.uniform(2, 4, b).astype(np.float32), objective)
    v = rng.uniform(-0.3, 0.8, N)
    want = exact_grad(w_model, z.astype(np.float64), s0, j, scale.astype(np.float64), v, 0.2)
    data = want - regulariser_grad(v, 0.2)

    def estimate(rows, p):
        u = np.stack([perturbation_matrix(rng, p, N, "orthogonal") for _ in rows])
        return zo_gradient_codes(probs64(w_model), z[rows], s0[rows], j, scale[rows], v, u, 1e-3, 0.2)

    got, lval = estimate(range(b), N)  # P = N: central differences per code
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=5e-5)
    _, ref = zo_gradient(probs64(w_model), z, s0, j, scale, v, np.eye(N), 1e-3, 0.2)
    assert lval == pytest.approx(ref, rel=1e-12)

    def cos(rows, p):
        g = estimate(rows, p)[0] - regulariser_grad(v, 0.2)
        if len(rows) < b:  # compare with the exact gradient of the same codes
            g_ref = exact_grad(w_model, z[rows].astype(np.float64), s0[rows], j, scale[rows].astype(np.float64), v,
                               0.0)
        else:
            g_ref = data
        return g @ g_ref / np.linalg.norm(g) / np.linalg.norm(g_ref)

    if objective == "authors":
        return  # its scale 10 mean(z) z flips sign between codes: their gradients largely cancel
    # two probes per code: the noise averages over the codes, so many codes with few probes
    # each give a good direction, and two codes with two probes do not
    assert min(cos(range(b), 2) for _ in range(3)) > 0.9
    assert max(cos(range(2), 2) for _ in range(3)) < 0.8


def test_cyclic_probes_span_the_space_per_code():
    stream = ProbeStream(np.random.default_rng(0), 10, 3, "cyclic")
    visits = [stream.take([4, 7])[0] for _ in range(10)]  # 30 rows per code: three bases
    assert visits[0].shape == (2, 3, 10)
    for code in (0, 1):
        rows = np.concatenate([v[code] for v in visits])
        for start in (0, 10, 20):
            basis = rows[start:start + 10]
            np.testing.assert_allclose(basis @ basis.T, 10 * np.eye(10), atol=1e-9)
        assert not np.allclose(rows[:10], rows[10:20])  # a fresh basis once one is used up
    assert not np.allclose(visits[0][0], visits[0][1])  # each code has its own basis
    iid = ProbeStream(np.random.default_rng(0), 10, 3, "orthogonal").take([4, 4, 4, 4])[0]
    assert abs(iid[0] @ iid[1].T).max() > 1e-3  # independent draws are not orthogonal to each other


def test_band_probes_allocation():
    assert band_probes(100, 4) == [(0, 10, 2), (10, 40, 1), (40, 100, 1)]
    assert band_probes(100, 8) == [(0, 10, 4), (10, 40, 2), (40, 100, 2)]
    assert band_probes(100, 5) == [(0, 10, 3), (10, 40, 1), (40, 100, 1)]
    assert band_probes(30, 3) == [(0, 10, 2), (10, 30, 1)]
    assert band_probes(6, 3) == [(0, 6, 3)]
    with pytest.raises(GridError, match="at least 3 perturbations"):
        band_probes(100, 2)


def test_banded_probes_are_unbiased_over_a_cycle():
    rng = np.random.default_rng(3)
    basis, _ = np.linalg.qr(rng.standard_normal((100, 100)))
    probes = ProbeStream(np.random.default_rng(0), 100, 4, basis=basis.T)
    # 60 visits use up the 60-row band once, the 30-row band twice and the 10-row band 12 times:
    # sum_p weight_p u_p u_p^T over them is then exactly 60 I (each band's projector, 60 times)
    total = np.zeros((100, 100))
    for _ in range(60):
        u, weight = probes.take([7, 2])
        assert u.shape == (2, 4, 100) and np.allclose(weight, [0.5, 0.5, 1.0, 1.0])
        total += np.einsum("p,pn,pm->nm", weight, u[0], u[0])
    np.testing.assert_allclose(total / 60, np.eye(100), atol=1e-9)
    # a probe of the first band lies in the span of the basis' first 10 rows, scaled by sqrt(10)
    u, _ = probes.take([7])
    inside = basis.T[:10] @ u[0, 0]
    assert np.linalg.norm(inside) == pytest.approx(np.sqrt(10))
    assert np.linalg.norm(u[0, 0]) == pytest.approx(np.sqrt(10))
    # without a basis: one band, the cyclic stream's isotropic probes
    with pytest.raises(GridError, match="cyclically"):
        ProbeStream(np.random.default_rng(0), 100, 4, "gaussian", basis=basis.T)
    flat = ProbeStream(np.random.default_rng(0), 10, 2, basis=None)
    assert flat.bands == [(0, 10, 2)]
    rows = np.concatenate([flat.take([0])[0][0] for _ in range(5)])
    np.testing.assert_allclose(rows @ rows.T, 10 * np.eye(10), atol=1e-9)


def test_banded_estimate_is_exact_for_a_linear_model_over_a_cycle(linear):
    _, w_model = linear  # N = 12: bands 0-9 and 10-11
    rng = np.random.default_rng(5)
    j, b = 0, 3
    z = rng.standard_normal((b, N)).astype(np.float32)
    s0 = softmax(z.astype(np.float64) @ w_model)[:, j]
    scale = intervention_scale(z, np.full(b, 3.0, np.float32), "paper")
    v = rng.uniform(-0.3, 0.8, N)
    want = exact_grad(w_model, z.astype(np.float64), s0, j, scale.astype(np.float64), v, 0.0)
    basis, _ = np.linalg.qr(rng.standard_normal((N, N)))
    probes = ProbeStream(np.random.default_rng(1), N, 3, basis=basis.T)
    assert probes.bands == [(0, 10, 2), (10, 12, 1)]
    visits = [probes.take(range(b)) for _ in range(10)]  # 2 cycles of the first band, 5 of the second
    got = np.mean([zo_gradient_codes(probs64(w_model), z, s0, j, scale, v, u, 1e-4, 0.0, weight)[0]
                   for u, weight in visits], axis=0)
    np.testing.assert_allclose(got, want, rtol=2e-3, atol=1e-6)


def test_schedule_visits_every_code_once_per_pass():
    s = Settings(batch_size=3, seed=5)
    sched = Schedule(7, s, 2)
    seen = [sched.next() for _ in range(3)]  # 3 + 3 + 1 = one pass
    assert sorted(np.concatenate([i for i, _ in seen]).tolist()) == list(range(7))
    assert [len(i) for i, _ in seen] == [3, 3, 1]
    xi = np.concatenate([x for _, x in seen])
    assert xi.min() >= 2 and xi.max() <= 4
    again = Schedule(7, s, 2)
    assert all(np.array_equal(a[0], again.next()[0]) for a in seen)


def test_optimize_follows_exact_gradient_descent(linear):
    bundle, w_model = linear
    kw = dict(iterations=25, batch_size=4, samples_per_class=6, perturbations=N, sigma=1e-4, seed=3, average=0.25)
    res = optimize(bundle, execution=CPU, **kw)
    # the same descent with the closed-form gradient, on the same codes, batches and xi
    s = Settings(**kw)
    sets, _ = code_sets(bundle, s, execution=CPU)
    for j in range(C):
        rows = np.flatnonzero(sets.labels == j)
        sched, v, ws = Schedule(len(rows), s, j), np.full(N, 0.5), []
        for _ in range(s.iterations):
            idx, xi = sched.next()
            z = sets.latents[rows][idx]
            scale = intervention_scale(z, xi, "paper").astype(np.float64)
            v = v - s.lr * exact_grad(w_model, z.astype(np.float64), sets.base[rows, j][idx].astype(np.float64), j,
                                      scale, v, s.lam)
            ws.append(np.tanh(v))
        np.testing.assert_allclose(res.w_last[j], np.tanh(v), atol=2e-4)
        np.testing.assert_allclose(res.w[j], np.mean(ws[-6:], axis=0), atol=2e-4)  # last quarter of 25 steps
    assert not np.allclose(res.w, np.tanh(0.5), atol=1e-3)  # it moved
    assert np.isfinite(res.loss).all() and res.loss.shape == (C, 25)


def test_optimize_is_deterministic_and_seeded(linear):
    bundle, _ = linear
    kw = dict(iterations=5, batch_size=4, samples_per_class=4, perturbations=4, execution=CPU)
    a, b = optimize(bundle, seed=1, **kw), optimize(bundle, seed=1, **kw)
    assert np.array_equal(a.w, b.w)
    assert not np.array_equal(a.w, optimize(bundle, seed=2, **kw).w)


def test_save_load_and_agreement(linear, tmp_path):
    bundle, _ = linear
    res = optimize(bundle, iterations=3, samples_per_class=4, perturbations=4, execution=CPU)
    res.save(tmp_path / "w.npz")
    back = OptimizedWeights.load(tmp_path / "w.npz")
    assert np.array_equal(back.w, res.w) and np.array_equal(back.w_last, res.w_last) and back.classes == res.classes
    assert back.settings["iterations"] == 3 and back.settings["method"] == "zeroth-order"
    assert json.loads(str(np.load(tmp_path / "w.npz")["settings"]))["lam"] == 0.2
    ag = agreement(res.w, res.w, k=3)
    assert ag["mean_overlap"] == 1.0 and ag["mean_cosine"] == pytest.approx(1.0)
    flipped = res.w.copy()
    flipped[0] = -flipped[0]
    assert agreement(res.w, flipped, k=3)["cosine"][0] == pytest.approx(1.0)  # the loss cannot see the sign
    ortho = agreement(np.array([[0.9, 0.1, 0.0]]), np.array([[-0.1, 0.9, 0.0]]), k=1)
    assert ortho["mean_cosine"] == pytest.approx(0.0, abs=1e-12) and ortho["mean_overlap"] == 0.0
    moved = agreement(res.w, np.tanh(0.5) + 2 * (res.w - np.tanh(0.5)), k=3, start=np.tanh(0.5))
    assert moved["mean_cosine_of_moves"] == pytest.approx(1.0)
    other = optimize(bundle, iterations=4, samples_per_class=4, perturbations=4, execution=CPU)
    same = compare_with(other, tmp_path / "w.npz", k=3)
    assert same["settings_differ"] == ["iterations"] and same["against"].endswith("w.npz")


def test_bad_settings_are_corrkit_errors(linear):
    from corrkit.errors import GridError

    with pytest.raises(GridError, match="objective"):
        optimize(linear[0], objective="other")
    with pytest.raises(GridError, match="iterations"):
        optimize(linear[0], iterations=0)
    with pytest.raises(GridError, match="average"):
        optimize(linear[0], average=1.0)


def test_too_few_probes_for_the_bands_is_a_one_line_error(bundle, tmp_path):
    r = runner.invoke(app, ["optimize", str(bundle.path), "--perturbations", "2", "--out", str(tmp_path / "w.npz")])
    assert r.exit_code == 1 and "needs at least 3 perturbations" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "w.npz").exists()
    # isotropic probes take any count
    assert optimize(bundle, estimator="codes", perturbations=2, iterations=1, samples_per_class=1, classes=[0],
                    execution=CPU).settings["probe_basis"] == "none"


def test_cli_writes_weights(linear, tmp_path):
    bundle, _ = linear
    out = tmp_path / "w.npz"
    r = runner.invoke(app, ["optimize", str(bundle.fused), "--output", "probabilities", "--out", str(out),
                            "--iterations", "2", "--perturbations", "3", "--device", "cpu", "--json"])
    # a logits model declared as probabilities is rejected with one line, before anything is written
    assert r.exit_code == 1 and "not probabilities" in r.output and not out.exists()
    for kind in ("logits", "auto"):  # declared, or read from prior samples (the default)
        r = runner.invoke(app, ["optimize", str(bundle.fused), "--output", kind, "--out", str(out), "--iterations",
                                "2", "--perturbations", "3", "--samples-per-class", "2", "--device", "cpu", "--json"])
        assert r.exit_code == 0, r.output
    summary = json.loads(r.output)
    assert np.load(out)["w"].shape == (C, N) and summary["settings"]["iterations"] == 2
    assert OptimizedWeights.load(out).settings["samples_per_class"] == 2
