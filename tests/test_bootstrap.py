"""SPEC §11 percentile bootstrap: coverage on contributions with a known mean, honest n = 1."""

import numpy as np

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
