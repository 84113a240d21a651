"""`corrkit export ...`: the torch side (extra `train`): training, export, optimisation."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from corrkit.cli import _common as c
from corrkit.errors import MissingExtraError

app = typer.Typer(help="Torch-side work: train, export the bundle (needs the `train` extra).",
                  no_args_is_help=True)


def need_torch() -> None:
    try:
        import torch  # noqa: F401, TID251
    except ImportError:
        raise MissingExtraError("torch", "train") from None


@app.command("train")
@c.handles_errors
def train(work: Path = typer.Option(Path("build/train"), help="Checkpoint folder (a killed run resumes)."),
          gan_epochs: int = typer.Option(25), classifier_epochs: int = typer.Option(12),
          data_dir: Optional[Path] = typer.Option(None, help="Fashion-MNIST IDX folder.")):
    """Train the paper's classifier and DCGAN on Fashion-MNIST (seeded, resumable)."""
    need_torch()
    from corrkit.export.train import main

    main(str(work), gan_epochs=gan_epochs, cls_epochs=classifier_epochs, data_dir=data_dir)


@app.command("bundle")
@c.handles_errors
def bundle(work: Path = typer.Option(Path("build/train"), help="Folder written by `corrkit export train`."),
           out: Optional[Path] = typer.Option(None, help="Bundle folder (default: the built-in one)."),
           data_dir: Optional[Path] = typer.Option(None)):
    """Select the generator, export both models to ONNX (validated) and write the card."""
    need_torch()
    from corrkit.bundle import BUILTIN
    from corrkit.export.bundle import build

    card = build(work, out or BUILTIN, data_dir)
    c.echo_json(card["metrics"])


@app.command("optimize")
@c.handles_errors
def optimize(model: Optional[Path] = c.ModelArg,
             objective: str = typer.Option("paper", help="paper: z ± xi·w; authors: z ⊙ (1 ± 10·mean(z)·w)."),
             iterations: int = typer.Option(1000, help="Gradient-descent steps per class."),
             batch_size: int = typer.Option(8, help="Codes per step."),
             seed: int = typer.Option(0, help="Seed of the code sets, mini-batches and xi."),
             samples_per_class: int = typer.Option(32, help="Codes per class set (as in `corrkit apcr`)."),
             weights: Optional[Path] = typer.Option(None, help="Folder with generator.pt and classifier.pt "
                                                    "(default: the built-in bundle's)."),
             out: Optional[Path] = typer.Option(None, help="Output .npz (default: optimized_weights.npz in the "
                                                "bundle folder)."),
             json_out: bool = c.JsonOpt):
    """Gradient optimisation of w* per class on the torch modules (SPEC §3); stores it in the bundle."""
    need_torch()
    from corrkit.export.optimize import WEIGHTS, optimize_bundle

    bundle = c.resolve_bundle(model)
    with c.progress_bar(not json_out) as progress:
        result, path = optimize_bundle(bundle, out, objective=objective, iterations=iterations,
                                       batch_size=batch_size, seed=seed, samples_per_class=samples_per_class,
                                       weights=weights or WEIGHTS, progress=progress)
    summary = {**result.summary(), "out": path}
    c.echo_json(summary) if json_out else typer.echo(f"wrote {path} ({result.seconds:.0f} s)")
