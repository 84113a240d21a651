"""Damaged inputs: run folders, direction / latent / weight files, bundle cards, generators SeFa cannot read.

Every case is real damage planted in a real file, then a real command: exit code 1,
exactly one ``error:`` line on stderr, no traceback, and every file beside it (a good
run, a good bundle, the damaged input itself) byte-identical afterwards, with nothing
new written. Damage to ``apcr.npz`` is planted past its hash check, as a hostile user
can: ``summary.json``'s ``apcr_sha256`` is rewritten to the damaged file's SHA-256, so the
parsing itself is what is tested. The tables run in-process (``CliRunner``: an escaped
exception would be ``result.exception`` instead of ``SystemExit``); one case of each
table also runs in a subprocess, where a traceback would show on stderr.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from corrkit.cli.main import app
from tests import onnx_fixtures as fx

TINY = ["--samples-per-class", "1", "--steps", "1", "--device", "cpu"]
N, C = fx.KNOWN_W.shape  # the known-answer model: 6 latent dims, 3 classes


# --- checking one case ---------------------------------------------------------------------------------------------

def snapshot(root: Path) -> dict[str, str | None]:
    """Every folder (``None``) and file (its SHA-256) under ``root``."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_dir():
            out[rel] = None
        else:
            with open(p, "rb") as fh:  # not Path.read_bytes, which the unreadable-card case patches
                out[rel] = hashlib.sha256(fh.read()).hexdigest()
    return out


def assert_refused(result, root: Path, before: dict, needle: str) -> None:
    """Exit 1 through the CLI's error handler, one ``error:`` line naming ``needle``, nothing under ``root`` changed."""
    stderr = result.stderr
    assert isinstance(result.exception, SystemExit), f"escaped {result.exception!r}\n{stderr}"
    assert result.exit_code == 1, (result.exit_code, result.stdout, stderr)
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr and "Aborted" not in stderr + result.stdout
    assert needle in lines[0], lines[0]
    assert snapshot(root) == before


def invoke(args: list) -> object:
    return CliRunner().invoke(app, [str(a) for a in args])


def corrkit_cmd(args: list) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "corrkit.cli", *map(str, args)], capture_output=True, text=True)


def assert_refused_in_subprocess(args: list, root: Path, needle: str) -> None:
    before = snapshot(root)
    r = corrkit_cmd(args)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert len(r.stderr.splitlines()) == 1 and r.stderr.startswith("error: ") and needle in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert snapshot(root) == before


# --- 1. run folders (`corrkit apcr --out`) --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def good_run(tmp_path_factory) -> Path:
    """One small `corrkit apcr --out` run of the built-in bundle, copied into every case."""
    out = tmp_path_factory.mktemp("apcr") / "run"
    r = corrkit_cmd(["apcr", *TINY, "--out", out])
    assert r.returncode == 0, r.stderr
    return out


def _arrays(run: Path) -> dict[str, np.ndarray]:
    with np.load(run / "apcr.npz") as z:
        return {k: z[k] for k in z.files}


def _summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def _write_summary(run: Path, s) -> None:
    (run / "summary.json").write_text(json.dumps(s))


def _rehash(run: Path) -> None:
    """What a hostile user can do: make summary.json vouch for the damaged apcr.npz."""
    s = _summary(run)
    s["apcr_sha256"] = hashlib.sha256((run / "apcr.npz").read_bytes()).hexdigest()
    _write_summary(run, s)


def _npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _set_arrays(run: Path, change) -> None:
    a = _arrays(run)
    change(a)
    (run / "apcr.npz").write_bytes(_npz_bytes(**a))
    _rehash(run)


def _set_summary(run: Path, change) -> None:
    s = _summary(run)
    change(s)
    _write_summary(run, s)


def _bytes(run: Path, change) -> None:
    p = run / "apcr.npz"
    p.write_bytes(change(p.read_bytes()))
    _rehash(run)


