"""`corrkit manipulate`: lower a class's probability through its controlling set (SPEC §5)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from corrkit._core.defaults import SEED, TOP_K
from corrkit.cli import _common as c

app = typer.Typer()


@app.command("manipulate")
@c.handles_errors
@c.checks_options("manipulate")
def manipulate_command(
    model: Optional[Path] = c.ModelArg,
    generator: Optional[Path] = c.GeneratorOpt, classifier: Optional[Path] = c.ClassifierOpt,
    classes: Optional[str] = c.ClassesOpt, generator_range: str = c.GenRangeOpt,
    classifier_range: str = c.ClsRangeOpt, output: Optional[str] = c.OutputOpt,
    inputs: Optional[List[str]] = c.InputOpt, generator_output_name: Optional[str] = c.GenOutputNameOpt,
    classifier_output_name: Optional[str] = c.ClsOutputNameOpt,
    class_: str = typer.Option("all", "--class", help="Class index or name, or 'all'."),
    top_k: int = typer.Option(TOP_K, help="Dims per set (top, bottom and random)."),
    alpha: float = typer.Option(0.2, help="Step along every dim of the set (flip rates are compared here; "
                                "pictures show more with a larger alpha)."),
    steps: int = typer.Option(4, help="Alpha steps measured and drawn (alpha·1/steps .. alpha)."),
    seed: int = typer.Option(SEED, help="Seed of the random sets."),
    run: Optional[Path] = c.RunOpt,
    out: Optional[Path] = typer.Option(None, help="Folder for manipulate.json and PNG grids."),
    device: str = c.DeviceOpt,
    json_out: bool = c.JsonOpt,
):
    """Push codes of a class along its top-, bottom- and random-k dims; report drops and flip rates."""
    from corrkit.methods.manipulate import class_index, manipulate
    from corrkit.viz.images import image_grid
    from corrkit.viz.tables import manipulation_table

    bundle = c.resolve_bundle(model, generator, classifier, classes, generator_range, classifier_range, output,
                              inputs, generator_output_name, classifier_output_name)
    classes = None if class_.lower() == "all" else [class_index(class_, bundle.classes)]
    with c.progress_bar(not json_out) as progress:
        result = manipulate(bundle, run=run, classes=classes, top_k=top_k, alpha=alpha, steps=steps, seed=seed,
                            out=out, draw=image_grid, execution=c.execution(device=device),
                            progress=progress)
    c.echo_json(result.to_json()) if json_out else manipulation_table(result)
