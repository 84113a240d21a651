"""`corrkit explore`'s API over real HTTP: the numbers against the engine's own, bad requests, two clients at once.

The app is served by uvicorn in a thread on a free loopback port and called with
``urllib``; probabilities are compared with :meth:`Engine.probabilities` of a separate
engine on the edited code computed here, images with :func:`generate`, and, for a user's
colour pair, with the pair's NumPy twin (``tests/user_models.py``).
"""

from __future__ import annotations

import io
import json
import threading
import urllib.error
import urllib.request
import zipfile

import numpy as np
import pytest
from typer.testing import CliRunner

from corrkit._core.bundle import as_bundle, from_pair
from corrkit._core.engine import Engine, generate
from tests import user_models as um

pytest.importorskip("starlette", reason="the explore extra is not installed (pip install 'corrkit[explore]')")


class Client:
    def __init__(self, explorer):
        from corrkit.viz.explore.web import bind, server

        self.sock = bind("127.0.0.1", 0)
        self.base = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.srv = server(explorer, self.sock)
        self.thread = threading.Thread(target=self.srv.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        for _ in range(200):
            if self.srv.started:
                break
            threading.Event().wait(0.05)

    def call(self, path, body=None, raw: bytes | None = None):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.base + path, data=data, method="POST" if data is not None else "GET")
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                out = r.read()
                return r.status, (json.loads(out) if "json" in r.headers.get("content-type", "") else out)
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def close(self):
        self.srv.should_exit = True
        self.thread.join(timeout=20)
        self.sock.close()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from corrkit.methods.sequential import apcr

    out = tmp_path_factory.mktemp("explore_run")
    apcr(None, directions=np.eye(100, dtype=np.float32)[:16], samples_per_class=2, out=out)
    return out


@pytest.fixture(scope="module")
def served(run_dir):
    from corrkit.methods.sequential import APCRResult
    from corrkit.viz.explore.model import Explorer

    bundle = as_bundle(None)
    run = APCRResult.load(run_dir)
    client = Client(Explorer(bundle, run=run, run_dir=run_dir, device="cpu"))
    yield client, bundle, run
    client.close()


@pytest.fixture(scope="module")
def engine(served):
    return Engine(served[1], device="cpu")


def edited(z, directions, sliders):
    out = np.asarray(z, np.float64).copy()
    for i, v in sliders:
        out += v * directions[i].astype(np.float64) / np.linalg.norm(directions[i].astype(np.float64))
    return out.astype(np.float32)


def pixels(r) -> np.ndarray:
    import base64

    return np.frombuffer(base64.b64decode(r["pixels"]), np.uint8).reshape(r["height"], r["width"], r["channels"])


def test_render_equals_the_engine(served, engine):
    client, bundle, run = served
    status, got = client.call("/api/code?kind=seed&seed=7")
    assert status == 200
    z = np.asarray(got["code"], np.float32)
    assert np.array_equal(z, np.random.default_rng(7).standard_normal(100).astype(np.float32))
    sliders = [(3, 2.0), (0, -1.0), (11, 3.0)]
    status, r = client.call("/api/render", {"code": z.tolist(), "source": "apcr",
                                            "sliders": [{"index": i, "value": v} for i, v in sliders]})
    assert status == 200
    ze = edited(z, run.directions, sliders)
    assert np.abs(np.asarray(r["edited"]) - ze).max() < 1e-6
    want = engine.probabilities(ze[None])[0]
    assert np.abs(np.asarray(r["probs"]) - want).max() < 1e-6
    image = generate(bundle, ze[None])[0]
    assert (r["height"], r["width"], r["channels"]) == (28, 28, 1)
    assert np.abs(pixels(r)[..., 0].astype(int) - np.round(image * 255)).max() <= 1
    # the sliders move the probabilities: a zero edit gives the unedited code's
    status, r0 = client.call("/api/render", {"code": z.tolist(), "source": "apcr", "sliders": []})
    assert np.abs(np.asarray(r0["probs"]) - engine.probabilities(z[None])[0]).max() < 1e-6
    assert np.abs(np.asarray(r0["probs"]) - want).max() > 1e-3


def test_directions_ranked_by_the_runs_apcr(served):
    client, bundle, run = served
    status, info = client.call("/api/info")
    assert status == 200 and info["step"] == run.params["delta"] == 1.0 and info["range"] == 3.0
    assert [s["name"] for s in info["sources"]][:2] == ["apcr", "sefa"] and info["default_source"] == "apcr"
    assert {"vb", "wstar"} <= {s["name"] for s in info["sources"]}  # the built-in bundle's shipped directions
    for cls in ("Sandal", "5"):
        status, r = client.call(f"/api/directions?source=apcr&class={cls}")
        assert status == 200
        rows = r["directions"]
        order = np.argsort(-run.apcr[:, 5], kind="stable")[:8]
        assert [row["index"] for row in rows] == order.tolist()
        assert [row["apcr"] for row in rows] == run.apcr[order, 5].tolist()
        assert [row["up"] for row in rows] == run.up[order, 5].tolist()
        # the run's own bootstrap intervals (SPEC §11), end to end
        assert [row["apcr_lo"] for row in rows] == run.apcr_lo[order, 5].tolist()
        assert [row["apcr_hi"] for row in rows] == run.apcr_hi[order, 5].tolist()
        assert all(lo <= a <= hi for lo, a, hi in zip(run.apcr_lo[order, 5], run.apcr[order, 5], run.apcr_hi[order, 5]))
    status, r = client.call("/api/directions?source=wstar&class=2")
    assert r["directions"][0]["index"] == 2 and r["directions"][0]["label"] == "w*(Pullover)"


