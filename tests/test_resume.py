"""A SIGKILLed `corrkit apcr --out` run resumes and ends bit-identical to an uninterrupted one."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np

ARGS = ["apcr", "--samples-per-class", "3", "--steps", "2", "--device", "cpu", "--batch-size", "64",
        "--checkpoint-every", "0.2", "--json"]


def _start(out):
    return subprocess.Popen([sys.executable, "-m", "corrkit.cli", *ARGS, "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_kill_and_resume_is_exact(tmp_path):
    killed = tmp_path / "killed"
    proc = _start(killed)
    deadline = time.time() + 300
    while not (killed / "checkpoint.npz").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.5)
    assert proc.poll() is None, "run finished before it could be killed; grow the grid"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "apcr.npz").exists()
    done_before = int(np.load(killed / "checkpoint.npz")["p_next"])
    assert done_before > 0

    resumed = subprocess.run([sys.executable, "-m", "corrkit.cli", *ARGS, "--out", str(killed)],
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["resumed_from"] >= done_before
    assert not (killed / "checkpoint.npz").exists()

    clean = tmp_path / "clean"
    r = subprocess.run([sys.executable, "-m", "corrkit.cli", *ARGS, "--out", str(clean)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    a, b = np.load(killed / "apcr.npz"), np.load(clean / "apcr.npz")
    for key in ("apcr", "curves", "up", "down", "counts", "latents", "labels", "contributions", "curves_sd"):
        assert np.array_equal(a[key], b[key]), key
