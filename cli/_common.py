"""What every command shares: error handling, bundle options, progress, output."""

from __future__ import annotations

import functools
import json
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer

from corrkit.cli._checks import checks_options  # noqa: F401  (commands use c.checks_options)
from corrkit.errors import CorrkitError


def _warn_one_line(message, category, filename, lineno, file=None, line=None):
    print(f"warning: {message}", file=sys.stderr)


def handles_errors(fn):
    """Turn a :class:`CorrkitError` into one line on stderr and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        warnings.showwarning = _warn_one_line
        try:
            return fn(*args, **kwargs)
        except CorrkitError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None

    return wrapper


def echo_json(obj) -> None:
    from corrkit._core.io import _default

    typer.echo(json.dumps(obj, indent=2, default=_default))


def path_argument(help: str):
    """An optional PATH argument; its default (None) stands for something the help names, so it is not shown."""
    return typer.Argument(None, help=help, show_default=False)


# Options shared by every command that takes a model.
ModelArg = path_argument("Bundle folder or fused .onnx model (default: the built-in bundle).")
GeneratorOpt = typer.Option(None, "--generator", help="Generator ONNX (z [B, N] -> image).")
ClassifierOpt = typer.Option(None, "--classifier", help="Classifier ONNX (image -> [B, C]).")
ClassesOpt = typer.Option(None, "--classes", help="Comma-separated class names.")
InputOpt = typer.Option(None, "--input", help="NAME=VALUE: hold an extra model input (a class label, truncation, "
                        "noise) at VALUE, a number or JSON list; repeatable; ROLE.NAME when both models have NAME.")
GenOutputNameOpt = typer.Option(None, "--generator-output-name", help="The generator output to use, when it has "
                                "several.")
ClsOutputNameOpt = typer.Option(None, "--classifier-output-name", help="The classifier output to use, when it "
                                "has several.")
GenRangeOpt = typer.Option("-1,1", "--generator-range", help="Generator output range lo,hi.")
ClsRangeOpt = typer.Option("-1,1", "--classifier-range", help="Classifier input range lo,hi.")
OutputOpt = typer.Option(None, "--output", help="Classifier output kind: logits, probabilities or auto (read "
                         "from prior samples; default: bundle.json's, else auto), or sigmoid: independent attribute "
                         "logits, each attribute scored present and absent (SPEC §11). A kind the outputs "
                         "contradict is an error.")
DeviceOpt = typer.Option("auto", "--device", help="auto, cpu or cuda.")
JsonOpt = typer.Option(False, "--json", help="Print the result as JSON on stdout.")
RayOpt = typer.Option(None, "--ray", metavar="[ADDRESS]", show_default=False,
                      help="Run the grid's shards on Ray (extra `ray`): bare --ray starts a local instance sized "
                      "to this machine, --ray ADDRESS joins a cluster (auto, HOST:6379, ray://HOST:10001).")
WorkersOpt = typer.Option(None, "--workers", help="Ray actors (default: one per GPU, else one per CPU).")
VerboseOpt = typer.Option(False, "--verbose", help="Show Ray's own log lines (kept out of the terminal by default).")


# Mapping/synthesis bundles (SPEC §12): where interventions happen.
SpaceOpt = typer.Option("z", "--space", help="z, w or w+: the latent space interventions happen in (w, w+: a "
                        "mapping/synthesis bundle; codes are drawn in z and mapped).")
TruncationOpt = typer.Option(1.0, "--truncation", help="psi: w = w_avg + psi (w - w_avg) (1: none).")
LayersOpt = typer.Option(None, "--layers", help="W+ only: style layers a direction moves, e.g. 0-3,8 (default: all); "
                         "with --by-layer each comma item is ranked apart.")


def in_space(bundle, space: str = "z", truncation: float = 1.0, layers: Optional[str] = None,
             by_layer: bool = False):
    """``bundle`` viewed in ``--space`` with ``--truncation`` and ``--layers`` (checked against the model)."""
    from corrkit._core.style import Space, parse_layers

    if bundle.style is None:  # only Z: in_space refuses anything else in one line
        groups = () if layers else None
    else:
        n_layers = bundle.style.n_layers
        groups = parse_layers(layers, n_layers) or (tuple((x,) for x in range(n_layers)) if by_layer else None)
    return bundle.in_space(Space(space, float(truncation), groups, bool(by_layer)))


def in_space_unless_run(bundle, run, space: str = "z", truncation: float = 1.0, layers: Optional[str] = None):
    """:func:`in_space` for a command that takes ``--run`` too: a run brings its own recorded space."""
    from corrkit.errors import CorrkitError

    if run is None:
        return in_space(bundle, space, truncation, layers)
    if (space, float(truncation), layers) != ("z", 1.0, None):
        raise CorrkitError("--space, --truncation and --layers are the run's (recorded with it); give them "
                           "without --run, or re-run apcr in that space")
    return bundle


def execution(ray: Optional[str] = None, **options):
    """The :class:`~corrkit._core.execution.Execution` of a command's options, checked before any work.

    ``ray`` is ``--ray``'s value: ``None`` runs here, an address (``local`` for bare ``--ray``) on Ray.
    """
    from corrkit._core.execution import Execution

    return Execution(**options, **({} if ray is None else {"executor": "ray", "ray_address": ray}))


def bare_ray(argv: list[str]) -> list[str]:
    """Read a bare ``--ray`` (last, or followed by another option) as ``--ray local``.

    Click options cannot take an optional value; this keeps ``--ray [ADDRESS]`` one option.
    """
    out = []
    for i, arg in enumerate(argv):
        out.append(arg)
        if arg == "--ray" and (i + 1 == len(argv) or argv[i + 1].startswith("-")):
            out.append("local")
    return out

# Commands that start from an `apcr` run (manipulate, translate).
RunOpt = typer.Option(None, "--run", help="A `corrkit apcr --out` folder (default: run apcr now).")

# The optimisation of w* (SPEC §3), the same settings with or without torch (`optimize`, `export optimize`).
ObjectiveOpt = typer.Option("paper", "--objective", help="paper: z ± xi·w; authors: z ⊙ (1 ± 10·mean(z)·w).")
IterationsOpt = typer.Option(1000, "--iterations", help="Gradient-descent steps per class.")
BatchSizeOpt = typer.Option(32, "--batch-size", help="Codes per step (32: the whole default class set; "
                                                    "the authors used 1).")
SamplesPerClassOpt = typer.Option(32, "--samples-per-class", help="Codes per class set (as in `corrkit apcr`).")
AverageOpt = typer.Option(0.4, "--average", help="Share of the last steps averaged into w* (0: last w).")


def parse_range(text: str, what: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise CorrkitError(f"{what} must be two numbers 'lo,hi', got {text!r}") from None
    return lo, hi


def parse_inputs(items: Optional[list[str]]) -> dict:
    """``--input NAME=VALUE`` (repeatable) as ``{NAME: value}``; VALUE is a number or a JSON list."""
    out = {}
    for item in items or []:
        name, eq, text = item.partition("=")
        try:
            if not (eq and name.strip()):
                raise ValueError
            out[name.strip()] = json.loads(text)
        except ValueError:
            raise CorrkitError(f"--input takes NAME=VALUE with a number or a JSON list as VALUE, got {item!r}") \
                from None
    return out


def parse_outputs(generator_output: Optional[str], classifier_output: Optional[str]) -> dict:
    return {k: v for k, v in (("generator", generator_output), ("classifier", classifier_output)) if v}


def resolve_bundle(model: Optional[Path], generator: Optional[Path] = None, classifier: Optional[Path] = None,
                   classes: Optional[str] = None, generator_range: str = "-1,1", classifier_range: str = "-1,1",
                   output: Optional[str] = None, inputs: Optional[list[str]] = None,
                   generator_output: Optional[str] = None, classifier_output: Optional[str] = None):
    """A bundle from the positional MODEL, or from --generator/--classifier (with --input and output names)."""
    from corrkit._core.bundle import from_pair, load_bundle

    names = [c.strip() for c in classes.split(",")] if classes else None
    if generator is not None or classifier is not None:
        if generator is None or classifier is None or model is not None:
            raise CorrkitError("give both --generator and --classifier (and no MODEL), or a MODEL alone")
        return from_pair(generator, classifier, classes=names,
                         generator_output_range=parse_range(generator_range, "--generator-range"),
                         classifier_input_range=parse_range(classifier_range, "--classifier-range"),
                         classifier_output=output or "auto", inputs=parse_inputs(inputs),
                         outputs=parse_outputs(generator_output, classifier_output))
    if inputs or generator_output or classifier_output:
        raise CorrkitError("--input and output names go with --generator/--classifier (a bundle folder records "
                           "them in bundle.json: make it with `corrkit bundle create ... --input NAME=VALUE`)")
    bundle = load_bundle(model, classifier_output=output)
    if names is not None:
        if len(names) != bundle.n_classes:
            raise CorrkitError(f"{len(names)} class names given, the model has {bundle.n_classes} classes")
        bundle.classes = names
    return bundle


def run_or_given_bundle(run: Optional[Path], model: Optional[Path], generator: Optional[Path] = None,
                        classifier: Optional[Path] = None, *rest):
    """The models the user points at, else, with ``--run`` and no model options, the ones that run was made with.

    A run records its models' paths and SHA-256; when they moved or changed, one line says so and how to
    point at them.
    """
    import warnings

    if run is None or model is not None or generator is not None or classifier is not None:
        return resolve_bundle(model, generator, classifier, *rest)
    from corrkit._core.runs import run_bundle
    from corrkit.methods.sequential import APCRResult

    APCRResult.load(run)  # the run's files checked first: a damaged one is refused in one line, before its card is read
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        bundle = run_bundle(run)
    if bundle is None:
        why = str(seen[-1].message) if seen else "its models are not at hand"
        raise CorrkitError(f"{why}; point at the models with MODEL or --generator/--classifier")
    return bundle


@contextmanager
def progress_bar(enabled: bool = True):
    """Yields ``update(stage, done, total)``; draws a bar on stderr when it is a terminal."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    show = enabled and console.is_terminal
    with Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeRemainingColumn(),
                  console=console, transient=True, disable=not show) as prog:
        tasks: dict[str, int] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = prog.add_task(stage, total=total)
            prog.update(tasks[stage], completed=done, total=total)

        yield update
