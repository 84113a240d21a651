"""`corrkit report`: one self-contained HTML page for run folders."""

from __future__ import annotations

from pathlib import Path
from typing import List

import typer

from corrkit.cli import _common as c

app = typer.Typer()


@app.command("report")
@c.handles_errors
@c.checks_options("report")
def report_command(
    run_dirs: List[Path] = typer.Argument(..., help="Run folders (corrkit apcr/invert/latents/... --out)."),
    out: Path = typer.Option(Path("report.html"), help="The HTML file to write."),
    title: str = typer.Option("corrkit report", help="Page title."),
    render: bool = typer.Option(True, help="Draw figures the data allow when their PNG is missing."),
):
    """Write one HTML page (images embedded, no network needed) with the bundle card, parameters, tables, figures."""
    from corrkit.viz.report import build_report

    page = build_report(run_dirs, out, title=title, render=render)
    typer.echo(f"wrote {out} ({len(page) / 1e6:.1f} MB, {page.count('<img ')} figures)")
