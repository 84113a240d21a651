"""What every command option accepts, checked in one place before a command does any work.

Each command is decorated with :func:`checks_options`, which looks its arguments up by
parameter name in the table of :func:`_rules` (``(command, name)`` first, then ``name``)
and runs each rule before the command body: so a bad value costs nothing, is one ``error:`` line
(exit 1), and never reaches an earlier result in ``--out``. Type errors (``--steps abc``)
stay Click's usage errors (exit 2). Checks that need the model (``--top-k`` against the
latent size, the grid's size against the memory cap) are the first lines of the
library functions. ``tests/test_fuzz_cli.py`` asserts every option of every command has a rule.
"""

from __future__ import annotations

import functools
import inspect
import math
from pathlib import Path
from typing import Callable

import numpy as np

from corrkit.errors import CorrkitError

Rule = Callable[[object], None]

# Bounds of options without a natural one: far past any useful run, low enough that a typo
# (10**12) is refused at once instead of allocating or running for days.
MAX_SAMPLES_PER_CLASS = 1_000_000  # refined by the memory cap once the model's sizes are known
MAX_BENCH_BATCH = 16_384  # the largest batch engine.default_batch_size picks
MAX_EPOCHS = 10_000
MAX_TRAINING_STEPS = 10_000_000
MAX_IMAGES_PER_CLASS = 1_000  # Fashion-MNIST's test set holds 1,000 per class


def whole(flag: str, lo: int = 1, hi: int | None = None) -> Rule:
    from corrkit._core.grid import check_whole

    return lambda v: check_whole(v, flag, lo, hi)


def whole_or_auto(flag: str, hi: int) -> Rule:
    """``auto``, or a whole number ``1 .. hi`` written in digits (the option is text so that it can say ``auto``)."""
    from corrkit._core.grid import check_whole

    def rule(v):
        if v == "auto":
            return
        text = str(v).strip()
        if not text.isdigit():
            raise CorrkitError(f"{flag} must be a whole number >= 1 or `auto` (got {v!r})")
        check_whole(int(text), flag, 1, hi)
    return rule


def real(flag: str, lo: float | None = None, hi: float | None = None, lo_open=False, hi_open=False) -> Rule:
    from corrkit._core.grid import check_real

    return lambda v: check_real(v, flag, lo, hi, lo_open=lo_open, hi_open=hi_open)


def choice(flag: str, options: tuple[str, ...]) -> Rule:
    def rule(v):
        if v not in options:
            raise CorrkitError(f"{flag} must be one of {', '.join(options)} (got {v!r})")
    return rule


def out(flag: str = "--out", kind: str = "folder") -> Rule:
    from corrkit._core.io import check_writable

    return lambda v: check_writable(v, kind, flag)


def given(what: str, kind: str = "file", hint: str = "") -> Rule:
    """An input that must exist, be of ``kind`` (file, folder or any) and be readable; with ``kind="any"``
    (a model) also a built-in bundle's name (``builtin:style``) where no such path exists."""
    from corrkit._core.bundle import BUILTIN_NAMES
    from corrkit._core.io import check_readable

    def rule(v):
        if kind == "any" and str(v) in BUILTIN_NAMES and not Path(v).exists():
            return
        check_readable(v, what, kind, hint)
    return rule


def each(rule: Rule) -> Rule:
    def rules(values):
        for v in values:
            rule(v)
    return rules


def seed(v) -> None:
    from corrkit._core.grid import check_seed

    check_seed(v)


def grid_steps(v) -> None:
    from corrkit._core.grid import check_steps

    check_steps(v, 1.0)


def value_range(flag: str) -> Rule:
    def rule(text):
        try:
            lo, hi = (float(v) for v in text.split(","))
        except ValueError:
            raise CorrkitError(f"{flag} must be two numbers 'lo,hi', got {text!r}") from None
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise CorrkitError(f"{flag} must be two finite numbers lo < hi, got {text!r}")
    return rule


def class_names(text) -> None:
    if text and any(not name.strip() for name in text.split(",")):
        raise CorrkitError(f"--classes must be comma-separated names, none empty (got {text!r})")


def class_list(flag: str) -> Rule:
    """Comma-separated class indices or names, none empty (the model judges the names)."""
    def rule(text):
        if not text.strip() or any(not name.strip() for name in text.split(",")):
            raise CorrkitError(f"{flag} must be comma-separated class indices or names, none empty (got {text!r})")
    return rule


def named_directions(pairs) -> None:
    from corrkit._core.io import check_readable
    from corrkit.methods.compare import check_method_name

    for text in pairs:
        name, eq, path = text.partition("=")
        if not eq or not path:
            raise CorrkitError(f"--directions takes NAME=FILE (got {text!r})")
        check_method_name(name)
        check_readable(path, f"--directions {name}:", "file")


def ray_address(v) -> None:
    from corrkit._core.distributed import check_reachable

    check_reachable(v)


def torch_factory(flag: str) -> Rule:
    def rule(v):
        module, colon, factory = v.partition(":")
        if not colon or not all(part.isidentifier() for part in module.split(".")) or not factory.isidentifier():
            raise CorrkitError(f"{flag} must be 'package.module:factory' (got {v!r})")
    return rule


