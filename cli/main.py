"""The `corrkit` command: assembles the sub-apps, nothing else."""

from __future__ import annotations

import sys

import typer

from corrkit.cli import (
    apcr, bench, bundle, compare, control, explore, export, figures, ganspace, interfacegan, latents, manipulate,
    optimize, report, sefa, translate,
)

app = typer.Typer(
    help="corrkit: what does each latent variable of a GAN control?",
    no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
)
app.add_typer(apcr.app)
app.add_typer(bench.app)
app.add_typer(compare.app)
app.add_typer(sefa.app)
app.add_typer(ganspace.app)
app.add_typer(interfacegan.app)
app.add_typer(optimize.app)
app.add_typer(control.app)
app.add_typer(manipulate.app)
app.add_typer(translate.app)
app.add_typer(figures.app)
app.add_typer(latents.app)
app.add_typer(report.app)
app.add_typer(explore.app)
app.add_typer(bundle.app, name="bundle")
app.add_typer(export.app, name="export")


def run() -> None:
    from corrkit.cli._common import bare_ray

    app(args=bare_ray(sys.argv[1:]), prog_name="corrkit")
