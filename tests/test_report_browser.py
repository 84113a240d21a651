"""The report in a real browser (headless Chromium): every image loads, no error, the page is not blank.

Chromium is driven from the command line: ``--dump-dom`` returns the DOM after
the load event, where the report's test hook (``build_report(test_hooks=True)``)
has written the broken images and the errors it saw; ``--screenshot`` renders
the page. Debian: ``apt-get install chromium chromium-driver`` (`.ci/setup` does it).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from corrkit.viz.report import TEST_HOOKS, build_report
from tests.test_figures import tiny_run

BROWSER = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
pytestmark = pytest.mark.skipif(BROWSER is None, reason="Chromium is not installed (apt-get install chromium)")
MARKER = re.compile(r'<pre id="corrkit-test-result">(.*?)</pre>', re.S)


def chromium(tmp_path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile{len(list(tmp_path.glob('profile*')))}"
    cmd = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
           "--disable-extensions", f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def load(tmp_path, page: str) -> dict:
    path = tmp_path / "page.html"
    path.write_text(page)
    r = chromium(tmp_path, "--virtual-time-budget=10000", "--dump-dom", path.as_uri())
    found = MARKER.search(r.stdout)
    assert found, f"the test hook did not report (exit {r.returncode}): {r.stderr[-2000:]}"
    import html

    return json.loads(html.unescape(found.group(1)))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    tiny_run(run)
    return build_report([run], test_hooks=True)


def test_every_image_loads_without_errors(report, tmp_path):
    seen = load(tmp_path, report)
    assert seen["images"] == report.count("<img ") >= 14
    assert seen["broken"] == [] and seen["errors"] == []
    assert min(seen["widths"]) > 100


def test_screenshot_is_not_blank(report, tmp_path):
    from matplotlib.image import imread

    (tmp_path / "page.html").write_text(report)
    shot = tmp_path / "shot.png"
    r = chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,3000", (tmp_path / "page.html").as_uri())
    assert shot.is_file(), r.stderr[-2000:]
    img = imread(shot)[..., :3]
    assert img.shape[:2] == (3000, 1200)
    assert img.std() > 0.1
    rows = img.std(axis=(1, 2))
    assert (rows[2000:] > 0.05).mean() > 0.3, "the lower part of the page (figures) is empty"


def test_the_hook_sees_broken_images_and_errors(tmp_path):
    page = ("<!DOCTYPE html><html><head>" + TEST_HOOKS + "</head><body>"
            '<img src="data:image/png;base64,iVBORw0KGgoAAAA" alt="broken">'
            "<script>undefined_function();</script></body></html>")
    seen = load(tmp_path, page)
    assert seen["broken"] == ["broken"]
    assert any("undefined_function" in e for e in seen["errors"])
    assert np.array(seen["widths"]).tolist() == [0]
