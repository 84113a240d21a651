"""`corrkit export ...`: the torch side (extra `train`): training, export, optimisation."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from corrkit.cli import _common as c
from corrkit.errors import MissingExtraError
from corrkit.export.discover.settings import AUTHORS_INIT_SCALE, DEFAULT_K, DiscoverSettings

_DISCOVER = DiscoverSettings()  # the option defaults below (torch-free, so --help stays fast)

app = typer.Typer(help="Torch-side work: train, export the bundle (needs the `train` extra).",
                  no_args_is_help=True)


def need_torch() -> None:
    """Fail with the extra to install when torch is absent, without importing it here."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        raise MissingExtraError("torch", "train")


def bundle_out(name: str, extra: str = "") -> Optional[Path]:
    """The ``--out`` option of a command that writes built-in bundle ``name`` (``bundle_style`` ...)."""
    return typer.Option(None, help=f"Bundle folder{extra} (default: build/{name}). `--out corrkit/{name}` in a "
                        "checkout refreshes the shipped one.")


DataDirOpt = typer.Option(None, "--data-dir", help="Fashion-MNIST IDX folder.")


def build_bundle(module: str, work: Path, out: Optional[Path], *args) -> None:
    """``corrkit.export.<module>.build(work, out or its OUT, *args)``, then the new bundle's metrics as JSON."""
    import importlib

    need_torch()
    mod = importlib.import_module(f"corrkit.export.{module}")
    c.echo_json(mod.build(work, out or mod.OUT, *args)["metrics"])


@app.command("train")
@c.handles_errors
@c.checks_options("export train")
def train(work: Path = typer.Option(Path("build/train"), help="Checkpoint folder (a killed run resumes)."),
          gan_epochs: int = typer.Option(22), classifier_epochs: int = typer.Option(12),
          data_dir: Optional[Path] = typer.Option(None, help="Fashion-MNIST IDX folder.")):
    """Train the paper's classifier and DCGAN on Fashion-MNIST (seeded, resumable)."""
    need_torch()
    from corrkit.export.train import main

    main(str(work), gan_epochs=gan_epochs, cls_epochs=classifier_epochs, data_dir=data_dir)


@app.command("bundle")
@c.handles_errors
@c.checks_options("export bundle")
def bundle(work: Path = typer.Option(Path("build/train"), help="Folder written by `corrkit export train`."),
           out: Optional[Path] = bundle_out("bundle", ", with the torch weights in its weights/"),
           data_dir: Optional[Path] = DataDirOpt):
    """Select the generator, export both models to ONNX (validated) and write the card."""
    build_bundle("bundle", work, out, data_dir)


@app.command("train-style")
@c.handles_errors
@c.checks_options("export train-style")
def train_style(work: Path = typer.Option(Path("build/train"), help="Checkpoint folder (a killed run resumes)."),
                epochs: int = typer.Option(30), minutes: float = typer.Option(80.0, help="Time box: no epoch starts "
                                                                               "after this much training time."),
                data_dir: Optional[Path] = typer.Option(None, help="Fashion-MNIST IDX folder.")):
    """Train the built-in style-based generator (mapping + synthesis) on Fashion-MNIST (seeded, resumable)."""
    need_torch()
    from corrkit.export.train_style import main

    main(str(work), epochs=epochs, minutes=minutes, data_dir=data_dir)


@app.command("bundle-style")
@c.handles_errors
@c.checks_options("export bundle-style")
def bundle_style(work: Path = typer.Option(Path("build/train"), help="Folder written by `corrkit export train-style`."),
                 out: Optional[Path] = bundle_out("bundle_style"), data_dir: Optional[Path] = DataDirOpt):
    """Select the style generator, export mapping and synthesis to ONNX (validated) and write the card."""
    build_bundle("bundle_style", work, out, data_dir)


@app.command("attributes")
@c.handles_errors
@c.checks_options("export attributes")
def attributes(work: Path = typer.Option(Path("build/attributes"), help="Checkpoint folder (a killed run resumes)."),
               out: Optional[Path] = bundle_out("bundle_attributes"), epochs: int = typer.Option(4),
               data_dir: Optional[Path] = DataDirOpt):
    """Train the built-in multi-label attribute classifier (footwear, upper body, dark, large) and write the
    attribute bundle beside the built-in generator (`classifier_output: sigmoid`)."""
    build_bundle("attributes", work, out, data_dir, epochs)


