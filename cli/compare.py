"""`corrkit compare`: direction methods side by side on one yardstick (SPEC §9)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from corrkit.cli import _common as c

app = typer.Typer()


@app.command("compare")
@c.handles_errors
def compare_command(
    model: Optional[Path] = c.ModelArg,
    directions: List[str] = typer.Option([], "--directions", help="NAME=FILE (.npy/.npz [K, N]); repeatable."),
    sefa: bool = typer.Option(True, help="Include SeFa directions from the generator."),
    samples_per_class: int = typer.Option(16), steps: int = typer.Option(3), delta: float = typer.Option(1.0),
    seed: int = typer.Option(0), device: str = c.DeviceOpt,
    out: Optional[Path] = typer.Option(None, help="Folder for compare.json, per-method runs and PNGs."),
    ray: Optional[str] = c.RayOpt, workers: Optional[int] = c.WorkersOpt,
    json_out: bool = c.JsonOpt,
):
    """Score coordinate, random, SeFa and your direction sets with the same APCR machinery."""
    from corrkit.methods.compare import compare
    from corrkit.errors import CorrkitError

    pairs = [d.split("=", 1) for d in directions]
    if any(len(p) != 2 for p in pairs):
        raise CorrkitError("--directions takes NAME=FILE")
    with c.progress_bar(not json_out) as progress:
        s = compare(c.resolve_bundle(model), dict(pairs), with_sefa=sefa, samples_per_class=samples_per_class,
                    steps=steps, delta=delta, seed=seed, device=device, out=out, progress=progress,
                    workers=workers, **c.executor(ray))
    if json_out:
        return c.echo_json(s)
    typer.echo(f"{'method':16s} {'K':>4s} {'mean strongest APCR':>20s} {'mean selectivity':>17s}  extra")
    for name, m in s["methods"].items():
        extra = {k: v for k, v in m.items() if k not in ("strongest_apcr", "best_direction", "n_directions",
                                                       "mean_strongest_apcr", "mean_selectivity", "median_selectivity")}
        typer.echo(f"{name:16s} {m['n_directions']:4d} {m['mean_strongest_apcr']:20.3f} "
                   f"{(m['mean_selectivity'] or float('nan')):17.2f}  {extra or ''}")
