"""`corrkit compare`: direction methods side by side on one yardstick (SPEC §9)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from corrkit._core.defaults import COMPARE_SAMPLES_PER_CLASS, DELTA, SEED, STEPS
from corrkit.cli import _common as c

app = typer.Typer()


@app.command("compare")
@c.handles_errors
@c.checks_options("compare")
def compare_command(
    model: Optional[Path] = c.ModelArg,
    generator: Optional[Path] = c.GeneratorOpt, classifier: Optional[Path] = c.ClassifierOpt,
    classes: Optional[str] = c.ClassesOpt, generator_range: str = c.GenRangeOpt,
    classifier_range: str = c.ClsRangeOpt, output: Optional[str] = c.OutputOpt,
    inputs: Optional[List[str]] = c.InputOpt, generator_output_name: Optional[str] = c.GenOutputNameOpt,
    classifier_output_name: Optional[str] = c.ClsOutputNameOpt,
    directions: List[str] = typer.Option([], "--directions", help="NAME=FILE (.npy/.npz [K, N]); repeatable."),
    sefa: bool = typer.Option(True, help="Include SeFa directions from the generator."),
    ganspace: bool = typer.Option(True, help="Include GANSpace directions from the generator (`corrkit ganspace`)."),
    interfacegan: bool = typer.Option(True, help="Include InterFaceGAN's per-class SVM normals "
                                      "(`corrkit interfacegan`)."),
    shipped: bool = typer.Option(True, help="Include the direction sets the bundle folder ships (the built-in "
                                 "bundle's Voynov–Babenko `vb` and optimised `wstar`)."),
    samples_per_class: int = typer.Option(COMPARE_SAMPLES_PER_CLASS), steps: int = typer.Option(STEPS),
    delta: float = typer.Option(DELTA), seed: int = typer.Option(SEED), device: str = c.DeviceOpt,
    out: Optional[Path] = typer.Option(None, help="Folder for compare.json, per-method runs and PNGs."),
    ray: Optional[str] = c.RayOpt, workers: Optional[int] = c.WorkersOpt, verbose: bool = c.VerboseOpt,
    space: str = c.SpaceOpt, truncation: float = c.TruncationOpt, layers: Optional[str] = c.LayersOpt,
    json_out: bool = c.JsonOpt,
):
    """Score coordinate, random, SeFa, GANSpace, InterFaceGAN and your direction sets with the same APCR machinery."""
    from corrkit.errors import CorrkitError
    from corrkit.methods.compare import compare
    from corrkit.viz.figures import compare_figures
    from corrkit.viz.tables import compare_table

    ex = c.execution(ray, device=device, workers=workers, verbose=verbose)
    pairs = [d.split("=", 1) for d in directions]
    if any(len(p) != 2 for p in pairs):
        raise CorrkitError("--directions takes NAME=FILE")
    bundle = c.resolve_bundle(model, generator, classifier, classes, generator_range, classifier_range, output,
                              inputs, generator_output_name, classifier_output_name)
    bundle = c.in_space(bundle, space, truncation, layers)
    with c.progress_bar(not json_out) as progress:
        s = compare(bundle, dict(pairs), with_sefa=sefa, with_ganspace=ganspace,
                    with_interfacegan=interfacegan, with_shipped=shipped, samples_per_class=samples_per_class,
                    steps=steps, delta=delta, seed=seed, out=out, progress=progress, execution=ex)
    if out is not None:
        compare_figures(out, s, bundle)
    c.echo_json(s) if json_out else compare_table(s)