@app.command("model")
@c.handles_errors
@c.checks_options("export model")
def model(generator: str = typer.Option(..., "--generator", help="package.module:factory building your generator "
                                        "(an nn.Module class or a function returning one)."),
          classifier: str = typer.Option(..., "--classifier", help="package.module:factory building your "
                                         "classifier."),
          generator_weights: Optional[Path] = typer.Option(None, help="The generator's state_dict .pt (loaded with "
                                                           "weights_only=True; omit if the factory loads it)."),
          classifier_weights: Optional[Path] = typer.Option(None, help="The classifier's state_dict .pt."),
          latent_shape: str = typer.Option(..., help="N, or N,1,1 (DCGAN's z [B, N, 1, 1]), without the batch."),
          out: Path = typer.Option(..., help="Bundle folder to write (refused if it exists, unless --force)."),
          classes: Optional[str] = c.ClassesOpt, generator_range: str = c.GenRangeOpt,
          classifier_range: str = c.ClsRangeOpt,
          output: str = typer.Option("auto", "--output", help="Classifier output kind: logits, probabilities or "
                                     "auto (read from prior samples)."),
          force: bool = typer.Option(False, "--force", help="Replace an existing bundle at --out."),
          json_out: bool = c.JsonOpt):
    """Export your own torch generator and classifier to a validated bundle (ONNX checked against torch)."""
    need_torch()
    from corrkit.errors import CorrkitError
    from corrkit.export.user_bundle import export_bundle
    from corrkit.export.weights import load_into, module_from_factory

    try:
        shape = tuple(int(v) for v in latent_shape.split(","))
    except ValueError:
        raise CorrkitError(f"--latent-shape must be N or N,1,1, got {latent_shape!r}") from None
    g, q = module_from_factory(generator, "--generator"), module_from_factory(classifier, "--classifier")
    for module, weights in ((g, generator_weights), (q, classifier_weights)):
        if weights is not None:
            load_into(module, weights)
    b = export_bundle(g, q, out, shape, classes=[s.strip() for s in classes.split(",")] if classes else None,
                      generator_output_range=c.parse_range(generator_range, "--generator-range"),
                      classifier_input_range=c.parse_range(classifier_range, "--classifier-range"),
                      classifier_output=output, force=force)
    if json_out:
        return c.echo_json(b.card())
    typer.echo(f"bundle written to {out} (N={b.latent_dim}, C={b.n_classes}, {b.classifier_output})")


@app.command("optimize")
@c.handles_errors
@c.checks_options("export optimize")
def optimize(model: Optional[Path] = c.ModelArg,
             generator: Optional[Path] = c.GeneratorOpt, classifier: Optional[Path] = c.ClassifierOpt,
             classes: Optional[str] = c.ClassesOpt, generator_range: str = c.GenRangeOpt,
             classifier_range: str = c.ClsRangeOpt, output: Optional[str] = c.OutputOpt,
             inputs: Optional[List[str]] = c.InputOpt, generator_output_name: Optional[str] = c.GenOutputNameOpt,
             classifier_output_name: Optional[str] = c.ClsOutputNameOpt,
             objective: str = c.ObjectiveOpt, iterations: int = c.IterationsOpt, batch_size: int = c.BatchSizeOpt,
             seed: int = typer.Option(0, help="Seed of the code sets, mini-batches and xi."),
             samples_per_class: int = c.SamplesPerClassOpt, average: float = c.AverageOpt,
             weights: Optional[Path] = typer.Option(None, help="Folder with the paper's generator.pt and "
                                                    "classifier.pt (default: the built-in bundle's; for another "
                                                    "bundle, its ONNX models converted to torch)."),
             out: Optional[Path] = typer.Option(None, help="Output .npz (default: optimized_weights.npz in the "
                                                "bundle folder)."),
             json_out: bool = c.JsonOpt):
    """Gradient optimisation of w* per class on the torch modules (SPEC §3); stores it in the bundle."""
    need_torch()
    from corrkit.export.optimize import optimize_bundle

    bundle = c.resolve_bundle(model, generator, classifier, classes, generator_range, classifier_range, output,
                              inputs, generator_output_name, classifier_output_name)
    with c.progress_bar(not json_out) as progress:
        result, path = optimize_bundle(bundle, out, objective=objective, iterations=iterations,
                                       batch_size=batch_size, seed=seed, samples_per_class=samples_per_class,
                                       average=average, weights=weights, progress=progress)
    summary = {**result.summary(), "out": path}
    c.echo_json(summary) if json_out else typer.echo(f"wrote {path} ({result.seconds:.0f} s)")


