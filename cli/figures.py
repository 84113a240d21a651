"""`corrkit figures`: every figure a run folder allows, as PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from corrkit.cli import _common as c

app = typer.Typer()


@app.command("figures")
@c.handles_errors
@c.checks_options("figures")
def figures_command(
    run_dir: Path = typer.Argument(..., help="Folder written by `corrkit apcr --out` (or control/translate/...)."),
    out: Optional[Path] = typer.Option(None, help="Folder for the PNGs (default: RUN_DIR)."),
    traversals: bool = typer.Option(True, help="Draw generator images along the top directions of each class."),
    model: Optional[Path] = typer.Option(None, "--model", help="The bundle folder the run was made on, when it "
                                         "moved (its generator must have the SHA-256 the run recorded)."),
    json_out: bool = c.JsonOpt,
):
    """Draw score curves, APCR histograms and heatmap, traversal grids and any other figure the run allows."""
    from corrkit._core.io import check_writable
    from corrkit.viz.figures import write_run_figures

    if out is None:
        check_writable(run_dir, what="RUN_DIR")  # the figures go beside the run
    bundle = c.resolve_bundle(model) if model is not None else None
    paths = write_run_figures(run_dir, out, traversals=traversals, bundle=bundle)
    if json_out:
        return c.echo_json({"figures": [str(p) for p in paths]})
    for p in paths:
        typer.echo(f"wrote {p}")
