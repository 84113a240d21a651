"""Class-to-class translation (corrkit/translate.py): dim choice, success matrix and its conventions."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import corrkit
from corrkit.cli.main import app
from corrkit.methods.translate import translate, translation_dims
from tests import onnx_fixtures as fx
from corrkit._core.execution import Execution

CPU = Execution(device="cpu")

runner = CliRunner()


def test_translation_dims_by_hand():
    curves = np.zeros((4, 5, 2, 2))  # 4 dims, m = 2
    curves[:, 2, 0, 1] = 0.1  # S_1 on Z_0 at k = 0
    curves[0, :, 0, 1] = [0.1, 0.1, 0.1, 0.3, 0.5]  # +side gain 0.4
    curves[1, :, 0, 1] = [0.9, 0.2, 0.1, 0.1, 0.0]  # -side gain 0.8
    curves[2, :, 0, 1] = [0.0, 0.0, 0.1, 0.0, 0.0]  # no gain
    curves[3, :, 0, 1] = [0.15, 0.1, 0.1, 0.1, 0.2]  # +side 0.1 beats -side 0.05
    dims, signs, gains = translation_dims(curves, 0, 1, 3)
    assert dims.tolist() == [1, 0, 3] and signs.tolist() == [-1, 1, 1]
    np.testing.assert_allclose(gains, [0.8, 0.4, 0.1])


def test_success_matrix_against_numpy(known_model):
    bundle, run, _ = known_model
    res = translate(bundle, run=run, top_k=1, alpha=4.0, steps=2, execution=CPU)
    assert res.success.shape == (3, 3) and res.success_by_alpha.shape == (2, 3, 3)
    np.testing.assert_array_equal(np.diag(res.success), 1.0)  # convention: Z_j is already j
    assert np.isfinite(res.success).all() and ((res.success >= 0) & (res.success <= 1)).all()
    # 0 -> 1: the best single dim for S_1 on Z_0 is dim 2 pushed up (or dim 0 pushed down)
    dims, signs = res.dims[(0, 1)], res.signs[(0, 1)]
    assert (dims[0], signs[0]) in {(2, 1), (0, -1)}
    for a, alpha in enumerate(res.alphas):
        for j, tgt in res.pairs:
            z = run.latents[run.labels == j].astype(np.float64)
            z[:, res.dims[(j, tgt)]] += alpha * res.signs[(j, tgt)]
            want = (fx.known_probs(z).argmax(1) == tgt).mean()
            assert res.success_by_alpha[a, j, tgt] == pytest.approx(want)
    z = run.latents[run.labels == 0].astype(np.float64)
    hits = np.zeros(len(z), bool)
    for alpha in res.alphas:
        z2 = z.copy()
        z2[:, res.dims[(0, 2)]] += alpha * res.signs[(0, 2)]
        hits |= fx.known_probs(z2).argmax(1) == 2
    assert res.success_any_alpha[0, 2] == pytest.approx(hits.mean())
    assert (res.success_any_alpha >= res.success - 1e-12).all()
    out = res.to_json(n_pairs=3)
    assert out["success"] == res.success.tolist() and len(out["easiest"]) == 3
    s = [p["success"] for p in out["easiest"]]
    assert s == sorted(s, reverse=True) and out["hardest"][0]["success"] == min(res.success[~np.eye(3, dtype=bool)])
    assert out["mean_off_diagonal"] == pytest.approx(res.success[~np.eye(3, dtype=bool)].mean())


def test_one_pair_leaves_the_rest_open(known_model):
    bundle, run, _ = known_model
    res = translate(bundle, run=run, pairs=[(2, 0)], top_k=2, execution=CPU)
    assert res.pairs == [(2, 0)] and np.isnan(res.success[0, 1]) and np.isfinite(res.success[2, 0])
    assert res.to_json()["success"][0][1] is None


def test_cli(known_model):
    bundle, run, d = known_model
    base = ["translate", str(bundle.fused), "--output", "logits", "--run", str(d / "run"), "--device", "cpu"]
    r = runner.invoke(app, [*base, "--top-k", "1", "--alpha", "4", "--steps", "2", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    want = translate(bundle, run=run, top_k=1, alpha=4.0, steps=2, execution=CPU)
    assert out["success"] == want.success.tolist() and out["alpha"] == 4.0
    r = runner.invoke(app, [*base, "--source", "0"])
    assert r.exit_code == 1 and "--source and --target" in r.output
    r = runner.invoke(app, [*base, "--source", "0", "--target", "2", "--top-k", "2", "--json"])
    assert json.loads(r.output)["pairs"][0]["target"] == 2


def test_pictures_on_builtin_bundle(bundle, tmp_path):
    from corrkit.viz.images import image_grid

    run = corrkit.apcr(bundle, samples_per_class=1, steps=1, execution=corrkit.Execution(device="cpu"))
    res = translate(bundle, run=run, pairs=[(7, 9)], top_k=3, steps=2, out=tmp_path, draw=image_grid, execution=CPU)
    assert len(res.images) == 1 and "sneaker_to_ankle-boot" in res.images[0]
    res = translate(bundle, run=run, top_k=3, steps=2, out=tmp_path, draw=image_grid, execution=CPU)
    assert res.images[-1].endswith("translate_easiest.png")
    assert json.loads((tmp_path / "translate.json").read_text())["alpha"] == res.alpha


def test_success_intervals_bracket_each_success_and_are_never_zero_width(tmp_path):
    """SPEC §11 on a real run: every measured pair's interval holds its success; a pair no code completes
    (0.00) gets the exact binomial bound, not [0, 0]."""
    import numpy as np

    from corrkit.methods.sequential import apcr
    from corrkit.methods.translate import translate

    run = apcr(None, samples_per_class=6, steps=1)
    res = translate(None, run=run, top_k=3, alpha=1.0, steps=1)
    off = ~np.eye(10, dtype=bool)
    lo, hi = res.success_interval[..., 0][off], res.success_interval[..., 1][off]
    s = res.success[off]
    assert ((lo <= s + 1e-12) & (s <= hi + 1e-12)).all() and (hi - lo > 0).all()
    assert np.allclose(hi[s == 0], 1 - 0.025 ** (1 / 6))
    assert res.mean_interval[0] <= s.mean() <= res.mean_interval[1]
