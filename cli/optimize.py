"""`corrkit optimize`: controlling sets by zeroth-order optimisation on the ONNX models (SPEC §3)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from corrkit.cli import _common as c

app = typer.Typer()


@app.command("optimize")
@c.handles_errors
@c.checks_options("optimize")
def optimize_command(
    model: Optional[Path] = c.ModelArg,
    generator: Optional[Path] = c.GeneratorOpt, classifier: Optional[Path] = c.ClassifierOpt,
    classes: Optional[str] = c.ClassesOpt, generator_range: str = c.GenRangeOpt,
    classifier_range: str = c.ClsRangeOpt, output: Optional[str] = c.OutputOpt,
    inputs: Optional[List[str]] = c.InputOpt, generator_output_name: Optional[str] = c.GenOutputNameOpt,
    classifier_output_name: Optional[str] = c.ClsOutputNameOpt,
    out: Path = typer.Option(Path("optimized_weights.npz"), help="Where to write w* [C, N] and the settings."),
    objective: str = c.ObjectiveOpt,
    iterations: int = c.IterationsOpt,
    batch_size: int = c.BatchSizeOpt,
    perturbations: int = typer.Option(4, help="Antithetic probe pairs per code and step (estimators bands and "
                                       "codes) or per step (estimator weights); bands needs one per band (3)."),
    sigma: float = typer.Option(0.01, help="Probe size: in latent space (codes) or in v (weights)."),
    seed: int = typer.Option(0, help="Seed of the code sets, mini-batches, xi and perturbations."),
    samples_per_class: int = c.SamplesPerClassOpt,
    average: float = c.AverageOpt,
    against: Optional[Path] = typer.Option(None, help="Weights to compare with (default: the bundle's "
                                           "optimized_weights.npz, the gradient w*, when there is one)."),
    estimator: str = typer.Option("bands", help="bands: per-code probes stratified over bands of the generator's "
                                  "SeFa directions; codes: per-code isotropic probes in latent space; weights: "
                                  "probes of v shared by all codes."),
    threads: Optional[int] = typer.Option(None, help="onnxruntime threads (default: all cores)."),
    device: str = c.DeviceOpt,
    space: str = c.SpaceOpt, truncation: float = c.TruncationOpt, layers: Optional[str] = c.LayersOpt,
    json_out: bool = c.JsonOpt,
):
    """Find w* per class without torch: gradient descent with antithetic zeroth-order gradients."""
    from corrkit.errors import CorrkitError
    from corrkit.methods.optimize import WEIGHTS_FILE, OptimizedWeights, compare_with, optimize

    bundle = c.resolve_bundle(model, generator, classifier, classes, generator_range, classifier_range, output,
                              inputs, generator_output_name, classifier_output_name)
    bundle = c.in_space(bundle, space, truncation, layers)
    own = bundle.path / WEIGHTS_FILE if bundle.path else None
    against = against or (own if own is not None and own.is_file() else None)
    if against is not None:  # read before the work: a bad file must not cost a finished run its report
        shape = OptimizedWeights.load(against).w.shape
        if shape != (bundle.n_classes, bundle.latent_dim):
            raise CorrkitError(f"--against {against} holds weights {list(shape)}, the model has {bundle.n_classes} "
                               f"classes and {bundle.latent_dim} dims; give weights of this model")
    with c.progress_bar(not json_out) as progress:
        result = optimize(bundle, objective=objective, iterations=iterations, batch_size=batch_size,
                          perturbations=perturbations, sigma=sigma, seed=seed, samples_per_class=samples_per_class,
                          average=average, estimator=estimator,
                          execution=c.execution(device=device, threads=threads), progress=progress)
    result.save(out)
    agree = compare_with(result, against, min(10, bundle.latent_dim)) if against is not None else None
    summary = {**result.summary(), "out": out, "agreement": agree}
    c.echo_json(summary) if json_out else _print(result, out, agree)


def _print(result, out: Path, agree) -> None:
    sets = result.controlling_set(min(10, result.w.shape[1]))  # a model with fewer than 10 dims lists them all
    for j, name in enumerate(result.classes):
        typer.echo(f"{name:>12}: " + " ".join(f"{i}" for i in sets[j]))
    if agree:
        typer.echo(f"against {agree['against']}: top-{agree['k']} overlap {agree['mean_overlap']:.2f}, "
                   f"cosine {agree['mean_cosine']:.3f} (of the moves from the start: "
                   f"{agree['mean_cosine_of_moves']:.3f})")
    typer.echo(f"wrote {out} ({result.seconds:.0f} s)")
