"""`corrkit explore` in a real browser: headless Chromium driven through Selenium and Debian's chromedriver.

The server runs as a subprocess (``python -m corrkit.cli explore RUN --port P``) on a
small APCR run of the built-in bundle. The test picks a class and the run's class-set
code, moves the top slider with the keyboard, and checks that the image changes, that the
class's probability bar moves the way the run's ``up`` says for that class and direction,
and that the console stays clean; then it times 50 slider moves (slider event to drawn
image, measured by the page with ``performance.now()``). Screenshots before and after and
the timings are written to ``$CORRKIT_TEST_ARTEFACTS`` (else a pytest temporary folder).
Debian: ``apt-get install chromium chromium-driver`` (`.ci/setup` does it).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

BROWSER = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
DRIVER = shutil.which("chromedriver")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install 'corrkit[test]')")
pytest.importorskip("starlette", reason="the explore extra is not installed (pip install 'corrkit[explore]')")
pytestmark = pytest.mark.skipif(BROWSER is None or DRIVER is None,
                                reason="Chromium or chromedriver is not installed (apt-get install chromium "
                                "chromium-driver)")
ROOT = Path(__file__).resolve().parents[1]
CLASS = 3  # Dress: both of its class-set codes follow the run's mean change along its top direction


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory) -> Path:
    where = os.environ.get("CORRKIT_TEST_ARTEFACTS")
    folder = Path(where) if where else tmp_path_factory.mktemp("explore_artefacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    from corrkit.methods.sequential import apcr

    out = tmp_path_factory.mktemp("explore_run")
    apcr(None, directions=np.eye(100, dtype=np.float32)[:16], samples_per_class=2, out=out)
    return out


@pytest.fixture(scope="module")
def server(run_dir):
    port = free_port()
    env = {**os.environ, "CORRKIT_AUTOTUNE": "0", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "corrkit.cli", "explore", str(run_dir), "--port", str(port),
                             "--device", "cpu"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    line = proc.stdout.readline()
    assert f"http://127.0.0.1:{port}/" in line, (line, proc.stderr.read() if proc.poll() is not None else "")
    yield f"http://127.0.0.1:{port}/", proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = BROWSER
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
                "--window-size=1400,1000", f"--user-data-dir={tmp_path_factory.mktemp('profile')}"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=opts)
    driver.set_script_timeout(120)
    yield driver
    driver.quit()


def wait_for(driver, script: str, timeout: float = 60.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for: {script}; page error: "
                         f"{driver.execute_script('return window.corrkit && window.corrkit.lastError')}")


def settled(driver) -> None:
    """Until every render asked for has been drawn (the counters stop moving)."""
    last = None
    for _ in range(200):
        now = driver.execute_script("return [window.corrkit.renders, window.corrkit.strips]")
        if now == last:
            return
        last = now
        time.sleep(0.25)


def probs(driver) -> np.ndarray:
    return np.array(driver.execute_script(
        "return [...document.querySelectorAll('#bars .bar')].map(b => Number(b.dataset.prob))"))


def image(driver) -> str:
    return driver.execute_script("return document.getElementById('image').toDataURL()")


def severe(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def test_slider_moves_image_and_bars_as_the_run_predicts(server, browser, run_dir, artefacts):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    from corrkit.methods.sequential import APCRResult

    url, proc = server
    run = APCRResult.load(run_dir)
    browser.get(url)
    wait_for(browser, "return window.corrkit && window.corrkit.ready")
    Select(browser.find_element(By.ID, "class")).select_by_value(str(CLASS))
    wait_for(browser, f"return window.corrkit.state.cls === {CLASS} && window.corrkit.state.rows.length > 0")
    browser.find_element(By.ID, "use-set").click()  # the run's first code of the class
    wait_for(browser, "return window.corrkit.state.codeLabel.startsWith('class-set code')")
    settled(browser)
    rows = browser.execute_script("return window.corrkit.state.rows")
    top = int(np.argmax(run.apcr[:, CLASS]))
    assert rows[0]["index"] == top and abs(rows[0]["apcr"] - run.apcr[top, CLASS]) < 1e-12
    before_img, before = image(browser), probs(browser)
    browser.save_screenshot(str(artefacts / "explore_before.png"))

    slider = browser.find_element(By.CSS_SELECTOR, f'#sliders .slider[data-index="{top}"] input')
    renders = browser.execute_script("return window.corrkit.renders")
    slider.click()
    slider.send_keys(Keys.END)  # to +3: k = 3 steps of the run's delta
    wait_for(browser, f"return window.corrkit.renders > {renders}")
    settled(browser)
    assert float(slider.get_attribute("value")) == 3.0
    after_img, after = image(browser), probs(browser)
    browser.save_screenshot(str(artefacts / "explore_after.png"))
    assert after_img != before_img, "the image did not change"
    change = after[CLASS] - before[CLASS]
    assert np.sign(change) == np.sign(run.up[top, CLASS]) and abs(change) > 1e-2, (change, run.up[top, CLASS])
    assert abs(after.sum() - 1) < 1e-4 and np.abs(after - before).max() > 1e-3
    assert severe(browser) == [], "console errors"
    assert browser.execute_script("return document.getElementById('error').hidden")

    # 50 moves, each waited for: the page's own slider-event-to-drawn-image times
    latencies = browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const input = document.querySelector('#sliders .slider input');
        const start = window.corrkit.latencies.length;
        (async () => {
          for (let m = 0; m < 50; m++) {
            const n = window.corrkit.renders;
            input.value = String(((m % 7) - 3) * Number(input.step));
            input.dispatchEvent(new Event('input'));
            while (window.corrkit.renders === n) await new Promise(r => setTimeout(r, 1));
          }
          done(window.corrkit.latencies.slice(start));
        })();""")
    assert len(latencies) == 50
    median = float(np.median(latencies))
    (artefacts / "explore_latency.json").write_text(json.dumps(
        {"median_ms": median, "p90_ms": float(np.percentile(latencies, 90)), "moves": latencies}, indent=1))
    print(f"slider event to drawn image: median {median:.1f} ms over 50 moves")
    assert median < 250, f"median {median:.1f} ms from slider event to drawn image"
    assert severe(browser) == []

    # a malformed code file: a clear message on the page, the server still answers
    bad = artefacts / "bad_code.npy"
    bad.write_bytes(b"not a numpy file")
    browser.find_element(By.ID, "upload").send_keys(str(bad))
    message = wait_for(browser, "const e = document.getElementById('error'); return !e.hidden && e.textContent")
    assert "not a NumPy .npy file" in message
    assert all("status of 400" in m for m in severe(browser))  # the 4xx answer itself, nothing else
    assert proc.poll() is None


