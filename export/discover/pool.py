"""The three trainings side by side, each in a spawned worker process (``DiscoverSettings.workers > 1``).

Each worker runs :func:`corrkit.export.discover.train.train_method` and writes its
own checkpoint, so a killed run resumes as a sequential one would; progress comes
back through a queue.
"""

from __future__ import annotations

import torch

from corrkit.export.discover.settings import METHODS, DiscoverSettings
from corrkit.export.discover.train import train_method

_PROGRESS = None  # in a worker process: the queue its trainings report progress to


def _worker_init(queue, threads: int) -> None:
    """Start of a worker process: its torch threads, its progress queue, and Ctrl-C left to the parent.

    The parent stops the workers on Ctrl-C (their checkpoints are written atomically), so a
    terminal's interrupt does not print a traceback per worker.
    """
    import signal

    global _PROGRESS
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)
    _PROGRESS = queue


def _train_one(G, latent_dim: int, s: DiscoverSettings, method: str, checkpoint):
    """:func:`train_method` in a worker process; progress goes back through the worker's queue."""

    def progress(stage, done, total):
        if done % 10 == 0 or done == total:
            try:
                _PROGRESS.put((stage, done, total))
            except (OSError, ValueError):  # the parent has gone; training goes on to its checkpoint
                pass

    return train_method(G, latent_dim, s, method, checkpoint, progress=progress if _PROGRESS is not None else None)


def train_in_processes(G, latent_dim: int, s: DiscoverSettings, checkpoints: dict, progress=None) -> dict:
    """The three trainings in ``s.workers`` spawned processes of ``s.threads // s.workers`` threads each.

    ``learned`` (the slowest) is submitted first. Each process logs to stderr and writes
    its own checkpoint, so a killed run resumes as a sequential one would; results are
    those of a sequential run with the same threads per training.
    """
    import multiprocessing as mp
    import queue as _queue
    from concurrent.futures import ProcessPoolExecutor, wait

    ctx = mp.get_context("spawn")  # not fork: the parent's OpenMP threads do not survive a fork
    workers = min(s.workers, len(METHODS))
    reports = ctx.Queue() if progress is not None else None
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init,
                               initargs=(reports, max(1, s.threads // workers)))
    try:
        futures = {pool.submit(_train_one, G, latent_dim, s, m, checkpoints[m]): m for m in METHODS}
        pending = set(futures)
        while pending:
            _, pending = wait(pending, timeout=0.5)
            while reports is not None:
                try:
                    progress(*reports.get_nowait())
                except _queue.Empty:
                    break
        return {futures[f]: f.result() for f in futures}
    except BaseException:  # Ctrl-C or a failed training: stop the others (checkpoints are atomic)
        for proc in list(getattr(pool, "_processes", {}).values()):
            proc.terminate()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
