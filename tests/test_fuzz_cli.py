"""Every option of every command given hostile values (hostile-input audit, item 6).

For each command of the typer tree, each option and argument in turn gets a few values
drawn with a seeded generator (negative, zero, 10**12, nan, inf, empty, text, a missing
path, a folder where a file goes, a file where a folder goes) on top of a tiny valid
command line (the known-answer model of ``tests/onnx_fixtures.py``, one code per class,
one step). Whatever the value, the command must end with exit code 0, 1 (one ``error:``
line) or 2 (Click's usage box), never a traceback; the input files must stay as they
were; and an earlier result in ``--out`` must stay byte-identical unless the command
succeeded. ``export`` commands always get a second, invalid option, so they never start
torch work. Runs in-process with ``CliRunner``.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import shutil
import typing
from pathlib import Path

import numpy as np
import pytest
import typer
import typer.core
from typer.testing import CliRunner

from corrkit._core.bundle import builtin_path
from corrkit.cli._checks import rule_for
from corrkit.cli.main import app
from corrkit.methods.optimize import optimize

DRAWS = 4  # values per option and argument; the generator's seed fixes which
SEED = 20261202
NUMBERS = ["-1", "0", "-5", str(10**12), "nan", "inf", "-inf", "", "abc", "1e300"]
TEXTS = ["", "abc", "nan", "-1", "0", "a,,b", "x" * 300, "ray://", "0:0"]
# --out is a file there, a folder elsewhere
FILE_OUT = {"sefa", "optimize", "report", "export optimize", "ganspace", "interfacegan"}
# Export commands: an invalid option always given (the second when the first is the one being fuzzed).
GUARDS = {
    "export train": [("gan_epochs", "0"), ("classifier_epochs", "0")],
    "export train-style": [("epochs", "0"), ("minutes", "0")],
    "export attributes": [("epochs", "0"), ("data_dir", "MISSING")],
    "export bundle": [("work", "MISSING"), ("data_dir", "MISSING")],
    "export bundle-style": [("work", "MISSING"), ("data_dir", "MISSING")],
    "export optimize": [("seed", "-1"), ("iterations", "0")],
    "export discover": [("seed", "-1"), ("steps", "0")],
    "export invert": [("seed", "-1"), ("steps", "0")],
    "export model": [("latent_shape", "0"), ("generator", "no-factory")],
}
# fuzzed with paths in the case's own folder, not among the inputs
OUTPUTS = {"out", "export train work", "export train-style work", "export attributes work"}
runner = CliRunner()
_cases = itertools.count()


def _commands(group=None, prefix=()):
    group = group or typer.main.get_command(app)
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):
            yield from _commands(cmd, prefix + (name,))
        else:
            yield " ".join(prefix + (name,)), cmd


COMMANDS = dict(_commands())


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "<dir>"
            for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def world(known_model):
    """Inputs of the tiny command lines, in one folder that no command may change."""
    bundle, run, d = known_model
    w = optimize(bundle, iterations=2, samples_per_class=2, estimator="codes")
    w.save(d / "w.npz")
    np.save(d / "codes.npy", run.latents)
    np.save(d / "labels.npy", run.labels)
    np.save(d / "dirs.npy", np.eye(6, dtype=np.float32)[:3])
    (d / "afolder").mkdir(exist_ok=True)
    (d / "afile.txt").write_text("a file\n")
    return d


def baseline(command: str, d: Path) -> tuple[dict, list[str]]:
    """A tiny valid command line as {param name: value} (arguments too) and extra flags."""
    lin, run = str(d / "lin.onnx"), str(d / "run")
    tiny = {"samples_per_class": "1", "steps": "1", "device": "cpu"}
    b = builtin_path()
    lines = {
        "apcr": ({"model": lin, "output": "logits", "threshold": "0.34", **tiny}, []),
        "bench": ({"model": lin, "device": "cpu", "batch_size": "16"}, ["--quick"]),
        "compare": ({"model": lin, **tiny}, ["--no-sefa", "--no-ganspace", "--no-interfacegan"]),
        "ganspace": ({"samples": "200"}, []),
        "interfacegan": ({"model": lin, "output": "logits", "samples": "300", "device": "cpu"}, []),
        "control": ({"run_dir": run, "weights": str(d / "w.npz"), "top_k": "2"}, []),
        "figures": ({"run_dir": run}, ["--no-traversals"]),
        "latents": ({"codes": str(d / "codes.npy"), "labels": str(d / "labels.npy"), "model": lin, "n_prior": "0",
                     "folds": "2"}, []),
        "manipulate": ({"model": lin, "output": "logits", "run": run, "top_k": "2", "device": "cpu"}, []),
        "translate": ({"model": lin, "output": "logits", "run": run, "top_k": "2", "device": "cpu"}, []),
        "optimize": ({"model": lin, "output": "logits", "iterations": "2", "samples_per_class": "2",
                      "estimator": "codes", "device": "cpu"}, []),
        "report": ({"run_dirs": run}, ["--no-render"]),
        "sefa": ({}, []),
        "explore": ({}, ["--check"]),  # --check: load and exit; a hostile value that passes must not start a server
        "bundle info": ({"path": lin}, []),
        "bundle create": ({"generator": str(b / "generator.onnx"), "classifier": str(b / "classifier.onnx")}, []),
        "export model": ({"generator": "no_such_package.gan:Generator", "classifier": "no_such_package.cls:Net",
                          "latent_shape": "6"}, []),
    }
    return lines.get(command, ({}, []))


def bad_values(param, d: Path, rng) -> list[str]:
    """Values drawn for ``param``; paths name ``d``'s files (``{case}`` stands for the case's own folder)."""
    kind = param.type_descriptor.annotation
    if typing.get_origin(kind) is list:
        kind = typing.get_args(kind)[0]
    if kind is bool or getattr(param, "is_flag", False):
        return []
    paths = [str(d / "missing.npy"), str(d / "afolder"), str(d / "afile.txt"), ""]
    pool = paths if kind is Path else NUMBERS if kind in (int, float) else TEXTS + paths[:3]
    return [str(v) for v in rng.choice(pool, size=min(DRAWS, len(pool)), replace=False)]


def argv_of(cmd, command: str, values: dict, flags: list[str]) -> list[str]:
    args, opts = [], []
    for p in cmd.params:
        if p.name not in values:
            continue
        v = values[p.name]
        if isinstance(p, typer.core.TyperArgument):
            args.append(v)
        else:
            opts += [p.opts[0], v]
    return [*command.split(), *args, *opts, *flags]


def earlier_result(out: Path, file_kind: bool) -> None:
    if file_kind:
        out.write_bytes(b"an earlier result\n")
    else:
        out.mkdir()
        (out / "apcr.npz").write_bytes(b"an earlier result\n")
        (out / "summary.json").write_text("{}\n")


def check_one(cmd, command: str, name: str, value: str, d: Path, tmp: Path) -> str | None:
    """Run one hostile value; the problem found, or ``None``."""
    values, flags = baseline(command, d)
    values = dict(values)
    for guard, bad in GUARDS.get(command, []):
        if guard != name:
            values[guard] = str(d / "missing") if bad == "MISSING" else bad
            break
    case = tmp / f"case{next(_cases)}"
    case.mkdir()
    (case / "afolder").mkdir()
    (case / "afile.txt").write_text("a file\n")
    value = value.replace("{case}", str(case))
    out = None
    if any(p.name == "out" for p in cmd.params) and command != "bundle create":
        out = case / ("out.bin" if command in FILE_OUT else "out")
        earlier_result(out, command in FILE_OUT)
        values["out"] = str(out)
    elif command == "bundle create":
        values["out"] = str(case / "new_bundle")
    values[name] = value
    before_out = snapshot(case) if out is not None else None
    before_in = snapshot(d)
    argv = argv_of(cmd, command, values, flags)
    cwd = os.getcwd()
    os.chdir(case)
    try:
        r = runner.invoke(app, argv)
    finally:
        os.chdir(cwd)
    shown = f"{' '.join(argv)} -> exit {r.exit_code}: {r.output[-400:]!r}"
    if r.exit_code not in (0, 1, 2):
        return f"exit code not 0/1/2: {shown}"
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        return f"raised {type(r.exception).__name__}: {r.exception}: {shown}"
    if "Traceback" in r.output:
        return f"traceback: {shown}"
    if r.exit_code == 1 and sum(ln.startswith("error:") for ln in r.stderr.splitlines()) != 1:
        return f"not one error line: {shown}"
    if r.exit_code == 2 and "Usage:" not in r.output:
        return f"exit 2 without a usage message: {shown}"
    if snapshot(d) != before_in:
        return f"changed the input files: {shown}"
    if r.exit_code != 0 and before_out is not None and snapshot(case) != before_out:
        return f"failed and changed the earlier --out: {shown}"
    shutil.rmtree(case, ignore_errors=True)
    return None


def test_every_option_has_a_rule():
    missing = [f"{command} {p.name}" for command, cmd in COMMANDS.items() for p in cmd.params
               if rule_for(command, p.name) is None]
    assert not missing, f"options without a rule in corrkit/cli/_checks.py: {missing}"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_hostile_values_never_crash(command, world, tmp_path):
    cmd = COMMANDS[command]
    rng = np.random.default_rng([SEED, *command.encode()])
    problems, tried = [], 0
    for param in cmd.params:
        for value in bad_values(param, world, rng):
            tried += 1
            if param.name in OUTPUTS or f"{command} {param.name}" in OUTPUTS:
                value = value.replace(str(world), "{case}")
            problem = check_one(cmd, command, param.name, value, world, tmp_path)
            if problem:
                problems.append(f"{param.name}={value!r}: {problem}")
    assert tried > 0 or command == "sefa" or not cmd.params
    assert not problems, "\n".join(problems)
