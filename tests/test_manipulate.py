"""Concept manipulation (corrkit/manipulate.py) on a hand-built linear model whose answer is known."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import corrkit
from corrkit.cli.main import app
from corrkit.errors import CorrkitError
from corrkit._core.engine import generate
from corrkit.methods.manipulate import choose_sets, class_index, lowering_signs, manipulate
from tests import onnx_fixtures as fx
from corrkit._core.execution import Execution

CPU = Execution(device="cpu")

runner = CliRunner()


def test_helpers():
    assert class_index("Trouser", ["T-shirt/top", "Trouser"]) == 1 and class_index("0", ["a", "b"]) == 0
    with pytest.raises(CorrkitError, match="unknown class"):
        class_index("Hat", ["a", "b"])
    with pytest.raises(CorrkitError, match="out of range"):
        class_index("5", ["a", "b"])
    up, down = np.array([[0.2, -0.3]]), np.array([[-0.1, 0.1]])
    assert lowering_signs(up, down).tolist() == [[-1, 1]]
    apcr = np.array([[0.5, 0.0], [0.9, 0.1], [0.1, 0.2], [0.3, 0.3]])
    sets = choose_sets(apcr, 0, 2, seed=4)
    assert sets["top"].tolist() == [1, 0] and sets["bottom"].tolist() == [2, 3]
    want = np.sort(np.random.default_rng([4, 0]).choice(4, size=2, replace=False))
    assert sets["random"].tolist() == want.tolist()


def reference(z, dims, signs, alpha, j):
    """S_j after z + alpha * sum s_i e_i, by NumPy, and whether the argmax left j."""
    z2 = z.astype(np.float64).copy()
    z2[:, dims] += alpha * np.asarray(signs, np.float64)
    p = fx.known_probs(z2)
    return p[:, j], p.argmax(1) != j


def test_known_answer_on_linear_model(known_model):
    bundle, run, _ = known_model
    res = manipulate(bundle, run=run, classes=[0], top_k=2, alpha=1.5, steps=3, execution=CPU)
    m = res.per_class[0]
    assert sorted(m.sets["top"].tolist()) == [0, 1]
    assert sorted(m.sets["bottom"].tolist()) == [4, 5]
    assert m.signs["top"].tolist() == [-1, -1]  # raising z_0, z_1 raises S_0, so lowering goes down
    z, base = run.latents[run.labels == 0], run.base[run.labels == 0, 0]
    for name in ("top", "bottom", "random"):
        for a, alpha in enumerate([0.5, 1.0, 1.5]):
            s, flipped = reference(z, m.sets[name], m.signs[name], alpha, 0)
            np.testing.assert_allclose(m.s_j[name][a], s, rtol=1e-5, atol=1e-6)
            assert np.array_equal(m.flipped[name][a], flipped)
    assert res.to_json()["drop"]["bottom"] == pytest.approx(0.0, abs=1e-6)  # dims 4, 5 do nothing
    assert m.flip_rate("bottom") == 0.0
    assert m.drop("top") == pytest.approx(float((base - reference(z, m.sets["top"], [-1, -1], 1.5, 0)[0]).mean()),
                                          rel=1e-5)
    assert m.drop("top") > 0.3 and m.flip_rate("top") > 0.5


def test_all_classes_overall_is_the_code_weighted_mean(known_model):
    bundle, run, _ = known_model
    res = manipulate(bundle, run=run, top_k=2, alpha=1.0, execution=CPU).to_json()
    assert [c["index"] for c in res["per_class"]] == [0, 1, 2]
    for key in ("flip_rate", "drop"):
        for name in ("top", "bottom", "random"):
            want = sum(c[key][name] * c["n"] for c in res["per_class"]) / sum(c["n"] for c in res["per_class"])
            assert res[key][name] == pytest.approx(want)


def test_cli_json_single_and_all(known_model, tmp_path):
    bundle, run, d = known_model
    args = ["manipulate", str(bundle.fused), "--output", "logits", "--run", str(d / "run"), "--top-k", "2",
            "--alpha", "1.5", "--steps", "3", "--device", "cpu", "--json"]
    r = runner.invoke(app, [*args, "--class", "0"])
    assert r.exit_code == 0, r.output
    one = json.loads(r.output)
    want = manipulate(bundle, run=run, classes=[0], top_k=2, alpha=1.5, steps=3, execution=CPU)
    assert one["flip_rate"]["top"] == want.per_class[0].flip_rate("top") and one["class"] == "0"
    r = runner.invoke(app, [*args, "--class", "all"])
    everything = json.loads(r.output)
    assert set(everything) >= {"flip_rate", "drop", "per_class", "alpha"} and len(everything["per_class"]) == 3
    r = runner.invoke(app, [*args, "--class", "7"])
    assert r.exit_code == 1 and "out of range" in r.output
    r = runner.invoke(app, [*args[:-1], "--alpha", "-1"])
    assert r.exit_code == 1 and "--alpha" in r.output
    other = fx.matmul_logits(tmp_path / "other.onnx", 2 * fx.KNOWN_W)  # same shapes, another model
    r = runner.invoke(app, ["manipulate", str(other), "--output", "logits", "--run", str(d / "run"), "--top-k", "2"])
    assert r.exit_code == 1 and "another model" in r.output


def test_pictures_on_builtin_bundle(bundle, tmp_path):
    import matplotlib.image

    run = corrkit.apcr(bundle, samples_per_class=1, steps=1, execution=corrkit.Execution(device="cpu"))
    from corrkit.viz.images import image_grid

    res = manipulate(bundle, run=run, classes=[1], top_k=3, steps=2, out=tmp_path, draw=image_grid, execution=CPU)
    assert len(res.images) == 1 and res.images[0].endswith(".png")
    img = matplotlib.image.imread(res.images[0])
    assert img.ndim == 3 and img.shape[0] > 100 and img.std() > 0.05  # three blocks of digits, not blank
    assert json.loads((tmp_path / "manipulate.json").read_text())["images"] == res.images
    z = run.latents[:2]
    from tests.naive import TwoSessions

    raw = TwoSessions(bundle).g.run(None, {"z": z})[0]
    np.testing.assert_allclose(generate(bundle, z), (raw[:, 0] + 1) / 2, atol=1e-6)
    from corrkit.methods.manipulate import edit_images

    m = res.per_class[0]
    edits = edit_images(bundle, z, m.sets["top"], m.signs["top"], [0.0, 0.5])
    assert edits.shape == (2, 2, 28, 28)
    np.testing.assert_allclose(edits[:, 0], generate(bundle, z), atol=1e-6)  # alpha 0 is the code itself
    moved = z.copy()
    moved[:, m.sets["top"]] += 0.5 * m.signs["top"]
    np.testing.assert_allclose(edits[:, 1], generate(bundle, moved), atol=1e-5)
    res = manipulate(bundle, run=run, classes=[1], top_k=3, steps=2, out=tmp_path / "bare", execution=CPU)
    assert res.images == [] and sorted(p.name for p in (tmp_path / "bare").iterdir()) == ["manipulate.json"]


def test_flip_rate_intervals_in_json(tmp_path):
    """SPEC §11: each flip rate and the pooled one carry a 95% interval that holds them, never zero width."""
    from corrkit.methods.manipulate import manipulate
    from corrkit.methods.sequential import apcr

    run = apcr(None, samples_per_class=6, steps=1)
    js = manipulate(None, run=run, top_k=3, alpha=0.5, steps=1).to_json()
    for row in js["per_class"] + [js]:
        for s, (lo, hi) in row["flip_rate_interval"].items():
            assert lo <= row["flip_rate"][s] <= hi and hi > lo, (row.get("class"), s)
