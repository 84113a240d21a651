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
    "latent_nchw": dict(batch=4, external=False, nchw_latent=True),  # z [B, N, 1, 1], DCGAN's convention
    "fp16": dict(batch=None, external=False, fp16=True),  # float16 inside and at the inputs/outputs
    "softmax_out": dict(batch=4, external=True, softmax=True),  # the classifier ends in its own softmax
}


# fp32 models: APCR within 1e-5 relative of the raw-session reference. fp16 models run in fp16 inside
# (casts at the boundary, probabilities reduced in fp32): onnxruntime's fp16 kernels round differently
# from batch to batch, so they are held to 2e-2 relative on APCR (measured: 8e-3 against the raw fp16
# sessions, 4e-3 against the float64 twin) and 5e-4 absolute on the signed changes and curves.
FP16_RTOL = 2e-2


def rtol(name: str, fp32: float) -> float:
    return FP16_RTOL if CONVENTIONS[name].get("fp16") else fp32


def invoke(*args) -> str:
    r = runner.invoke(app, [str(a) for a in args])
    assert r.exit_code == 0, (args, r.output, r.exception)
    return r.stdout


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

    from corrkit._core.onnx_files import external_files, sha256
    from corrkit._core.engine import Engine

    name, p, root = user
    if CONVENTIONS[name]["external"]:  # the weights stay in their data file, copied beside the model
        assert [f.name for f in external_files(root / "bundle" / "generator.onnx")] == ["G.onnx.data"]
    # copied byte for byte: the bundle's models have the hashes of the user's files
    assert sha256(root / "bundle" / "generator.onnx") == sha256(p.generator)
    assert sha256(root / "bundle" / "classifier.onnx") == sha256(p.classifier)
    # the bundle is self-contained: moved away from the user's export folder, it computes the same
    moved = shutil.copytree(root / "bundle", tmp_path / "moved")
    b = load_bundle(moved)
    assert (b.latent_dim, b.n_classes, b.classes) == (um.N, um.C, ["a", "b", "c"])
    assert b.hashes() == load_bundle(root / "bundle").hashes()
    z = np.random.default_rng(3).standard_normal((7, um.N)).astype(np.float32)
    np.testing.assert_allclose(Engine(b, device="cpu").probabilities(z), p.probabilities(z), rtol=rtol(name, 1e-5),
                               atol=1e-6)


def test_apcr_equals_the_onnxruntime_reference(user):
    name, p, root = user
    ref = _reference(p, root / "run")  # the user's own files in raw sessions, reduced in NumPy
    np.testing.assert_allclose(ref["run"]["apcr"], ref["want"]["apcr"], rtol=rtol(name, 1e-5), atol=1e-9)
    for key in ("up", "down", "curves"):
        np.testing.assert_allclose(ref["run"][key], ref["want"][key], rtol=rtol(name, 1e-5),
                                   atol=5e-4 if CONVENTIONS[name].get("fp16") else 1e-7, err_msg=key)
    assert ref["run"]["counts"].tolist() == [2, 2, 2]


def test_the_models_compute_what_their_numpy_twin_says(user):
    name, p, root = user  # float64 twin against fp32 inference: 1e-4 relative on APCR, a check of the fixtures
    ref = _reference(p, root / "run", p.probabilities)
    np.testing.assert_allclose(ref["run"]["apcr"], ref["want"]["apcr"], rtol=rtol(name, 1e-4), atol=1e-7)


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


