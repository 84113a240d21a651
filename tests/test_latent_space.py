"""corrkit.methods.latent_space: the linear probe sees separable classes and only them; t-SNE and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from corrkit.methods import latent_space as L
from corrkit.cli.main import app
from corrkit.errors import CorrkitError
from tests.test_figures import assert_picture

pytest.importorskip("sklearn")


def blobs(rng, n_per_class=150, c=3, dim=20, gap=3.0):
    means = np.zeros((c, dim))
    means[np.arange(c), np.arange(c)] = gap
    labels = np.repeat(np.arange(c), n_per_class)
    return (means[labels] + rng.standard_normal((len(labels), dim))).astype(np.float32), labels


def test_probe_separable_codes_near_one_shuffled_near_chance(rng):
    codes, labels = blobs(rng)
    sep = L.probe_accuracy(codes, labels)
    assert sep["accuracy"] > 0.95 and sep["folds"] == 5 and sep["n"] == 450
    assert sep["chance"] == pytest.approx(1 / 3)
    shuffled = L.probe_accuracy(codes, rng.permutation(labels))
    assert abs(shuffled["accuracy"] - 1 / 3) < 0.1


def test_probe_is_seeded_and_checks_input(rng):
    codes, labels = blobs(rng, n_per_class=20, gap=1.0)
    assert L.probe_accuracy(codes, labels, seed=3) == L.probe_accuracy(codes, labels, seed=3)
    assert L.probe_accuracy(codes[:43], labels[:43])["folds"] == 3  # the smallest class has 3 codes
    with pytest.raises(CorrkitError, match="one per code"):
        L.probe_accuracy(codes, labels[:-1])
    with pytest.raises(CorrkitError, match="at least two classes"):
        L.probe_accuracy(codes[:20], labels[:20])
    with pytest.raises(CorrkitError, match="only 1 code"):
        L.probe_accuracy(codes[:21], labels[:21])
    with pytest.raises(CorrkitError, match="finite"):
        L.probe_accuracy(np.full_like(codes, np.nan), labels)


def test_tsne_keeps_blobs_apart(rng):
    codes, labels = blobs(rng, n_per_class=40, gap=8.0)
    emb = L.tsne(codes, seed=0)
    assert emb.shape == (120, 2)
    np.testing.assert_array_equal(emb, L.tsne(codes, seed=0))
    centres = np.stack([emb[labels == j].mean(0) for j in range(3)])
    spread = max(np.linalg.norm(emb[labels == j] - centres[j], axis=1).mean() for j in range(3))
    gaps = [np.linalg.norm(centres[a] - centres[b]) for a in range(3) for b in range(a + 1, 3)]
    assert min(gaps) > 2 * spread


def test_latent_space_on_the_builtin_bundle(bundle, rng, tmp_path):
    codes = rng.standard_normal((60, 100)).astype(np.float32)
    labels = np.arange(60) % 10
    from corrkit.viz.plots import tsne_figure

    res = L.latent_space(codes, labels, bundle, out=tmp_path, n_prior=80, folds=3, draw=tsne_figure)
    assert res["codes"]["n"] == 60 and res["prior"]["n"] == 80 and res["codes"]["folds"] == 3
    assert res["codes"]["accuracy"] < 0.5  # labels unrelated to the codes
    assert sum(res["prior_class_shares"]) == pytest.approx(1, abs=1e-3)
    assert json.loads((tmp_path / "latents.json").read_text())["prior"] == res["prior"]
    assert_picture((tmp_path / "tsne.png").read_bytes())
    z, y = L.prior_codes(bundle, 80, seed=0)
    np.testing.assert_array_equal(np.bincount(y, minlength=10) / 80, np.round(res["prior_class_shares"], 4))
    with pytest.raises(CorrkitError, match="latent space has 100"):
        L.latent_space(codes[:, :50], labels, bundle)
    with pytest.raises(CorrkitError, match="10 classes"):
        L.latent_space(codes, labels + 5, bundle)


def test_cli_latents(rng, tmp_path):
    codes, labels = blobs(rng, n_per_class=30, c=10, dim=100, gap=6.0)
    np.save(tmp_path / "codes.npy", codes)
    np.save(tmp_path / "labels.npy", labels)
    r = CliRunner().invoke(app, ["latents", str(tmp_path / "codes.npy"), str(tmp_path / "labels.npy"),
                                 "--out", str(tmp_path / "o"), "--n-prior", "0", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["codes"]["accuracy"] > 0.9 and "prior" not in res
    assert (tmp_path / "o" / "tsne.png").is_file()
