"""Shards of the intervention grid whose partial sums merge exactly (SPEC §2).

float64 addition is not associative, so "add up the workers' sums" would give a
result that depends on where the grid was cut and on which worker finished first.
Every executor (one process, or a Ray cluster: :mod:`corrkit._core.distributed`) runs the
same canonical algorithm instead:

1. the flat grid (code-major order, :class:`corrkit._core.grid.Grid`) is cut into shards
   of ``shard_points`` points, a whole number of engine batches, starting at 0;
2. each shard's float64 sums start from zero and are accumulated batch by batch by
   :func:`corrkit.kernels.apcr.accumulate` (within a direction, in ascending grid order);
3. the run's sums are the fold ``total += shard`` in ascending shard order.

With the same batch size and shard size the two executors therefore agree bit for
bit, and a checkpoint holds the fold up to a shard boundary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from corrkit.errors import GridError
from corrkit._core.grid import Grid
from corrkit.kernels import apcr as kern

DEFAULT_SHARD_BATCHES = 16
SUM_KEYS = ("curves_sum", "apcr_sum", "up_sum", "down_sum", "contrib_sum", "curves_sq_sum")


def shard_size(batch_size: int, shard_points: int | None = None) -> int:
    """Points per shard: ``shard_points`` rounded up to whole batches (default 16 batches)."""
    if shard_points is None:
        return DEFAULT_SHARD_BATCHES * int(batch_size)
    if int(shard_points) != shard_points or shard_points < 1:
        raise GridError(f"--shard-points must be a whole number >= 1 (got {shard_points})")
    return -(-int(shard_points) // int(batch_size)) * int(batch_size)


def plan(n_points: int, size: int) -> list[tuple[int, int]]:
    """``[(p0, p1), ...]``: the shards of a grid of ``n_points`` points, in fold order."""
    return [(p0, min(p0 + size, n_points)) for p0 in range(0, n_points, size)]


@dataclass(frozen=True)
class ShardTask:
    """What a worker needs, besides its engine, to compute any shard of one run.

    Attributes
    ----------
    grid : Grid
    base : float32 [M, C]
        ``S(z)`` of each code (the ``k = 0`` point).
    labels : int64 [M]
        Class of each code.
    """

    grid: Grid
    base: np.ndarray
    labels: np.ndarray


def shard_sums(
    engine,
    task: ShardTask,
    p0: int,
    p1: int,
    progress: Callable[[int], None] | None = None,
    buf: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Float64 sums (:func:`corrkit.kernels.apcr.new_sums`, per-code sums included) of grid points
    ``p0 .. p1 - 1``, from zero.

    Batches of ``engine.batch_size`` rows start at ``p0``; ``progress(p)`` is called
    with the next grid index after each batch; ``buf`` (float32 ``[batch, N]``) is reused if given.
    """
    grid = task.grid
    n_dirs, n_cls = len(grid.directions), task.base.shape[1]
    sums = kern.new_sums(n_dirs, grid.steps, n_cls)
    # per-code sums of this shard's own codes only, from code `contrib_first` (fold puts them in place)
    per_code = n_dirs * 2 * grid.steps
    c_lo, c_hi = p0 // per_code, (max(p1, p0 + 1) - 1) // per_code
    sums.update(contrib_sum=np.zeros((n_dirs, c_hi - c_lo + 1)), contrib_first=c_lo,
                curves_sq_sum=np.zeros((n_dirs, 2 * grid.steps + 1, n_cls)))
    if buf is None:
        buf = np.empty((engine.batch_size, grid.latents.shape[1]), np.float32)
    for q0 in range(p0, p1, engine.batch_size):
        q1 = min(q0 + engine.batch_size, p1)
        z = grid.points(q0, q1, out=buf[: q1 - q0])
        code = np.arange(q0, q1) // per_code  # each point's code: bf16-delta runs the changes from it
        near = (grid.latents[code[0]:code[-1] + 1], code - code[0])
        probs = engine.probabilities(z, describe=lambda r, o=q0: grid.describe(o + r), near=near)
        kern.accumulate(sums, probs, q0, task.base, task.labels, grid.steps)
        if progress is not None:
            progress(q1)
    return sums


def fold(total: dict[str, np.ndarray], part: dict[str, np.ndarray]) -> None:
    """``total += part``, in place; called once per shard, in ascending shard order.

    A shard's ``contrib_sum`` covers its own codes, from ``contrib_first``: it is added into those
    columns of the run's ``[K, M]`` (a code's slots outside its shards stay the zeros they start as).
    """
    for key in SUM_KEYS:
        if key == "contrib_sum" and "contrib_first" in part:
            c0 = int(part["contrib_first"])
            total[key][:, c0:c0 + part[key].shape[1]] += part[key]
        else:
            total[key] += part[key]


def run_local(
    engine,
    task: ShardTask,
    shards: list[tuple[int, int]],
    first: int = 0,
    progress: Callable[[int], None] | None = None,
) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """Yield ``(shard index, sums)`` for shards ``first ..`` in order, computed in this process."""
    buf = np.empty((engine.batch_size, task.grid.latents.shape[1]), np.float32)
    for s in range(first, len(shards)):
        yield s, shard_sums(engine, task, *shards[s], progress=progress, buf=buf)
