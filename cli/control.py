"""`corrkit control`: intersection ratio of C_seq and C_opt (paper Table 1, SPEC §4)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from corrkit._core.defaults import TOP_K
from corrkit.cli import _common as c

app = typer.Typer()


@app.command("control")
@c.handles_errors
@c.checks_options("control")
def control_command(
    run_dir: Optional[Path] = c.path_argument("A `corrkit apcr --out` folder (default: run apcr with its defaults "
                                              "on the built-in bundle)."),
    top_k: int = typer.Option(TOP_K, help="k: size of both controlling sets."),
    weights: Optional[Path] = typer.Option(None, help="Optimised weights .npz (default: the bundle's "
                                           "optimized_weights.npz)."),
    json_out: bool = c.JsonOpt,
):
    """Compare the top-k dims by APCR with the top-k by |w*| per class (intersection ratio)."""
    from corrkit.methods.control import control
    from corrkit.viz.tables import control_table

    with c.progress_bar(not json_out) as progress:
        result = control(run_dir, weights, top_k, progress=progress)
    c.echo_json(result.to_json()) if json_out else control_table(result)
