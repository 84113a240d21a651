"""One batch on several onnxruntime CPU sessions at once: each takes a contiguous part of the rows.

A generator's graph is a chain of convolutions and of data-movement nodes (interleaves,
layout reorders, activations) that take a millisecond or less each. One session with two
intra-op threads splits every node between them and joins after it; two single-thread
sessions on the two halves of the batch run the whole chain each without meeting. On 2
cores ``apcr`` ran 1.07–1.16× (medians) as many points per second on lanes as on one
two-thread session on the 64–256-px DCGANs, 1.08× on the built-in bundle
(benchmarks/RESULTS.md, the lanes A/B). The rows a call returns do not depend on how they
were split (every lane runs the same graph, and a row's arithmetic does not depend on the
rows beside it), so lanes change the speed, not the result: ``test_lanes.py`` holds them
to the one-session answer.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

MAX_LANES = 2  # measured on 2 cores only: on more cores, 2 lanes of several threads each (more lanes unmeasured)
MIN_LANE_ROWS = 2  # a call with fewer rows per lane runs on the first lane alone


def default_lanes(threads: int) -> int:
    """Lanes for ``threads`` onnxruntime threads: 2 from 2 threads up, else 1."""
    return max(1, min(MAX_LANES, int(threads)))


def lane_threads(threads: int, lanes: int) -> list[int]:
    """Intra-op threads of each lane: ``threads`` shared out, at least 1 each."""
    base, extra = divmod(max(int(threads), lanes), lanes)
    return [base + (i < extra) for i in range(lanes)]


class Lanes:
    """A drop-in for one ``onnxruntime.InferenceSession``'s ``run``: rows split across ``sessions``.

    Every session must hold the same graph. Row ``r`` of every output is the row ``r`` that
    one session would return; a call of fewer than ``MIN_LANE_ROWS`` rows per lane runs whole
    on the first session.
    """

    def __init__(self, sessions: list, feed: str):
        self.sessions, self.feed = list(sessions), feed
        self._pool: ThreadPoolExecutor | None = None
        self._pid = None

    def get_providers(self) -> list[str]:
        return self.sessions[0].get_providers()

    def get_inputs(self):
        return self.sessions[0].get_inputs()

    def get_outputs(self):
        return self.sessions[0].get_outputs()

    def _executor(self) -> ThreadPoolExecutor:
        # a forked child has none of its parent's worker threads: it starts its own
        if self._pool is None or self._pid != os.getpid():
            self._pool, self._pid = ThreadPoolExecutor(len(self.sessions) - 1, thread_name_prefix="corrkit-lane"), \
                os.getpid()
        return self._pool

    def run(self, names, feeds: dict) -> list[np.ndarray]:
        x = feeds[self.feed]
        lanes = min(len(self.sessions), len(x) // MIN_LANE_ROWS)
        if lanes <= 1:
            return self.sessions[0].run(names, feeds)
        cuts = np.linspace(0, len(x), lanes + 1).round().astype(int)
        parts = [{**feeds, self.feed: x[a:b]} for a, b in zip(cuts[:-1], cuts[1:])]
        pool = self._executor()
        futures = [pool.submit(s.run, names, f) for s, f in zip(self.sessions[1:lanes], parts[1:])]
        first = self.sessions[0].run(names, parts[0])
        rest = [f.result() for f in futures]  # a lane's error is raised here, as its own session raised it
        return [np.concatenate([o, *(r[i] for r in rest)]) for i, o in enumerate(first)]
