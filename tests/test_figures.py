"""corrkit.viz (plots, images, figures): PNGs of the right size that show something, from arrays and run folders."""

from __future__ import annotations

import io
import json
import warnings

import numpy as np
import pytest
from typer.testing import CliRunner

from corrkit.viz import figures as F
from corrkit.viz import plots as P
from corrkit.viz.images import image_grid
from corrkit.cli.main import app
from corrkit._core.data import CLASSES
from corrkit.errors import CorrkitError

pytest.importorskip("matplotlib")


def decode(png: bytes) -> np.ndarray:
    from matplotlib.image import imread

    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return imread(io.BytesIO(png), format="png")


def assert_picture(png: bytes, size: tuple[int, int] | None = None) -> np.ndarray:
    img = decode(png)
    if size is not None:
        assert img.shape[:2] == size
    assert img[..., :3].std() > 0.05, "the figure is (nearly) one colour"
    return img


def tiny_run(path, **kw):
    from corrkit._core.execution import Execution
    from corrkit.methods.sequential import apcr

    return apcr(samples_per_class=2, steps=1, execution=Execution(device="cpu"), out=path, **kw)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    tiny_run(out)
    return out


@pytest.fixture
def arrays(rng):
    k, m, c = 100, 3, 10
    curves = rng.uniform(0, 1, (k, 2 * m + 1, c, c))
    return curves, rng.uniform(0, 0.6, (k, c))


