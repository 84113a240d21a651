"""ONNX export validates itself against torch; bundle building pieces (torch extra)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from corrkit.export.models import Classifier, Generator  # noqa: E402
from corrkit.export.onnx_export import (  # noqa: E402
    CLASSIFIER_CONFIG, GENERATOR_CONFIG, ExportValidationError, export, validate,
)


def test_generator_and_classifier_export_match_torch(tmp_path):
    torch.manual_seed(0)
    g, q = Generator().eval(), Classifier().eval()
    dg = export(g, tmp_path / "g.onnx", GENERATOR_CONFIG)
    dq = export(q, tmp_path / "q.onnx", CLASSIFIER_CONFIG)
    assert set(dg) == {"batch_1", "batch_7", "batch_64"} and max(dg.values()) <= 1e-4
    assert max(dq.values()) <= 1e-4
    import onnx

    m = onnx.load(tmp_path / "g.onnx")
    assert m.opset_import[0].version >= 17
    assert m.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch


def test_validation_lists_every_mismatch(tmp_path):
    torch.manual_seed(0)
    g = Generator().eval()
    export(g, tmp_path / "g.onnx", GENERATOR_CONFIG)
    other = Generator().eval()  # different weights
    with pytest.raises(ExportValidationError) as err:
        validate(other, tmp_path / "g.onnx", GENERATOR_CONFIG)
    msg = str(err.value)
    for b in GENERATOR_CONFIG.batch_sizes:
        assert f"image[batch {b}]" in msg
    assert "max |onnx - torch|" in msg


def test_failed_export_leaves_no_file(tmp_path, monkeypatch):
    import corrkit.export.onnx_export as ox

    def broken(module, path, cfg, seed=0):
        raise ExportValidationError("boom")

    monkeypatch.setattr(ox, "validate", broken)
    with pytest.raises(ExportValidationError):
        ox.export(Generator(), tmp_path / "g.onnx", GENERATOR_CONFIG)
    assert list(tmp_path.iterdir()) == []


def test_frechet_distance_matches_scipy_reference():
    from scipy import linalg

    from corrkit._core.metrics import frechet_distance

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(500, 8)), rng.normal(0.3, 1.2, size=(400, 8)) @ rng.normal(size=(8, 8))
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    ref = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance(a, b) == pytest.approx(ref, rel=1e-6)
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-8)


def test_shipped_onnx_matches_shipped_torch_weights():
    from pathlib import Path

    from corrkit._core.bundle import builtin_path

    weights = Path(__import__("corrkit.export", fromlist=["x"]).__file__).parent / "weights"
    g = Generator(); g.load_state_dict(torch.load(weights / "generator.pt", weights_only=True)); g.eval()
    q = Classifier(); q.load_state_dict(torch.load(weights / "classifier.pt", weights_only=True)); q.eval()
    assert max(validate(g, builtin_path() / "generator.onnx", GENERATOR_CONFIG).values()) <= 1e-4
    assert max(validate(q, builtin_path() / "classifier.onnx", CLASSIFIER_CONFIG).values()) <= 1e-4


def test_shipped_model_card_is_the_one_the_bundle_code_writes():
    import json

    from corrkit._core.bundle import BUILTIN
    from corrkit.export.bundle import model_card

    card = json.loads((BUILTIN / "bundle.json").read_text())
    assert (BUILTIN / "MODEL_CARD.md").read_text() == model_card(card)
