"""`corrkit.apcr` against an independent slow reference, and its invariants."""

from __future__ import annotations

import numpy as np
import pytest

import corrkit
from corrkit._core.engine import Engine
from corrkit._core.execution import Execution
from corrkit._core.codesets import class_sets
from tests import naive

SMALL = dict(samples_per_class=2, steps=2, delta=0.75, threshold=0.5, seed=3)
CPU = Execution(device="cpu")


@pytest.fixture(scope="module")
def small_dirs():
    rng = np.random.default_rng(7)
    d = rng.normal(size=(4, 100))
    return (d / np.linalg.norm(d, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def small_run(bundle, small_dirs):
    return corrkit.apcr(bundle, directions=small_dirs, execution=CPU, **SMALL)


def test_matches_slow_reference(bundle, small_dirs, small_run):
    ref_fn = naive.TwoSessions(bundle)
    probs = naive.grid_probs(ref_fn, small_run.latents, small_dirs, SMALL["steps"], SMALL["delta"])
    want = naive.apcr_from_grid(probs, small_run.labels, 10, SMALL["steps"])
    for key in ("apcr", "up", "down", "curves"):
        np.testing.assert_allclose(getattr(small_run, key), want[key], rtol=1e-5, atol=1e-6, err_msg=key)


def test_class_sets_follow_the_rule(bundle, small_run):
    # independent: draw the same prior samples and apply SPEC §1 by hand
    ref_fn = naive.TwoSessions(bundle)
    z = np.random.default_rng(SMALL["seed"]).standard_normal((1024, 100)).astype(np.float32)
    p = ref_fn(z)
    want = []
    for j in range(10):
        hits = [r for r in range(len(z)) if p[r].argmax() == j and p[r, j] >= SMALL["threshold"]]
        want += hits[: SMALL["samples_per_class"]]
    np.testing.assert_array_equal(small_run.latents, z[want])
    assert small_run.counts.tolist() == [SMALL["samples_per_class"]] * 10
    assert (small_run.base[np.arange(len(small_run.labels)), small_run.labels] >= SMALL["threshold"]).all()


def test_batch_size_does_not_change_results(bundle, small_dirs, small_run):
    other = corrkit.apcr(bundle, directions=small_dirs, execution=Execution(device="cpu", batch_size=5), **SMALL)
    np.testing.assert_allclose(other.apcr, small_run.apcr, rtol=1e-5)
    np.testing.assert_allclose(other.curves, small_run.curves, rtol=1e-5, atol=1e-7)


def test_cpu_runs_are_bitwise_reproducible(bundle, small_dirs, small_run):
    again = corrkit.apcr(bundle, directions=small_dirs, execution=CPU, **SMALL)
    for key in ("apcr", "curves", "up", "down", "latents"):
        assert np.array_equal(getattr(again, key), getattr(small_run, key)), key


def test_fused_model_gives_same_result(tmp_path, bundle, small_dirs, small_run):
    import onnx

    path = tmp_path / "fused.onnx"
    onnx.save(bundle.fused_model(), path)  # z -> probabilities, declared as such
    fused = corrkit.apcr(str(path), directions=small_dirs, execution=CPU, **SMALL)
    np.testing.assert_allclose(fused.apcr, small_run.apcr, rtol=1e-6)


def test_user_latents_replace_prior(bundle, small_run):
    res = corrkit.apcr(bundle, latents=small_run.latents, steps=1, delta=0.5, samples_per_class=2, execution=CPU,
                       directions=np.eye(100, dtype=np.float32)[:3])
    np.testing.assert_array_equal(np.sort(res.latents, axis=0), np.sort(small_run.latents, axis=0))
    assert res.apcr.shape == (3, 10)


def test_unfillable_class_warns_and_counts(bundle):
    engine = Engine(bundle, device="cpu")
    with pytest.warns(UserWarning, match="could not fill"):
        sets = class_sets(engine, 10, n=200, tau=0.5, seed=0, max_draws=256)
    assert (sets.counts < 200).all() and sets.counts.sum() == len(sets.labels) > 0


def test_points_and_summary(small_run):
    s = small_run.summary()
    m, k = SMALL["steps"], 4
    assert s["points"] >= len(small_run.latents) * k * 2 * m
    assert set(s["top"]) == set(small_run.classes) and len(s["top"]["Trouser"]) == 4
    assert s["provider"] == "CPUExecutionProvider"


def test_fidelity_of_fp32_against_itself_is_perfect(bundle, small_run, small_dirs):
    from corrkit._core.codesets import CodeSets
    from corrkit.methods.sequential import fidelity

    e = Engine(bundle, device="cpu")
    sets = CodeSets(small_run.latents, small_run.labels, small_run.base, small_run.counts, 0)
    f = fidelity(e, e, sets, small_dirs, 1, 0.5, 0.5, codes_per_class=1, k=3)
    assert f["max_abs_delta_apcr"] == 0.0 and f["top3_overlap"] == [1.0] * 10
    assert f["reclassified"] == [0] * 10 and f["codes_compared"] == 10


def test_fidelity_compares_only_codes_fp32_puts_in_the_same_class(bundle, small_run, small_dirs):
    """A faster mode's class sets that fp32 disagrees with (here: labels moved by hand, same engine): the
    moved codes are counted per class and left out, classes with nothing left read ``None``, the rest
    compare exactly. Without this, fp32's ratio on a code it gives S_j ~ 0 was unbounded (21.4 seen)."""
    from corrkit._core.codesets import CodeSets
    from corrkit.methods.sequential import fidelity

    e = Engine(bundle, device="cpu")
    labels = small_run.labels.copy()
    c3, c4 = labels == 3, labels == 4
    labels[c3], labels[c4] = 4, 3  # every code of classes 3 and 4 now sits in the other's set
    labels[np.flatnonzero(labels == 1)[0]] = 2  # and one of class 1's in class 2
    sets = CodeSets(small_run.latents, labels, small_run.base, small_run.counts, 0)
    f = fidelity(e, e, sets, small_dirs, 1, 0.5, SMALL["threshold"], codes_per_class=2, k=3)
    assert f["reclassified"] == [0, 0, 1, int(c4.sum()), int(c3.sum()), 0, 0, 0, 0, 0]
    assert f["top3_overlap"] == [1.0, 1.0, 1.0, None, None, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert f["max_abs_delta_apcr"] == 0.0 and f["min_top3_overlap"] == 1.0
    assert f["codes_compared"] == 2 * 8 - 1  # class 1 lost one of its two codes
    labels[:] = (small_run.labels + 1) % 10  # nothing in its class: nothing measured, nothing made up
    f = fidelity(e, e, CodeSets(small_run.latents, labels, small_run.base, small_run.counts, 0),
                 small_dirs, 1, 0.5, SMALL["threshold"])
    assert f["codes_compared"] == 0 and f["max_abs_delta_apcr"] is None and f["min_top4_overlap"] is None


def test_int8_mode_quantizes_convs_and_reports_fidelity(bundle, small_dirs):
    e = Engine(bundle, device="cpu", mode="int8")
    ops = [n.op_type for n in e.model.graph.node]
    assert ops.count("QuantizeLinear") > 0 and ops.count("DequantizeLinear") > 0
    z = np.random.default_rng(0).standard_normal((64, 100)).astype(np.float32)
    p8, p32 = e.probabilities(z), Engine(bundle, device="cpu").probabilities(z)
    assert np.abs(p8 - p32).mean() < 0.05 and (p8.argmax(1) == p32.argmax(1)).mean() >= 0.8
    r = corrkit.apcr(bundle, directions=small_dirs, execution=Execution(device="cpu", mode="int8"),
                     samples_per_class=2, steps=1)
    fid = r.params["fidelity"]
    assert r.params["mode"] == "int8" and 0 < fid["max_abs_delta_apcr"] < 1 and len(fid["top4_overlap"]) == 10


def test_int8_on_a_users_logits_pair_compares_codes_fp32_agrees_on(tmp_path):
    """``corrkit apcr --generator G.onnx --classifier Q.onnx --mode int8`` on a user's RGB ConvTranspose pair
    (logits out, ``torch.onnx.export`` defaults): int8 puts some codes in classes fp32 gives them ~0 probability,
    so the run's fidelity check counts those per class (recounted here with fp32 by hand) and its max |dAPCR|
    stays within APCR's bound 1/tau (SPEC §2) instead of dividing by fp32's ~0 (it read 21.4)."""
    import json

    torch = pytest.importorskip("torch")
    from typer.testing import CliRunner

    from corrkit._core.bundle import from_pair
    from corrkit.cli.main import app
    from tests.user_models import torch_dcgan

    g, q = torch_dcgan(torch, 5, spread=True)
    gp, qp = tmp_path / "G.onnx", tmp_path / "Q.onnx"
    with torch.no_grad():
        torch.onnx.export(g, (torch.randn(2, 16, 1, 1),), str(gp))
        torch.onnx.export(q, (torch.randn(2, 3, 32, 32),), str(qp))
    r = CliRunner().invoke(app, ["apcr", "--generator", str(gp), "--classifier", str(qp), "--samples-per-class", "4",
                                 "--mode", "int8", "--device", "cpu", "--out", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    fid, tau = s["params"]["fidelity"], s["params"]["threshold"]
    run = np.load(tmp_path / "run" / "apcr.npz")
    p32 = Engine(from_pair(str(gp), str(qp)), device="cpu").probabilities(run["latents"])
    own = p32[np.arange(len(p32)), run["labels"]]
    moved = ~((own >= tau) & (p32.argmax(1) == run["labels"]))
    assert fid["reclassified"] == np.bincount(run["labels"][moved], minlength=5).tolist() and moved.any()
    assert fid["max_abs_delta_apcr"] <= 1 / tau
    assert f"{int(moved.sum())} of the run's codes are not in their class under fp32" in " ".join(r.output.split())
