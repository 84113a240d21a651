"""Nobody's files are deleted, nothing escapes --out, a run's files change together, checkpoints are
validated, and torch never unpickles (issue 16, items 1-5).

Every case runs the real command on real files, and a folder or result that was there before must
stay byte-identical.
"""

from __future__ import annotations

import ast
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from corrkit._core import io
from corrkit._core.bundle import builtin_path, load_bundle
from corrkit._core.execution import Execution
from corrkit._core.grid import read_npz
from corrkit.errors import CorrkitError
from corrkit.methods.sequential import APCRResult, apcr

ROOT = Path(__file__).resolve().parents[1]
SRC = builtin_path()


def corrkit_cmd(*args, cwd=None, pre: str = ""):
    """Run the CLI in a fresh interpreter; ``pre`` is Python run first (to plant a fault)."""
    argv = ["corrkit", *map(str, args)]
    code = f"{pre}\nimport sys\nfrom corrkit.cli.main import run\nsys.argv = {argv!r}\nrun()"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd)


def one_error_line(r) -> bool:
    return r.returncode == 1 and r.stderr.startswith("error:") and r.stderr.count("\n") == 1 \
        and "Traceback" not in r.stderr


def snapshot(folder: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file (and '<dir>' for folders) under ``folder``."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "<dir>"
            for p in sorted(folder.rglob("*"))}


# ---------------------------------------------------------------- 1. bundle create never deletes


def _user_folder(root: Path) -> Path:
    d = root / "thesis"
    (d / "sub").mkdir(parents=True)
    (d / "thesis.tex").write_text("\\documentclass{article}\n")
    (d / "sub" / "data.csv").write_text("a,b\n1,2\n")
    return d


def _create(out, *extra, cwd=None):
    return corrkit_cmd("bundle", "create", "--generator", SRC / "generator.onnx", "--classifier",
                       SRC / "classifier.onnx", "--out", out, *extra, cwd=cwd)


@pytest.mark.parametrize("target,force", [
    ("user_folder", False), ("user_folder", True),     # a folder of the user's files: refused even with --force
    ("file", False), ("file", True),                   # an existing file
    ("dot", False), ("dot", True),                     # --out . (the current folder)
    ("bundle", False),                                 # an existing bundle without --force
    ("symlink", True),                                 # a link to the user's folder
])
def test_bundle_create_refuses_existing_targets(tmp_path, target, force):
    user = _user_folder(tmp_path)
    if target == "user_folder":
        out, cwd = user, None
    elif target == "file":
        out, cwd = tmp_path / "afile.txt", None
        out.write_text("keep me\n")
    elif target == "dot":
        out, cwd = Path("."), user
    elif target == "bundle":
        out, cwd = tmp_path / "b", None
        shutil.copytree(SRC, out, ignore=shutil.ignore_patterns("*.npz", "MODEL_CARD.md"))
    else:
        out, cwd = tmp_path / "link", None
        out.symlink_to(user, target_is_directory=True)
    before = snapshot(tmp_path)
    r = _create(out, *(["--force"] if force else []), cwd=cwd)
    assert one_error_line(r), r.stderr
    assert snapshot(tmp_path) == before  # nothing deleted, nothing left behind (no .tmp folder)


def test_bundle_create_force_replaces_only_a_bundle(tmp_path):
    out = tmp_path / "b"
    r = _create(out)
    assert r.returncode == 0, r.stderr
    (out / "bundle.json").write_text(json.dumps({**json.loads((out / "bundle.json").read_text()),
                                                 "classes": list("abcdefghij")}))
    r = _create(out, "--force")
    assert r.returncode == 0, r.stderr
    assert load_bundle(out).classes[0] == "0"  # the new card (default names), not the edited one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # no temporary or set-aside folder left


def test_bundle_create_failure_leaves_nothing(tmp_path):
    # logits declared as probabilities fail the sample check after the target was accepted
    before = snapshot(tmp_path)
    r = _create(tmp_path / "new", "--output", "probabilities")
    assert one_error_line(r), r.stderr
    assert snapshot(tmp_path) == before


def test_bundle_create_into_an_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    r = _create(tmp_path / "empty")
    assert r.returncode == 0, r.stderr
    assert load_bundle(tmp_path / "empty").latent_dim == 100


# ---------------------------------------------------------------- 2. method names stay inside --out


@pytest.mark.parametrize("name", ["../victim", "/tmp/abs", "a/b", "..", ".", ".hidden", "", "x" * 65, "a\\b",
                                  "name\n", "co:lon"])
def test_compare_method_names_cannot_leave_out(tmp_path, name):
    np.save(tmp_path / "dirs.npy", np.eye(100, dtype=np.float32)[:3])
    (tmp_path / "runs").mkdir()
    before = snapshot(tmp_path)
    r = corrkit_cmd("compare", "--directions", f"{name}=dirs.npy", "--out", "runs/cmp", "--samples-per-class", 1,
                    "--steps", 1, "--device", "cpu", "--no-sefa", cwd=tmp_path)
    assert one_error_line(r), r.stderr
    assert "method name" in r.stderr
    assert snapshot(tmp_path) == before
    assert not (tmp_path.parent / "victim").exists()