@app.command("discover")
@c.handles_errors
@c.checks_options("export discover")
def discover(model: Optional[Path] = c.ModelArg,
             generator: Optional[Path] = c.GeneratorOpt, classifier: Optional[Path] = c.ClassifierOpt,
             classes: Optional[str] = c.ClassesOpt, generator_range: str = c.GenRangeOpt,
             classifier_range: str = c.ClsRangeOpt, output: Optional[str] = c.OutputOpt,
             inputs: Optional[List[str]] = c.InputOpt, generator_output_name: Optional[str] = c.GenOutputNameOpt,
             classifier_output_name: Optional[str] = c.ClsOutputNameOpt,
             kind: str = typer.Option(_DISCOVER.kind, "--type", help="Direction matrix A: ortho (exp of a skew "
                                      "matrix, K = N), proj (unit-norm columns) or linear."),
             steps: int = typer.Option(_DISCOVER.steps, help="Training steps of each of the three "
                                       "reconstructors (learned, random, coordinate); the default takes ~5 min with "
                                       "2 workers on 2 cores. More steps train better directions, and the baselines "
                                       "catch up."),
             n_directions: Optional[int] = typer.Option(_DISCOVER.n_directions, "--directions",
                                                        help=f"K for proj/linear (default {DEFAULT_K}; ortho uses "
                                                        "K = N)."),
             seed: int = typer.Option(_DISCOVER.seed, help="Seed of the initialisation, every batch and the "
                                      "evaluation pairs."),
             init_scale: float = typer.Option(_DISCOVER.init_scale, help="proj: scale of A's initial entries; "
                                              "smaller turns the unit-norm columns faster at the fixed lr (the "
                                              f"authors' code: {AUTHORS_INIT_SCALE})."),
             eval_samples: int = typer.Option(_DISCOVER.eval_samples, help="Fresh pairs on which RCA is "
                                              "measured."),
             bf16: bool = typer.Option(_DISCOVER.bf16, "--bf16/--no-bf16", help="bf16 autocast of G and R."),
             threads: int = typer.Option(_DISCOVER.threads, help="Torch CPU threads in all, split between "
                                         "the workers (1 on a machine busy with other jobs)."),
             workers: int = typer.Option(_DISCOVER.workers, help="Trainings (learned, random, coordinate) "
                                         "run at once, each in its own process; 1: one after the other."),
             out: Path = typer.Option(Path("runs/vb"), help="Folder for checkpoints (a killed run resumes), "
                                      "directions.npz, discover.json and rca.png."),
             torch_generator: Optional[str] = typer.Option(None, help="The generator as a torch module, "
                                                           "'package.module:factory' (default: the built-in "
                                                           "bundle's, or the bundle's generator.onnx converted "
                                                           "to torch)."),
             generator_weights: Optional[Path] = typer.Option(None, help="state_dict .pt of that generator."),
             json_out: bool = c.JsonOpt):
    """Voynov–Babenko directions learned with a reconstructor, and their RCA against random and coordinate
    directions (SPEC §8).

    The built-in bundle's torch generator ships; any other bundle's generator.onnx is converted to torch
    (onnx2torch). Or give your generator as a torch module: --torch-generator package.module:factory
    (importable, returns the nn.Module) and --generator-weights state_dict.pt. Either is checked against
    the bundle's generator.onnx.
    """
    need_torch()
    from corrkit.export.discover import discover_bundle

    s = DiscoverSettings(kind=kind, steps=steps, n_directions=n_directions, seed=seed, init_scale=init_scale,
                         eval_samples=eval_samples, bf16=bf16, threads=threads, workers=workers)
    with c.progress_bar(not json_out) as progress:
        bundle = c.resolve_bundle(model, generator, classifier, classes, generator_range, classifier_range, output,
                                  inputs, generator_output_name, classifier_output_name)
        r = discover_bundle(bundle, s, out, torch_generator=torch_generator,
                            generator_weights=generator_weights, progress=progress)
    summary = {**r.summary(), "out": out}
    c.echo_json(summary) if json_out else typer.echo(
        f"RCA learned {r.rca:.3f}, random {r.rca_random:.3f}, coordinate {r.rca_coordinate:.3f}; wrote {out}")


