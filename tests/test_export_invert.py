"""corrkit.export.invert: optimisation lowers the reconstruction error; batches equal single images; checks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

torch = pytest.importorskip("torch")

from corrkit.cli.main import app  # noqa: E402
from corrkit.errors import CorrkitError  # noqa: E402
from corrkit.export import invert as I  # noqa: E402
from corrkit.export.models import Generator  # noqa: E402
from corrkit.export.weights import check_generator  # noqa: E402


@pytest.fixture(scope="module")
def g():
    return I.load_generator()


@pytest.fixture(scope="module")
def images():
    x, labels, idx = I.select_images(1, seed=0)
    return x, labels, idx


def test_select_images_one_per_class_in_range(images):
    x, labels, idx = images
    assert x.shape == (10, 1, 28, 28) and x.dtype == np.float32
    assert labels.tolist() == list(range(10)) and len(set(idx.tolist())) == 10
    assert x.min() >= -1 and x.max() <= 1 and x.std() > 0.3


def test_inversion_lowers_the_error_from_the_start(g, images):
    x = images[0][[1, 7]]
    for pool in (0, 64):
        s = I.InversionSettings(steps=30, explore_steps=5, restarts=2, pool=pool, seed=1)
        res = I.invert_images(g, x, s)
        assert res["codes"].shape == (2, 100) and np.isfinite(res["codes"]).all()
        assert (res["recon_error"] < 0.8 * res["start_error"]).all(), (pool, res)
        with torch.no_grad():
            recon = g(torch.from_numpy(res["codes"])).numpy()
        np.testing.assert_allclose(((recon - x) ** 2).mean((1, 2, 3)), res["recon_error"], rtol=1e-4)
        assert set(res["restart"].tolist()) <= {0, 1}


def test_pool_starts_are_near_and_never_shared(g, images):
    x = np.concatenate([images[0][:3], images[0][:1]])  # image 0 twice: the copies must not share a start
    s = I.InversionSettings(restarts=2, pool=32, seed=5, bf16=False)
    z0, rows = I.starts(g, x, s)
    assert z0.shape == (2, 4, 100) and rows.shape == (2, 4)
    assert len(set(rows.ravel().tolist())) == 8
    rng = np.random.default_rng(5)
    pool = rng.standard_normal((I.pool_size(s, 4), 100)).astype(np.float32)
    np.testing.assert_array_equal(z0, pool[rows])
    with torch.no_grad():
        imgs = g(torch.from_numpy(pool)).numpy()
    d = ((imgs[None] - x[:, None]) ** 2).sum((2, 3, 4))  # [4, pool]
    first = rng.permutation(4)[0]  # served first: its two nearest, in order
    np.testing.assert_array_equal(rows[:, first], np.argsort(d[first])[:2])
    assert (d[np.arange(4), rows[0]] <= d[np.arange(4), rows[1]]).all()
    assert I.pool_size(s, 100) == 400 and I.pool_size(I.InversionSettings(pool=0), 100) == 0


def test_batch_equals_one_by_one(g, images):
    x = images[0][:3]
    s = I.InversionSettings(steps=8, explore_steps=3, restarts=2, pool=0, seed=2, bf16=False, batch_size=6)
    z0, _ = I.starts(g, x, s)
    together = I.invert_images(g, x, s, z0=z0)
    for k in range(3):
        alone = I.invert_images(g, x[k:k + 1], s, z0=z0[:, k:k + 1])
        np.testing.assert_allclose(alone["codes"][0], together["codes"][k], atol=1e-4)
        assert alone["restart"][0] == together["restart"][k]


def test_settings_and_weights_are_checked(bundle, tmp_path):
    with pytest.raises(CorrkitError, match="explore-steps"):
        I.InversionSettings(steps=5, explore_steps=6).check()
    with pytest.raises(CorrkitError, match="--pool"):
        I.InversionSettings(pool=-1).check()
    torch.manual_seed(0)
    with pytest.raises(CorrkitError, match="torch and ONNX disagree on the generator"):
        check_generator(Generator().eval(), bundle)
    assert check_generator(I.load_generator(), bundle) < 1e-4
    with pytest.raises(CorrkitError, match="latent size is 100, the torch generator's 7"):
        check_generator(Generator(7).eval(), bundle)
    (tmp_path / "bad.pt").write_bytes(b"not a state dict")
    with pytest.raises(CorrkitError, match="not a plain torch weights file"):
        I.load_generator(tmp_path / "bad.pt")
    with pytest.raises(CorrkitError, match="missing.pt does not exist; pass --weights"):
        I.load_generator(tmp_path / "missing.pt")


def test_cli_invert_writes_codes(tmp_path):
    out = tmp_path / "inv"
    r = CliRunner().invoke(app, ["export", "invert", "--n-per-class", "1", "--steps", "4", "--explore-steps", "2",
                                 "--restarts", "2", "--pool", "16", "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output)
    codes, labels, err = (np.load(out / f"{n}.npy") for n in ("codes", "labels", "recon_error"))
    assert codes.shape == (10, 100) and codes.dtype == np.float32
    assert labels.tolist() == list(range(10)) and err.shape == (10,) and err.dtype == np.float32
    assert summary["recon_error_mean"] == pytest.approx(float(err.mean()))
    assert json.loads((out / "invert.json").read_text())["n_images"] == 10
    assert (out / "recon.png").is_file() == summary["figure"]
    assert not list(out.glob(".*tmp"))
