"""`corrkit sefa`: closed-form directions from the generator's first layer (SPEC §7)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from corrkit.cli import _common as c

app = typer.Typer()


@app.command("sefa")
@c.handles_errors
@c.checks_options("sefa")
def sefa_command(
    model: Optional[Path] = c.path_argument("Bundle folder or generator .onnx (default: the built-in bundle)."),
    out: Optional[Path] = typer.Option(None, help="Write directions [K, N] and eigenvalues [K] to this .npz."),
    top: int = typer.Option(10, help="Eigenvalues shown."),
    layers: Optional[str] = typer.Option(None, "--layers", help="Style layers of a mapping/synthesis bundle, e.g. "
                                         "0-3,8 (default: all), as SeFa's own StyleGAN setting."),
    json_out: bool = c.JsonOpt,
):
    """Find SeFa directions: eigenvectors of AᵀA for the first layer A (no training, no torch)."""
    import time

    from corrkit.methods.sefa import sefa

    t0 = time.perf_counter()
    from corrkit._core.style import parse_layers

    picked = None
    if layers is not None:
        from corrkit._core.bundle import load_bundle

        bundle = load_bundle(model)
        groups = parse_layers(layers, bundle.style.n_layers if bundle.style is not None else 0) \
            if bundle.style is not None else None
        model, picked = bundle, ([x for g in groups for x in g] if groups else [])
    result = sefa(model, picked)
    if out is not None:
        result.save(out)
    summary = {"layer": result.layer, "eigenvalues": result.eigenvalues[:top], "n_directions": len(result.directions),
               "seconds": round(time.perf_counter() - t0, 4), "out": out}
    if json_out:
        return c.echo_json(summary)
    typer.echo(f"{result.layer}; {summary['n_directions']} directions in {summary['seconds']:.3f} s")
    for i, v in enumerate(summary["eigenvalues"]):
        typer.echo(f"{i:4d}  {v:12.4f}")
    if out is not None:
        typer.echo(f"wrote {out}")