def test_score_curves_and_histograms_have_their_size(arrays, tmp_path):
    curves, apcr = arrays
    png = P.score_curves(curves, apcr, CLASSES, delta=0.5, out=tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes() == png
    assert_picture(png, (560, 1500))  # 2 x 5 panels: (2.6 * 2 + 0.4) x (3 * 5) inches at 100 dpi
    assert_picture(P.apcr_histograms(apcr, CLASSES), (500, 1500))
    assert_picture(P.apcr_histograms(apcr[:, :3], CLASSES[:3]), (270, 900))  # one row of three
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")], "a temporary file was left behind"


def test_heatmap_size_follows_the_number_of_directions(arrays):
    _, apcr = arrays
    assert_picture(P.apcr_heatmap(apcr, CLASSES), (910, 650))
    assert_picture(P.apcr_heatmap(apcr[:10], CLASSES), (400, 650))


def test_bars_and_matrix(rng):
    ir = {"seq vs opt": rng.uniform(0, 1, 10), "paper": np.full(10, 0.75)}
    assert_picture(P.controlling_set_bars(ir, CLASSES, reference=0.75), (420, 1000))
    assert_picture(P.controlling_set_bars(ir["paper"], CLASSES))
    success = rng.uniform(0, 1, (10, 10))
    success[0, 1] = np.nan  # a pair that was not computed
    assert_picture(P.translation_matrix(success, CLASSES, alpha=6.0), (690, 780))
    assert_picture(P.method_comparison({"coordinate": rng.uniform(0, 1, 10), "sefa": rng.uniform(0, 1, 10)},
                                       CLASSES))


def test_bad_shapes_are_refused(rng):
    with pytest.raises(CorrkitError, match="square"):
        P.translation_matrix(np.zeros((3, 4)))
    with pytest.raises(CorrkitError, match="class names"):
        P.apcr_histograms(np.zeros((5, 3)), ["a", "b"])
    with pytest.raises(CorrkitError, match="one value per class"):
        P.controlling_set_bars({"a": [0.1, 0.2], "b": [0.1]})
    with pytest.raises(CorrkitError, match="4-d"):
        image_grid(np.zeros((2, 28, 28)))


def test_image_grid_draws_zero_black_one_white_and_grows_with_rows():
    black = np.zeros((2, 5, 28, 28))
    white = np.ones((2, 5, 28, 28))
    dark, light = decode(image_grid(black))[..., :3], decode(image_grid(white))[..., :3]
    assert dark.mean() < 0.5 < light.mean()
    labelled = image_grid(np.concatenate([black, white]), row_labels=list("abcd"), col_labels=list("12345"),
                          cell_text=np.full((4, 5), 0.5), title="grid")
    img = assert_picture(labelled)
    assert img.shape[0] > 1.7 * dark.shape[0]
    with pytest.raises(CorrkitError, match="cell_text"):
        image_grid(black, cell_text=np.zeros((3, 5)))


def test_image_grid_draws_colour_in_colour_and_grey_in_grey():
    red = np.zeros((1, 2, 40, 40, 3))
    red[..., 0] = 1.0
    img = decode(image_grid(red, cell_inches=2.0))[..., :3].reshape(-1, 3)
    reddest = img[np.argmax(img[:, 0] - img[:, 1])]
    assert reddest[0] > 0.9 and reddest[1] < 0.1 and reddest[2] < 0.1  # the images are red, not grey
    grey = decode(image_grid(np.full((1, 2, 40, 40), 0.3), cell_inches=2.0))[..., :3]
    assert np.abs(grey - grey.mean(-1, keepdims=True)).max() < 0.02  # no colour anywhere
    with pytest.raises(CorrkitError, match="colour"):
        image_grid(np.zeros((1, 2, 8, 8, 2)))  # two channels are neither grey nor colour


def test_traversal_walks_the_run_directions(bundle, run_dir):
    from corrkit._core.engine import generate
    from corrkit.methods.sequential import APCRResult
    from corrkit.methods.traversal import walk

    r = APCRResult.load(run_dir)
    j = 7
    z0 = r.latents[r.labels == j][:1]
    i = int(np.argmax(r.apcr[:, j]))
    images, score, ks = walk(bundle, r, [(j, i, z0[0])], steps=2, delta=0.5)
    assert images.shape == (1, 5, 28, 28) and [f"{k:+g}" for k in ks] == ["-1", "-0.5", "+0", "+0.5", "+1"]
    np.testing.assert_allclose(images[0, 2], generate(bundle, z0)[0], atol=1e-6)
    np.testing.assert_allclose(images[0, 4], generate(bundle, z0 + r.directions[i])[0], atol=1e-5)
    np.testing.assert_allclose(score[0, 2], r.base[r.labels == j][0, j], atol=1e-5)
    assert_picture(F.traversal_grid(bundle, r, j, top=2, codes=1))
    assert_picture(F.traversal_overview(bundle, r))


def test_run_folder_gives_every_figure_it_allows(run_dir, tmp_path):
    json_files = {
        "control.json": {"k": 10, "classes": list(CLASSES),
                         "intersection_ratio": {"per_class": [0.5] * 10, "mean": 0.5},
                         "paper": {"per_class": [0.7, 0.9, 0.7, 0.8, 0.4, 1.0, 0.7, 0.9, 0.7, 0.7], "mean": 0.75}},
        "translate.json": {"alpha": 6.0, "classes": list(CLASSES),
                           "success": [[None if a == b else (a + b) / 20 for b in range(10)] for a in range(10)]},
        "compare.json": {"classes": list(CLASSES), "methods": {"coordinate": {"strongest_apcr": [0.5] * 10},
                                                               "sefa": {"strongest_apcr": [0.7] * 10}}},
        "manipulate.json": {"alpha": 3.0, "top_k": 10, "per_class": [
            {"class": c, "flip_rate": {"top": 0.8, "bottom": 0.1, "random": 0.3}} for c in CLASSES]},
    }
    for name, data in json_files.items():
        (run_dir / name).write_text(json.dumps(data))
    try:
        paths = F.write_run_figures(run_dir, tmp_path / "figs")
    finally:
        for name in json_files:
            (run_dir / name).unlink()
    names = {p.name for p in paths}
    expected = {"curves.png", "apcr_hist.png", "apcr_heatmap.png", "traversal_overview.png",
                "intersection_ratio.png", "translation_matrix.png", "compare.png", "flip_rate.png"}
    assert expected | {f"traversal_{j:02d}.png" for j in range(10)} == names
    for p in paths:
        assert_picture(p.read_bytes())


def test_a_changed_generator_skips_traversals(run_dir, tmp_path):
    import shutil

    other = tmp_path / "run"
    shutil.copytree(run_dir, other)
    s = json.loads((other / "summary.json").read_text())
    s["bundle"]["files"]["generator"] = "0" * 64
    s["bundle"]["path"] = None
    (other / "summary.json").write_text(json.dumps(s))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        figs = F.render_run(other)
    assert "curves.png" in figs and not [n for n in figs if n.startswith("traversal")]
    assert any("hash differs" in str(w.message) for w in caught)


def test_recorded_bundle_reads_summary_then_invert(bundle):
    from corrkit._core.runs import find_bundle, recorded_bundle

    sha = bundle.hashes()["generator"]
    card = {"bundle": {"path": str(bundle.path), "files": {"generator": sha}}}
    assert recorded_bundle(card, {"bundle": "elsewhere", "generator_sha256": "0" * 64}) == (str(bundle.path), sha)
    assert recorded_bundle(None, {"bundle": "elsewhere", "generator_sha256": "ab"}) == ("elsewhere", "ab")
    assert recorded_bundle() == (None, None)
    assert find_bundle("/nowhere", sha, same_generator=True).path == bundle.path  # the built-in bundle, same hash
    assert find_bundle("/nowhere", "0" * 64, same_generator=True) is None
    assert find_bundle("/nowhere", "0" * 64).path == bundle.path  # the report shows it, with a warning


def test_cli_figures(run_dir, tmp_path):
    r = CliRunner().invoke(app, ["figures", str(run_dir), "--out", str(tmp_path), "--no-traversals", "--json"])
    assert r.exit_code == 0, r.output
    assert sorted(json.loads(r.output)["figures"]) == sorted(
        str(tmp_path / n) for n in ("curves.png", "apcr_hist.png", "apcr_heatmap.png"))
    r = CliRunner().invoke(app, ["figures", str(tmp_path / "nothing")])
    assert r.exit_code == 1 and "not a folder" in r.output
