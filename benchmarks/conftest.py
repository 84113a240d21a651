"""Benchmarks: `pytest benchmarks --benchmark-enable` (see benchmarks/RESULTS.md).

Every benchmark stores points per second in ``extra_info``; at the end the
session prints each group's rows as ratios to the group's reference row.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `tests.naive` twins

_ROWS: dict[str, list[tuple[str, float]]] = {}


@pytest.fixture
def record():
    def add(benchmark, group: str, name: str, points: int):
        pps = points / benchmark.stats.stats.min
        benchmark.extra_info["points_per_second"] = pps
        _ROWS.setdefault(group, []).append((name, pps))

    return add


def pytest_terminal_summary(terminalreporter):
    for group, rows in _ROWS.items():
        ref = rows[0][1]
        terminalreporter.write_line(f"\n{group}: per second (best round), ratio to '{rows[0][0]}'")
        for name, pps in rows:
            terminalreporter.write_line(f"  {name:55s} {pps:14,.0f}  x{pps / ref:6.2f}")
