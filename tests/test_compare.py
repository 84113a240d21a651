"""One yardstick: every direction set scored by the same APCR machinery."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from corrkit.cli.main import app
from corrkit._core.linalg import random_orthogonal
from corrkit.methods.compare import compare, selectivity
from tests import onnx_fixtures as fx
from corrkit._core.execution import Execution

CPU = Execution(device="cpu")


def test_random_orthogonal_is_orthonormal_and_seeded():
    q = random_orthogonal(20, seed=3)
    np.testing.assert_allclose(q @ q.T, np.eye(20), atol=1e-6)
    assert np.array_equal(q, random_orthogonal(20, seed=3)) and not np.array_equal(q, random_orthogonal(20, seed=4))


def test_selectivity_hand_computed():
    a = np.array([[0.4, 0.1, 0.2], [0.3, 0.3, 0.0], [0.0, 0.5, 0.0]])
    np.testing.assert_allclose(selectivity(a), [2.0, 1.0, np.inf])


def test_same_directions_score_the_same(tmp_path):
    lin = fx.linear_logits(tmp_path / "lin.onnx", n=6, c=3)
    from corrkit._core.bundle import from_fused

    b = from_fused(lin, classifier_output="logits")
    np.save(tmp_path / "axes.npy", np.eye(6, dtype=np.float32)[::-1].copy())  # the axes, reversed
    s = compare(b, {"axes_reversed": str(tmp_path / "axes.npy")}, samples_per_class=3, steps=2, delta=0.5,
                execution=CPU)
    coord, rev = s["methods"]["coordinate"], s["methods"]["axes_reversed"]
    assert coord["strongest_apcr"] == rev["strongest_apcr"]
    assert [5 - i for i in coord["best_direction"]] == rev["best_direction"]
    assert "sefa" not in s["methods"]  # a fused model has no generator to factorise


def test_linear_model_best_direction_is_the_largest_weight_gap(tmp_path):
    # for logits z @ W, moving along axis i changes logit j by k*delta*W[i, j]; the axis with the largest
    # spread of W[i, :] around W[i, j] moves S_j most
    lin = fx.linear_logits(tmp_path / "lin.onnx", n=6, c=3, seed=0)
    from corrkit._core.bundle import from_fused

    w = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    from corrkit._core.execution import Execution
    from corrkit.methods.sequential import apcr

    r = apcr(from_fused(lin, classifier_output="logits"), steps=1, delta=0.01, samples_per_class=4, threshold=0.4,
             execution=Execution(device="cpu"))
    for j in range(3):
        p = r.base[r.labels == j]
        # first-order: dS_j/dz_i = S_j (W[i, j] - sum_l S_l W[i, l]); APCR_ij ~ delta * mean |W_ij - E_S W_i|
        grad = np.abs(w[:, j][None, :] - p @ w.T).mean(0)
        assert int(np.argmax(r.apcr[:, j])) == int(np.argmax(grad))


def test_cli_writes_json_and_figures(tmp_path):
    r = CliRunner().invoke(app, ["compare", "--samples-per-class", "1", "--steps", "1", "--out", str(tmp_path),
                                 "--json", "--device", "cpu", "--no-ganspace", "--no-interfacegan"])  # own tests
    assert r.exit_code == 0, r.output
    s = json.loads(r.output)
    assert {"coordinate", "random", "sefa", "sefa_top10"} <= set(s["methods"])
    assert s == json.loads((tmp_path / "compare.json").read_text())
    assert len(s["methods"]["sefa"]["strongest_apcr"]) == 10
    pytest.importorskip("matplotlib")
    assert (tmp_path / "compare.png").stat().st_size > 1000
    for name in ("coordinate", "random", "sefa"):  # one traversal per run compare saved, none for sefa_top10
        assert (tmp_path / f"traversal_{name}.png").stat().st_size > 1000
    assert not (tmp_path / "traversal_sefa_top10.png").exists()


def test_shipped_sets_join_by_default_with_intervals():
    """The built-in bundle ships Voynov–Babenko directions and w*: compare scores them beside the rest, each
    with the bootstrap interval of its strongest APCR (SPEC §11), and equal to a plain run on those rows."""
    from corrkit._core.bundle import builtin_path
    from corrkit._core.grid import load_array
    from corrkit.methods.sequential import apcr

    kw = dict(with_sefa=False, with_ganspace=False, with_interfacegan=False, samples_per_class=3, steps=1)
    s = compare(None, **kw)
    assert list(s["methods"]) == ["coordinate", "random", "vb", "wstar"]
    w = load_array(builtin_path() / "optimized_weights.npz", "w", "w")
    assert s["methods"]["wstar"]["n_directions"] == 10 and "rca" in s["methods"]["vb"]
    plain = apcr(None, directions=w, samples_per_class=3, steps=1)
    best = np.nanargmax(plain.apcr, axis=0)
    np.testing.assert_allclose(s["methods"]["wstar"]["strongest_apcr"], plain.apcr[best, range(10)], atol=1e-5)
    for m in s["methods"].values():
        for v, (lo, hi) in zip(m["strongest_apcr"], m["strongest_apcr_interval"]):
            assert lo <= v + 1e-5 and v <= hi + 1e-5
        lo, hi = m["mean_strongest_apcr_interval"]
        assert lo < m["mean_strongest_apcr"] < hi
    assert list(compare(None, with_shipped=False, **kw)["methods"]) == ["coordinate", "random"]
    # paired differences to the strongest method, over the same resamples of the shared codes
    p = s["paired"]
    means = {k: m["mean_strongest_apcr"] for k, m in s["methods"].items()}
    assert p["reference"] == max(means, key=means.get) and set(p["methods"]) == set(means) - {p["reference"]}
    for name, d in p["methods"].items():
        assert d["difference"] == pytest.approx(means[name] - means[p["reference"]], abs=1e-5)
        assert d["interval"][0] <= d["difference"] + 1e-5 and d["difference"] <= d["interval"][1] + 1e-5


def test_paired_difference_of_a_method_with_itself_is_exactly_zero():
    from corrkit.methods.compare import paired_differences
    from corrkit.methods.sequential import apcr

    kw = dict(samples_per_class=3, steps=1)
    a = apcr(None, directions=np.eye(100, dtype=np.float32)[:6], **kw)
    b = apcr(None, directions=np.eye(100, dtype=np.float32)[:6], **kw)
    c = apcr(None, directions=np.eye(100, dtype=np.float32)[6:12], **kw)
    p = paired_differences({"a": a, "b": b, "c": c})
    twin = "b" if p["reference"] == "a" else "a"
    if p["reference"] in ("a", "b"):
        assert p["methods"][twin] == {"difference": 0.0, "interval": [0.0, 0.0]}
    else:
        assert p["methods"]["a"] == p["methods"]["b"]
    other = apcr(None, directions=np.eye(100, dtype=np.float32)[:6], seed=5, **kw)  # other codes: not paired
    assert paired_differences({"a": a, "other": other}) is None
