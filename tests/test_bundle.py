"""Bundles: the built-in card, `bundle create` from user ONNX files, and rejected ones."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from corrkit._core.bundle import builtin_path, create_bundle, load_bundle
from corrkit.cli.main import app
from corrkit.errors import BundleError, ModelOutputError
from tests import naive
from tests import onnx_fixtures as fx

runner = CliRunner()


def test_builtin_card_meets_quality_targets():
    r = runner.invoke(app, ["bundle", "info", "--json"])
    assert r.exit_code == 0, r.output
    card = json.loads(r.output)
    assert card["path"] == str(builtin_path())
    m = card["metrics"]
    assert m["classifier_test_accuracy"] >= 0.91
    assert 0.04 <= min(m["class_shares"]) and max(m["class_shares"]) <= 0.16
    assert m["mean_confidence"] >= 0.80
    assert m["frechet_distance"] > m["frechet_distance_floor"] > 0
    assert card["latent_dim"] == 100 and card["classifier_output"] == "logits" and len(card["classes"]) == 10
    assert card["provenance"]["dataset_sha256"]


def test_create_from_user_pair_round_trips(tmp_path):
    src = builtin_path()
    b = create_bundle(src / "generator.onnx", src / "classifier.onnx", tmp_path / "mine",
                      classes=list("abcdefghij"))
    again = load_bundle(tmp_path / "mine")
    assert again.classes == list("abcdefghij") and again.latent_dim == 100
    z = np.random.default_rng(0).standard_normal((8, 100)).astype(np.float32)
    from corrkit._core.engine import Engine

    np.testing.assert_allclose(Engine(b, device="cpu").probabilities(z), naive.TwoSessions(again)(z), atol=1e-5)


def test_range_mapping_is_applied(tmp_path):
    # declaring the classifier input range [0, 1] must feed it (x + 1) / 2
    src = builtin_path()
    b = create_bundle(src / "generator.onnx", src / "classifier.onnx", tmp_path / "r", classifier_input_range=(0, 1))
    z = np.random.default_rng(1).standard_normal((4, 100)).astype(np.float32)
    from corrkit._core.engine import Engine

    ref = naive.TwoSessions(b)
    assert ref.scale == pytest.approx(0.5) and ref.shift == pytest.approx(0.5)
    np.testing.assert_allclose(Engine(b, device="cpu").probabilities(z), ref(z), atol=1e-5)


def test_logits_declared_as_probabilities_rejected(tmp_path):
    src = builtin_path()
    with pytest.raises(ModelOutputError, match="not probabilities"):
        create_bundle(src / "generator.onnx", src / "classifier.onnx", tmp_path / "x",
                      classifier_output="probabilities")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("bad", ["text", "rank4_generator", "rank4_classifier", "class_names"])
def test_bad_pairs_rejected_by_cli(tmp_path, bad):
    src = builtin_path()
    g, q, extra = src / "generator.onnx", src / "classifier.onnx", []
    if bad == "text":
        g = tmp_path / "g.onnx"; g.write_text("nope")
    elif bad == "rank4_generator":
        g = fx.identity(tmp_path / "g.onnx", ["batch", 1, 28, 28])
    elif bad == "rank4_classifier":
        q = fx.identity(tmp_path / "q.onnx", ["batch", 1, 28, 28])
    else:
        extra = ["--classes", "a,b,c"]
    r = runner.invoke(app, ["bundle", "create", "--generator", str(g), "--classifier", str(q),
                            "--out", str(tmp_path / "out"), *extra])
    assert r.exit_code == 1 and r.output.startswith("error:") and r.output.count("\n") == 1, r.output
    assert not (tmp_path / "out").exists()


def test_folder_without_card_is_rejected(tmp_path):
    with pytest.raises(BundleError, match="bundle.json"):
        load_bundle(tmp_path)
