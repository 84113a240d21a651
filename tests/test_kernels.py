"""Numba kernels against their NumPy twins (tests/naive.py)."""

from __future__ import annotations

import numpy as np
import pytest

from corrkit.kernels import apcr as kern
from corrkit.kernels import ranking
from tests import naive


def _random_case(rng, n_codes=7, n_dirs=5, m=2, n_cls=4):
    probs = rng.dirichlet(np.ones(n_cls), size=(n_codes, n_dirs, 2 * m + 1)).astype(np.float32)
    # the k = 0 point is the same for every direction
    probs[:, :, m, :] = probs[:, :1, m, :]
    labels = rng.integers(0, n_cls, n_codes)
    return probs, labels


@pytest.mark.parametrize("batch", [1, 3, 16, 10_000])
def test_accumulate_matches_numpy_twin_for_any_batch(rng, batch):
    m, n_cls = 2, 4
    probs, labels = _random_case(rng, m=m, n_cls=n_cls)
    base = probs[:, 0, m, :]
    flat = naive.flat_grid_probs(probs, m)
    sums = kern.new_sums(probs.shape[1], m, n_cls)
    for p0 in range(0, len(flat), batch):
        kern.accumulate(sums, flat[p0:p0 + batch], p0, base, labels, m)
    got = kern.finalize(sums, base, labels, m)
    want = naive.apcr_from_grid(probs.astype(np.float64), labels, n_cls, m)
    for key in ("apcr", "up", "down", "curves"):
        np.testing.assert_allclose(got[key], want[key], rtol=1e-6, atol=1e-7, err_msg=key)
    np.testing.assert_array_equal(got["counts"], np.bincount(labels, minlength=n_cls))


@pytest.mark.parametrize("batch", [1, 5, 10_000])
def test_per_code_sums_match_numpy_twin(rng, batch):
    m, n_cls = 2, 4
    probs, labels = _random_case(rng, n_codes=9, m=m, n_cls=n_cls)
    base = probs[:, 0, m, :]
    flat = naive.flat_grid_probs(probs, m)
    sums = kern.new_sums(probs.shape[1], m, n_cls, len(labels))
    for p0 in range(0, len(flat), batch):
        kern.accumulate(sums, flat[p0:p0 + batch], p0, base, labels, m)
    got = kern.finalize(sums, base, labels, m)
    want = naive.per_code_from_grid(probs.astype(np.float64), labels, n_cls, m)
    np.testing.assert_allclose(got["contributions"], want["contributions"], rtol=1e-6)
    np.testing.assert_allclose(got["curves_sd"], want["curves_sd"], rtol=1e-5, atol=1e-6)
    for j in np.unique(labels):  # APCR is the class mean of the contributions
        np.testing.assert_allclose(got["contributions"][:, labels == j].mean(1), got["apcr"][:, j], rtol=1e-12)


def test_accumulate_is_bitwise_independent_of_batch_size(rng):
    m = 3
    probs, labels = _random_case(rng, n_codes=11, n_dirs=6, m=m, n_cls=5)
    base, flat = probs[:, 0, m, :], naive.flat_grid_probs(probs, m)
    results = []
    for batch in (1, 7, 64, len(flat)):
        sums = kern.new_sums(6, m, 5, len(labels))
        for p0 in range(0, len(flat), batch):
            kern.accumulate(sums, flat[p0:p0 + batch], p0, base, labels, m)
        results.append(sums)
    for other in results[1:]:
        for key in results[0]:
            assert np.array_equal(results[0][key], other[key]), key


def test_empty_class_gives_nan_and_zero_count(rng):
    m = 1
    probs, _ = _random_case(rng, n_codes=4, n_dirs=2, m=m, n_cls=3)
    labels = np.array([0, 0, 2, 2])
    sums = kern.new_sums(2, m, 3)
    kern.accumulate(sums, naive.flat_grid_probs(probs, m), 0, probs[:, 0, m], labels, m)
    got = kern.finalize(sums, probs[:, 0, m], labels, m)
    assert got["counts"].tolist() == [2, 0, 2]
    assert np.isnan(got["apcr"][:, 1]).all() and np.isfinite(got["apcr"][:, [0, 2]]).all()


def test_one_element_grid_hand_computed():
    # one code of class 0, one direction, m = 1: S_0 goes 0.5 -> 0.25 (k=-1) and 0.75 (k=+1)
    base = np.array([[0.5, 0.5]], np.float32)
    flat = np.array([[0.25, 0.75], [0.75, 0.25]], np.float32)
    sums = kern.new_sums(1, 1, 2)
    kern.accumulate(sums, flat, 0, base, np.array([0]), 1)
    got = kern.finalize(sums, base, np.array([0]), 1)
    assert got["apcr"][0, 0] == pytest.approx(0.5)  # mean(|0.25-0.5|, |0.75-0.5|) / 0.5
    assert got["up"][0, 0] == pytest.approx(0.25) and got["down"][0, 0] == pytest.approx(-0.25)
    np.testing.assert_allclose(got["curves"][0, :, 0, 0], [0.25, 0.5, 0.75])


def test_accumulate_rejects_rows_outside_grid(rng):
    sums = kern.new_sums(2, 1, 3)
    with pytest.raises(ValueError):
        kern.accumulate(sums, np.full((5, 3), 1 / 3, np.float32), 0, np.full((1, 3), 1 / 3, np.float32),
                        np.array([0]), 1)


@pytest.mark.parametrize("shape", [(1, 1), (100, 10), (7, 3)])
def test_rank_matches_twin_with_ties_and_nan(rng, shape):
    scores = rng.integers(0, 4, size=shape).astype(np.float64)  # many ties
    scores[rng.random(shape) < 0.1] = np.nan
    np.testing.assert_array_equal(ranking.rank(scores), naive.rank(scores))


def test_top_k_and_threshold_match_twin(rng):
    scores = rng.gamma(1.0, size=(100, 10))
    assert ranking.top_k(scores, 10).shape == (10, 10)
    np.testing.assert_array_equal(ranking.top_k(scores, 10), naive.rank(scores)[:10].T)
    for s in (0.0, 1.0, 2.5):
        np.testing.assert_array_equal(ranking.threshold_mask(scores, s), naive.threshold_mask(scores, s))
    with pytest.raises(ValueError):
        ranking.top_k(scores, 0)


def test_rank_single_thread_equals_parallel(rng):
    import numba

    scores = rng.normal(size=(50, 8))
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = ranking.rank(scores)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(one, ranking.rank(scores))
