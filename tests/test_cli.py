"""The CLI: every command's --help in a real subprocess, the main job, and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from corrkit._core.bundle import builtin_path
from corrkit.cli.main import app
from tests import onnx_fixtures as fx

runner = CliRunner()
TINY = ["--samples-per-class", "1", "--steps", "1", "--device", "cpu"]


def corrkit_cmd(*args, env=None, **kw):
    return subprocess.run([sys.executable, "-m", "corrkit.cli", *args], capture_output=True, text=True,
                          env=env, **kw)


def _commands(group=None, prefix=()):
    import typer

    group = group or typer.main.get_command(app)
    out = [prefix]
    for name, cmd in group.commands.items():
        out += _commands(cmd, prefix + (name,)) if hasattr(cmd, "commands") else [prefix + (name,)]
    return out


@pytest.mark.parametrize("cmd", _commands(), ids=lambda c: " ".join(c) or "corrkit")
def test_every_help_runs_in_a_subprocess(cmd):
    r = corrkit_cmd(*cmd, "--help")
    assert r.returncode == 0, r.stderr
    assert "Usage" in r.stdout


def test_main_job_json_on_builtin_bundle(tmp_path):
    out = tmp_path / "run"
    r = corrkit_cmd("apcr", *TINY, "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary == json.loads((out / "summary.json").read_text())
    data = np.load(out / "apcr.npz")
    assert data["apcr"].shape == (100, 10) and data["curves"].shape == (100, 3, 10, 10)
    assert data["latents"].shape == (10, 100) and data["labels"].tolist() == list(range(10))
    top = summary["top"]["Trouser"]
    assert [t["direction"] for t in top] == list(np.argsort(-data["apcr"][:, 1], kind="stable")[:10])
    assert summary["points"] >= 10 * 100 * 2 and summary["points_per_second"] > 0


def test_table_output_names_classes():
    r = runner.invoke(app, ["apcr", *TINY, "--directions", str(_dirs_file())])
    assert r.exit_code == 0, r.output
    assert "Ankle boot" in r.output and "T-shirt/top" in r.output


def _dirs_file(tmp=Path(os.environ.get("TMPDIR", "/tmp")), k=3, n=100):
    path = tmp / f"corrkit_test_dirs_{k}_{n}.npy"
    np.save(path, np.eye(n, dtype=np.float32)[:k])
    return path


def _bad_cases(tmp: Path):
    text = tmp / "notonnx.onnx"
    text.write_text("this is not a model")
    img_in = fx.identity(tmp / "img_in.onnx", ["batch", 1, 28, 28])
    flat_out = fx.identity(tmp / "flat.onnx", ["batch", 100])
    cls = builtin_path() / "classifier.onnx"
    nan = fx.log_logits(tmp / "nan.onnx")
    np.save(tmp / "lat_shape.npy", np.zeros((5, 7), np.float32))
    np.save(tmp / "lat_dtype.npy", np.zeros((5, 100), np.float64))
    np.save(tmp / "dirs_wide.npy", np.eye(101, dtype=np.float32))
    return {
        "missing path": (["apcr", str(tmp / "nope")], "does not exist"),
        "not onnx": (["apcr", str(text)], "not a valid ONNX"),
        "generator input not [batch, N]": (["apcr", "--generator", str(img_in), "--classifier", str(cls)],
                                           "generator input"),
        "classifier output not [batch, C]": (["apcr", "--generator", str(flat_out), "--classifier", str(img_in)],
                                             "classifier output"),
        "logits declared as probabilities": (["apcr", "--output", "probabilities", *TINY], "not probabilities"),
        "NaN outputs": (["apcr", str(nan), "--output", "logits", "--threshold", "0", "--delta", "4", "--steps", "3",
                         "--samples-per-class", "1"], "direction"),
        "steps 0": (["apcr", "--steps", "0"], "--steps"),
        "delta <= 0": (["apcr", "--delta", "-0.5"], "--delta"),
        "directions wrong width": (["apcr", "--directions", str(tmp / "dirs_wide.npy")], "directions have shape"),
        "latents wrong shape": (["apcr", "--latents", str(tmp / "lat_shape.npy")], "latents have shape"),
        "latents wrong dtype": (["apcr", "--latents", str(tmp / "lat_dtype.npy")], "float32"),
    }


BAD_CASES = ("missing path", "not onnx", "generator input not [batch, N]", "classifier output not [batch, C]",
             "logits declared as probabilities", "NaN outputs", "steps 0", "delta <= 0", "directions wrong width",
             "latents wrong shape", "latents wrong dtype")


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_one_line_exit_1_and_out_untouched(tmp_path, case):
    args, needle = _bad_cases(tmp_path)[case]
    out = tmp_path / "previous"
    out.mkdir()
    (out / "apcr.npz").write_bytes(b"earlier result")
    (out / "summary.json").write_text("{}")
    r = corrkit_cmd(*args, "--out", str(out))
    assert r.returncode == 1, (r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and needle in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert (out / "apcr.npz").read_bytes() == b"earlier result"
    assert (out / "summary.json").read_text() == "{}"


def test_nan_message_names_direction_and_step(tmp_path):
    nan = fx.log_logits(tmp_path / "nan.onnx")
    r = runner.invoke(app, ["apcr", str(nan), "--output", "logits", "--threshold", "0", "--delta", "4",
                            "--steps", "3", "--samples-per-class", "1", "--device", "cpu"])
    assert r.exit_code == 1
    assert "NaN" in r.output and "direction" in r.output and "step -3" in r.output


def test_unfillable_class_is_a_warning_not_an_error(tmp_path):
    lin = fx.linear_logits(tmp_path / "lin.onnx")
    r = corrkit_cmd("apcr", str(lin), "--output", "logits", "--threshold", "0.99", "--samples-per-class", "2",
                    "--steps", "1", "--json")
    assert r.returncode == 0, r.stderr
    assert "warning: could not fill" in r.stderr
    counts = json.loads(r.stdout)["counts"]
    assert len(counts) == 3 and min(counts) < 2


@pytest.mark.parametrize("argv, want", [
    (["apcr", "--ray"], ["apcr", "--ray", "local"]),
    (["apcr", "--ray", "--json"], ["apcr", "--ray", "local", "--json"]),
    (["apcr", "--ray", "auto", "--json"], ["apcr", "--ray", "auto", "--json"]),
    (["apcr", "--ray=ray://head:10001"], ["apcr", "--ray=ray://head:10001"]),
    (["apcr", "--json"], ["apcr", "--json"]),
])
def test_bare_ray_means_a_local_instance(argv, want):
    from corrkit.cli._common import bare_ray

    assert bare_ray(argv) == want


def test_bare_ray_reaches_the_command_in_a_subprocess():
    # Without the `ray` extra the run stops at once with the install hint, which proves
    # a bare `--ray` was parsed as `--ray local` (Click alone would say "requires an argument").
    code = ("import sys; sys.modules['ray'] = None; from corrkit.cli.main import run; "
            f"sys.argv = ['corrkit', 'apcr', *{TINY!r}, '--ray']; run()")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 1 and "corrkit[ray]" in r.stderr, r.stderr