def latent_shape(text) -> None:
    try:
        shape = [int(v) for v in text.split(",")]
    except ValueError:
        shape = []
    if not (len(shape) in (1, 3) and shape[0] >= 1 and shape[1:] in ([], [1, 1])):
        raise CorrkitError(f"--latent-shape must be N or N,1,1 with N >= 1, got {text!r}")


def input_values(items) -> None:
    """``--input NAME=VALUE``: the form as ``parse_inputs`` reads it, and finite numbers only."""
    from corrkit.cli._common import parse_inputs

    for name, value in parse_inputs(items).items():
        try:
            finite = bool(np.isfinite(np.asarray(value, dtype=float)).all())
        except (TypeError, ValueError):  # text, or lists of unequal lengths
            finite = False
        if not finite:
            raise CorrkitError(f"--input {name}: the value must be a number or a list of numbers, all finite "
                               f"(got {value!r})")


def unchecked(v) -> None:
    """Free text or a flag, or a value only the model can judge (a class name), checked where it is used."""


def explore_host(v) -> None:
    from corrkit.viz.explore.web import check_host

    check_host(v)


def _rules() -> dict:
    from corrkit._core.execution import DEVICES, MAX_BATCH_SIZE, MAX_SHARD_POINTS, MAX_THREADS, MAX_WORKERS, MODES
    from corrkit.export.discover.settings import KINDS
    from corrkit.methods.ganspace import MAX_SAMPLES as MAX_GANSPACE_SAMPLES
    from corrkit.methods.interfacegan import MAX_SAMPLES as MAX_INTERFACEGAN_SAMPLES
    from corrkit.methods.latent_space import MAX_FOLDS, MAX_PRIOR, MAX_SEED
    from corrkit.methods.manipulate import MAX_ALPHA_STEPS
    from corrkit.methods.objective import ESTIMATORS, MAX_ITERATIONS, MAX_PERTURBATIONS, OBJECTIVES

    readable = given("MODEL", "any", "give a bundle folder, an .onnx model or builtin:style")

    def model(v):
        from corrkit._core.bundle import BUILTIN_NAMES

        if not (str(v) in BUILTIN_NAMES and not Path(v).exists()):
            readable(v)
    return {
        # inputs
        "model": model, "path": model,
        "generator": given("--generator"), "classifier": given("--classifier"),
        "latents": given("--latents"), "directions": given("--directions"), "against": given("--against"),
        "codes": given("CODES"), "labels": given("LABELS"), "generator_weights": given("--generator-weights"),
        "run": given("--run", "folder"), "run_dir": given("RUN_DIR", "folder"),
        "run_dirs": each(given("RUN_DIR", "folder")), "data_dir": given("--data-dir", "folder"),
        "weights": given("--weights"), "images": given("--images"), ("export invert", "labels"): given("--labels"),
        ("compare", "directions"): named_directions, "boundaries": given("--boundaries"),
        ("export optimize", "weights"): given("--weights", "folder"),
        ("export bundle", "work"): given("--work", "folder"),
        ("export bundle-style", "work"): given("--work", "folder"),
        ("figures", "model"): given("--model", "any"), ("latents", "model"): given("--model", "any"),
        # outputs
        "out": out(),
        ("sefa", "out"): out(kind="file"), ("optimize", "out"): out(kind="file"),
        ("report", "out"): out(kind="file"), ("export optimize", "out"): out(kind="file"),
        ("ganspace", "out"): out(kind="file"), ("interfacegan", "out"): out(kind="file"),
        ("export train", "work"): out("--work"), ("export train-style", "work"): out("--work"),
        ("export attributes", "work"): out("--work"),
        # numbers
        "seed": seed, ("latents", "seed"): whole("--seed", 0, MAX_SEED),
        "samples_per_class": whole("--samples-per-class", 1, MAX_SAMPLES_PER_CLASS),
        ("apcr", "samples_per_class"): whole_or_auto("--samples-per-class", MAX_SAMPLES_PER_CLASS),
        "max_samples_per_class": whole("--max-samples-per-class", 1, MAX_SAMPLES_PER_CLASS),
        "threshold": real("--threshold", 0, 1, hi_open=True),
        "steps": grid_steps,
        ("manipulate", "steps"): whole("--steps", 1, MAX_ALPHA_STEPS),
        ("translate", "steps"): whole("--steps", 1, MAX_ALPHA_STEPS),
        ("export discover", "steps"): whole("--steps", 1, MAX_TRAINING_STEPS),
        ("export invert", "steps"): whole("--steps", 1, MAX_TRAINING_STEPS),
        "delta": real("--delta", 0, lo_open=True),
        "alpha": real("--alpha", 0, lo_open=True),
        "top_k": whole("--top-k", 1), "top": whole("--top", 0),
        "batch_size": whole("--batch-size", 1, MAX_BATCH_SIZE),
        ("bench", "batch_size"): whole("--batch-size", 1, MAX_BENCH_BATCH),
        "threads": whole("--threads", 1, MAX_THREADS), "workers": whole("--workers", 1, MAX_WORKERS),
        "shard_points": whole("--shard-points", 1, MAX_SHARD_POINTS),
        "checkpoint_every": real("--checkpoint-every", 0),
        "iterations": whole("--iterations", 1, MAX_ITERATIONS),
        "perturbations": whole("--perturbations", 1, MAX_PERTURBATIONS),
        "sigma": real("--sigma", 0, lo_open=True), "average": real("--average", 0, 1, hi_open=True),
        ("ganspace", "samples"): whole("--samples", 2, MAX_GANSPACE_SAMPLES),
        ("interfacegan", "samples"): whole("--samples", 2, MAX_INTERFACEGAN_SAMPLES),
        "components": whole("--components", 1),
        "n_prior": whole("--n-prior", 0, MAX_PRIOR), "folds": whole("--folds", 2, MAX_FOLDS),
        "gan_epochs": whole("--gan-epochs", 1, MAX_EPOCHS),
        "classifier_epochs": whole("--classifier-epochs", 1, MAX_EPOCHS),
        "epochs": whole("--epochs", 1, MAX_EPOCHS), "minutes": real("--minutes", 0, 7 * 24 * 60, lo_open=True),
        "n_directions": whole("--directions", 2, 100_000),
        "init_scale": real("--init-scale", 0, lo_open=True),
        "eval_samples": whole("--eval-samples", 1, MAX_TRAINING_STEPS),
        "n_per_class": whole("--n-per-class", 1, MAX_IMAGES_PER_CLASS),
        "restarts": whole("--restarts", 1, 1_000), "explore_steps": whole("--explore-steps", 1, MAX_TRAINING_STEPS),
        "lr": real("--lr", 0, lo_open=True), "beta": real("--beta", 0), "pool": whole("--pool", 0, 1_000_000),
        # choices and text
        "device": choice("--device", DEVICES), "mode": choice("--mode", MODES),
        "objective": choice("--objective", OBJECTIVES), "estimator": choice("--estimator", ESTIMATORS),
        "kind": choice("--type", KINDS),
        "generator_range": value_range("--generator-range"), "classifier_range": value_range("--classifier-range"),
        "classes": class_names, "keep": class_list("--keep"), "layer": unchecked,
        "ray": ray_address, "torch_generator": torch_factory("--torch-generator"),
        ("export model", "generator"): torch_factory("--generator"),
        ("export model", "classifier"): torch_factory("--classifier"),
        "classifier_weights": given("--classifier-weights"), "latent_shape": latent_shape,
        "inputs": input_values, "generator_output_name": unchecked, "classifier_output_name": unchecked,
        "output": unchecked, "class_": unchecked, "source": unchecked, "target": unchecked, "title": unchecked,
        "json_out": unchecked, "quick": unchecked, "sefa": unchecked, "traversals": unchecked, "render": unchecked,
        "ganspace": unchecked, "interfacegan": unchecked, "shipped": unchecked,
        "force": unchecked, "bf16": unchecked, "all_pairs": unchecked, "verbose": unchecked,
        "space": choice("--space", ("z", "w", "w+")), "truncation": real("--truncation"),
        "layers": unchecked, "by_layer": unchecked,
        "mapping": given("--mapping"), "synthesis": given("--synthesis"), "w_avg": given("--w-avg"),
        "split_at": unchecked, "class_input": unchecked,
        # corrkit explore
        ("explore", "port"): whole("--port", 1, 65535), ("explore", "host"): explore_host,
        ("explore", "check"): unchecked,
    }


