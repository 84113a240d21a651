"""Hostile options and outputs (hostile-input audit, items 1-4): each case is one ``error:`` line and exit 1.

Every case starts with a good earlier result in ``--out`` (a real apcr run folder, or a
real weights file where ``--out`` is a file) and asserts: exit code 1, exactly one line
on stderr and it starts with ``error:``, no traceback, and the earlier result and the
case's folder byte-identical afterwards. Most cases run in-process (``CliRunner``);
those in ``SUBPROCESS`` run ``python -m corrkit.cli`` end to end. The Ray cases use
127.0.0.1 only: a plain ``http.server`` on a free port, a listener that never answers,
and a free port where nothing listens.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from corrkit.cli.main import app
from corrkit.methods.optimize import optimize
from tests import onnx_fixtures as fx

ROOT_USER = os.geteuid() == 0  # root reads and writes through chmod 000 / 555
TINY = "--samples-per-class 1 --steps 1 --device cpu"
LIN = "{lin} --output logits --threshold 0.34"  # the known-answer model, 6 dims, 3 classes
RUNS = "{lin} --output logits --run {run} --device cpu"  # manipulate / translate on its run
runner = CliRunner()

# id: (command line, what the error line must say, kind of --out: folder or file)
OPTIONS = {
    # 1. options out of range, refused before any work
    "apcr --batch-size -5": (f"apcr {LIN} {TINY} --batch-size -5", "--batch-size", "folder"),
    "apcr --batch-size 10**12": (f"apcr {LIN} {TINY} --batch-size {10**12}", "--batch-size", "folder"),
    "apcr --batch-size 0": (f"apcr {LIN} {TINY} --batch-size 0", "--batch-size", "folder"),
    "apcr --top-k 0": (f"apcr {LIN} {TINY} --top-k 0", "--top-k", "folder"),
    "apcr --top-k -1": (f"apcr {LIN} {TINY} --top-k -1", "--top-k", "folder"),
    "apcr --seed -1": (f"apcr {LIN} {TINY} --seed -1", "--seed", "folder"),
    "apcr --steps 10**12": (f"apcr {LIN} --samples-per-class 1 --steps {10**12}", "--steps", "folder"),
    "apcr --threads 0": (f"apcr {LIN} {TINY} --threads 0", "--threads", "folder"),
    "apcr --threads -4": (f"apcr {LIN} {TINY} --threads -4", "--threads", "folder"),
    "apcr --checkpoint-every nan": (f"apcr {LIN} {TINY} --checkpoint-every nan", "--checkpoint-every", "folder"),
    "apcr --checkpoint-every -1": (f"apcr {LIN} {TINY} --checkpoint-every -1", "--checkpoint-every", "folder"),
    "apcr --ray local --workers -2": (f"apcr {LIN} {TINY} --ray local --workers -2", "--workers", "folder"),
    "apcr --ray local --workers 0": (f"apcr {LIN} {TINY} --ray local --workers 0", "--workers", "folder"),
    "apcr --shard-points 0": (f"apcr {LIN} {TINY} --shard-points 0", "--shard-points", "folder"),
    "apcr --threshold 1": (f"apcr {LIN} {TINY} --threshold 1", "--threshold", "folder"),
    "apcr --delta nan": (f"apcr {LIN} {TINY} --delta nan", "--delta", "folder"),
    "apcr --samples-per-class 10**9": (f"apcr {LIN} --steps 1 --samples-per-class {10**9}", "--samples-per-class",
                                       "folder"),
    "apcr draw over the memory cap": ("apcr --steps 1 --samples-per-class 500000", "GiB", "folder"),
    "apcr grid over the point cap": ("apcr --samples-per-class 20000 --steps 10000", "points", "folder"),
    "apcr score curves over the memory cap": ("apcr {wide} --output logits --samples-per-class 1 --steps 10000",
                                              "score curves", "folder"),
    "apcr --generator-range 1,nan": (f"apcr {TINY} --generator {{gen}} --classifier {{cls}} "
                                     "--generator-range 1,nan", "--generator-range", "folder"),
    "compare --seed -1": (f"compare {{lin}} {TINY} --seed -1", "--seed", "folder"),
    "compare --samples-per-class 10**9": (f"compare {{lin}} --steps 1 --samples-per-class {10**9}",
                                          "--samples-per-class", "folder"),
    "compare --steps 10**12": (f"compare {{lin}} --samples-per-class 1 --steps {10**12}", "--steps", "folder"),
    "compare --ray local --workers 0": (f"compare {{lin}} {TINY} --ray local --workers 0", "--workers", "folder"),
    "compare --directions without =": (f"compare {{lin}} {TINY} --directions {{dirs}}", "NAME=FILE", "folder"),
    "optimize --seed -1": ("optimize {lin} --output logits --iterations 1 --seed -1", "--seed", "file"),
    "optimize --threads 0": ("optimize {lin} --output logits --iterations 1 --threads 0", "--threads", "file"),
    "optimize --batch-size 0": ("optimize {lin} --output logits --iterations 1 --batch-size 0", "--batch-size",
                                "file"),
    "optimize --iterations 10**12": (f"optimize {{lin}} --output logits --iterations {10**12}", "--iterations",
                                     "file"),
    "optimize --samples-per-class 10**9": (f"optimize {{lin}} --output logits --samples-per-class {10**9}",
                                           "--samples-per-class", "file"),
    "optimize --perturbations 0": ("optimize {lin} --output logits --perturbations 0", "--perturbations", "file"),
    "optimize --sigma nan": ("optimize {lin} --output logits --sigma nan", "--sigma", "file"),
    "optimize --average 1": ("optimize {lin} --output logits --average 1", "--average", "file"),
    "manipulate --seed -1": (f"manipulate {RUNS} --seed -1", "--seed", "folder"),
    "manipulate --steps 10**8": (f"manipulate {RUNS} --steps {10**8}", "--steps", "folder"),
    "manipulate --top-k 0": (f"manipulate {RUNS} --top-k 0", "--top-k", "folder"),
    "manipulate --top-k 7 of 6 dims": (f"manipulate {RUNS} --top-k 7", "between 1 and 6", "folder"),
    "manipulate --alpha inf": (f"manipulate {RUNS} --alpha inf", "--alpha", "folder"),
    "translate --steps 10**8": (f"translate {RUNS} --steps {10**8}", "--steps", "folder"),
    "translate --alpha nan": (f"translate {RUNS} --alpha nan", "--alpha", "folder"),
    "translate --top-k 0": (f"translate {RUNS} --top-k 0", "--top-k", "folder"),
    "control --top-k 0": ("control {run} --weights {w} --top-k 0", "--top-k", None),
    "bench --batch-size 0": ("bench {lin} --quick --batch-size 0", "--batch-size", None),
    "bench --batch-size -1": ("bench {lin} --quick --batch-size -1", "--batch-size", None),
    "bench --batch-size 10**12": (f"bench {{lin}} --quick --batch-size {10**12}", "--batch-size", None),
    "bench --device tpu": ("bench {lin} --quick --device tpu", "--device", None),
    "latents --folds 0": ("latents {codes} {labels} --model {lin} --folds 0", "--folds", "folder"),
    "latents --n-prior 10**12": (f"latents {{codes}} {{labels}} --model {{lin}} --n-prior {10**12}", "--n-prior",
                                 "folder"),
    "latents --seed 2**40": (f"latents {{codes}} {{labels}} --model {{lin}} --seed {2**40}", "--seed", "folder"),
    "sefa --top -1": ("sefa --top -1", "--top", "file"),
    "export train --gan-epochs -1": ("export train --gan-epochs -1 --work {out}", "--gan-epochs", "folder"),
    "export discover --threads 0": ("export discover --threads 0", "--threads", "folder"),
    "export discover --workers 0": ("export discover --workers 0", "--workers", "folder"),
    "export discover --directions 0": ("export discover --directions 0", "--directions", "folder"),
    "export invert --steps -1": ("export invert --steps -1", "--steps", "folder"),
    "export invert --n-per-class 0": ("export invert --n-per-class 0", "--n-per-class", "folder"),
    "export optimize --seed -1": ("export optimize --seed -1", "--seed", "file"),
    "export model --latent-shape 0": ("export model --generator a.b:G --classifier a.b:C --latent-shape 0",
                                      "--latent-shape", "folder"),
}

OUTPUTS = {
    # 2. --out that cannot take the result, found before computing
    "apcr --out an existing file": (f"apcr {LIN} {TINY} --out {{afile}}", "not a folder", None),
    "compare --out an existing file": (f"compare {{lin}} {TINY} --out {{afile}}", "not a folder", None),
    "manipulate --out an existing file": (f"manipulate {RUNS} --out {{afile}}", "not a folder", None),
    "translate --out an existing file": (f"translate {RUNS} --out {{afile}}", "not a folder", None),
    "latents --out an existing file": ("latents {codes} {labels} --model {lin} --out {afile}", "not a folder", None),
    "figures --out an existing file": ("figures {run} --out {afile}", "not a folder", None),
    "bundle create --out an existing file": ("bundle create --generator {gen} --classifier {cls} --out {afile}",
                                             "not a folder", None),
    "sefa --out an existing folder": ("sefa --out {out}", "is a folder", "folder"),
    "optimize --out an existing folder": ("optimize {lin} --output logits --iterations 1 --out {out}",
                                          "is a folder", "folder"),
    "report --out an existing folder": ("report {run} --out {out}", "is a folder", "folder"),
    "export optimize --out an existing folder": ("export optimize --out {out}", "is a folder", "folder"),
    "sefa --out a pipe": ("sefa --out {fifo}", "not a regular file", None),
    "apcr --out under a file": (f"apcr {LIN} {TINY} --out {{afile}}/run", "is a file, not a folder", None),
    "sefa --out under a file": ("sefa --out {afile}/s.npz", "is a file, not a folder", None),
    "apcr --out under a read-only folder": (f"apcr {LIN} {TINY} --out {{readonly}}/run", "cannot write", None),
    "sefa --out under a read-only folder": ("sefa --out {readonly}/s.npz", "cannot write", None),
    "report --out under a read-only folder": ("report {run} --out {readonly}/r.html", "cannot write", None),
}

INPUTS = {
    # 4. inputs that cannot be read: runtime errors (exit 1), never Click's usage errors (exit 2)
    "apcr MODEL unreadable": (f"apcr {{locked_model}} --output logits {TINY}", "cannot be read", "folder"),
    "apcr --latents unreadable": (f"apcr {LIN} {TINY} --latents {{locked_npy}}", "cannot be read", "folder"),
    "apcr MODEL a pipe": (f"apcr {{fifo}} {TINY}", "not a regular file", "folder"),
    "apcr --latents a folder": (f"apcr {LIN} {TINY} --latents {{afolder}}", "is a folder", "folder"),
    "apcr --directions a folder": (f"apcr {LIN} {TINY} --directions {{afolder}}", "is a folder", "folder"),
    "apcr --generator a folder": (f"apcr {TINY} --generator {{afolder}} --classifier {{cls}}", "is a folder",
                                  "folder"),
    "manipulate --run a file": ("manipulate {lin} --output logits --run {afile}", "not a folder", "folder"),
    "figures RUN_DIR a file": ("figures {afile}", "not a folder", None),
    "report RUN_DIR a file": ("report {afile}", "not a folder", "file"),
    "control --weights a folder": ("control {run} --weights {afolder}", "is a folder", None),
    "latents CODES a folder": ("latents {afolder} {labels}", "is a folder", "folder"),
    "bundle info PATH missing": ("bundle info {missing}", "does not exist", None),
    "export bundle --work a file": ("export bundle --work {afile}", "not a folder", "folder"),
}

# Run end to end in a fresh interpreter (the rest in-process).
SUBPROCESS = {"apcr --seed -1", "bench --batch-size 0", "optimize --seed -1", "sefa --out an existing folder",
              "apcr --out under a read-only folder", "apcr MODEL unreadable", "export train --gan-epochs -1"}


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "<dir>"
            for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def inputs(known_model, tmp_path_factory):
    """The known-answer model and its run, their optimised weights, codes and odd paths, by placeholder name."""
    from corrkit._core.bundle import builtin_path

    bundle, run, d = known_model
    optimize(bundle, iterations=2, samples_per_class=2, estimator="codes").save(d / "w.npz")
    np.save(d / "codes.npy", run.latents)
    np.save(d / "labels.npy", run.labels)
    np.save(d / "dirs.npy", np.eye(6, dtype=np.float32)[:3])
    wide = fx.matmul_logits(d / "wide.onnx", np.random.default_rng(0).normal(size=(6, 2000)).astype(np.float32))
    return {"lin": d / "lin.onnx", "run": d / "run", "w": d / "w.npz", "codes": d / "codes.npy",
            "labels": d / "labels.npy", "dirs": d / "dirs.npy", "wide": wide,
            "gen": builtin_path() / "generator.onnx", "cls": builtin_path() / "classifier.onnx"}


@pytest.fixture
def case(inputs, tmp_path):
    """Placeholders of one case: its own odd paths and an ``out`` holding a good earlier result."""
    (tmp_path / "afolder").mkdir()
    (tmp_path / "afile").write_text("the user's file\n")
    os.mkfifo(tmp_path / "fifo")
    ro = tmp_path / "readonly"
    ro.mkdir()
    ro.chmod(0o555)
    locked = tmp_path / "locked"
    locked.mkdir()
    shutil.copy(inputs["lin"], locked / "lin.onnx")
    shutil.copy(inputs["codes"], locked / "codes.npy")
    for f in locked.iterdir():
        f.chmod(0)
    yield {**inputs, "afolder": tmp_path / "afolder", "afile": tmp_path / "afile", "fifo": tmp_path / "fifo",
           "missing": tmp_path / "missing", "locked_model": locked / "lin.onnx", "locked_npy": locked / "codes.npy",
           # root writes through mode 555, so /sys, where creating a file is refused, stands in for it
           "readonly": Path("/sys") if ROOT_USER else ro, "root": tmp_path}
    ro.chmod(0o755)


def good_result(case: dict, kind: str | None) -> Path | None:
    """A real earlier result at ``case['out']``: an apcr run folder, or a weights file."""
    if kind is None:
        return None
    out = case["root"] / ("out" if kind == "folder" else "out.npz")
    if kind == "folder":
        shutil.copytree(case["run"], out)
    elif kind == "file":
        shutil.copy(case["w"], out)
    return out


def run_cli(args: list[str], cwd: Path, subprocess_run: bool) -> tuple[int, str, str]:
    if subprocess_run:
        r = subprocess.run([sys.executable, "-m", "corrkit.cli", *args], capture_output=True, text=True, cwd=cwd,
                           timeout=120)
        return r.returncode, r.stdout, r.stderr
    old = os.getcwd()
    os.chdir(cwd)
    try:
        r = runner.invoke(app, args)
    finally:
        os.chdir(old)
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    return r.exit_code, r.stdout, r.stderr


def assert_one_error(code: int, stdout: str, stderr: str, needle: str) -> None:
    assert code == 1, (code, stdout, stderr)
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), stderr
    assert needle in lines[0], stderr
    assert "Traceback" not in stdout + stderr


def run_case(table: dict, name: str, case: dict, extra: list[str] = ()) -> None:
    template, needle, kind = table[name]
    out = good_result(case, kind)
    args = template.format(**case, out=out).split()
    if out is not None and "--out" not in args and "--work" not in args:
        args += ["--out", str(out)]
    before = snapshot(case["root"])
    code, stdout, stderr = run_cli([*args, *extra], case["root"], name in SUBPROCESS)
    assert_one_error(code, stdout, stderr, needle)
    assert snapshot(case["root"]) == before  # the earlier result and everything beside it, untouched


@pytest.mark.parametrize("name", OPTIONS)
def test_options_out_of_range(name, case):
    run_case(OPTIONS, name, case)


@pytest.mark.parametrize("name", OUTPUTS)
def test_outputs_that_cannot_be_written(name, case):
    run_case(OUTPUTS, name, case)


@pytest.mark.parametrize("name", INPUTS)
def test_inputs_that_cannot_be_read(name, case):
    if "unreadable" in name and ROOT_USER:
        pytest.skip("root reads a file whatever its mode")
    run_case(INPUTS, name, case)


# ---------------------------------------------------------------- a disk that fills up (simulated)

# Writes of files ending in .tmp under OUT fail as on a full disk (the file is created, then the write
# fails); with PROBE, so does check_writable's probe (a disk already full).
FULL_DISK = """
import builtins, errno, os
OUT, PROBE = {out!r}, {probe!r}
_open, _write = builtins.open, os.write
class Full:
    def __init__(self, fh): self.fh = fh
    def write(self, data): raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    def __getattr__(self, name): return getattr(self.fh, name)
    def __enter__(self): return self
    def __exit__(self, *exc): self.fh.close()
