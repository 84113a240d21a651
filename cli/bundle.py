"""`corrkit bundle info|create`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from corrkit.cli import _common as c

app = typer.Typer(help="Inspect and create model bundles.", no_args_is_help=True)


@app.command("info")
@c.handles_errors
@c.checks_options("bundle info")
def info(path: Optional[Path] = c.ModelArg, json_out: bool = c.JsonOpt):
    """Print a bundle's card: models, classes, ranges, provenance and metrics."""
    from corrkit._core.bundle import load_bundle
    from corrkit._core.engine import Engine

    bundle = load_bundle(path)
    card = bundle.card()
    card["providers"] = Engine(bundle, device="cpu", batch_size=16).session.get_providers()
    if json_out:
        return c.echo_json(card)
    for key in ("path", "latent_dim", "latent_distribution", "classes", "image_shape", "generator_output_range",
                "classifier_input_range", "classifier_output"):
        typer.echo(f"{key:24s} {card[key]}")
    for key, value in card["metrics"].items():
        typer.echo(f"metric {key:17s} {value}")


@app.command("create")
@c.handles_errors
@c.checks_options("bundle create")
def create(
    generator: Optional[Path] = typer.Option(None, "--generator", help="Generator ONNX (z [B, N] -> image)."),
    classifier: Path = typer.Option(..., "--classifier", help="Classifier ONNX (image -> [B, C])."),
    out: Path = typer.Option(..., "--out", help="Bundle folder to write."),
    classes: Optional[str] = c.ClassesOpt, generator_range: str = c.GenRangeOpt,
    classifier_range: str = c.ClsRangeOpt,
    output: str = typer.Option("auto", "--output", help="Classifier output kind: logits, probabilities or auto "
                               "(read from prior samples and recorded in bundle.json)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing bundle at --out (never any other folder)."),
    inputs: Optional[List[str]] = c.InputOpt, generator_output_name: Optional[str] = c.GenOutputNameOpt,
    classifier_output_name: Optional[str] = c.ClsOutputNameOpt,
    mapping: Optional[Path] = typer.Option(None, "--mapping", help="Instead of --generator: a mapping network "
                                           "ONNX (z [B, Nz] -> w [B, Nw]) ..."),
    synthesis: Optional[Path] = typer.Option(None, "--synthesis", help="... and its synthesis network ONNX "
                                             "(ws [B, L, Nw] or w [B, Nw] -> image)."),
    w_avg: Optional[Path] = typer.Option(None, "--w-avg", help="Mean w (.npy [Nw]) for --truncation."),
    class_input: Optional[str] = typer.Option(None, "--class-input", help="With --mapping: the name of its class "
                                              "input (an index of the classifier's classes, or a one-hot row); "
                                              "the code z then ends with one coordinate per class, whose argmax "
                                              "is the class."),
    split_at: Optional[str] = typer.Option(None, "--split-at", help="With --generator: the name of its w tensor "
                                           "(w [B, Nw] or ws [B, L, Nw]); the graph is cut there into a mapping "
                                           "and a synthesis network (a mapping/synthesis bundle)."),
):
    """Turn a user's ONNX generator (or mapping + synthesis) and classifier into a bundle, checking shapes
    and output kind."""
    from corrkit._core.bundle import create_bundle
    from corrkit._core.style_bundle import create_style_bundle
    from corrkit.errors import CorrkitError

    names = [s.strip() for s in classes.split(",")] if classes else None
    if split_at is not None:
        if generator is None or mapping is not None or synthesis is not None:
            raise CorrkitError("--split-at cuts the graph of --generator; give it with --generator only")
        import tempfile

        from corrkit._core.style_bundle import split_generator

        scratch = tempfile.TemporaryDirectory(prefix="corrkit-split-")
        mapping, synthesis = split_generator(generator, split_at, scratch.name)
        generator = None
    if class_input is not None and mapping is None:
        raise CorrkitError("--class-input names an input of --mapping; give it with --mapping and --synthesis")
    if (mapping is None) != (synthesis is None) or (mapping is None) == (generator is None):
        raise CorrkitError("give --generator, or --mapping and --synthesis (a StyleGAN-family pair), with "
                           "--classifier")
    if mapping is not None:
        if inputs or generator_output_name or classifier_output_name:
            raise CorrkitError("--input and output names are not supported with --mapping/--synthesis yet")
        b = create_style_bundle(mapping, synthesis, classifier, out, classes=names, classifier_output=output,
                                generator_output_range=c.parse_range(generator_range, "--generator-range"),
                                classifier_input_range=c.parse_range(classifier_range, "--classifier-range"),
                                w_avg=w_avg, force=force, class_input=class_input)
        st = b.style
        return typer.echo(f"bundle written to {out} (Nz={st.z_dim}, Nw={st.w_dim}, L={st.n_layers}, "
                          f"C={b.n_classes}, {b.classifier_output})")
    b = create_bundle(generator, classifier, out, classes=names, classifier_output=output,
                      generator_output_range=c.parse_range(generator_range, "--generator-range"),
                      classifier_input_range=c.parse_range(classifier_range, "--classifier-range"), force=force,
                      inputs=c.parse_inputs(inputs), outputs=c.parse_outputs(generator_output_name,
                                                                             classifier_output_name))
    typer.echo(f"bundle written to {out} (N={b.latent_dim}, C={b.n_classes}, {b.classifier_output})")