@app.command("invert")
@c.handles_errors
@c.checks_options("export invert")
def invert(model: Optional[Path] = c.ModelArg,
           generator: Optional[Path] = c.GeneratorOpt, classifier: Optional[Path] = c.ClassifierOpt,
           classes: Optional[str] = c.ClassesOpt, generator_range: str = c.GenRangeOpt,
           classifier_range: str = c.ClsRangeOpt, output: Optional[str] = c.OutputOpt,
           inputs: Optional[List[str]] = c.InputOpt, generator_output_name: Optional[str] = c.GenOutputNameOpt,
           classifier_output_name: Optional[str] = c.ClsOutputNameOpt,
           images: Optional[Path] = typer.Option(None, help="Images to invert, .npy [n, C, H, W] float in the "
                                                 "generator's output range (needed for any bundle but the "
                                                 "built-in one, which inverts Fashion-MNIST test images)."),
           labels: Optional[Path] = typer.Option(None, help="Their classes, .npy int [n] (optional)."),
           n_per_class: int = typer.Option(200, help="Fashion-MNIST test images per class (without --images)."),
           restarts: int = typer.Option(3, help="Starting points per image; the best is kept."),
           steps: int = typer.Option(80, help="Adam steps of the kept restart (2,000 images: ~4 min on 2 cores)."),
           explore_steps: int = typer.Option(15, help="Steps every restart runs before the best is chosen."),
           lr: float = typer.Option(0.05, help="Adam learning rate (cosine decay to a tenth)."),
           beta: float = typer.Option(0.01, help="Weight of ||z||² against the summed squared pixel error."),
           pool: int = typer.Option(4096, help="Prior samples whose nearest images start the restarts (0: random)."),
           seed: int = typer.Option(0, help="Seed of the image choice, pool and starts."),
           bf16: bool = typer.Option(True, "--bf16/--no-bf16", help="bf16 autocast of the steps (errors in fp32)."),
           weights: Optional[Path] = typer.Option(None, help="The paper's generator state_dict matching the "
                                                  "bundle's generator.onnx (default: the built-in weights, or the "
                                                  "bundle's generator.onnx converted to torch)."),
           data_dir: Optional[Path] = typer.Option(None, help="Fashion-MNIST IDX folder."),
           out: Path = typer.Option(Path("build/invert"), help="Folder for codes.npy, labels.npy, recon_error.npy."),
           json_out: bool = c.JsonOpt):
    """Invert real images into latent codes: min ||G(z) - x||² + beta·||z||² (SPEC §6)."""
    need_torch()
    from corrkit._core.grid import load_array
    from corrkit.export.invert import InversionSettings, invert as run_invert

    s = InversionSettings(steps=steps, explore_steps=explore_steps, restarts=restarts, lr=lr, beta=beta, pool=pool,
                          seed=seed, bf16=bf16)
    bundle = c.resolve_bundle(model, generator, classifier, classes, generator_range, classifier_range, output,
                              inputs, generator_output_name, classifier_output_name)
    x = load_array(images, "--images") if images is not None else None
    y = load_array(labels, "--labels") if labels is not None else None
    with c.progress_bar(not json_out) as progress:
        summary = run_invert(bundle, n_per_class=n_per_class, settings=s, weights=weights, data_dir=data_dir,
                             out=out, images=x, labels=y, progress=progress)
    c.echo_json(summary) if json_out else typer.echo(
        f"{summary['n_images']} images in {summary['seconds']:.0f} s; mean reconstruction error "
        f"{summary['recon_error_mean']:.4f} (start {summary['start_error_mean']:.4f}); wrote {out}")