def test_optimize_has_the_reference_objective_and_control_the_reference_ratios(user, tmp_path):
    name, p, root = user
    s = json.loads(invoke("optimize", root / "bundle", "--iterations", "1", "--samples-per-class", "2",
                          "--perturbations", "2", "--device", "cpu", "--out", tmp_path / "w.npz", "--json"))
    w = np.load(tmp_path / "w.npz")
    assert w["w"].shape == w["w_last"].shape == (um.C, um.N) and np.isfinite(w["w"]).all()
    assert np.array_equal(w["w"], w["w_last"]) and w["loss"].shape == (um.C, 1)  # one step: w* is its iterate
    assert s["counts"] == w["counts"].tolist() == [2, 2, 2]
    # the objective at v_init on each class's first mini-batch, from the user's files in raw sessions
    want, _ = um.first_step(p.onnxruntime_probabilities, um.class_sets(p.onnxruntime_probabilities, 2))
    np.testing.assert_allclose(w["loss"][:, 0], want, rtol=rtol(name, 1e-5), atol=1e-6)
    c = json.loads(invoke("control", root / "run", "--weights", tmp_path / "w.npz", "--top-k", "3", "--json"))
    apcr = np.load(root / "run" / "apcr.npz")["apcr"]  # [N, C]
    for j in range(um.C):  # C_seq: top-3 by APCR, C_opt: top-3 by |w*|, IR = |C_seq ∩ C_opt| / 3
        seq, opt = c["sets"]["seq"][j], c["sets"]["opt"][j]
        assert um.top_k_is_valid(apcr[:, j], seq) and um.top_k_is_valid(np.abs(w["w"][j]), opt)
        assert c["intersection_ratio"]["per_class"][j] == len(set(seq) & set(opt)) / 3
    assert c["intersection_ratio"]["mean"] == pytest.approx(np.mean(c["intersection_ratio"]["per_class"]))


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


def test_a_run_finds_its_own_models_and_never_another(tmp_path, monkeypatch):
    import shutil

    import onnx

    from corrkit._core.bundle import builtin_path

    p = um.pair(tmp_path / "export", batch=4)
    run = tmp_path / "run"
    invoke("apcr", "--generator", p.generator, "--classifier", p.classifier, *TINY, "--out", run)
    monkeypatch.chdir(tmp_path / "export")  # the run recorded absolute paths: any current folder works
    out = json.loads(invoke("figures", run, "--out", tmp_path / "f1", "--json"))
    assert any(Path(f).name == "traversal_overview.png" for f in out["figures"])
    # moved: traversals are skipped with a warning, and --model points at them again (hash checked)
    moved = tmp_path / "moved"
    shutil.move(tmp_path / "export", moved)
    r = runner.invoke(app, ["figures", str(run), "--out", str(tmp_path / "f2"), "--json"])
    assert r.exit_code == 0 and "traversal_overview.png" not in r.output and "traversal grids are skipped" in r.output
    _bundle(um.Pair(moved / "G.onnx", moved / "Q.onnx", p.weights, p.image), tmp_path / "b")
    out = json.loads(invoke("figures", run, "--out", tmp_path / "f3", "--model", tmp_path / "b", "--json"))
    assert any(Path(f).name == "traversal_overview.png" for f in out["figures"])
    r = runner.invoke(app, ["figures", str(run), "--out", str(tmp_path / "f4"), "--model", str(builtin_path())])
    assert r.exit_code == 1 and "not the one" in r.output
    # a fused model of the built-in bundle (latent 100, like the built-in generator): no guessed generator
    fused = tmp_path / "fused.onnx"
    onnx.save(load_bundle().fused_model(), fused)
    invoke("apcr", fused, "--samples-per-class", "1", "--steps", "1", "--device", "cpu", "--out", tmp_path / "frun")
    with pytest.warns(UserWarning, match="fused model"):
        from corrkit.viz.figures import render_run

        figs = render_run(tmp_path / "frun")
    assert "curves.png" in figs and not [n for n in figs if n.startswith("traversal")]


def test_the_output_kind_is_read_from_the_outputs_and_a_contradiction_refused(tmp_path):
    logits, probs = um.pair(tmp_path / "l", batch=None), um.pair(tmp_path / "p", batch=None, softmax=True)
    for args, kind in (((), "probabilities"), (("--output", "auto"), "probabilities"),
                       (("--output", "probabilities"), "probabilities")):
        out = tmp_path / f"b{len(args)}{args[-1] if args else ''}"
        invoke("bundle", "create", "--generator", probs.generator, "--classifier", probs.classifier, "--out", out,
               *args)
        assert load_bundle(out).classifier_output == kind == json.loads((out / "bundle.json").read_text())[
            "classifier_output"]
    r = runner.invoke(app, ["apcr", "--generator", str(probs.generator), "--classifier", str(probs.classifier),
                            "--output", "logits", *TINY])
    assert r.exit_code == 1 and "look like probabilities" in r.output and "softmax would be applied twice" in r.output
    r = runner.invoke(app, ["apcr", "--generator", str(logits.generator), "--classifier", str(logits.classifier),
                            "--output", "probabilities", *TINY])
    assert r.exit_code == 1 and "not probabilities" in r.output
    # read correctly, both kinds give the same numbers: softmax once
    invoke("apcr", "--generator", probs.generator, "--classifier", probs.classifier, *TINY, "--out", tmp_path / "rp")
    invoke("apcr", "--generator", logits.generator, "--classifier", logits.classifier, *TINY, "--out", tmp_path / "rl")
    a, b = np.load(tmp_path / "rp" / "apcr.npz"), np.load(tmp_path / "rl" / "apcr.npz")
    np.testing.assert_allclose(a["apcr"], b["apcr"], rtol=1e-5)


