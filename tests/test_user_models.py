"""Your own model, every command: user-exported pairs run through each command against a NumPy twin.

Each convention is a pair built as ``torch.onnx.export`` writes it (tests/user_models.py, no torch
needed); tests/test_export_user_models.py exports real torch modules with the exporter's defaults.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from corrkit._core.bundle import load_bundle
from corrkit._core.engine import generate
from corrkit.cli.main import app
from tests import naive
from tests import user_models as um

runner = CliRunner()
TINY = ["--samples-per-class", "2", "--steps", "1", "--threshold", "0.34", "--device", "cpu"]

CONVENTIONS = {
    # torch.onnx.export's defaults: fixed batch 4 (also in the Reshapes), opset 20, external data
    "default_export": dict(batch=4, external=True, opset=20),
    "batch_1": dict(batch=1, external=False, opset=17),
    "symbolic_batch": dict(batch=None, external=False, opset=17),
    "rgb_12px": dict(batch=4, external=True, image=(3, 12, 12)),
    "range_0_1": dict(batch=None, external=False, generator_range=(0.0, 1.0)),
    "other_names": dict(batch=2, external=True, names=("latent", "img", "input_1", "output_0")),
}


def invoke(*args) -> str:
    r = runner.invoke(app, [str(a) for a in args])
    assert r.exit_code == 0, (args, r.output, r.exception)
    return r.output


@pytest.fixture(scope="module", params=list(CONVENTIONS), ids=list(CONVENTIONS))
def user(request, tmp_path_factory):
    """The convention's pair, a bundle made from it by `corrkit bundle create`, and a finished apcr run."""
    root = tmp_path_factory.mktemp(request.param)
    p = um.pair(root / "export", **CONVENTIONS[request.param])
    lo, hi = p.generator_range
    invoke("bundle", "create", "--generator", p.generator, "--classifier", p.classifier, "--out", root / "bundle",
           "--generator-range", f"{lo:g},{hi:g}", "--classes", "a,b,c")
    invoke("apcr", root / "bundle", *TINY, "--out", root / "run", "--json")
    return request.param, p, root


def _reference(p: um.Pair, run_dir: Path, probs_fn=None) -> dict:
    d = np.load(run_dir / "apcr.npz")
    probs = naive.grid_probs(probs_fn or p.onnxruntime_probabilities, d["latents"], d["directions"], 1, 1.0)
    return {"run": d, "want": naive.apcr_from_grid(probs, d["labels"], um.C, 1)}


def test_bundle_create_copies_external_data(user, tmp_path):
    import shutil

    from corrkit._core.bundle import external_files
    from corrkit._core.engine import Engine

    name, p, root = user
    if CONVENTIONS[name]["external"]:  # the generator's weights (over 1 KiB) stay external, beside its new name
        assert [f.name for f in external_files(root / "bundle" / "generator.onnx")] == ["generator.onnx.data"]
    # the bundle is self-contained: moved away from the user's export folder, it computes the same
    moved = shutil.copytree(root / "bundle", tmp_path / "moved")
    b = load_bundle(moved)
    assert (b.latent_dim, b.n_classes, b.classes) == (um.N, um.C, ["a", "b", "c"])
    assert b.hashes() == load_bundle(root / "bundle").hashes()
    z = np.random.default_rng(3).standard_normal((7, um.N)).astype(np.float32)
    np.testing.assert_allclose(Engine(b, device="cpu").probabilities(z), p.probabilities(z), rtol=1e-5, atol=1e-6)


def test_apcr_equals_the_onnxruntime_reference(user):
    _, p, root = user
    ref = _reference(p, root / "run")  # the user's own files in raw fp32 sessions, reduced in NumPy
    np.testing.assert_allclose(ref["run"]["apcr"], ref["want"]["apcr"], rtol=1e-5, atol=1e-9)
    for key in ("up", "down", "curves"):
        np.testing.assert_allclose(ref["run"][key], ref["want"][key], rtol=1e-5, atol=1e-7, err_msg=key)
    assert ref["run"]["counts"].tolist() == [2, 2, 2]


def test_the_models_compute_what_their_numpy_twin_says(user):
    _, p, root = user  # float64 twin against fp32 inference: 1e-4 relative on APCR, a check of the fixtures
    ref = _reference(p, root / "run", p.probabilities)
    np.testing.assert_allclose(ref["run"]["apcr"], ref["want"]["apcr"], rtol=1e-4, atol=1e-7)


def test_apcr_from_the_two_files_and_as_one_fused_model(user, tmp_path):
    _, p, root = user
    lo, hi = p.generator_range
    invoke("apcr", "--generator", p.generator, "--classifier", p.classifier, "--generator-range", f"{lo:g},{hi:g}",
           *TINY, "--out", tmp_path / "pair")
    a, b = np.load(root / "run" / "apcr.npz"), np.load(tmp_path / "pair" / "apcr.npz")
    for key in ("apcr", "curves", "latents"):
        assert np.array_equal(a[key], b[key]), key
    # the bundle's fused graph saved as one file: z -> probabilities
    import onnx

    fused = tmp_path / "fused.onnx"
    onnx.save(load_bundle(root / "bundle").fused_model(), fused)
    invoke("apcr", fused, *TINY, "--out", tmp_path / "fused")
    c = np.load(tmp_path / "fused" / "apcr.npz")
    np.testing.assert_allclose(c["apcr"], a["apcr"], rtol=1e-6)


