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


def test_save_state_is_atomic_and_loads_back(tmp_path, monkeypatch):
    from corrkit._core import io
    from corrkit.export.weights import load_state, save_state

    g = Generator()
    save_state(g.state_dict(), tmp_path / "g.pt")
    back = load_state(tmp_path / "g.pt")
    assert all(torch.equal(back[k], v) for k, v in g.state_dict().items())

    def full_disk(path, data):
        raise OSError("no space left")

    monkeypatch.setattr(io, "write_bytes", full_disk)
    with pytest.raises(OSError):
        save_state({"w": torch.zeros(3)}, tmp_path / "g.pt")
    assert torch.equal(load_state(tmp_path / "g.pt")["l1.weight"], g.l1.weight)  # the old file, whole


def test_builtin_modules_load_frozen_and_match_the_bundle(bundle):
    from corrkit.export.weights import check_generator, check_matches, load_modules

    g, q = load_modules(latent_dim=bundle.latent_dim, n_classes=bundle.n_classes)
    assert not g.training and not q.training
    assert not any(p.requires_grad for p in [*g.parameters(), *q.parameters()])
    assert check_generator(g, bundle) < 1e-4
    a = np.zeros((2, 3), np.float32)
    assert check_matches(a, a + 5e-5, "x", "fix") == pytest.approx(5e-5)
    from corrkit.errors import BundleError

    with pytest.raises(BundleError, match=r"disagree on the x \(max \|torch - onnx\| = 0.0002 > 0.0001\); fix"):
        check_matches(a, a + 2e-4, "x", "fix")
    with pytest.raises(BundleError, match=r"shapes \[2, 3\] and \[3, 2\]"):
        check_matches(a, a.T, "x", "fix")
    with pytest.raises(BundleError, match="generator.pt does not exist; give it"):
        load_modules("nope", hint="give it")


def test_export_bundle_defaults_to_a_build_folder(monkeypatch, tmp_path):
    from pathlib import Path

    from typer.testing import CliRunner

    import corrkit.export.bundle as B
    from corrkit.cli.main import app

    seen = []
    monkeypatch.setattr(B, "build", lambda work, out, data_dir: seen.append(out) or {"metrics": {}})
    for args, want in (([], Path("build/bundle")), (["--out", str(tmp_path / "b")], tmp_path / "b")):
        r = CliRunner().invoke(app, ["export", "bundle", "--work", str(tmp_path), *args])
        assert r.exit_code == 0, r.output
        assert seen.pop() == want


def test_export_imports_neither_viz_nor_compare():
    """export/ draws its own two pictures and uses the shared linear algebra of corrkit._core."""
    import ast
    from pathlib import Path

    root = Path(__file__).parents[1] / "export"
    banned = ("corrkit.viz", "corrkit.methods.compare")
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            found += [f"{path.relative_to(root)}: {n}" for n in names if n.startswith(banned)]
    assert len(list(root.rglob("*.py"))) > 10 and not found, found
