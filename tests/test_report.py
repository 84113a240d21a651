"""corrkit.viz.report: one self-contained page, one decodable <img> per figure, tables from every result file."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from corrkit.cli.main import app
from corrkit._core.data import CLASSES
from corrkit.errors import CorrkitError
from corrkit.viz.report import build_report, json_tables, run_figures
from tests.test_figures import decode, tiny_run

pytest.importorskip("matplotlib")

IMG = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="([^"]+)">')


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An APCR run and a latent-space folder as `corrkit latents` and `export invert` leave them."""
    apcr_dir = tmp_path_factory.mktemp("apcr")
    tiny_run(apcr_dir)
    lat = tmp_path_factory.mktemp("latents")
    from corrkit.viz.images import image_grid

    image_grid(np.linspace(0, 1, 2 * 3 * 28 * 28).reshape(2, 3, 28, 28), out=lat / "tsne.png")
    probe = {"accuracy": 0.81, "std": 0.02, "chance": 0.1, "folds": 5, "n": 2000}
    (lat / "latents.json").write_text(json.dumps({
        "classes": list(CLASSES), "codes": probe, "prior": {**probe, "accuracy": 0.55},
        "codes_shuffled_labels": {**probe, "accuracy": 0.11}, "prior_class_shares": [0.1] * 10}))
    (lat / "invert.json").write_text(json.dumps({
        "n_images": 2000, "recon_error_mean": 0.0312, "classes": list(CLASSES),
        "recon_error_per_class": {c: 0.01 * (j + 1) for j, c in enumerate(CLASSES)}}))
    return apcr_dir, lat


def test_one_decodable_img_per_figure(runs, tmp_path):
    apcr_dir, lat = runs
    out = tmp_path / "report.html"
    page = build_report([apcr_dir, lat], out)
    assert out.read_text() == page
    figs = [run_figures(apcr_dir), run_figures(lat)]
    found = IMG.findall(page)
    assert len(found) == page.count("<img") == sum(map(len, figs)) == 14 + 1
    assert [alt for _, alt in found] == [*figs[0], *figs[1]]
    for b64, alt in found:
        img = decode(base64.b64decode(b64))
        assert img.ndim == 3 and min(img.shape[:2]) > 100, alt
    first = dict(zip([a for _, a in found], [b for b, _ in found]))
    assert base64.b64decode(first["tsne.png"]) == (lat / "tsne.png").read_bytes()


def test_page_is_self_contained_and_has_the_numbers(runs):
    apcr_dir, lat = runs
    page = build_report([apcr_dir, lat])
    assert "<script" not in page and "http://" not in page and "https://" not in page
    assert page.count("<link") == 0 and "<style>" in page
    summary = json.loads((apcr_dir / "summary.json").read_text())
    top, iv = summary["top"]["Sneaker"][0], summary["intervals"]["top"]["Sneaker"][0]
    hi = "∞" if iv["hi"] is None else f"{iv['hi']:.3f}"
    assert f"{top['direction']} ({top['apcr']:.3f} [{iv['lo']:.3f}, {hi}]" in page  # controlling sets, 95% intervals
    assert "0.9213" in page or "classifier test accuracy" in page  # bundle card
    assert "<th>samples_per_class</th><td class=num>2</td>" in page  # parameters
    assert "0.810" in page and "0.550" in page  # probe accuracies
    assert "recon_error_mean" in page and "0.0312" in page


def test_hooks_only_when_asked(runs):
    page = build_report([runs[1]], test_hooks=True)
    assert page.count("<script>") == 1 and "corrkit-test-result" in page
    assert "corrkit-test-result" not in build_report([runs[1]])


def test_json_tables_per_class_dicts_lists_and_matrices():
    classes = ["a", "b", "c"]
    html = json_tables({"k": 3, "ir": {"per_class": [0.5, 1.0, 0.0], "mean": 0.5},
                        "err": {"a": 1.0, "b": 2.0, "c": 3.0}, "success": [[0, 1, 2], [3, 4, 5], [6, 7, 8]],
                        "long": list(range(40))}, classes)
    assert "<th>ir.per_class</th><td class=num>0.5</td><td class=num>1</td><td class=num>0</td>" in html
    assert "<th>err</th><td class=num>1</td><td class=num>2</td><td class=num>3</td><td class=num>2</td>" in html
    assert "<th>success</th><th>a</th>" in html and "<th>c</th><td class=num>6</td>" in html
    assert "(40 values)" in html


def test_bad_folders(tmp_path):
    with pytest.raises(CorrkitError, match="not a folder"):
        build_report([tmp_path / "missing"])
    with pytest.raises(CorrkitError, match="no corrkit results"):
        build_report([tmp_path])
    with pytest.raises(CorrkitError, match="at least one"):
        build_report([])


def test_cli_report(runs, tmp_path):
    out = tmp_path / "r.html"
    r = CliRunner().invoke(app, ["report", str(runs[1]), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "1 figures" in r.output and out.read_text().count("<img") == 1
