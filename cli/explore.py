"""`corrkit explore`: a local web page to move a code along a model's directions (extra ``explore``)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from corrkit.cli import _common as c

app = typer.Typer()


@app.command("explore")
@c.handles_errors
@c.checks_options("explore")
def explore_command(
    path: Optional[Path] = c.path_argument("A bundle folder, or a `corrkit apcr --out` run folder (its models, "
                                           "directions and codes); default: the built-in bundle."),
    generator: Optional[Path] = c.GeneratorOpt, classifier: Optional[Path] = c.ClassifierOpt,
    classes: Optional[str] = c.ClassesOpt, generator_range: str = c.GenRangeOpt,
    classifier_range: str = c.ClsRangeOpt, output: Optional[str] = c.OutputOpt,
    inputs: Optional[List[str]] = c.InputOpt, generator_output_name: Optional[str] = c.GenOutputNameOpt,
    classifier_output_name: Optional[str] = c.ClsOutputNameOpt, device: str = c.DeviceOpt,
    port: int = typer.Option(8765, help="TCP port."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (loopback by default; an IP address)."),
    check: bool = typer.Option(False, "--check", help="Load the model and run, print what would be served, exit."),
    space: str = c.SpaceOpt, truncation: float = c.TruncationOpt, layers: Optional[str] = c.LayersOpt,
):
    """Serve a page (offline, on loopback) with sliders along the top directions of a class, the image and all
    class probabilities redrawn on every move, a traversal strip, and export of the codes and the strip."""
    from corrkit.methods.sequential import APCRResult
    from corrkit.viz.explore.model import Explorer, is_run
    from corrkit.viz.explore.web import is_loopback, require_extra, serve, url

    require_extra()
    run = path if path is not None and is_run(path) else None
    bundle = c.run_or_given_bundle(run, None if run else path, generator, classifier, classes, generator_range,
                                   classifier_range, output, inputs, generator_output_name, classifier_output_name)
    bundle = c.in_space_unless_run(bundle, run, space, truncation, layers)
    explorer = Explorer(bundle, run=APCRResult.load(run) if run else None, run_dir=run, device=device)
    if check:
        return c.echo_json(explorer.info())
    if not is_loopback(host):
        typer.echo(f"warning: serving on {host}: anyone who can reach this machine can use the page", err=True)
    serve(explorer, host, port, ready=lambda p: typer.echo(f"corrkit explore: {url(host, p)} (Ctrl-C stops)"))
