"""The canonical shard plan: shards of whole batches, partial sums from zero, folded in shard order."""

from __future__ import annotations

import numpy as np
import pytest

import corrkit
from corrkit._core import shards
from corrkit._core.engine import Engine
from corrkit._core.execution import Execution
from corrkit.errors import GridError
from corrkit._core.grid import Grid
from corrkit.kernels import apcr as kern

KW = dict(samples_per_class=2, steps=2, delta=0.75, seed=3)


def cpu(**kw) -> Execution:
    return Execution(device="cpu", batch_size=16, **kw)


@pytest.fixture(scope="module")
def run(bundle, dirs):
    return corrkit.apcr(bundle, directions=dirs, execution=cpu(shard_points=32), **KW)


def test_shard_size_is_whole_batches():
    assert shards.shard_size(16) == 16 * shards.DEFAULT_SHARD_BATCHES
    assert shards.shard_size(16, 32) == 32 and shards.shard_size(16, 33) == 48 and shards.shard_size(16, 1) == 16
    for bad in (0, -5, 2.5):
        with pytest.raises(GridError, match="shard-points"):
            shards.shard_size(16, bad)


def test_plan_covers_the_grid_once_in_order():
    cuts = shards.plan(100, 32)
    assert cuts == [(0, 32), (32, 64), (64, 96), (96, 100)]
    assert shards.plan(0, 32) == []


def _shard_parts(bundle, run, dirs, size):
    engine = Engine(bundle, device="cpu", batch_size=16)
    task = shards.ShardTask(Grid(run.latents, dirs, 2, 0.75), run.base, run.labels)
    return [part for _, part in shards.run_local(engine, task, shards.plan(task.grid.n_points, size))]


def _fold(parts, dirs):
    width = max(int(p["contrib_first"]) + p["contrib_sum"].shape[1] for p in parts)  # the run's M codes
    total = kern.new_sums(len(dirs), 2, 10, width)
    for part in parts:
        shards.fold(total, part)
    return total


def test_apcr_is_the_in_order_fold_of_its_shards(bundle, run, dirs):
    parts = _shard_parts(bundle, run, dirs, 32)
    assert len(parts) == run.params["executor"]["shards"] == 15
    fin = kern.finalize(_fold(parts, dirs), run.base, run.labels, 2)
    for key in ("apcr", "curves", "up", "down", "contributions"):
        assert np.array_equal(fin[key], getattr(run, key)), key


def test_fold_order_matters_so_it_is_fixed(bundle, dirs):
    # Why the fold order is part of the algorithm: float64 addition is not associative, so
    # with many shards per sum slot, folding the same shards backwards changes the last bits.
    engine = Engine(bundle, device="cpu", batch_size=16)
    z = np.random.default_rng(0).standard_normal((60, 100)).astype(np.float32)
    task = shards.ShardTask(Grid(z, dirs, 2, 0.75), engine.probabilities(z), np.arange(60) % 10)
    parts = [p for _, p in shards.run_local(engine, task, shards.plan(task.grid.n_points, 16))]
    forward, backward = _fold(parts, dirs), _fold(parts[::-1], dirs)
    np.testing.assert_allclose(forward["curves_sum"], backward["curves_sum"], rtol=1e-12)
    assert any(not np.array_equal(forward[k], backward[k]) for k in shards.SUM_KEYS)


def test_shard_size_is_recorded_and_moves_at_most_the_last_bits(bundle, run, dirs):
    other = corrkit.apcr(bundle, directions=dirs, execution=cpu(shard_points=64), **KW)
    assert other.params["shard_points"] == 64 and run.params["shard_points"] == 32
    np.testing.assert_allclose(other.apcr, run.apcr, rtol=1e-12)
    np.testing.assert_allclose(other.curves, run.curves, rtol=1e-12, atol=1e-15)


def test_shard_slices_of_per_code_sums_fold_to_the_one_shard_whole(bundle, run, dirs):
    """Each shard keeps the per-code sums of its own codes only (from ``contrib_first``); folded into place
    they equal one shard over the whole grid holding every code, bit for bit (a code's slot adds its points in
    grid order either way); the class sums of squares agree to the last bits (their fold order differs)."""
    small = _shard_parts(bundle, run, dirs, 32)
    assert all(p["contrib_sum"].shape[1] <= 2 for p in small)  # a 32-point shard touches at most 2 codes
    one = _shard_parts(bundle, run, dirs, 10**9)
    assert len(one) == 1 and one[0]["contrib_first"] == 0 and one[0]["contrib_sum"].shape[1] == len(run.labels)
    folded, whole = _fold(small, dirs), _fold(one, dirs)
    assert np.array_equal(folded["contrib_sum"], whole["contrib_sum"])
    np.testing.assert_allclose(folded["curves_sq_sum"], whole["curves_sq_sum"], rtol=1e-12)