def test_intervals_of_an_older_run_read_from_bootstrap_npz(run_dir, tmp_path):
    import shutil

    from corrkit._core import io as cio
    from corrkit.methods.sequential import APCRResult
    from corrkit.viz.explore.model import Explorer

    run = APCRResult.load(run_dir)
    run.contributions = None  # a run saved before per-code contributions were kept
    assert run.apcr_lo is None
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    lo, hi = run.apcr * 0.8, run.apcr * 1.3
    cio.write_npz(copy / "bootstrap.npz", lo=lo, hi=hi)
    rows = Explorer(as_bundle(None), run=run, run_dir=copy, device="cpu").directions("apcr", 0)
    i = rows[0]["index"]
    assert rows[0]["apcr_lo"] == lo[i, 0] and rows[0]["apcr_hi"] == hi[i, 0]


def test_strip_and_export(served, engine):
    client, bundle, run = served
    z = run.latents[run.labels == 4][0]
    body = {"code": z.tolist(), "source": "apcr", "sliders": [{"index": 2, "value": 1.0}, {"index": 5, "value": -2.0}],
            "class": "Coat", "index": 5}
    status, s = client.call("/api/strip", body)
    assert status == 200 and s["ks"] == [-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0] and s["class"] == 4
    base = edited(z, run.directions, [(2, 1.0)])  # the walked direction's own slider left out
    walk = np.stack([edited(base, run.directions, [(5, k)]) for k in s["ks"]])
    assert np.abs(np.asarray(s["own"]) - engine.probabilities(walk)[:, 4]).max() < 1e-6
    assert len(s["frames"]) == 7 and pixels(s["frames"][0]).shape == (28, 28, 1)
    status, data = client.call("/api/export", body)
    assert status == 200
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert sorted(zf.namelist()) == ["code.npy", "edited.npy", "strip.png"]
        assert np.array_equal(np.load(io.BytesIO(zf.read("code.npy"))), z)
        assert np.abs(np.load(io.BytesIO(zf.read("edited.npy"))) - edited(z, run.directions, [(2, 1.0), (5, -2.0)])) \
            .max() < 1e-6
        assert zf.read("strip.png")[:8] == b"\x89PNG\r\n\x1a\n"


def test_class_set_and_uploaded_codes(served):
    client, bundle, run = served
    status, r = client.call("/api/code?kind=set&class=Bag&index=1")
    assert status == 200 and np.array_equal(np.asarray(r["code"], np.float32), run.latents[run.labels == 8][1])
    z = np.random.default_rng(3).standard_normal((1, 100))  # float64 [1, N]: taken as the float32 code
    buf = io.BytesIO()
    np.save(buf, z)
    status, r = client.call("/api/code", raw=buf.getvalue())
    assert status == 200 and np.array_equal(np.asarray(r["code"], np.float32), z[0].astype(np.float32))


def npy(a) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


BAD = [  # (path, body or raw bytes, status, words in the message)
    ("/api/directions?source=apcr&class=Hat", None, 404, "unknown class 'Hat'"),
    ("/api/directions?source=apcr&class=10", None, 404, "out of range"),
    ("/api/directions?source=stylegan&class=1", None, 404, "unknown direction source"),
    ("/api/render", {"code": [0.0] * 100, "source": "apcr", "sliders": [{"index": 0, "value": 3.5}]}, 400,
     "out of range: sliders go from -3 to 3"),
    ("/api/render", {"code": [0.0] * 100, "source": "apcr", "sliders": [{"index": 16, "value": 1}]}, 400,
     "not a direction of this source"),
    ("/api/render", {"code": [0.0] * 100, "source": "apcr", "sliders": [{"index": 1, "value": 1}] * 2}, 400,
     "given twice"),
    ("/api/render", {"code": [0.0] * 99, "source": "apcr", "sliders": []}, 422, "this model takes 100"),
    ("/api/render", {"code": "abc", "source": "apcr", "sliders": []}, 400, "list of numbers"),
    ("/api/render", {"code": [0.0] * 100, "source": "apcr"}, 400, "lacks sliders"),
    ("/api/render", b"{not json", 400, "not JSON"),
    ("/api/render", b"[1, 2]", 400, "JSON object"),
    ("/api/render", b'{"code": [NaN], "source": "apcr", "sliders": []}', 422, "this model takes"),
    ("/api/strip", {"code": [0.0] * 100, "source": "apcr", "sliders": [], "class": "Hat", "index": 0}, 404,
     "unknown class"),
    ("/api/code", b"this is not a numpy file", 400, "not a NumPy .npy file"),
    ("/api/code", npy(np.zeros(7, np.float32)), 422, "shape [7]; this model takes 100"),
    ("/api/code", npy(np.full(100, np.inf)), 422, "NaN, infinite"),
    ("/api/code", npy(np.array([{"a": 1}], dtype=object)), 400, "Python objects"),
    ("/api/code", npy(np.ones(100, np.complex64)), 422, "complex64 values"),
    ("/api/code?kind=set&class=1&index=9", None, 400, "has 2 codes in the run"),
    ("/api/code?kind=seed&seed=-1", None, 400, "seed"),
    ("/api/code?kind=nope", None, 400, "kind must be seed or set"),
    ("/api/nowhere", None, 404, "Not Found"),
]


