"""A normal (non-editable) install works from any current folder, the source checkout included.

In the checkout, ``python -c``, ``python -m`` and Ray's workers put the current folder first on the
path, so the checkout's ``corrkit/`` shadows the installed package; ``kernels/``, ``cli/`` and
``export/`` only sit inside the package once installed. This builds a real wheel install in a fresh
venv (dependencies borrowed from the test venv through a plain path entry, so the editable install's
finder is not loaded) and runs from inside the checkout.
"""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

import corrkit
from corrkit._core.bundle import load_bundle

ROOT = Path(__file__).resolve().parents[1]
ARRAYS = ("apcr", "curves", "up", "down", "counts", "latents", "labels", "base", "directions")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    r = subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", str(ROOT)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"pip install . failed: {r.stderr[-2000:]}")
    return venv


def test_import_from_the_checkout_uses_every_subpackage(installed):
    code = ("import corrkit, corrkit.kernels, corrkit.cli.main, corrkit.export.weights, sys; "
            "print(corrkit.kernels.__name__, 'torch' in sys.modules)")
    for cwd in (ROOT, installed):
        r = subprocess.run([installed / "bin" / "python", "-c", code], capture_output=True, text=True, cwd=cwd)
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == ["corrkit.kernels", "False"]


@pytest.mark.slow
def test_ray_from_the_checkout_equals_one_process(installed, tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "ray"
    r = subprocess.run([installed / "bin" / "corrkit", "apcr", "--ray", "--samples-per-class", "8", "--steps", "2",
                        "--device", "cpu", "--out", str(out), "--json"], capture_output=True, text=True, cwd=ROOT,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout)
    assert summary["params"]["executor"]["name"] == "ray"
    ray_arrays = np.load(out / "apcr.npz")
    bundle = load_bundle()
    single = corrkit.apcr(bundle, samples_per_class=8, steps=2, execution=corrkit.Execution(
        device="cpu", batch_size=summary["params"]["batch_size"], shard_points=summary["params"]["shard_points"]))
    for key in ARRAYS:
        assert np.array_equal(ray_arrays[key], getattr(single, key)), key