def test_a_generator_outside_its_declared_range_is_a_warning_with_what_was_seen(tmp_path):
    p = um.pair(tmp_path / "tanh", batch=None)  # a tanh generator: [-1, 1]
    with pytest.warns(UserWarning, match=r"span \[-1, 1\], outside the declared range \[0, 1\]"):
        from corrkit._core.bundle import from_pair

        from_pair(p.generator, p.classifier, generator_output_range=(0, 1))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # declared right: no warning
        from_pair(p.generator, p.classifier, generator_output_range=(-1, 1))


def test_a_class_without_codes_is_missing_everywhere_never_made_up(tmp_path):
    import warnings

    p = um.pair(tmp_path / "dead", batch=None, dead_class=2)
    b = _bundle(p, tmp_path / "b")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no All-NaN warnings may leak from any command
        s = json.loads(invoke("apcr", b, *TINY, "--out", tmp_path / "run", "--json"))
        assert s["counts"] == [2, 2, 0] and s["top"]["2"] is None and s["top"]["0"]
        table = invoke("apcr", b, *TINY)
        assert "—" in table
        invoke("optimize", b, "--iterations", "2", "--samples-per-class", "2", "--perturbations", "3",
               "--device", "cpu", "--out", tmp_path / "w.npz")
        c = json.loads(invoke("control", tmp_path / "run", "--weights", tmp_path / "w.npz", "--top-k", "3", "--json"))
        ratios = c["intersection_ratio"]["per_class"]
        assert ratios[2] is None and None not in ratios[:2]
        assert c["intersection_ratio"]["mean"] == pytest.approx(np.mean(ratios[:2]))
        assert "—" in invoke("control", tmp_path / "run", "--weights", tmp_path / "w.npz", "--top-k", "3")
        invoke("translate", b, "--run", tmp_path / "run", "--top-k", "2", "--device", "cpu", "--out", tmp_path / "tr")
        cmp = json.loads(invoke("compare", b, "--samples-per-class", "2", "--steps", "1", "--device", "cpu", "--json"))
        assert cmp["methods"]["coordinate"]["strongest_apcr"][2] is None
        invoke("figures", tmp_path / "run", "--out", tmp_path / "figs")
        invoke("report", tmp_path / "run", "--out", tmp_path / "r.html")
        m = json.loads(invoke("manipulate", b, "--run", tmp_path / "run", "--class", "all", "--top-k", "2",
                              "--device", "cpu", "--out", tmp_path / "man", "--json"))
        assert [c["class"] for c in m["per_class"]] == ["0", "1"]  # the class without codes is left out


