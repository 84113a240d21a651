"""`corrkit translate`: class-to-class translation by extreme interventions (SPEC §5)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from corrkit._core.defaults import TOP_K
from corrkit.cli import _common as c
from corrkit.errors import CorrkitError

app = typer.Typer()


@app.command("translate")
@c.handles_errors
@c.checks_options("translate")
def translate_command(
    model: Optional[Path] = c.ModelArg,
    generator: Optional[Path] = c.GeneratorOpt, classifier: Optional[Path] = c.ClassifierOpt,
    classes: Optional[str] = c.ClassesOpt, generator_range: str = c.GenRangeOpt,
    classifier_range: str = c.ClsRangeOpt, output: Optional[str] = c.OutputOpt,
    inputs: Optional[List[str]] = c.InputOpt, generator_output_name: Optional[str] = c.GenOutputNameOpt,
    classifier_output_name: Optional[str] = c.ClsOutputNameOpt,
    source: Optional[str] = typer.Option(None, help="Source class (index or name)."),
    target: Optional[str] = typer.Option(None, help="Target class (index or name)."),
    all_pairs: bool = typer.Option(False, "--all", help="Every ordered pair (the default without --source)."),
    top_k: int = typer.Option(TOP_K, help="Dims pushed together."),
    alpha: float = typer.Option(2.0, help="Largest step along every chosen dim."),
    steps: int = typer.Option(4, help="Alpha steps (alpha·1/steps .. alpha)."),
    run: Optional[Path] = c.RunOpt,
    out: Optional[Path] = typer.Option(None, help="Folder for translate.json and PNG grids."),
    device: str = c.DeviceOpt,
    space: str = c.SpaceOpt, truncation: float = c.TruncationOpt, layers: Optional[str] = c.LayersOpt,
    json_out: bool = c.JsonOpt,
):
    """Translate codes of one class into another; the success matrix over all pairs."""
    from corrkit.methods.manipulate import class_index
    from corrkit.methods.translate import translate
    from corrkit.viz.images import image_grid
    from corrkit.viz.tables import translation_table

    bundle = c.run_or_given_bundle(run, model, generator, classifier, classes, generator_range, classifier_range,
                                   output, inputs, generator_output_name, classifier_output_name)
    bundle = c.in_space_unless_run(bundle, run, space, truncation, layers)
    if (source is None) != (target is None) or (all_pairs and source is not None):
        raise CorrkitError("give --source and --target together, or --all (the default) alone")
    pairs = None if source is None else [(class_index(source, bundle.classes), class_index(target, bundle.classes))]
    with c.progress_bar(not json_out) as progress:
        result = translate(bundle, run=run, pairs=pairs, top_k=top_k, alpha=alpha, steps=steps, out=out,
                           draw=image_grid, execution=c.execution(device=device), progress=progress)
    c.echo_json(result.to_json()) if json_out else translation_table(result)