def _flip_in_member(data: bytes, member: str) -> bytes:
    """One byte of ``member``'s array data flipped (past its .npy header): the zip's CRC-32 no longer matches."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        info = z.getinfo(member)
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    b = bytearray(data)
    b[start + 128 + info.file_size // 2] ^= 0xFF
    return bytes(b)


def _npy_claiming(shape: tuple, payload: bytes, dtype: str = "<f8") -> bytes:
    """A .npy stream whose header claims ``shape`` but which holds only ``payload``."""
    header = f"{{'descr': '{dtype}', 'fortran_order': False, 'shape': {shape}, }}".encode("latin1")
    header += b" " * (-(10 + len(header) + 1) % 16) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + payload


def _huge_member(data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(buf, "w") as dst:
        for info in src.infolist():
            body = src.read(info)
            dst.writestr(info.filename, _npy_claiming((10 ** 12, 10), body[128:]) if info.filename == "apcr.npy"
                         else body)
    return buf.getvalue()


def _nan_where_codes(a):
    j = int(np.flatnonzero(a["counts"])[0])
    a["apcr"][0, j] = np.nan


def _forge_top(s):
    first = next(iter(s["top"]))
    s["top"][first][0]["apcr"] = 99.0


RUN_DAMAGE = {  # name -> (how, what the error line names)
    "truncated_npz": (lambda r: _bytes(r, lambda b: b[: len(b) // 2]), "apcr.npz is damaged"),
    "crc_bad_npz": (lambda r: _bytes(r, lambda b: _flip_in_member(b, "curves.npy")), "CRC"),
    "empty_npz": (lambda r: _bytes(r, lambda b: b""), "apcr.npz is damaged"),
    "huge_header_member": (lambda r: _bytes(r, _huge_member), "header claims"),
    "missing_npz": (lambda r: (r / "apcr.npz").unlink(), "not a finished"),
    "key_missing": (lambda r: _set_arrays(r, lambda a: a.pop("curves")), "no array `curves`"),
    "pickled_classes": (lambda r: _set_arrays(r, lambda a: a.update(classes=np.array(list(a["classes"]) + [None],
                                                                                      dtype=object))), "pickle"),
    "apcr_wrong_shape": (lambda r: _set_arrays(r, lambda a: a.update(apcr=a["apcr"][:, :3])), "does not fit"),
    "curves_one_step": (lambda r: _set_arrays(r, lambda a: a.update(curves=a["curves"][:, :1])), "2m+1"),
    "contributions_not_the_apcr": (lambda r: _set_arrays(r, lambda a: a.update(contributions=2 * a["contributions"])),
                                   "do not average"),
    "curves_wrong_classes": (lambda r: _set_arrays(r, lambda a: a.update(curves=a["curves"][:, :, :3])),
                             "`curves` has shape"),
    "labels_out_of_range": (lambda r: _set_arrays(r, lambda a: a.update(labels=a["labels"] + 10)), "`labels`"),
    "counts_mismatch": (lambda r: _set_arrays(r, lambda a: a["counts"].__setitem__(0, a["counts"][0] + 1)),
                        "`counts`"),
    "apcr_strings": (lambda r: _set_arrays(r, lambda a: a.update(apcr=a["apcr"].astype(str))), "`apcr` holds"),
    "apcr_nan": (lambda r: _set_arrays(r, _nan_where_codes), "NaN"),
    "summary_list": (lambda r: _write_summary(r, [1, 2]), "JSON list"),
    "summary_not_json": (lambda r: (r / "summary.json").write_text('{"params": '), "not a finished"),
    "summary_not_utf8": (lambda r: (r / "summary.json").write_bytes(b'{"a": "\xff"}'), "not a finished"),
    "no_params": (lambda r: _set_summary(r, lambda s: s.pop("params")), "`params`"),
    "params_list": (lambda r: _set_summary(r, lambda s: s.update(params=[1])), "`params`"),
    "steps_mismatch": (lambda r: _set_summary(r, lambda s: s["params"].update(steps=3)), "params.steps"),
    "delta_string": (lambda r: _set_summary(r, lambda s: s["params"].update(delta="x")), "params.delta"),
    "bundle_string": (lambda r: _set_summary(r, lambda s: s.update(bundle="str")), "`bundle`"),
    "bundle_files_list": (lambda r: _set_summary(r, lambda s: s["bundle"].update(files=[1])), "bundle.files"),
    "points_string": (lambda r: _set_summary(r, lambda s: s.update(points="many")), "`points`"),
    "top_forged": (lambda r: _set_summary(r, _forge_top), "`top`"),
    "counts_forged": (lambda r: _set_summary(r, lambda s: s.update(counts=[99] * len(s["counts"]))), "`counts`"),
}

RUN_COMMANDS = {  # name -> arguments, given the damaged run and a folder for outputs
    "control": lambda run, out: ["control", run],
    "figures": lambda run, out: ["figures", run, "--out", out / "figs", "--no-traversals"],
    "report": lambda run, out: ["report", run, "--out", out / "report.html", "--no-render"],
    "manipulate": lambda run, out: ["manipulate", "--run", run, "--class", "0", "--device", "cpu",
                                    "--out", out / "m"],
    "translate": lambda run, out: ["translate", "--run", run, "--source", "0", "--target", "1", "--device", "cpu",
                                   "--out", out / "t"],
}


def _run_case(tmp_path: Path, good_run: Path, damage: str | None) -> tuple[Path, Path]:
    shutil.copytree(good_run, tmp_path / "good")
    shutil.copytree(good_run, tmp_path / "bad")
    if damage is not None:
        RUN_DAMAGE[damage][0](tmp_path / "bad")
    (tmp_path / "out").mkdir()
    return tmp_path / "bad", tmp_path / "out"


@pytest.mark.parametrize("command", list(RUN_COMMANDS))
@pytest.mark.parametrize("damage", list(RUN_DAMAGE))
def test_damaged_run_is_refused(tmp_path, good_run, damage, command):
    run, out = _run_case(tmp_path, good_run, damage)
    before = snapshot(tmp_path)
    assert_refused(invoke(RUN_COMMANDS[command](run, out)), tmp_path, before, RUN_DAMAGE[damage][1])


@pytest.mark.parametrize("command", list(RUN_COMMANDS))
def test_the_run_table_commands_accept_the_undamaged_run(tmp_path, good_run, command):
    run, out = _run_case(tmp_path, good_run, None)
    r = invoke(RUN_COMMANDS[command](run, out))
    assert r.exit_code == 0, (r.exception, r.stderr)


def test_a_sound_run_with_a_class_without_codes_still_loads(tmp_path, known_model):
    import warnings

    import corrkit

    z = np.zeros((4, N), np.float32)
    z[:2, 0], z[2:, 2] = 5, 5  # codes of classes 0 and 1 only: class 2's scores are NaN, as they must be
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "could not fill class set(s)"
        corrkit.apcr(known_model[0], steps=1, latents=z, execution=corrkit.Execution(device="cpu"),
                     out=tmp_path / "run")
    r = corrkit.APCRResult.load(tmp_path / "run")
    assert r.counts.tolist() == [2, 2, 0] and np.isnan(r.apcr[:, 2]).all() and np.isfinite(r.apcr[:, :2]).all()


def test_damaged_run_in_a_subprocess(tmp_path, good_run):
    run, out = _run_case(tmp_path, good_run, "crc_bad_npz")
    assert_refused_in_subprocess(RUN_COMMANDS["translate"](run, out), tmp_path, "CRC")


# --- 2. direction, latent and weight files -------------------------------------------------------------------------

DIRS = np.random.default_rng(0).normal(size=(4, N)).astype(np.float32)


def _zip_of(**members: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, body in members.items():
            z.writestr(name, body)
    return buf.getvalue()


def _npy(a) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def _long_header_npy() -> bytes:
    header = b"{'descr': '<f4', 'fortran_order': False, 'shape': (4, 6), }" + b" " * 20_000 + b"\n"
    return b"\x93NUMPY\x02\x00" + struct.pack("<I", len(header)) + header + DIRS.tobytes()


def _crc_bad_npz() -> bytes:
    data = _npz_bytes(directions=DIRS, w=np.abs(fx.KNOWN_W.T))
    return _flip_in_member(data, "directions.npy")


FILE_DAMAGE = {  # name -> (file name, its bytes, what the error line names)
    "crc_bad_npz": ("d.npz", _crc_bad_npz, "CRC"),
    "truncated_npz": ("d.npz", lambda: _npz_bytes(directions=DIRS)[:300], "damaged"),
    "empty_file": ("d.npz", lambda: b"", "not a NumPy"),
    "text_file": ("d.npy", lambda: b"0.1 0.2 0.3\n", "not a NumPy"),
    "long_header_npy": ("d.npy", _long_header_npy, "Header info length"),
    "long_header_npz": ("d.npz", lambda: _zip_of(**{"directions.npy": _long_header_npy(),
                                                    "w.npy": _long_header_npy()}), "Header info length"),
    "huge_shape_npy": ("d.npy", lambda: _npy_claiming((10 ** 12, N), DIRS.tobytes(), "<f4"), "header claims"),
    "huge_shape_npz": ("d.npz", lambda: _zip_of(**{n: _npy_claiming((10 ** 12, N), DIRS.tobytes(), "<f4")
                                                   for n in ("directions.npy", "w.npy")}), "header claims"),
    "object_npy": ("d.npy", lambda: _npy(np.array([DIRS[0], "x"], dtype=object)), "pickle"),
    "object_npz": ("d.npz", lambda: _npz_bytes(directions=np.array([DIRS[0], "x"], dtype=object),
                                               w=np.array([None], dtype=object)), "pickle"),
    "missing": ("d.npz", None, "does not exist"),
}

FILE_COMMANDS = {  # name -> arguments, given the file, the known-answer folder and a folder for outputs
    "apcr_directions": lambda f, k, out: ["apcr", k / "lin.onnx", "--output", "logits", "--directions", f, *TINY,
                                          "--out", out / "run"],
    "apcr_latents": lambda f, k, out: ["apcr", k / "lin.onnx", "--output", "logits", "--latents", f, *TINY,
                                       "--out", out / "run"],
    "compare_directions": lambda f, k, out: ["compare", k / "lin.onnx", "--directions", f"mine={f}",
                                             "--samples-per-class", "1", "--steps", "1", "--device", "cpu",
                                             "--out", out / "cmp"],
    "latents_codes": lambda f, k, out: ["latents", f, k / "labels.npy", "--model", k / "lin.onnx",
                                        "--out", out / "lat"],
    "control_weights": lambda f, k, out: ["control", k / "run", "--top-k", "3", "--weights", f],
    "optimize_against": lambda f, k, out: ["optimize", k / "lin.onnx", "--output", "logits", "--iterations", "1",
                                           "--samples-per-class", "1", "--device", "cpu", "--against", f,
                                           "--out", out / "w.npz"],
}


WEIGHT_COMMANDS = ("control_weights", "optimize_against")


@pytest.fixture(scope="module")
def known_dir(known_model):
    """The known-answer model folder (``lin.onnx``, its run in ``run/``), with labels for `corrkit latents`."""
    d = known_model[2]
    np.save(d / "labels.npy", np.arange(4) % C)
    return d


def _file_case(tmp_path: Path, known_dir: Path, damage: str) -> tuple[Path, Path, Path]:
    k = tmp_path / "known"
    shutil.copytree(known_dir, k)
    name, make, _ = FILE_DAMAGE[damage]
    f = tmp_path / name
    if make is not None:
        f.write_bytes(make())
    (tmp_path / "out").mkdir()
    return f, k, tmp_path / "out"


@pytest.mark.parametrize("command", list(FILE_COMMANDS))
@pytest.mark.parametrize("damage", list(FILE_DAMAGE))
def test_damaged_array_file_is_refused(tmp_path, known_dir, damage, command):
    f, k, out = _file_case(tmp_path, known_dir, damage)
    weights_npy = command in WEIGHT_COMMANDS and f.suffix == ".npy" and damage != "text_file"
    needle = ".npy array" if weights_npy else FILE_DAMAGE[damage][2]  # weights are an .npz, whatever the .npy holds
    before = snapshot(tmp_path)
    assert_refused(invoke(FILE_COMMANDS[command](f, k, out)), tmp_path, before, needle)


@pytest.mark.parametrize("command", ["control_weights", "optimize_against"])
def test_weights_given_as_npy_are_refused(tmp_path, known_dir, command):
    f, k, out = _file_case(tmp_path, known_dir, "missing")
    np.save(f.with_suffix(".npy"), np.abs(fx.KNOWN_W.T))  # the right numbers, but not an optimised-weights file
    before = snapshot(tmp_path)
    assert_refused(invoke(FILE_COMMANDS[command](f.with_suffix(".npy"), k, out)), tmp_path, before, ".npy array")


def test_optimize_refuses_weights_of_another_model_before_any_work(tmp_path, known_dir):
    f, k, out = _file_case(tmp_path, known_dir, "missing")
    shutil.copyfile(Path(__file__).parents[1] / "corrkit" / "bundle" / "optimized_weights.npz", f)  # [10, 100]
    before = snapshot(tmp_path)
    assert_refused(invoke(FILE_COMMANDS["optimize_against"](f, k, out)), tmp_path, before, "[10, 100]")


def test_extra_arrays_that_are_not_numbers_are_left_out_by_compare_as_by_apcr(tmp_path, known_dir):
    f, k, out = _file_case(tmp_path, known_dir, "missing")
    np.savez(f, directions=DIRS, rca=np.array(0.25), name=np.array("mine"), z=np.array(1 + 2j))
    r = invoke(FILE_COMMANDS["apcr_directions"](f, k, out))
    assert r.exit_code == 0, (r.exception, r.stderr)
    r = invoke([*FILE_COMMANDS["compare_directions"](f, k, out), "--json"])
    assert r.exit_code == 0, (r.exception, r.stderr)
    assert json.loads(r.stdout)["methods"]["mine"]["rca"] == 0.25
    assert "warning:" in r.stderr and "name, z left out" in r.stderr


def test_damaged_array_file_in_a_subprocess(tmp_path, known_dir):
    f, k, out = _file_case(tmp_path, known_dir, "object_npz")
    assert_refused_in_subprocess(FILE_COMMANDS["compare_directions"](f, k, out), tmp_path, "pickle")


# --- 3. bundle cards (bundle.json) -----------------------------------------------------------------------------------

GEN_W = 0.05 * np.random.default_rng(1).normal(size=(N, 4)).astype(np.float32)  # z [B, 6] -> image [B, 4] in [-1, 1]
CLS_W = np.random.default_rng(2).normal(size=(4, 3)).astype(np.float32)  # image [B, 4] -> logits [B, 3]
CARD = {"format": 1, "latent_dim": N, "latent_distribution": "normal", "classes": ["a", "b", "c"],
        "image_shape": [4], "generator_output_range": [-1.0, 1.0], "classifier_input_range": [-1.0, 1.0],
        "classifier_output": "logits", "provenance": {"created_by": "test"}, "metrics": {}, "notes": "kept"}


def _card(**changes):
    return lambda p: p.write_text(json.dumps({**CARD, **changes}))


def _card_without(key):
    return lambda p: p.write_text(json.dumps({k: v for k, v in CARD.items() if k != key}))


BUNDLE_DAMAGE = {  # name -> (how bundle.json is written, what the error line names)
    "list": (lambda p: p.write_text("[1, 2, 3]"), "JSON list"),
    "not_utf8": (lambda p: p.write_bytes(json.dumps(CARD).encode().replace(b'"a"', b'"\xe9"')), "UTF-8"),
    "not_json": (lambda p: p.write_text('{"latent_dim": '), "not valid JSON"),
    "huge_integer": (lambda p: p.write_text('{"latent_dim": ' + "9" * 5000 + "}"), "not valid JSON"),
    "deep_nesting": (lambda p: p.write_text("[" * 100_000 + "]" * 100_000), "not valid JSON"),
    "unreadable": (lambda p: p.chmod(0), "cannot be read"),
    "latent_dim_word": (_card(latent_dim="six"), "latent_dim"),
    "latent_dim_bool": (_card(latent_dim=True), "latent_dim"),
    "latent_dim_other": (_card(latent_dim=7), "latent_dim 7"),
    "classes_number": (_card(classes=3), "classes"),
    "classes_numbers": (_card(classes=[1, 2, 3]), "classes"),
    "classes_repeated": (_card(classes=["a", "a", "c"]), "repeated"),
    "classes_too_few": (_card(classes=["a", "b"]), "2 class names"),
    "range_flat": (_card(generator_output_range=[1, 1]), "lo < hi"),
    "range_word": (_card(classifier_input_range=["lo", 1]), "classifier_input_range"),
    "range_nan": (lambda p: p.write_text(json.dumps({**CARD, "generator_output_range": [float("nan"), 1]})),
                  "generator_output_range"),
    "range_null": (_card(generator_output_range=None), "generator_output_range"),
    "output_kind": (_card(classifier_output="softmax"), "classifier_output"),
    "image_shape_text": (_card(image_shape="28x28"), "image_shape"),
    "provenance_list": (_card(provenance=["x"]), "provenance"),
    "provenance_training_text": (_card(provenance={"gan_training": "long"}), "provenance.gan_training"),
    "metrics_text": (_card(metrics="good"), "metrics"),
    "format_2": (_card(format=2), "format"),
    "uniform_prior": (_card(latent_distribution="uniform"), "latent_distribution"),
    "name_number": (_card(name=5), "name"),
    "no_card": (lambda p: p.unlink(), "without bundle.json"),
}

BUNDLE_COMMANDS = {  # name -> arguments, given the damaged bundle folder and a folder for outputs
    "bundle_info": lambda b, out: ["bundle", "info", b],
    "sefa": lambda b, out: ["sefa", b, "--out", out / "sefa.npz"],
    "apcr": lambda b, out: ["apcr", b, *TINY, "--out", out / "run"],
    "compare": lambda b, out: ["compare", b, "--samples-per-class", "1", "--steps", "1", "--device", "cpu",
                               "--out", out / "cmp"],
    "optimize": lambda b, out: ["optimize", b, "--iterations", "1", "--samples-per-class", "1", "--device", "cpu",
                                "--out", out / "w.npz"],
    "manipulate": lambda b, out: ["manipulate", b, "--device", "cpu", "--out", out / "m"],
    "translate": lambda b, out: ["translate", b, "--device", "cpu", "--out", out / "t"],
    "latents": lambda b, out: ["latents", out.parent / "codes.npy", out.parent / "labels.npy", "--model", b,
                               "--out", out / "lat"],
}


def _bundle(folder: Path, card: dict | None = None) -> Path:
    folder.mkdir()
    fx.matmul_logits(folder / "generator.onnx", GEN_W)
    fx.matmul_logits(folder / "classifier.onnx", CLS_W)
    (folder / "bundle.json").write_text(json.dumps(card or CARD))
    return folder


def _bundle_case(tmp_path: Path, damage: str | None, monkeypatch) -> tuple[Path, Path]:
    _bundle(tmp_path / "good")
    bad = _bundle(tmp_path / "bad")
    np.save(tmp_path / "codes.npy", np.random.default_rng(0).normal(size=(6, N)).astype(np.float32))
    np.save(tmp_path / "labels.npy", np.arange(6) % 3)
    if damage is not None:
        BUNDLE_DAMAGE[damage][0](bad / "bundle.json")
    card = bad / "bundle.json"
    if damage == "unreadable" and os.access(card, os.R_OK):  # root reads a mode-000 file: refuse it as the OS would
        real = Path.read_bytes

        def read_bytes(self):
            if Path(self) == card:
                raise PermissionError(13, "Permission denied", str(self))
            return real(self)

        monkeypatch.setattr(Path, "read_bytes", read_bytes)
    (tmp_path / "out").mkdir()
    return bad, tmp_path / "out"


@pytest.mark.parametrize("command", list(BUNDLE_COMMANDS))
@pytest.mark.parametrize("damage", list(BUNDLE_DAMAGE))
def test_damaged_bundle_card_is_refused(tmp_path, monkeypatch, damage, command):
    bad, out = _bundle_case(tmp_path, damage, monkeypatch)
    before = snapshot(tmp_path)
    try:
        assert_refused(invoke(BUNDLE_COMMANDS[command](bad, out)), tmp_path, before, BUNDLE_DAMAGE[damage][1])
    finally:
        (bad / "bundle.json").chmod(0o644) if (bad / "bundle.json").exists() else None


def test_the_card_table_bundle_loads_and_keeps_unknown_keys(tmp_path, monkeypatch):
    from corrkit._core.bundle import load_bundle

    bad, out = _bundle_case(tmp_path, None, monkeypatch)
    b = load_bundle(bad)
    assert (b.latent_dim, b.classes, b.meta["notes"]) == (N, ["a", "b", "c"], "kept")
    r = invoke(BUNDLE_COMMANDS["bundle_info"](bad, out))
    assert r.exit_code == 0, (r.exception, r.stderr)
    r = invoke(BUNDLE_COMMANDS["sefa"](bad, out))
    assert r.exit_code == 0, (r.exception, r.stderr)


def test_damaged_bundle_card_in_a_subprocess(tmp_path, monkeypatch):
    bad, out = _bundle_case(tmp_path, "latent_dim_word", monkeypatch)
    assert_refused_in_subprocess(BUNDLE_COMMANDS["bundle_info"](bad, out), tmp_path, "latent_dim")


# --- 4. generators SeFa cannot read, and models with fewer than 10 dims -------------------------------------------

def _gemm_generator(path: Path, w: np.ndarray) -> Path:
    """z [B, n] -> z @ w (a Gemm), ``w`` [n, M] float32 (or float64, a double-precision graph)."""
    kind = TensorProto.DOUBLE if w.dtype == np.float64 else TensorProto.FLOAT
    z = helper.make_tensor_value_info("z", kind, ["batch", w.shape[0]])
    y = helper.make_tensor_value_info("y", kind, ["batch", w.shape[1]])
    graph = helper.make_graph([helper.make_node("Gemm", ["z", "W"], ["y"])], "g", [z], [y],
                              initializer=[numpy_helper.from_array(w, "W")])
    return fx.save(graph, path)


def _deconv_generator(path: Path, pads: list[int], kernel: int = 3) -> Path:
    """z [B, 6] -> ConvTranspose of z [B, 6, 1, 1] with a ``kernel``x``kernel`` kernel and ``pads``."""
    w = np.random.default_rng(3).normal(size=(N, 2, kernel, kernel)).astype(np.float32)
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", N])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2, "h", "w"])
    nodes = [helper.make_node("Reshape", ["z", "shape"], ["z4"]),
             helper.make_node("ConvTranspose", ["z4", "W"], ["y"], pads=pads)]
    inits = [numpy_helper.from_array(np.array([-1, N, 1, 1], np.int64), "shape"), numpy_helper.from_array(w, "W")]
    return fx.save(helper.make_graph(nodes, "g", [z], [y], initializer=inits), path)


def _nan_w() -> np.ndarray:
    w = GEN_W.copy()
    w[2, 1] = np.nan
    return w


SEFA_DAMAGE = {  # name -> (how the generator is made, what the error line names)
    "nan_weight": (lambda p: _gemm_generator(p, _nan_w()), "NaN"),
    "inf_weight": (lambda p: _gemm_generator(p, np.full_like(GEN_W, np.inf)), "NaN or infinite"),
    "zero_weight": (lambda p: _gemm_generator(p, np.zeros_like(GEN_W)), "no usable weights"),
    "too_large_to_normalise": (lambda p: _gemm_generator(p, np.full(GEN_W.shape, 1e200)), "no usable weights"),
    "pads_crop_kernel": (lambda p: _deconv_generator(p, [2, 0, 1, 0]), "crop the whole"),
}

SEFA_COMMANDS = {  # name -> arguments, given a generator .onnx and a bundle folder around it (when it loads)
    "sefa_onnx": lambda g, b, out: ["sefa", g, "--out", out / "sefa.npz"],
    "sefa_bundle": lambda g, b, out: ["sefa", b, "--out", out / "sefa.npz"],
    "compare_bundle": lambda g, b, out: ["compare", b, "--samples-per-class", "1", "--steps", "1", "--device", "cpu",
                                         "--out", out / "cmp"],
}


# A generator whose layer has no output or runs in float64 makes no bundle at all (it cannot run with a
# classifier); those are refused by SeFa on the bare .onnx.
SEFA_CASES = [(d, c) for d in SEFA_DAMAGE for c in SEFA_COMMANDS
              if c == "sefa_onnx" or d not in ("pads_crop_kernel", "too_large_to_normalise")]


@pytest.mark.parametrize("damage, command", SEFA_CASES)
def test_generator_sefa_cannot_read_is_refused(tmp_path, damage, command):
    _bundle(tmp_path / "good")
    b = _bundle(tmp_path / "bad")
    SEFA_DAMAGE[damage][0](b / "generator.onnx")
    (tmp_path / "out").mkdir()
    before = snapshot(tmp_path)
    args = SEFA_COMMANDS[command](b / "generator.onnx", b, tmp_path / "out")
    assert_refused(invoke(args), tmp_path, before, SEFA_DAMAGE[damage][1])


def test_sefa_generator_in_a_subprocess(tmp_path):
    g = _gemm_generator(tmp_path / "g.onnx", _nan_w())
    assert_refused_in_subprocess(["sefa", g], tmp_path, "NaN")


def test_optimize_on_fewer_than_ten_dims_lists_them_all(tmp_path, known_dir):
    out = tmp_path / "w.npz"
    args = ["optimize", known_dir / "lin.onnx", "--output", "logits", "--iterations", "2", "--samples-per-class",
            "2", "--device", "cpu", "--out", out]
    r = invoke(args)
    assert r.exit_code == 0, (r.exception, r.stderr)
    rows = [ln.split(":")[1].split() for ln in r.stdout.splitlines() if ln.strip()[:1].isdigit()]
    assert len(rows) == C and all(sorted(map(int, row)) == list(range(N)) for row in rows)
    r = invoke([*args[:-1], tmp_path / "again.npz", "--against", out])  # agreement over all 6 dims, not 10
    assert r.exit_code == 0, (r.exception, r.stderr)
    assert "against" in r.stdout and "top-6 overlap 1.00" in r.stdout


def test_report_reads_a_hand_edited_invert_json_as_recording_no_bundle(tmp_path):
    (tmp_path / "inv").mkdir()
    (tmp_path / "inv" / "invert.json").write_text(json.dumps({"bundle": 5, "generator_sha256": [1], "n_images": 3}))
    r = invoke(["report", tmp_path / "inv", "--out", tmp_path / "r.html", "--no-render"])
    assert r.exit_code == 0, (r.exception, r.stderr)
    assert "n_images" in (tmp_path / "r.html").read_text()