def _conditional_generator(path: Path, rng) -> dict:
    """``G(z, label, scale) = tanh((scale z) W1 + E[label])``, outputs ``img`` [B, 1, 8, 8] and ``pre`` [B, 64]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = {"W1": rng.normal(0, 0.6, (um.N, 64)).astype(np.float32), "E": rng.normal(0, 1.0, (3, 64)).astype(np.float32)}
    nodes = [helper.make_node("Mul", ["z", "scale"], ["zs"]), helper.make_node("MatMul", ["zs", "W1"], ["h"]),
             helper.make_node("Gather", ["E", "label"], ["e"], axis=0), helper.make_node("Add", ["h", "e"], ["pre"]),
             helper.make_node("Tanh", ["pre"], ["t"]), helper.make_node("Reshape", ["t", "shape"], ["img"])]
    g = helper.make_graph(nodes, "cond", [
        helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", um.N]),
        helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]),
        helper.make_tensor_value_info("scale", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("img", TensorProto.FLOAT, ["batch", 1, 8, 8]),
         helper.make_tensor_value_info("pre", TensorProto.FLOAT, ["batch", 64])],
        [numpy_helper.from_array(w["W1"], "W1"), numpy_helper.from_array(w["E"], "E"),
         numpy_helper.from_array(np.array([-1, 1, 8, 8], np.int64), "shape")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return w


def test_a_conditional_generator_is_analysed_at_the_inputs_given(tmp_path):
    import onnxruntime as ort

    p = um.pair(tmp_path / "q", batch=None)  # its classifier
    g_path = tmp_path / "cond.onnx"
    _conditional_generator(g_path, np.random.default_rng(1))
    r = runner.invoke(app, ["bundle", "create", "--generator", str(g_path), "--classifier", str(p.classifier),
                            "--out", str(tmp_path / "none")])
    assert r.exit_code == 1 and r.output.count("\n") == 1 and "inputs still unset: label [batch] int64, scale [] " \
        "float32" in r.output and "--input NAME=VALUE" in r.output
    r = runner.invoke(app, ["bundle", "create", "--generator", str(g_path), "--classifier", str(p.classifier),
                            "--out", str(tmp_path / "none"), "--input", "label=1", "--input", "scale=0.5"])
    assert r.exit_code == 1 and "outputs img" in r.output and "--generator-output-name" in r.output
    q = ort.InferenceSession(str(p.classifier), providers=["CPUExecutionProvider"])
    g = ort.InferenceSession(str(g_path), providers=["CPUExecutionProvider"])
    runs = {}
    for label in (0, 2):
        out = tmp_path / f"b{label}"
        invoke("bundle", "create", "--generator", g_path, "--classifier", p.classifier, "--out", out,
               "--input", f"label={label}", "--input", "scale=0.5", "--generator-output-name", "img")
        card = json.loads((out / "bundle.json").read_text())
        assert card["inputs"] == {"generator": {"label": label, "scale": 0.5}} and card["outputs"] == {
            "generator": "img"}
        invoke("apcr", out, *TINY, "--out", tmp_path / f"run{label}")
        d = np.load(tmp_path / f"run{label}" / "apcr.npz")

        def reference(z, label=label):  # raw sessions fed the held values; softmax in NumPy
            z = np.asarray(z, np.float32)
            img = g.run(["img"], {"z": z, "label": np.full(len(z), label, np.int64),
                                  "scale": np.array(0.5, np.float32)})[0]
            return naive.softmax(q.run(None, {"x": img})[0].astype(np.float64))

        want = naive.apcr_from_grid(naive.grid_probs(reference, d["latents"], d["directions"], 1, 1.0), d["labels"],
                                    um.C, 1)
        # APCRs near 1e-3 here (a saturated classifier): 1e-5 relative, or 1e-7 absolute below 1e-2
        np.testing.assert_allclose(d["apcr"], want["apcr"], rtol=1e-5, atol=1e-7)
        runs[label] = d["apcr"]
    assert not np.allclose(runs[0], runs[2])  # per label, another analysis
    # the two-file form takes the same options
    invoke("apcr", "--generator", g_path, "--classifier", p.classifier, "--input", "generator.label=2",
           "--input", "scale=0.5", "--generator-output-name", "img", *TINY, "--out", tmp_path / "direct")
    assert np.array_equal(np.load(tmp_path / "direct" / "apcr.npz")["apcr"], runs[2])


def test_bench_runs_on_a_fixed_batch_export(tmp_path):
    p = um.pair(tmp_path / "e", batch=4)
    out = invoke("bench", _bundle(p, tmp_path / "b"), "--quick")
    rows = {ln.split("  ")[0].strip(): ln for ln in out.splitlines() if "pts/s" in ln}
    assert any(k.startswith("onnxruntime raw sessions") for k in rows), out
    assert all("nan pts/s" not in v for k, v in rows.items() if not k.startswith("PyTorch")), out


@pytest.mark.parametrize("command", ["compare", "optimize", "manipulate", "translate"])
def test_every_analysis_command_takes_the_same_model_options(tmp_path, command):
    import onnx

    p = um.pair(tmp_path / "e", batch=4)
    spec = ["--generator", str(p.generator), "--classifier", str(p.classifier), "--output", "logits",
            "--classes", "a,b,c"]
    run = tmp_path / "run"
    invoke("apcr", *spec, *TINY, "--out", run)
    extra = {"compare": ["--samples-per-class", "2", "--steps", "1", "--no-sefa"],
             "optimize": ["--iterations", "2", "--samples-per-class", "2", "--perturbations", "3",
                          "--out", str(tmp_path / "w.npz")],
             "manipulate": ["--run", str(run), "--class", "a", "--top-k", "2"],
             "translate": ["--run", str(run), "--top-k", "2"]}[command]
    invoke(command, *spec, *extra, "--device", "cpu")
    # a fused logits model, declared as such (compare had no --output before)
    fused = tmp_path / "fused.onnx"
    onnx.save(load_bundle(_bundle(p, tmp_path / "b")).fused_model("probabilities"), fused)  # raw logits out
    if command in ("compare", "optimize"):
        invoke(command, fused, "--output", "logits", *extra, "--device", "cpu")
        r = runner.invoke(app, [command, str(fused), "--output", "probabilities", *extra, "--device", "cpu"])
        assert r.exit_code == 1 and "not probabilities" in r.output


def test_manipulate_and_translate_take_the_runs_own_models_when_none_is_given(tmp_path):
    """``--run`` alone: the models that run analysed (by recorded path and SHA-256), never the built-in bundle;
    when they are gone, one line says so."""
    import shutil

    from corrkit.methods.manipulate import manipulate

    p = um.pair(tmp_path / "user", image=(3, 12, 12))
    run_dir = tmp_path / "run"
    invoke("apcr", "--generator", p.generator, "--classifier", p.classifier, *TINY, "--out", run_dir)
    out = json.loads(invoke("manipulate", "--run", run_dir, "--top-k", "2", "--device", "cpu", "--json"))
    want = manipulate(_pair_bundle(p), run=run_dir, top_k=2).to_json()  # the user's own pair, given directly
    assert out["per_class"] == want["per_class"]
    translated = json.loads(invoke("translate", "--run", run_dir, "--top-k", "2", "--device", "cpu", "--json"))
    assert len(translated["classes"]) == um.C
    shutil.rmtree(tmp_path / "user")
    r = runner.invoke(app, ["manipulate", "--run", str(run_dir), "--top-k", "2", "--device", "cpu"])
    assert r.exit_code == 1 and r.output.startswith("error: ") and len(r.output.strip().splitlines()) == 1


def _pair_bundle(p):
    from corrkit._core.bundle import from_pair

    return from_pair(p.generator, p.classifier)


def test_control_on_a_run_of_model_files_asks_for_weights_never_takes_the_builtins(tmp_path):
    # `corrkit apcr --generator G --classifier Q` has no bundle folder: no default weights exist for it,
    # and the built-in bundle's (another model's w*) must not stand in for them
    p = um.pair(tmp_path / "export", batch=None, external=False)
    files = ["--generator", p.generator, "--classifier", p.classifier, "--classes", "a,b,c"]
    invoke("apcr", *files, *TINY, "--out", tmp_path / "run", "--json")
    before = sorted((tmp_path / "run").iterdir())
    r = runner.invoke(app, ["control", str(tmp_path / "run")])
    assert r.exit_code == 1, r.output
    assert r.output.count("\n") == 1 and r.output.startswith("error:") and "--weights" in r.output
    assert sorted((tmp_path / "run").iterdir()) == before
    invoke("optimize", *files, "--iterations", "1", "--samples-per-class", "2", "--perturbations", "2",
           "--device", "cpu", "--out", tmp_path / "w.npz", "--json")
    c = json.loads(invoke("control", tmp_path / "run", "--weights", tmp_path / "w.npz", "--top-k", "3", "--json"))
    w, apcr = np.load(tmp_path / "w.npz")["w"], np.load(tmp_path / "run" / "apcr.npz")["apcr"]
    for j in range(um.C):
        seq, opt = c["sets"]["seq"][j], c["sets"]["opt"][j]
        assert um.top_k_is_valid(apcr[:, j], seq) and um.top_k_is_valid(np.abs(w[j]), opt)
        assert c["intersection_ratio"]["per_class"][j] == len(set(seq) & set(opt)) / 3