# ---------------------------------------------------------------- 3. apcr.npz and summary.json change together

TINY = ["--samples-per-class", 1, "--steps", 1, "--device", "cpu", "--batch-size", 64]
# SIGKILL the process right after apcr.npz was replaced, before summary.json is written
KILL_BEFORE_SUMMARY = """
import os, signal
import corrkit._core.io as _io
_orig = _io.write_json
def _write_json(path, obj):
    if str(path).endswith('summary.json'):
        os.kill(os.getpid(), signal.SIGKILL)
    return _orig(path, obj)
_io.write_json = _write_json
"""


def test_kill_between_the_two_files_is_detected_and_resumes(tmp_path):
    run, clean = tmp_path / "run", tmp_path / "clean"
    assert corrkit_cmd("apcr", *TINY, "--seed", 0, "--out", run).returncode == 0
    old_summary = (run / "summary.json").read_bytes()
    killed = corrkit_cmd("apcr", *TINY, "--seed", 1, "--out", run, pre=KILL_BEFORE_SUMMARY)
    assert killed.returncode == -9
    assert (run / "summary.json").read_bytes() == old_summary  # the old summary beside a new apcr.npz
    with pytest.raises(CorrkitError, match="does not match"):
        APCRResult.load(run)
    for cmd in (["control", run], ["figures", run, "--out", tmp_path / "figs"]):
        r = corrkit_cmd(*cmd)
        assert one_error_line(r) and "does not match" in r.stderr, (cmd, r.stderr)
    assert corrkit_cmd("apcr", *TINY, "--seed", 1, "--out", run).returncode == 0
    assert corrkit_cmd("apcr", *TINY, "--seed", 1, "--out", clean).returncode == 0
    a, b = APCRResult.load(run), APCRResult.load(clean)
    assert a.params["seed"] == 1
    for key in ("apcr", "curves", "up", "down", "latents", "labels", "base"):
        assert np.array_equal(getattr(a, key), getattr(b, key)), key


def test_summary_without_the_hash_is_refused(tmp_path):
    run = tmp_path / "run"
    assert corrkit_cmd("apcr", *TINY, "--out", run).returncode == 0
    s = json.loads((run / "summary.json").read_text())
    assert s["apcr_sha256"] == hashlib.sha256((run / "apcr.npz").read_bytes()).hexdigest()
    del s["apcr_sha256"]
    (run / "summary.json").write_text(json.dumps(s))
    with pytest.raises(CorrkitError, match="apcr_sha256"):
        APCRResult.load(run)


# ---------------------------------------------------------------- 4. checkpoints are validated

CPU = dict(device="cpu", batch_size=64, shard_points=64, threads=1)
RUN = dict(samples_per_class=2, steps=1, execution=Execution(**CPU))


class _Stop(Exception):
    pass


@pytest.fixture(scope="module")
def clean_and_checkpoint(tmp_path_factory):
    """A finished run, and a real checkpoint of the same run taken part way (a few shards in)."""
    root = tmp_path_factory.mktemp("ck")
    clean = apcr(out=root / "clean", **RUN)
    cut = root / "cut"

    def stop(stage, done, total):
        if stage == "grid" and (cut / "checkpoint.npz").exists() and done > total // 3:
            raise _Stop

    with pytest.raises(_Stop):
        apcr(out=cut, progress=stop, **{**RUN, "execution": Execution(**CPU, checkpoint_seconds=0.0)})
    return clean, (cut / "checkpoint.npz").read_bytes()


def checkpoint_arrays(data: bytes) -> dict:
    return read_npz("checkpoint.npz", "checkpoint", data=data)


def assert_same_result(r, clean) -> None:
    """Bit for bit the uninterrupted run's arrays."""
    for key in ("apcr", "curves", "up", "down"):
        assert np.array_equal(getattr(r, key), getattr(clean, key)), key


def _tamper(arrays: dict, how: str) -> dict:
    from corrkit.methods.sequential import _digest

    a = dict(arrays)
    rehash = True
    if how == "p_next_huge":
        a["p_next"] = np.array(10 ** 12)
    elif how == "p_next_off_boundary":
        a["p_next"] = np.array(int(a["p_next"]) + 1)
    elif how == "p_next_negative":
        a["p_next"] = np.array(-64)
    elif how == "missing_sums":
        del a["curves_sum"]
    elif how == "misshaped_sums":
        a["apcr_sum"] = a["apcr_sum"][:, :3]
    elif how == "labels_out_of_range":
        a["labels"] = a["labels"] + 50
    elif how == "nan_sums":
        a["up_sum"] = a["up_sum"].copy(); a["up_sum"][0, 0] = np.nan
    elif how == "edited_without_rehash":
        a["p_next"] = np.array(10 ** 12); rehash = False
    elif how == "no_digest":
        rehash = False
    a.pop("digest", None)
    if rehash:
        a["digest"] = np.array(_digest(a))
    return a


