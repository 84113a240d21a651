"""`corrkit bench`: corrkit against the raw session and PyTorch on a bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from corrkit.cli import _common as c

app = typer.Typer()


@app.command("bench")
@c.handles_errors
@c.checks_options("bench")
def bench(model: Optional[Path] = c.ModelArg, device: str = c.DeviceOpt,
          batch_size: int = typer.Option(256, help="Rows per call for every path."),
          quick: bool = typer.Option(False, help="Shorter timing windows."),
          json_out: bool = c.JsonOpt):
    """Points per second of every path, side by side in one run, with ratios to the raw session."""
    from corrkit._core.bench import compare
    from corrkit._core.bundle import load_bundle

    rows = compare(load_bundle(model), batch=batch_size, device=device, quick=quick)
    ref = rows[0].points_per_second
    table = [{"path": r.path, "points_per_second": round(r.points_per_second, 1),
              "ratio_to_raw": round(r.points_per_second / ref, 3), "note": r.note} for r in rows]
    if json_out:
        return c.echo_json({"batch_size": batch_size, "rows": table})
    for r in table:
        typer.echo(f"{r['path']:52s} {r['points_per_second']:10.1f} pts/s  x{r['ratio_to_raw']:.2f}  {r['note']}")