def full_open(file, mode="r", *args, **kw):
    fh = _open(file, mode, *args, **kw)
    return Full(fh) if "w" in mode and str(file).startswith(OUT) and str(file).endswith(".tmp") else fh
def full_write(fd, data):
    if PROBE and os.readlink(f"/proc/self/fd/{{fd}}").startswith(OUT):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return _write(fd, data)
builtins.open, os.write = full_open, full_write
import sys
from corrkit.cli.main import run
sys.argv = ["corrkit", *{args!r}]
run()
"""


@pytest.mark.parametrize("command,probe", [("apcr", False), ("apcr", True), ("sefa", False), ("sefa", True)])
def test_a_full_disk_is_one_line_and_leaves_no_temporary(case, command, probe):
    out = good_result(case, "folder" if command == "apcr" else "file")
    args = ([command, str(case["lin"]), "--output", "logits", "--threshold", "0.34", *TINY.split()]
            if command == "apcr" else [command]) + ["--out", str(out)]
    before = snapshot(case["root"])
    code = FULL_DISK.format(out=str(out if command == "apcr" else out.parent), probe=probe, args=args)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=case["root"], timeout=120)
    assert_one_error(r.returncode, r.stdout, r.stderr, "No space left on device")
    assert snapshot(case["root"]) == before  # the earlier result kept, no .tmp left


# ---------------------------------------------------------------- 3. --ray addresses on loopback


@pytest.fixture
def http_port():
    """A plain HTTP server on 127.0.0.1 (something listens, but not Ray)."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def silent_port():
    """A listener on 127.0.0.1 that accepts and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_case(case, address: str, needle: str, subprocess_run: bool, seconds: float):
    out = good_result(case, "folder")
    before = snapshot(case["root"])
    t0 = time.monotonic()
    code, stdout, stderr = run_cli(["apcr", str(case["lin"]), "--output", "logits", "--threshold", "0.34",
                                    *TINY.split(), "--ray", address, "--out", str(out)], case["root"],
                                   subprocess_run)
    took = time.monotonic() - t0
    assert_one_error(code, stdout, stderr, needle)  # one line: none of Ray's own log lines
    assert took < seconds, took
    assert snapshot(case["root"]) == before


@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_ray_address_where_a_web_server_listens(case, http_port, scheme):
    _ray_case(case, f"{scheme}127.0.0.1:{http_port}", "not as a Ray cluster", scheme == "", 15)


def test_ray_address_where_nothing_listens(case):
    _ray_case(case, f"127.0.0.1:{free_port()}", "cannot reach", True, 15)


def test_ray_address_that_never_answers_is_bounded(case, silent_port, monkeypatch):
    from corrkit._core import distributed

    monkeypatch.setattr(distributed, "CONNECT_SECONDS", 1.0)  # 10 s in use; the bound, not its length, is tested
    _ray_case(case, f"127.0.0.1:{silent_port}", "did not answer within 1 s", False, 5)


def test_connect_bound_is_ten_seconds():
    from corrkit._core import distributed

    assert distributed.CONNECT_SECONDS == 10.0


# ---------------------------------------------------------------- the writers themselves


def test_write_bytes_never_replaces_a_folder_or_a_device(tmp_path):
    from corrkit._core import io
    from corrkit.errors import CorrkitError

    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "folder").mkdir()
    for target in ("fifo", "folder"):
        with pytest.raises(CorrkitError, match="not a regular file"):
            io.write_bytes(tmp_path / target, b"x")
    assert (tmp_path / "fifo").is_fifo() and (tmp_path / "folder").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo", "folder"]


def test_check_writable_leaves_no_trace(tmp_path):
    from corrkit._core.io import check_writable

    assert check_writable(tmp_path / "a" / "b" / "run") == tmp_path / "a" / "b" / "run"
    assert check_writable(tmp_path / "w.npz", "file") == tmp_path / "w.npz"
    assert list(tmp_path.iterdir()) == []  # nothing created, the probes removed


@pytest.mark.parametrize("name", ["apcr MODEL unreadable", "apcr --latents unreadable"])
def test_unreadable_inputs_simulated_for_root(name, case, monkeypatch):
    # Root reads through mode 000, so the permission check itself is made to answer "no" for the locked files.
    locked = (str(case["locked_model"]), str(case["locked_npy"]))
    access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: str(path) not in locked and access(path, mode, **kw))
    template, needle, kind = INPUTS[name]
    out = good_result(case, kind)
    before = snapshot(case["root"])
    code, stdout, stderr = run_cli([*template.format(**case).split(), "--out", str(out)], case["root"], False)
    assert_one_error(code, stdout, stderr, needle)
    assert snapshot(case["root"]) == before