@pytest.mark.parametrize("path,body,status,words", BAD, ids=[f"{b[0]}-{b[3][:20]}" for b in BAD])
def test_bad_requests_are_4xx_with_a_message(served, path, body, status, words):
    client = served[0]
    got, r = client.call(path, raw=body) if isinstance(body, bytes) else client.call(path, body)
    assert got == status and words in r["error"], r
    assert client.call("/api/info")[0] == 200  # still serving


def test_two_clients_at_once(served, engine):
    client, bundle, run = served
    rng = np.random.default_rng(11)
    codes = rng.standard_normal((2, 12, 100)).astype(np.float32)
    got, errors = {}, []

    def one(c):
        try:
            for m, z in enumerate(codes[c]):
                _, r = client.call("/api/render", {"code": z.tolist(), "source": "sefa",
                                                   "sliders": [{"index": m % 4, "value": 1.5}]})
                got[c, m] = np.asarray(r["probs"])
        except Exception as exc:  # pragma: no cover - shown by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(c,)) for c in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and len(got) == 24
    from corrkit.methods.sefa import sefa

    d = sefa(bundle).directions
    for (c, m), p in got.items():
        want = engine.probabilities(edited(codes[c, m], d, [(m % 4, 1.5)])[None])[0]
        assert np.abs(p - want).max() < 1e-6


def test_any_bundle_a_users_colour_pair(tmp_path):
    """A user's RGB 8x8 pair (fixed batch of 4 in its graphs): pictures in colour, numbers from its NumPy twin."""
    from corrkit.viz.explore.model import Explorer

    p = um.pair(tmp_path / "rgb", image=(3, 8, 8), batch=4)
    bundle = from_pair(p.generator, p.classifier, classifier_output="logits")
    client = Client(Explorer(bundle, device="cpu"))
    try:
        status, info = client.call("/api/info")
        assert status == 200 and info["latent_dim"] == um.N and len(info["classes"]) == um.C
        assert [s["name"] for s in info["sources"]] == ["sefa", "ganspace", "interfacegan", "axes"]
        z = np.random.default_rng(0).standard_normal(um.N).astype(np.float32)
        status, r = client.call("/api/render", {"code": z.tolist(), "source": "axes",
                                                "sliders": [{"index": 3, "value": -2.5}]})
        assert status == 200
        ze = z.copy()
        ze[3] -= 2.5
        assert np.abs(np.asarray(r["probs"]) - p.probabilities(ze[None].astype(np.float64))[0]).max() < 1e-5
        want = (p.images(ze[None])[0].transpose(1, 2, 0) + 1) / 2  # [-1, 1] -> [0, 1], channels last
        assert (r["height"], r["width"], r["channels"]) == (8, 8, 3)
        assert np.abs(pixels(r).astype(int) - np.round(want * 255)).max() <= 1
        status, r = client.call("/api/render", {"code": [0.0] * 100, "source": "axes", "sliders": []})
        assert status == 422 and f"takes {um.N}" in r["error"]
    finally:
        client.close()


def test_cli_check_and_errors(run_dir, tmp_path):
    from corrkit.cli.main import app

    runner = CliRunner()
    r = runner.invoke(app, ["explore", str(run_dir), "--check", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["run"] is True and info["class_set_codes"] == [2] * 10 and info["default_source"] == "apcr"
    p = um.pair(tmp_path / "fused", batch=None)
    for args, words in [(["--port", "0"], "--port must be"), (["--host", "example.com"], "--host must be an IP"),
                        (["--generator", str(p.generator)], "give both --generator and --classifier")]:
        r = runner.invoke(app, ["explore", *args])
        assert r.exit_code == 1 and r.stderr.startswith("error:") and words in r.stderr, r.output
    from corrkit.viz.explore.web import bind

    taken = bind("127.0.0.1", 0)
    try:
        r = runner.invoke(app, ["explore", "--port", str(taken.getsockname()[1]), "--device", "cpu"])
        assert r.exit_code == 1 and "cannot listen on 127.0.0.1" in r.stderr, r.output
    finally:
        taken.close()
