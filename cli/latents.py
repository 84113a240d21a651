"""`corrkit latents`: t-SNE and linear-probe accuracy of latent codes (SPEC §6, paper Fig. 1)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from corrkit._core.defaults import SEED
from corrkit.cli import _common as c

app = typer.Typer()


@app.command("latents")
@c.handles_errors
@c.checks_options("latents")
def latents_command(
    codes: Path = typer.Argument(..., help="Codes .npy [M, N] (e.g. from `corrkit export invert`)."),
    labels: Path = typer.Argument(..., help="Class labels .npy [M]."),
    model: Optional[Path] = typer.Option(None, "--model", help="Bundle whose classifier labels the prior samples "
                                         "(default: the built-in bundle)."),
    out: Path = typer.Option(Path("."), help="Folder for tsne.png and latents.json."),
    n_prior: Optional[int] = typer.Option(None, help="Prior samples to compare with (default: as many as codes; "
                                          "0: none)."),
    folds: int = typer.Option(5, help="Cross-validation folds of the linear probe."),
    seed: int = typer.Option(SEED, help="Seed of the prior samples, folds and t-SNE."),
    json_out: bool = c.JsonOpt,
):
    """Do classes separate in latent space? t-SNE map and cross-validated linear-probe accuracy."""
    from corrkit._core.grid import load_array
    from corrkit.methods.latent_space import latent_space
    from corrkit.viz.plots import tsne_figure
    from corrkit.viz.tables import probe_table

    with c.progress_bar(not json_out) as progress:
        res = latent_space(load_array(codes, "codes"), load_array(labels, "labels"), model, out=out, n_prior=n_prior,
                           seed=seed, folds=folds, draw=tsne_figure, progress=progress)
    if json_out:
        return c.echo_json(res)
    probe_table(res)
    typer.echo(f"wrote {out / 'tsne.png'} and {out / 'latents.json'}")