_RULES: dict | None = None


def rule_for(command: str, name: str) -> Rule | None:
    """The rule of option ``name`` of ``command`` (``"export invert"``), or ``None`` when the table has none."""
    global _RULES
    if _RULES is None:
        _RULES = _rules()
    return _RULES.get((command, name), _RULES.get(name))


def check_options(command: str, options: dict) -> None:
    """Run the rule of every option given (``None`` stands for "not given" and is not checked)."""
    for name, value in options.items():
        rule = rule_for(command, name)
        if rule is not None and value is not None:
            rule(value)


def checks_options(command: str):
    """Decorate a command so that all its options are checked by :func:`check_options` before its body runs.

    Its path options and arguments become plain paths for Click: typer declares them
    ``readable=True``, which makes an unreadable file a usage error (exit 2) before
    corrkit sees it; the rules above check them instead (one ``error:`` line, exit 1).
    """

    def decorate(fn):
        for param in inspect.signature(fn).parameters.values():
            if hasattr(param.default, "readable"):  # typer's OptionInfo / ArgumentInfo
                param.default.readable = False

        @functools.wraps(fn)
        def wrapper(**kwargs):
            if command.startswith("export "):  # the missing extra first: no option can help without torch
                import importlib.util

                from corrkit.errors import MissingExtraError

                if importlib.util.find_spec("torch") is None:
                    raise MissingExtraError("torch", "train")
            check_options(command, kwargs)
            return fn(**kwargs)

        return wrapper

    return decorate
