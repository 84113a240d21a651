"""``--samples-per-class auto`` (SPEC §11): rounds double the codes until every top-k member is sure."""

import json
import subprocess
import sys

import numpy as np

from corrkit._core.execution import Execution
from corrkit.methods.auto import apcr_auto
from corrkit.methods.sequential import apcr

DIRS = np.eye(100, dtype=np.float32)[[68, 70, 13, 90, 3, 40, 77, 5]]  # strong and weak built-in dims
KW = dict(directions=DIRS, steps=1, execution=Execution(device="cpu", batch_size=64))


def test_rounds_stop_where_the_rule_says_and_equal_a_plain_run():
    run = apcr_auto(None, start=2, cap=32, top=2, **KW)
    auto = run.params["auto"]
    ns = [r["samples_per_class"] for r in auto["rounds"]]
    assert ns == [2 * 2 ** r for r in range(len(ns))] and ns[-1] <= 32
    for r in auto["rounds"][:-1]:  # every earlier round had a member below the bar
        assert any(w is None or w < 0.9 for w in r["min_inclusion"])
    last = auto["rounds"][-1]["min_inclusion"]
    assert ns[-1] == 32 or all(w >= 0.9 for w in last), auto
    for name, n in auto["needed"].items():  # the first round in which the class passed
        j = run.classes.index(name)
        passed = [r["samples_per_class"] for r in auto["rounds"] if (r["min_inclusion"][j] or 0) >= 0.9]
        assert n == (passed[0] if passed else None)
    # the result is the plain run with the final number of codes, bit for bit
    plain = apcr(None, samples_per_class=ns[-1], **KW)
    for key in ("apcr", "curves", "contributions", "latents", "labels"):
        assert np.array_equal(getattr(run, key), getattr(plain, key)), key
    assert run.intervals(2)["inclusion"].min() == min(last)
    sure = auto["rounds"][-1]
    assert sure["members"] == 20 and sure["members_sure"] == int((run.intervals(2)["inclusion"] >= 0.9).sum())


def test_cli_auto_and_bad_values(tmp_path):
    np.save(tmp_path / "d.npy", DIRS)
    base = [sys.executable, "-m", "corrkit.cli", "apcr", "--directions", str(tmp_path / "d.npy"), "--steps", "1",
            "--device", "cpu", "--top-k", "2"]
    r = subprocess.run(base + ["--samples-per-class", "auto", "--max-samples-per-class", "4", "--json"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["params"]["samples_per_class"] == s["params"]["auto"]["rounds"][-1]["samples_per_class"] <= 4
    assert len(s["intervals"]["top"]["Bag"]) == 2
    for bad in ("abc", "0", "-3", "2.5"):
        r = subprocess.run(base + ["--samples-per-class", bad], capture_output=True, text=True)
        assert r.returncode == 1 and r.stderr.startswith("error:") and "--samples-per-class" in r.stderr, r.stderr