def test_sefa_equals_the_eigenvectors_of_the_first_layer(user):
    _, p, root = user
    out = json.loads(invoke("sefa", root / "bundle", "--json", "--top", "16"))
    a = p.weights["W1"].astype(np.float64).T  # [pixels, N]: z -> first layer
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    values = np.sort(np.linalg.eigvalsh(a.T @ a))[::-1]
    np.testing.assert_allclose(out["eigenvalues"], values, rtol=1e-6)


def test_images_are_drawn_in_colour_in_their_declared_range(user):
    _, p, root = user
    z = np.random.default_rng(4).standard_normal((5, um.N)).astype(np.float32)
    img = generate(load_bundle(root / "bundle"), z)
    lo, hi = p.generator_range
    want = (p.images(z) - lo) / (hi - lo)  # [B, ch, h, w] in [0, 1]
    want = want[:, 0] if want.shape[1] == 1 else want.transpose(0, 2, 3, 1)
    np.testing.assert_allclose(img, want, atol=1e-6)
    assert img.min() >= 0 and img.max() <= 1


def _png(path: Path) -> np.ndarray:
    import matplotlib.image as mpimg

    return mpimg.imread(path)


def test_figures_and_report_use_the_runs_own_generator(user, tmp_path):
    _, p, root = user
    out = json.loads(invoke("figures", root / "run", "--out", tmp_path / "figs", "--json"))
    names = sorted(Path(f).name for f in out["figures"])
    assert "curves.png" in names and "traversal_overview.png" in names
    over = _png(tmp_path / "figs" / "traversal_overview.png")
    assert over.ndim == 3 and over.shape[0] > 50 and over.shape[1] > 50
    invoke("report", root / "run", "--out", tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text()
    assert page.count("<img ") >= 3


def test_compare_manipulate_translate_write_their_pictures(user, tmp_path):
    _, p, root = user
    s = json.loads(invoke("compare", root / "bundle", "--samples-per-class", "2", "--steps", "1", "--device", "cpu",
                          "--out", tmp_path / "cmp", "--json"))
    assert {"coordinate", "random", "sefa"} <= set(s["methods"])
    assert (tmp_path / "cmp" / "compare.png").is_file() and (tmp_path / "cmp" / "traversal_sefa.png").is_file()
    invoke("manipulate", root / "bundle", "--run", root / "run", "--class", "a", "--top-k", "2", "--device", "cpu",
           "--out", tmp_path / "man")
    assert list((tmp_path / "man").glob("*.png"))
    invoke("translate", root / "bundle", "--run", root / "run", "--top-k", "2", "--device", "cpu",
           "--out", tmp_path / "tr")
    assert list((tmp_path / "tr").glob("*.png")) and (tmp_path / "tr" / "translate.json").is_file()


def test_a_baked_batch_is_freed_when_exact_and_fed_in_chunks_otherwise(tmp_path):
    from onnx import helper, numpy_helper

    from corrkit._core.engine import Engine

    p = um.pair(tmp_path / "freed", batch=4)
    b = load_bundle(_bundle(p, tmp_path / "b_freed"))
    b.fused_model()
    assert b.forms == {"generator": "freed", "classifier": "freed"}
    # a batch the graph holds elsewhere (a [4, P] constant added to every row) cannot be freed
    q = um.pair(tmp_path / "fixed", batch=4, external=False)
    import onnx

    g = onnx.load(str(q.generator))
    pixels = int(np.prod(q.image))
    g.graph.initializer.append(numpy_helper.from_array(np.zeros((4, pixels), np.float32), "per_row"))
    gemm = next(n for n in g.graph.node if n.op_type == "Gemm")
    gemm.output[0] = "h0"
    g.graph.node.insert(1, helper.make_node("Add", ["h0", "per_row"], ["h"]))
    del g.graph.value_info[:]
    onnx.checker.check_model(g)
    onnx.save(g, str(q.generator))
    bq = load_bundle(_bundle(q, tmp_path / "b_fixed"))
    e = Engine(bq, device="cpu", batch_size=64)
    assert bq.forms["generator"] == "fixed" and e.fixed_batch == 4
    z = np.random.default_rng(5).standard_normal((11, um.N)).astype(np.float32)  # 11: two chunks and a padded one
    np.testing.assert_allclose(e.probabilities(z), q.onnxruntime_probabilities(z), rtol=1e-5, atol=1e-7)


def _bundle(p: um.Pair, out: Path) -> Path:
    invoke("bundle", "create", "--generator", p.generator, "--classifier", p.classifier, "--out", out)
    return out
