"""`corrkit interfacegan`: one linear SVM boundary normal per class (issue 18)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from corrkit._core.defaults import SEED
from corrkit.cli import _common as c
from corrkit.methods.interfacegan import SAMPLES

app = typer.Typer()


@app.command("interfacegan")
@c.handles_errors
@c.checks_options("interfacegan")
def interfacegan_command(
    model: Optional[Path] = c.ModelArg,
    generator: Optional[Path] = c.GeneratorOpt, classifier: Optional[Path] = c.ClassifierOpt,
    classes: Optional[str] = c.ClassesOpt, generator_range: str = c.GenRangeOpt,
    classifier_range: str = c.ClsRangeOpt, output: Optional[str] = c.OutputOpt,
    inputs: Optional[List[str]] = c.InputOpt, generator_output_name: Optional[str] = c.GenOutputNameOpt,
    classifier_output_name: Optional[str] = c.ClsOutputNameOpt,
    samples: int = typer.Option(SAMPLES, help="Prior codes drawn and scored (seeded); the top and bottom 2% "
                                "of each class's probability train its SVM."),
    seed: int = typer.Option(SEED), device: str = c.DeviceOpt,
    out: Optional[Path] = typer.Option(None, help="Write directions [C, N], accuracy [C] and classes to this .npz."),
    json_out: bool = c.JsonOpt,
):
    """Find InterFaceGAN directions: the unit normal of a linear SVM per class, with its validation accuracy."""
    import time

    from corrkit.methods.interfacegan import interfacegan

    t0 = time.perf_counter()
    bundle = c.resolve_bundle(model, generator, classifier, classes, generator_range, classifier_range, output,
                              inputs, generator_output_name, classifier_output_name)
    with c.progress_bar(not json_out) as progress:
        result = interfacegan(bundle, samples=samples, seed=seed, execution=c.execution(device=device),
                              progress=progress)
    if out is not None:
        result.save(out)
    s = {**result.summary(), "seconds": round(time.perf_counter() - t0, 3), "out": out}
    if json_out:
        return c.echo_json(s)
    acc = ", ".join(f"{n} {a:.2f}" for n, a in zip(result.classes, result.accuracy))
    typer.echo(f"{s['n_directions']} boundaries from {samples:,} codes in {s['seconds']:.2f} s; validation "
               f"accuracy {s['mean_accuracy'] or float('nan'):.3f} ({acc})" + (f"; wrote {out}" if out else ""))
