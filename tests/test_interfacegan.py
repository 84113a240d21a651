"""corrkit.methods.interfacegan: SVM boundary normals and conditional editing (Shen et al. 2020).

The known answer: a classifier linear in the code, logits = z W. With two classes,
``S_0 = sigmoid(z · (W[:, 0] − W[:, 1]))`` is monotone in one projection, so the most and
least confident codes are separated by hyperplanes normal to ``W[:, 0] − W[:, 1]``: the SVM's
unit normal for class 0 must be that vector, normalised (and class 1's its negative).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from corrkit._core.bundle import from_fused, load_bundle
from corrkit._core.execution import Execution
from corrkit.cli.main import app
from corrkit.errors import CorrkitError
from corrkit.methods.compare import load_directions
from corrkit.methods.interfacegan import InterfaceganResult, interfacegan, project_boundary
from corrkit.methods.manipulate import manipulate
from tests import onnx_fixtures as fx
from tests.user_models import pair

runner = CliRunner()
CPU = Execution(device="cpu")


def unit(v):
    return np.asarray(v, np.float64) / np.linalg.norm(v)


def test_two_class_linear_classifier_gives_the_weight_gap(tmp_path):
    w = np.random.default_rng(3).normal(size=(8, 2)).astype(np.float32)
    b = from_fused(fx.matmul_logits(tmp_path / "lin.onnx", w), classifier_output="logits")
    r = interfacegan(b, samples=20_000, seed=0, execution=CPU)
    expected = unit(w[:, 0].astype(np.float64) - w[:, 1])
    assert r.directions.shape == (2, 8)
    assert float(r.directions[0] @ expected) > 0.99  # signed: towards higher S_0
    assert float(r.directions[1] @ -expected) > 0.99
    assert (r.accuracy == 1.0).all()  # the two ends of a linear score are separable
    assert np.array_equal(r.directions, interfacegan(b, samples=20_000, seed=0, execution=CPU).directions)


def test_project_boundary_matches_the_authors_closed_forms():
    rng = np.random.default_rng(0)
    p, c1, c2 = (unit(rng.normal(size=10)) for _ in range(3))
    one = p - (p @ c1) * c1
    np.testing.assert_allclose(project_boundary(p, c1[None]), one / np.linalg.norm(one), atol=1e-12)
    g = c1 @ c2
    alpha, beta = ((p @ c1) - (p @ c2) * g) / (1 - g**2), ((p @ c2) - (p @ c1) * g) / (1 - g**2)
    two = p - alpha * c1 - beta * c2
    np.testing.assert_allclose(project_boundary(p, np.stack([c1, c2])), two / np.linalg.norm(two), atol=1e-9)
    many = rng.normal(size=(5, 10))
    q = project_boundary(p, many)
    np.testing.assert_allclose(many @ q, 0, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(q), 1)
    np.testing.assert_allclose(project_boundary(p, np.zeros((0, 10))), p)
    with pytest.raises(CorrkitError, match="span"):
        project_boundary(c1, np.stack([c1, c2]))


def test_conditional_edit_leaves_the_kept_logit_unchanged(tmp_path):
    # Three linear concepts; edit along class 0's fitted normal with concept "logit 1 − logit 2" kept:
    # through the ONNX model, log S_1 − log S_2 (= that logit) must not move.
    w = np.random.default_rng(5).normal(size=(6, 3)).astype(np.float32)
    b = from_fused(fx.matmul_logits(tmp_path / "lin.onnx", w), classifier_output="logits")
    engine = CPU.engine(b)
    r = interfacegan(b, samples=5000, seed=0, engine=engine)
    kept = unit(w[:, 1].astype(np.float64) - w[:, 2])
    d = project_boundary(r.directions[0], kept[None])
    z = np.random.default_rng(1).standard_normal((64, 6)).astype(np.float32)
    before, after = (np.log(engine.probabilities(x).astype(np.float64)) for x in (z, z + 2.0 * d.astype(np.float32)))
    change = (after[:, 1] - after[:, 2]) - (before[:, 1] - before[:, 2])
    assert np.abs(change).max() < 1e-5
    assert (after[:, 0] - before[:, 0]).mean() > 0.3  # and class 0 did move


def test_manipulate_keep_holds_the_kept_class(known_model):
    bundle, run, _ = known_model  # logits = z KNOWN_W: dims 0, 1 raise class 0, dim 2 class 1, dim 3 class 2
    r = manipulate(bundle, run=run, classes=[0], keep=[1], top_k=2, alpha=1.0, steps=2, execution=CPU)
    m = r.per_class[0]
    assert r.sets == ("top", "bottom", "random", "boundary") and r.keep == [1]
    assert m.drop("boundary") > 0.2  # the conditional edit lowers S_0 ...
    assert m.kept_change["boundary"][-1] < 0.25 * m.drop("boundary")  # ... while S_1 moves much less
    j = r.to_json()
    assert j["keep"] == ["1"] or j["keep"] == [bundle.classes[1]]
    assert set(j["kept_change"]) == set(r.sets) and "boundary" in j["flip_rate"]
    with pytest.raises(CorrkitError, match="both"):
        manipulate(bundle, run=run, classes=[1], keep=[1], top_k=2, execution=CPU)


def test_cli_builtin_and_compare_reads_it(tmp_path):
    out = tmp_path / "ig.npz"
    r = runner.invoke(app, ["interfacegan", "--samples", "600", "--out", str(out), "--json", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.output)
    assert s["n_directions"] == 10 and len(s["accuracy"]) == 10 and s["mean_accuracy"] > 0.7
    d, extra = load_directions(out)
    assert d.shape == (10, 100) and extra == {}
    back = InterfaceganResult.load(out)
    assert back.classes[0] == "T-shirt/top" and np.allclose(back.accuracy, s["accuracy"])


def test_cli_user_pair_keep_and_compare(tmp_path, known_model):
    p = pair(tmp_path / "m")  # torch's default export: fixed batch 4, external data, opset 20
    model = ["--generator", str(p.generator), "--classifier", str(p.classifier), "--output", "logits"]
    out = tmp_path / "ig.npz"
    r = runner.invoke(app, ["interfacegan", *model, "--samples", "1000", "--out", str(out), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "3 boundaries from 1,000 codes" in r.output
    r = runner.invoke(app, ["compare", *model, "--directions", f"ig={out}", "--no-sefa", "--no-ganspace",
                            "--no-interfacegan", "--samples-per-class", "2", "--steps", "1", "--device", "cpu",
                            "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["methods"]["ig"]["n_directions"] == 3
    _, _, d = known_model
    ig = tmp_path / "known_ig.npz"
    assert runner.invoke(app, ["interfacegan", str(d / "lin.onnx"), "--output", "logits", "--samples", "2000",
                               "--out", str(ig)]).exit_code == 0
    r = runner.invoke(app, ["manipulate", str(d / "lin.onnx"), "--output", "logits", "--run", str(d / "run"),
                            "--class", "0", "--keep", "1", "--boundaries", str(ig), "--top-k", "2", "--device",
                            "cpu"])
    assert r.exit_code == 0, r.output
    assert "boundary (InterFaceGAN, keeping" in r.output


@pytest.mark.parametrize("argv, what", [
    (["interfacegan", "--samples", "1"], "--samples"),
    (["interfacegan", "--samples", "20"], "raise --samples"),
    (["manipulate", "--keep", "a,,b"], "--keep"),
    (["manipulate", "--keep", "nope"], "unknown class"),
    (["manipulate", "--boundaries", "missing.npz", "--keep", "0"], "--boundaries"),
])
def test_cli_bad_input_is_one_error_line(argv, what, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, argv)
    assert r.exit_code == 1, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and what in lines[0], r.stderr


def test_boundaries_of_another_model_are_refused(tmp_path, known_model):
    bundle, run, _ = known_model
    InterfaceganResult(np.eye(4, 5, dtype=np.float32), np.ones(4), list("abcd"), 0).save(tmp_path / "b.npz")
    with pytest.raises(CorrkitError, match="latent size"):
        manipulate(bundle, run=run, classes=[0], keep=[1], top_k=2, boundaries=tmp_path / "b.npz", execution=CPU)
    assert load_bundle(None).n_classes == 10  # the built-in bundle is untouched by the above