def test_strip_and_coalescing(server, browser):
    """The strip has one frame per slider step over [-3, 3]; a burst of 30 moves is drawn in fewer renders."""
    strip = browser.execute_script("return [document.getElementById('strip').width, "
                                   "document.getElementById('strip-title').textContent]")
    assert strip[0] > 7 * 80 and "traversal of direction" in strip[1]
    renders = browser.execute_script("""
        const input = document.querySelector('#sliders .slider input');
        const n = window.corrkit.renders;
        for (let m = 0; m < 30; m++) { input.value = String((m % 7) - 3); input.dispatchEvent(new Event('input')); }
        window.corrkit.burstStart = n;
        return n;""")
    settled(browser)
    done = browser.execute_script("return window.corrkit.renders") - renders
    assert 1 <= done < 30, done  # coalesced: the latest position, not every one
    final = browser.execute_script("return window.corrkit.state.values")
    assert list(final.values())[0] == float((29 % 7) - 3)


def test_reroll_keeps_the_sliders(server, browser):
    from selenium.webdriver.common.by import By

    settled(browser)
    values, before = browser.execute_script("return window.corrkit.state.values"), image(browser)
    assert any(v != 0 for v in values.values())
    browser.find_element(By.ID, "reroll").click()
    wait_for(browser, "return window.corrkit.state.codeLabel.startsWith('prior sample, seed 1')")
    settled(browser)
    assert browser.execute_script("return window.corrkit.state.values") == values
    assert image(browser) != before and severe(browser) == []


def test_ctrl_c_stops_cleanly(server):
    _, proc = server
    proc.send_signal(signal.SIGINT)
    rc = proc.wait(timeout=20)
    err = proc.stderr.read()
    assert rc == 0 and "Traceback" not in err, err
