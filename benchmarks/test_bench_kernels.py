"""Numba kernels against their NumPy twins (tests/naive.py): rows reduced per second."""

from __future__ import annotations

import numpy as np
import pytest

from corrkit.kernels import apcr as kern
from corrkit.kernels import ranking
from tests import naive

M, K, STEPS, C = 64, 100, 3, 10


@pytest.fixture(scope="module")
def grid():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(C), size=(M, K, 2 * STEPS + 1)).astype(np.float32)
    probs[:, :, STEPS] = probs[:, :1, STEPS]
    labels = rng.integers(0, C, M)
    return probs, labels, naive.flat_grid_probs(probs, STEPS), probs[:, 0, STEPS]


def test_numpy_twin_accumulate(benchmark, grid, record):
    probs, labels, _, _ = grid
    benchmark.pedantic(naive.apcr_from_grid, args=(probs.astype(np.float64), labels, C, STEPS), rounds=1,
                       iterations=1)
    record(benchmark, "APCR reduction (grid rows)", "NumPy twin (tests/naive.py)", M * K * 2 * STEPS)


def test_numba_accumulate(benchmark, grid, record):
    _, labels, flat, base = grid

    def run():
        sums = kern.new_sums(K, STEPS, C)
        for p0 in range(0, len(flat), 256):
            kern.accumulate(sums, flat[p0:p0 + 256], p0, base, labels, STEPS)
        return kern.finalize(sums, base, labels, STEPS)

    run()
    benchmark.pedantic(run, rounds=5, iterations=1)
    record(benchmark, "APCR reduction (grid rows)", "Numba kernel, batches of 256", M * K * 2 * STEPS)


def test_numpy_twin_rank(benchmark, record):
    scores = np.random.default_rng(1).normal(size=(512, C))
    benchmark.pedantic(naive.rank, args=(scores,), rounds=3, iterations=1)
    record(benchmark, "ranking (dims x classes)", "NumPy twin", scores.size)


def test_numba_rank(benchmark, record):
    scores = np.random.default_rng(1).normal(size=(512, C))
    ranking.rank(scores)
    benchmark.pedantic(ranking.rank, args=(scores,), rounds=20, iterations=5)
    record(benchmark, "ranking (dims x classes)", "Numba kernel", scores.size)
