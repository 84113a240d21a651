"""Peak RSS of `corrkit apcr` when the grid grows tenfold (the grid is streamed, never held)."""

from __future__ import annotations

import json
import subprocess
import sys

CODE = """
import json, resource, sys, corrkit
n = int(sys.argv[1])
r = corrkit.apcr(samples_per_class=n, steps=1, execution=corrkit.Execution(device="cpu"))
print(json.dumps({"points": r.points, "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def _run(n: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CODE, str(n)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_peak_rss_grid_x10(benchmark):
    small = _run(2)
    big = benchmark.pedantic(_run, args=(20,), rounds=1, iterations=1)
    growth = big["maxrss_kb"] / small["maxrss_kb"] - 1
    benchmark.extra_info.update(small=small, big=big, rss_growth=growth)
    print(f"\\npeak RSS: {small['points']:,} points {small['maxrss_kb'] / 1024:.1f} MiB; "
          f"{big['points']:,} points {big['maxrss_kb'] / 1024:.1f} MiB; growth {growth * 100:.1f}%")
