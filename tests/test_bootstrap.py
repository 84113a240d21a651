"""SPEC §11 percentile bootstrap: coverage on contributions with a known mean, honest n = 1."""

import numpy as np
import pytest

from corrkit.methods.bootstrap import bootstrap_apcr


def test_coverage_on_known_mean():
    # per-code contributions ~ Exponential(mean mu_i): the population APCR is mu_i by construction
    rng = np.random.default_rng(1)
    mu = np.array([0.05, 0.2, 1.0])
    n, reps, hit = 32, 200, np.zeros(3)
    for r in range(reps):
        x = rng.exponential(mu[:, None], size=(3, n))
        out = bootstrap_apcr(x, np.zeros(n, np.int64), 1, top=1, seed=r)
        hit += (out["lo"][:, 0] <= mu) & (mu <= out["hi"][:, 0])
    assert (hit / reps >= 0.90).all(), hit / reps


def test_point_value_is_class_mean_and_intervals_bracket_it():
    rng = np.random.default_rng(2)
    x = rng.random((5, 40))
    labels = np.repeat([0, 1], 20)
    out = bootstrap_apcr(x, labels, 3, top=2)
    np.testing.assert_allclose(out["apcr"][:, 0], x[:, :20].mean(1), rtol=1e-12)
    np.testing.assert_allclose(out["apcr"][:, 1], x[:, 20:].mean(1), rtol=1e-12)
    assert ((out["lo"][:, :2] <= out["apcr"][:, :2]) & (out["apcr"][:, :2] <= out["hi"][:, :2])).all()
    assert (out["hi"][:, :2] - out["lo"][:, :2] > 0).all()
    assert np.isnan(out["apcr"][:, 2]).all() and (out["top"][2] == -1).all()  # class without codes


def test_one_code_per_class_is_wide_not_zero():
    x = np.array([[0.3, 0.1], [0.2, 0.4]])
    out = bootstrap_apcr(x, np.array([0, 1]), 2, top=1)
    assert (out["lo"] == 0).all() and np.isinf(out["hi"]).all()
    assert np.isnan(out["inclusion"]).all()


def test_inclusion_probability_separates_clear_and_tied_members():
    rng = np.random.default_rng(3)
    n = 30
    # dim 0 far ahead; dims 1 and 2 equal in distribution and competing for the second place
    x = np.vstack([5 + rng.random(n), 1 + rng.random(n), 1 + rng.random(n), rng.random(n) * 0.1])
    out = bootstrap_apcr(x, np.zeros(n, np.int64), 1, top=2, samples=500)
    assert out["top"][0, 0] == 0 and out["inclusion"][0, 0] == 1.0
    assert 0.05 < out["inclusion"][0, 1] < 0.95  # a coin flip, not certainty


def test_seeded_and_deterministic():
    x = np.random.default_rng(4).random((4, 10))
    a = bootstrap_apcr(x, np.zeros(10, np.int64), 1, seed=7)
    b = bootstrap_apcr(x, np.zeros(10, np.int64), 1, seed=7)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_a_run_keeps_contributions_and_reports_their_intervals(tmp_path):
    """End to end on the built-in bundle: the kernel's per-code contributions average to the run's APCR,
    summary.json's intervals are the bootstrap of those contributions, and they survive a save and load."""
    import json

    from corrkit.methods.sequential import APCRResult, apcr

    run = apcr(None, directions=np.eye(100, dtype=np.float32)[:12], samples_per_class=3, steps=1, out=tmp_path)
    assert run.contributions.shape == (12, len(run.labels))
    for j in range(10):
        np.testing.assert_allclose(run.contributions[:, run.labels == j].mean(1), run.apcr[:, j], rtol=1e-12)
    want = bootstrap_apcr(run.contributions, run.labels, 10, top=10, point=run.apcr)
    s = json.loads((tmp_path / "summary.json").read_text())
    for j, name in enumerate(run.classes):
        rows = s["intervals"]["top"][name]
        assert [r["direction"] for r in rows] == [t["direction"] for t in s["top"][name]] == want["top"][j].tolist()
        np.testing.assert_allclose([r["lo"] for r in rows], want["lo"][want["top"][j], j], atol=1e-6)
        np.testing.assert_allclose([r["inclusion"] for r in rows], want["inclusion"][j])
    loaded = APCRResult.load(tmp_path)
    assert np.array_equal(loaded.contributions, run.contributions) and np.array_equal(loaded.apcr_hi, run.apcr_hi)


def test_one_code_per_class_run_says_unbounded(tmp_path):
    import json

    from corrkit.methods.sequential import apcr

    apcr(None, directions=np.eye(100, dtype=np.float32)[:4], samples_per_class=1, steps=1, out=tmp_path)
    rows = [r for v in json.loads((tmp_path / "summary.json").read_text())["intervals"]["top"].values() for r in v]
    assert all(r["lo"] == 0 and r["hi"] is None and r["inclusion"] is None for r in rows)


def test_share_intervals_cover_a_known_rate():
    from corrkit.methods.bootstrap import resample_weights, share_intervals

    rng = np.random.default_rng(5)
    p, n, hit, hit_pooled = np.array([0.2, 0.6]), 40, np.zeros(2), 0
    labels = np.repeat([0, 1], n)
    for r in range(200):
        flips = [rng.random(n) < p[0], rng.random(n) < p[1]]
        each, pooled = share_intervals(flips, resample_weights(labels, 2, seed=r))
        hit += [lo <= q <= hi for (lo, hi), q in zip(each, p)]
        hit_pooled += pooled[0] <= p.mean() <= pooled[1]
    assert (hit / 200 >= 0.9).all() and hit_pooled / 200 >= 0.9, (hit, hit_pooled)
    each, pooled = share_intervals([np.ones(1), None], resample_weights(np.array([0]), 2))
    assert each == [(0.0, 1.0), None] and pooled is None  # one code: [0, 1], and the pool has no interval


def test_a_share_with_no_spread_gets_the_exact_interval_not_zero_width():
    from corrkit.methods.bootstrap import resample_weights, share_intervals

    labels = np.repeat([0, 1], [8, 20])
    each, pooled = share_intervals([np.zeros(8), np.ones(20)], resample_weights(labels, 2))
    # Clopper-Pearson at 0/8 and 20/20: 1 - 0.025**(1/8) = 0.369, 0.025**(1/20) = 0.832
    assert each[0] == (0.0, pytest.approx(0.3694, abs=1e-4)) and each[1] == (pytest.approx(0.8316, abs=1e-4), 1.0)
    assert pooled == (pytest.approx(20 * 0.8316 / 28, abs=1e-4), pytest.approx((8 * 0.3694 + 20) / 28, abs=1e-4))
    each, pooled = share_intervals([np.zeros(8), np.zeros(20)], resample_weights(labels, 2))
    assert pooled[0] == 0 and pooled[1] == pytest.approx((8 * each[0][1] + 20 * each[1][1]) / 28)