@pytest.mark.parametrize("how", ["p_next_huge", "p_next_off_boundary", "p_next_negative", "missing_sums",
                                 "misshaped_sums", "labels_out_of_range", "nan_sums", "edited_without_rehash",
                                 "no_digest", "truncated"])
def test_invalid_checkpoint_is_set_aside_and_the_run_starts_over(tmp_path, clean_and_checkpoint, how):
    clean, ck_bytes = clean_and_checkpoint
    out = tmp_path / "run"
    out.mkdir()
    if how == "truncated":
        (out / "checkpoint.npz").write_bytes(ck_bytes[: len(ck_bytes) // 2])
    else:
        io.write_npz(out / "checkpoint.npz", **_tamper(checkpoint_arrays(ck_bytes), how))
    with pytest.warns(UserWarning, match="checkpoint .* is invalid"):
        r = apcr(out=out, **RUN)
    assert r.resumed_from == 0
    assert (out / "checkpoint.npz.invalid").is_file() and not (out / "checkpoint.npz").exists()
    assert_same_result(r, clean)


def test_sound_checkpoint_resumes_exactly(tmp_path, clean_and_checkpoint):
    clean, ck_bytes = clean_and_checkpoint
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.npz").write_bytes(ck_bytes)
    r = apcr(out=out, **RUN)
    assert r.resumed_from == int(checkpoint_arrays(ck_bytes)["p_next"]) > 0
    assert_same_result(r, clean)


def test_cli_warns_in_one_line_about_a_bad_checkpoint(tmp_path, clean_and_checkpoint):
    _, ck_bytes = clean_and_checkpoint
    out = tmp_path / "run"
    out.mkdir()
    io.write_npz(out / "checkpoint.npz", **_tamper(checkpoint_arrays(ck_bytes), "p_next_huge"))
    r = corrkit_cmd("apcr", "--samples-per-class", 2, "--steps", 1, "--device", "cpu", "--batch-size", 64,
                    "--shard-points", 64, "--threads", 1, "--out", out, "--json")
    assert r.returncode == 0, r.stderr
    assert [ln for ln in r.stderr.splitlines() if ln.startswith("warning:") and "checkpoint" in ln]
    assert "Traceback" not in r.stderr


# ---------------------------------------------------------------- 5. torch never unpickles


def _torch_load_calls():
    for folder in ("export", "benchmarks", "tests", "corrkit", "cli", "kernels"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load" \
                        and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch":
                    yield path, node


def test_every_torch_load_passes_weights_only_true():
    calls = list(_torch_load_calls())
    assert calls  # the scan sees the loader itself
    for path, node in calls:
        kw = {k.arg: k.value for k in node.keywords}
        assert "weights_only" in kw and getattr(kw["weights_only"], "value", None) is True, \
            f"{path.relative_to(ROOT)}:{node.lineno} calls torch.load without weights_only=True"


def test_minimum_torch_is_one_where_weights_only_is_safe():
    text = (ROOT / "pyproject.toml").read_text()
    assert '"torch>=2.6"' in text  # torch.load(weights_only=True) could run code up to 2.5.1


class _Payload:
    """Unpickling this runs ``open(marker, 'w')``: the file appearing means code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_planted_pickles_never_run(tmp_path):
    torch = pytest.importorskip("torch")
    from corrkit.export.train import _resume_state
    from corrkit.export.weights import load_state

    marker = tmp_path / "pwned"
    bad = tmp_path / "classifier.ckpt"
    torch.save({"model": _Payload(marker)}, bad)
    with pytest.raises(CorrkitError, match="not a plain torch weights file"):
        load_state(bad)
    assert _resume_state(bad) is None  # training starts over ...
    assert (tmp_path / "classifier.ckpt.invalid").is_file() and not bad.exists()  # ... with the file set aside
    weights = tmp_path / "w"
    weights.mkdir()
    torch.save(_Payload(marker), weights / "generator.pt")
    torch.save(_Payload(marker), weights / "classifier.pt")
    r = corrkit_cmd("export", "optimize", "--weights", weights, "--out", tmp_path / "o.npz")
    assert one_error_line(r) and "not a plain torch weights file" in r.stderr, r.stderr
    assert not marker.exists()
    assert not (tmp_path / "o.npz").exists()


def test_training_checkpoints_load_with_weights_only(tmp_path):
    torch = pytest.importorskip("torch")
    from corrkit.export.train import _resume_state

    m = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(m.parameters())
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=3)
    m(torch.randn(4, 3)).sum().backward(); opt.step(); sched.step()
    torch.save({"model": m.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(), "epoch": 1,
                "wall": 1.5}, tmp_path / "c.ckpt")
    st = _resume_state(tmp_path / "c.ckpt")
    assert st["epoch"] == 1 and torch.equal(st["model"]["weight"], m.weight)
    assert st["sched"]["last_epoch"] == 1

