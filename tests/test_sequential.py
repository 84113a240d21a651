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
    f = fidelity(e, e, sets, small_dirs, 1, 0.5, codes_per_class=1, k=3)
    assert f["max_abs_delta_apcr"] == 0.0 and f["top3_overlap"] == [1.0] * 10


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
