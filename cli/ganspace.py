"""`corrkit ganspace`: latent directions of the principal components of an early activation (issue 18)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from corrkit._core.defaults import SEED
from corrkit.cli import _common as c
from corrkit.methods.ganspace import SAMPLES

app = typer.Typer()


@app.command("ganspace")
@c.handles_errors
@c.checks_options("ganspace")
def ganspace_command(
    model: Optional[Path] = c.path_argument("Bundle folder or generator .onnx (default: the built-in bundle)."),
    layer: Optional[str] = typer.Option(None, help="Activation tensor to fit (default: the output of the first "
                                        "layer after the latent)."),
    samples: int = typer.Option(SAMPLES, help="Prior codes drawn (seeded)."),
    components: Optional[int] = typer.Option(None, help="Principal components kept (default: the latent size)."),
    seed: int = typer.Option(SEED),
    out: Optional[Path] = typer.Option(None, help="Write directions [K, N], explained_variance [K] and layer to "
                                       "this .npz."),
    json_out: bool = c.JsonOpt,
):
    """Find GANSpace directions: PCA of an activation, regressed back to the latent (no torch)."""
    import time

    from corrkit.methods.ganspace import ganspace

    t0 = time.perf_counter()
    with c.progress_bar(not json_out) as progress:
        result = ganspace(model, layer=layer, samples=samples, components=components, seed=seed, progress=progress)
    if out is not None:
        result.save(out)
    summary = {**result.summary(), "seconds": round(time.perf_counter() - t0, 3), "out": out}
    if json_out:
        return c.echo_json(summary)
    ev = result.explained_variance
    typer.echo(f"{result.layer}; {len(ev)} directions from {samples:,} codes in {summary['seconds']:.2f} s; "
               f"explained variance {', '.join(f'{v:.3f}' for v in ev[:5])}{' ...' if len(ev) > 5 else ''} "
               f"(top {min(10, len(ev))}: {ev[:10].sum():.3f})" + (f"; wrote {out}" if out is not None else ""))
