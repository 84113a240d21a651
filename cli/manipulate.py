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
    keep: Optional[str] = typer.Option(None, help="CLASS,...: classes to hold fixed; adds InterFaceGAN's "
                                       "conditional edit (the class's SVM normal projected off theirs) as a row."),
    boundaries: Optional[Path] = typer.Option(None, help="SVM normals for --keep (`corrkit interfacegan --out`; "
                                              "default: fit them now)."),
    run: Optional[Path] = c.RunOpt,
    out: Optional[Path] = typer.Option(None, help="Folder for manipulate.json and PNG grids."),
    device: str = c.DeviceOpt,
    space: str = c.SpaceOpt, truncation: float = c.TruncationOpt, layers: Optional[str] = c.LayersOpt,
    json_out: bool = c.JsonOpt,
):
    """Push codes of a class along its top-, bottom- and random-k dims; report drops and flip rates."""
    import numpy as np

    from corrkit.methods.manipulate import class_index, manipulate
    from corrkit.viz.images import image_grid
    from corrkit.viz.tables import manipulation_table

    bundle = c.run_or_given_bundle(run, model, generator, classifier, classes, generator_range, classifier_range,
                                   output, inputs, generator_output_name, classifier_output_name)
    bundle = c.in_space_unless_run(bundle, run, space, truncation, layers)
    classes = None if class_.lower() == "all" else [class_index(class_, bundle.classes)]
    kept = [class_index(k, bundle.classes) for k in keep.split(",")] if keep else None
    with c.progress_bar(not json_out) as progress:
        result = manipulate(bundle, run=run, classes=classes, top_k=top_k, alpha=alpha, steps=steps, seed=seed,
                            out=out, draw=image_grid, execution=c.execution(device=device),
                            progress=progress, keep=kept, boundaries=boundaries)
    c.echo_json(result.to_json()) if json_out else manipulation_table(result)
    if kept and not json_out:
        o = result.overall() if len(result.per_class) > 1 else None
        m = result.per_class[0]
        flip, drop = (o["flip_rate"]["boundary"], o["drop"]["boundary"]) if o else (m.flip_rate("boundary"),
                                                                                     m.drop("boundary"))
        change = {s: float(np.mean([x.kept_change[s][-1] for x in result.per_class])) for s in result.sets}
        typer.echo(f"boundary (InterFaceGAN, keeping {', '.join(bundle.classes[k] for k in kept)}): flip rate "
                   f"{flip:.2f} (mean drop {drop:.2f}); mean |change| of the kept classes: "
                   + ", ".join(f"{s} {v:.3f}" for s, v in change.items()))
