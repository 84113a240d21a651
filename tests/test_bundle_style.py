"""The shipped style-based bundle (builtin:style) and the code that trained and built it (SPEC §12)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from corrkit._core.bundle import BUILTIN, BUILTIN_STYLE, load_bundle
from corrkit._core.onnx_files import sha256
from corrkit._core.style import Space

shipped = pytest.mark.skipif(not (BUILTIN_STYLE / "bundle.json").is_file(), reason="no style bundle shipped")


@shipped
def test_builtin_style_is_a_mapping_synthesis_bundle_with_the_dcgan_classifier():
    b = load_bundle("builtin:style")
    assert b.style is not None and (b.style.z_dim, b.style.w_dim, b.style.n_layers) == (64, 64, 6)
    assert b.classes == load_bundle().classes and b.style.w_avg is not None
    assert sha256(BUILTIN_STYLE / "classifier.onnx") == sha256(BUILTIN / "classifier.onnx")
    card = json.loads((BUILTIN_STYLE / "bundle.json").read_text())
    dcgan = json.loads((BUILTIN / "bundle.json").read_text())
    m = card["metrics"]
    assert m["classifier_test_accuracy"] == dcgan["metrics"]["classifier_test_accuracy"]
    assert m["frechet_distance_dcgan"] == dcgan["metrics"]["frechet_distance"] and m["frechet_distance"] > 0
    assert b.in_space(Space("w+")).latent_dim == 6 * 64


@shipped
def test_shipped_onnx_matches_shipped_torch_weights():
    torch = pytest.importorskip("torch")
    import onnxruntime as ort

    from corrkit.export.style_models import FASHION, Generator
    from corrkit.export.weights import load_into

    g = load_into(Generator(FASHION), BUILTIN_STYLE / "weights" / "style_generator.pt").eval()
    z = np.random.default_rng(0).standard_normal((7, 64)).astype(np.float32)
    m = ort.InferenceSession(str(BUILTIN_STYLE / "mapping.onnx"), providers=["CPUExecutionProvider"])
    s = ort.InferenceSession(str(BUILTIN_STYLE / "synthesis.onnx"), providers=["CPUExecutionProvider"])
    w = m.run(None, {"z": z})[0]
    ws = np.repeat(w[:, None], 6, axis=1)
    with torch.no_grad():
        np.testing.assert_allclose(w, g.mapping(torch.from_numpy(z)).numpy(), atol=1e-4)
        np.testing.assert_allclose(s.run(None, {"ws": ws})[0], g.synthesis(torch.from_numpy(ws)).numpy(), atol=1e-4)
    np.testing.assert_allclose(np.load(BUILTIN_STYLE / "w_avg.npy"), g.mapping.w_avg.numpy(), atol=1e-6)


@shipped
def test_apcr_runs_on_builtin_style_by_layer_group(tmp_path):
    from corrkit.methods.sequential import APCRResult

    done = subprocess.run([sys.executable, "-m", "corrkit.cli", "apcr", "builtin:style", "--space", "w+", "--layers",
                           "0-1,4-5", "--by-layer", "--samples-per-class", "2", "--steps", "1", "--out",
                           str(tmp_path / "run"), "--json"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    rec = json.loads((tmp_path / "run" / "summary.json").read_text())["bundle"]["style"]
    assert (rec["space"], rec["layers"], rec["by_layer"]) == ("w+", [[0, 1], [4, 5]], True)
    r = APCRResult.load(tmp_path / "run")
    assert r.apcr.shape == (2 * 64, 10) and r.directions.shape == (2 * 64, 6 * 64)


def test_style_training_resumes_to_the_same_weights(tmp_path):
    torch = pytest.importorskip("torch")
    from corrkit.export.train_style import StyleGANSettings, train_style_gan

    s = StyleGANSettings(epochs=2, batches=2, batch_size=8, bf16=False)
    straight, _ = train_style_gan(tmp_path / "a", s)
    train_style_gan(tmp_path / "b", StyleGANSettings(**{**s.__dict__, "epochs": 1}))
    resumed, rec = train_style_gan(tmp_path / "b", s)
    for (k, v), (_, u) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(v, u), k
    assert rec["epochs_run"] == 2 and (tmp_path / "b" / "style_gen_epoch02.pt").is_file()
    boxed, rec = train_style_gan(tmp_path / "c", StyleGANSettings(**{**s.__dict__, "minutes": 1e-9}))
    assert rec["epochs_run"] == 1  # the time box stops it after the first epoch


@shipped
def test_shipped_style_model_card_is_the_one_the_build_code_writes():
    pytest.importorskip("torch")
    from corrkit.export.bundle_style import model_card

    card = json.loads((BUILTIN_STYLE / "bundle.json").read_text())
    assert (BUILTIN_STYLE / "MODEL_CARD.md").read_text() == model_card(card)
