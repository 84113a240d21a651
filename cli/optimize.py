"""`corrkit optimize`: controlling sets by zeroth-order optimisation on the ONNX models (SPEC §3)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from corrkit.cli import _common as c

app = typer.Typer()


@app.command("optimize")
@c.handles_errors
def optimize_command(
    model: Optional[Path] = c.ModelArg,
    output: Optional[str] = c.OutputOpt,
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
    threads: Optional[int] = typer.Option(None, min=1, help="onnxruntime threads (default: all cores)."),
    device: str = c.DeviceOpt,
    json_out: bool = c.JsonOpt,
):
    """Find w* per class without torch: gradient descent with antithetic zeroth-order gradients."""
    from corrkit.methods.optimize import WEIGHTS_FILE, compare_with, optimize

    bundle = c.resolve_bundle(model, output=output)
    with c.progress_bar(not json_out) as progress:
        result = optimize(bundle, objective=objective, iterations=iterations, batch_size=batch_size,
                          perturbations=perturbations, sigma=sigma, seed=seed, samples_per_class=samples_per_class,
                          average=average, estimator=estimator,
                          execution=c.execution(device=device, threads=threads), progress=progress)
    result.save(out)
    against = against or (bundle.path / WEIGHTS_FILE if bundle.path else None)
    agree = compare_with(result, against) if against is not None and against.is_file() else None
    summary = {**result.summary(), "out": out, "agreement": agree}
    c.echo_json(summary) if json_out else _print(result, out, agree)


def _print(result, out: Path, agree) -> None:
    sets = result.controlling_set(10)
    for j, name in enumerate(result.classes):
        typer.echo(f"{name:>12}: " + " ".join(f"{i}" for i in sets[j]))
    if agree:
        typer.echo(f"against {agree['against']}: top-{agree['k']} overlap {agree['mean_overlap']:.2f}, "
                   f"cosine {agree['mean_cosine']:.3f} (of the moves from the start: "
                   f"{agree['mean_cosine_of_moves']:.3f})")
    typer.echo(f"wrote {out} ({result.seconds:.0f} s)")
