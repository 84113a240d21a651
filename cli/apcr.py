"""`corrkit apcr`: sequential intervention and APCR (SPEC §1-2)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from corrkit._core import defaults as D
from corrkit.cli import _common as c

app = typer.Typer()


@app.command("apcr")
@c.handles_errors
@c.checks_options("apcr")
def apcr_command(
    model: Optional[Path] = c.ModelArg,
    generator: Optional[Path] = c.GeneratorOpt, classifier: Optional[Path] = c.ClassifierOpt,
    classes: Optional[str] = c.ClassesOpt, generator_range: str = c.GenRangeOpt,
    classifier_range: str = c.ClsRangeOpt, output: Optional[str] = c.OutputOpt,
    inputs: Optional[List[str]] = c.InputOpt, generator_output_name: Optional[str] = c.GenOutputNameOpt,
    classifier_output_name: Optional[str] = c.ClsOutputNameOpt,
    samples_per_class: str = typer.Option(str(D.SAMPLES_PER_CLASS), help="Codes per class set (n), or `auto`: "
                                          "32, 64, ... until every top-k member stays in the top k in >= 90% of "
                                          "bootstrap resamples (or --max-samples-per-class)."),
    max_samples_per_class: int = typer.Option(256, help="With `--samples-per-class auto`: the most codes per class."),
    threshold: float = typer.Option(D.THRESHOLD, help="Minimum class probability of a code (tau)."),
    seed: int = typer.Option(D.SEED, help="Seed of the prior samples."),
    latents: Optional[Path] = typer.Option(None, help="User codes .npy [M, N] float32 instead of prior samples."),
    directions: Optional[Path] = typer.Option(None, help="Direction matrix .npy/.npz [K, N] (default: axes)."),
    steps: int = typer.Option(D.STEPS, help="m: steps on each side, k in -m..m."),
    delta: float = typer.Option(D.DELTA, help="Step length."),
    top_k: int = typer.Option(D.TOP_K, help="Directions listed per class."),
    device: str = c.DeviceOpt,
    mode: str = typer.Option("fp32", help="fp32 (reference), int8 (onnxruntime QDQ), bf16 (the generator's "
                            "convolutions in OpenVINO bf16, the classifier in fp32; extra `openvino`, CPUs with "
                            "AVX-512 BF16/AMX), bf16-delta (each grid point's change from its code in bf16, the "
                            "code itself in fp32: bf16 speed, rounding that scales with the step; same extra and "
                            "CPUs) or ov-fp32 (the generator on OpenVINO's fp32 kernels, any CPU; extra "
                            "`openvino`); the other modes report their fidelity vs fp32 on every run."),
    batch_size: Optional[int] = typer.Option(None, help="Rows per inference call (default: the fastest measured "
                                             "within the memory budget, measured once per model and kept)."),
    out: Optional[Path] = typer.Option(None, help="Folder for apcr.npz and summary.json (resumable)."),
    checkpoint_every: float = typer.Option(D.CHECKPOINT_SECONDS, help="Seconds between checkpoints in --out."),
    ray: Optional[str] = c.RayOpt, workers: Optional[int] = c.WorkersOpt, verbose: bool = c.VerboseOpt,
    threads: Optional[int] = typer.Option(None, help="onnxruntime threads (per Ray worker with --ray; default 1 "
                                          "there, all cores here)."),
    shard_points: Optional[int] = typer.Option(None, help="Grid points per shard, whole batches (default 16 "
                                               "batches); part of the result's definition, like --batch-size."),
    space: str = c.SpaceOpt, truncation: float = c.TruncationOpt, layers: Optional[str] = c.LayersOpt,
    by_layer: bool = typer.Option(False, "--by-layer", help="W+: rank every direction on every layer group "
                                  "apart (rows group-major), to see where in the network a concept is controlled."),
    json_out: bool = c.JsonOpt,
):
    """Rank latent directions by how much they move each class's probability (APCR)."""
    from corrkit._core.grid import load_array
    from corrkit._core.style import space_directions
    from corrkit.methods.sequential import apcr
    from corrkit.viz.tables import apcr_table

    ex = c.execution(ray, device=device, batch_size=batch_size, threads=threads, mode=mode, workers=workers,
                     shard_points=shard_points, checkpoint_seconds=checkpoint_every, verbose=verbose)
    bundle = c.resolve_bundle(model, generator, classifier, classes, generator_range, classifier_range, output,
                              inputs, generator_output_name, classifier_output_name)
    bundle = c.in_space(bundle, space, truncation, layers, by_layer)
    lat = load_array(latents, "latents") if latents else None
    dirs = load_array(directions, "directions") if directions else None
    dirs, normalize = space_directions(bundle, dirs)
    kw = dict(directions=dirs, steps=steps, delta=delta, threshold=threshold, seed=seed, latents=lat, out=out,
              execution=ex, normalize_directions=normalize)
    with c.progress_bar(not json_out) as progress:
        if samples_per_class == "auto":
            from corrkit.methods.auto import apcr_auto

            result = apcr_auto(bundle, cap=max_samples_per_class, top=top_k, progress=progress, **kw)
        else:
            result = apcr(bundle, samples_per_class=int(samples_per_class), progress=progress, **kw)
    c.echo_json(result.summary(top_k)) if json_out else apcr_table(result, top_k)
