"""Mapping/synthesis bundles in Z, W and W+ (SPEC §12), against NumPy twins and separate onnxruntime sessions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from corrkit._core.bundle import load_bundle
from corrkit._core.style_bundle import create_style_bundle
from corrkit._core.style import Space, lift, space_directions
from corrkit.errors import BundleError
from corrkit.methods.sequential import apcr
from tests.naive import apcr_from_grid, grid_probs, softmax

NZ, NW, L, C = 5, 4, 3, 3
rng0 = np.random.default_rng(7)
A = rng0.normal(size=(NZ, NW)).astype(np.float32)
a = rng0.normal(size=NW).astype(np.float32) * 0.1
B = rng0.normal(size=(L, NW, 4)).astype(np.float32)  # each layer's own map w_l -> 2x2 image
Q = rng0.normal(size=(4, C)).astype(np.float32) * 3


def np_mapping(z):
    return np.tanh(z @ A + a)


def np_synthesis(ws):  # [B, L, NW] -> [B, 1, 2, 2]
    return np.tanh(np.einsum("bln,lnp->bp", ws, B)).reshape(-1, 1, 2, 2)


def np_probs_ws(ws):
    return softmax(np_synthesis(ws).reshape(-1, 4) @ Q)


def _save(nodes, inputs, outputs, inits, path):
    import onnx
    from onnx import helper, numpy_helper

    g = helper.make_graph(nodes, path.stem, inputs, outputs,
                          initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def twin_models(folder: Path, per_layer: bool = True):
    """onnx.helper twins of the NumPy mapping, synthesis and classifier above."""
    from onnx import TensorProto, helper

    f = TensorProto.FLOAT
    mapping = _save([helper.make_node("MatMul", ["z", "A"], ["za"]), helper.make_node("Add", ["za", "a"], ["zb"]),
                     helper.make_node("Tanh", ["zb"], ["w"])],
                    [helper.make_tensor_value_info("z", f, ["batch", NZ])],
                    [helper.make_tensor_value_info("w", f, ["batch", NW])], {"A": A, "a": a}, folder / "m.onnx")
    nodes, inits = [], {"shape": np.array([-1, 1, 2, 2], np.int64)}
    for layer in range(L):
        inits[f"B{layer}"] = B[layer]
        if per_layer:
            inits[f"i{layer}"] = np.array(layer, np.int64)
            nodes.append(helper.make_node("Gather", ["ws", f"i{layer}"], [f"w{layer}"], axis=1))
        nodes.append(helper.make_node("MatMul", [f"w{layer}" if per_layer else "ws", f"B{layer}"], [f"y{layer}"]))
    nodes += [helper.make_node("Sum", [f"y{layer}" for layer in range(L)], ["y"]),
              helper.make_node("Tanh", ["y"], ["t"]), helper.make_node("Reshape", ["t", "shape"], ["image"])]
    shape = ["batch", L, NW] if per_layer else ["batch", NW]
    synthesis = _save(nodes, [helper.make_tensor_value_info("ws", f, shape)],
                      [helper.make_tensor_value_info("image", f, ["batch", 1, 2, 2])], inits, folder / "s.onnx")
    classifier = _save([helper.make_node("Flatten", ["image"], ["flat"]),
                        helper.make_node("MatMul", ["flat", "Q"], ["logits"])],
                       [helper.make_tensor_value_info("image", f, ["batch", 1, 2, 2])],
                       [helper.make_tensor_value_info("logits", f, ["batch", C])], {"Q": Q}, folder / "q.onnx")
    return mapping, synthesis, classifier


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    folder = tmp_path_factory.mktemp("style")
    m, s, q = twin_models(folder)
    w_avg = np_mapping(np.random.default_rng(0).standard_normal((4096, NZ))).mean(0).astype(np.float32)
    return create_style_bundle(m, s, q, folder / "bundle", w_avg=w_avg, classes=["x", "y", "u"])


def test_bundle_folder_records_the_pair_and_loads_back(twin):
    card = json.loads((twin.path / "bundle.json").read_text())
    assert card["style"] == {"mapping": "mapping.onnx", "synthesis": "synthesis.onnx", "w_avg": "w_avg.npy",
                             "z_dim": NZ, "w_dim": NW, "n_layers": L}
    b = load_bundle(twin.path)
    assert (b.style.z_dim, b.style.w_dim, b.style.n_layers, b.style.per_layer) == (NZ, NW, L, True)
    assert [b.in_space(Space(s)).latent_dim for s in ("z", "w", "w+")] == [NZ, NW, L * NW]


def test_codes_are_drawn_in_z_and_mapped(twin):
    z = np.random.default_rng(3).standard_normal((6, NZ)).astype(np.float32)
    w = np_mapping(z)
    assert np.array_equal(twin.draw(np.random.default_rng(3), 6), z)
    got_w = twin.in_space(Space("w")).draw(np.random.default_rng(3), 6)
    np.testing.assert_allclose(got_w, w, rtol=0, atol=1e-6)
    got_plus = twin.in_space(Space("w+")).draw(np.random.default_rng(3), 6).reshape(6, L, NW)
    assert np.array_equal(got_plus, np.repeat(got_w[:, None], L, axis=1))
    psi = 0.6
    got_t = twin.in_space(Space("w", psi)).draw(np.random.default_rng(3), 6)
    avg = twin.style.w_avg
    np.testing.assert_allclose(got_t, avg + psi * (w - avg), rtol=0, atol=1e-6)


def test_truncation_one_equals_no_truncation_bit_for_bit(twin):
    from corrkit._core.engine import Engine

    z = np.random.default_rng(5).standard_normal((16, NZ)).astype(np.float32)
    plain = Engine(twin, device="cpu", autotune=False, rewrite=False).probabilities(z)
    view = twin.in_space(Space("z", 1.0))
    assert view is twin
    one = Engine(twin.in_space(Space("z", 1.0000001)).in_space(Space("z", 1.0)), device="cpu", autotune=False,
                 rewrite=False).probabilities(z)
    assert np.array_equal(plain, one)
    w_codes = twin.in_space(Space("w", 1.0)).draw(np.random.default_rng(5), 16)
    assert np.array_equal(w_codes, twin.in_space(Space("w")).draw(np.random.default_rng(5), 16))
    names = [n.output[0] for n in twin.in_space(Space("z", 0.5)).runnable_generator().graph.node]
    assert "space/w" in names and "space/w" not in [n.output[0] for n in twin.runnable_generator().graph.node]


@pytest.mark.parametrize("space", [Space("w"), Space("w", 0.7), Space("w+"), Space("w+", 1.0, ((0, 2),)),
                                   Space("w+", 1.0, ((0,), (1, 2)), True), Space("z", 0.8)])
def test_apcr_in_each_space_equals_the_numpy_twin(twin, space):
    view = twin.in_space(space)
    dirs, normalize = space_directions(view, None)
    r = apcr(view, directions=dirs, normalize_directions=normalize, samples_per_class=6, steps=2, delta=0.5,
             threshold=0.4, seed=1)
    avg, psi = twin.style.w_avg, space.truncation

    def probs(codes):
        if space.name == "z":
            w = np_mapping(codes)
            w = avg + psi * (w - avg) if psi != 1.0 else w
            return np_probs_ws(np.repeat(w[:, None], L, axis=1))
        if space.name == "w":
            return np_probs_ws(np.repeat(codes[:, None], L, axis=1))
        return np_probs_ws(codes.reshape(-1, L, NW))

    ref = apcr_from_grid(grid_probs(probs, r.latents.astype(np.float64), r.directions.astype(np.float64), 2, 0.5),
                         r.labels, C, 2)
    have = r.counts > 0
    np.testing.assert_allclose(r.apcr[:, have], ref["apcr"][:, have], rtol=1e-5, atol=1e-7)
    if space.name == "w+":
        groups = len(space.layers) if space.by_layer else 1
        assert r.directions.shape == (groups * NW, L * NW)


def test_a_direction_on_a_layer_subset_moves_only_those_layers_inputs(twin):
    """The synthesis network's own per-layer inputs ws[:, l], read from the W+ graph."""
    import onnx

    from corrkit._core.conventions import cpu_session

    view = twin.in_space(Space("w+", 1.0, ((0, 2),)))
    d = np.zeros((1, NW), np.float32)
    d[0, 1] = 1.0
    lifted = lift(d, view.style)
    g = view.runnable_generator()
    ws_name = [n.output[0] for n in g.graph.node if n.op_type == "Reshape"][0]
    g.graph.output.append(onnx.helper.make_tensor_value_info(ws_name, onnx.TensorProto.FLOAT, None))
    session = cpu_session(g)
    code = view.draw(np.random.default_rng(2), 1)
    before = session.run([ws_name], {"z": code})[0]
    after = session.run([ws_name], {"z": code + 0.75 * lifted})[0]
    moved = (after - before)[0]
    np.testing.assert_allclose(moved[[0, 2]], 0.75 * np.repeat(d, 2, axis=0), atol=1e-6)
    assert np.array_equal(moved[1], np.zeros(NW, np.float32))


def test_spaces_that_do_not_exist_are_refused_in_one_line(twin, tmp_path):
    plain = load_bundle(None)
    for space in (Space("w"), Space("z", 0.5), Space("w+")):
        with pytest.raises(BundleError, match="mapping/synthesis bundle"):
            plain.in_space(space)
    with pytest.raises(BundleError, match="only W\\+"):
        twin.in_space(Space("w", 1.0, ((0,),)))
    m, s, q = twin_models(tmp_path, per_layer=False)
    shared = create_style_bundle(m, s, q, tmp_path / "b")
    assert shared.style.per_layer is False
    with pytest.raises(BundleError, match="no W\\+"):
        shared.in_space(Space("w+"))
    with pytest.raises(BundleError, match="w_avg"):
        shared.in_space(Space("w", 0.5))
    cli = [sys.executable, "-m", "corrkit.cli", "apcr", str(twin.path), "--samples-per-class", "2", "--steps", "1"]
    for extra, msg in ((["--space", "w+", "--layers", "0-9"], "style layers 0-2"),
                       (["--space", "w", "--layers", "1"], "only W+"), (["--space", "q"], "--space")):
        done = subprocess.run(cli + extra, capture_output=True, text=True)
        assert done.returncode == 1 and done.stderr.startswith("error:") and msg in done.stderr, done.stderr
        assert "Traceback" not in done.stderr


def test_a_run_records_its_space_and_later_commands_use_it(twin, tmp_path):
    run = tmp_path / "run"
    cli = [sys.executable, "-m", "corrkit.cli"]
    done = subprocess.run(cli + ["apcr", str(twin.path), "--space", "w", "--truncation", "0.8", "--samples-per-class",
                                 "4", "--steps", "1", "--out", str(run), "--json"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    rec = json.loads((run / "summary.json").read_text())["bundle"]["style"]
    assert (rec["space"], rec["truncation"], rec["w_dim"], rec["n_layers"]) == ("w", 0.8, NW, L)
    from corrkit._core.runs import run_bundle

    again = run_bundle(run)
    assert again.style.space == Space("w", 0.8) and again.latent_dim == NW
    done = subprocess.run(cli + ["manipulate", "--run", str(run), "--top-k", "2", "--out", str(tmp_path / "m"),
                                 "--json"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_torch_stylegan2_export_in_w_plus_equals_separate_sessions(tmp_path):
    pytest.importorskip("torch")
    from corrkit._core.conventions import cpu_session
    from tests import stylegan2 as sg

    e = sg.export_style(tmp_path / "raw")
    b = create_style_bundle(e.mapping, e.synthesis, e.classifier, tmp_path / "b", w_avg=e.w_avg)
    view = b.in_space(Space("w+", 0.7, ((0, 1), (4, 5)), True))
    dirs, normalize = space_directions(view, None)
    r = apcr(view, directions=dirs[::3], normalize_directions=normalize, samples_per_class=3, steps=1, delta=1.0,
             threshold=0.3, seed=0)
    s, q = cpu_session(b.runnable_synthesis()), cpu_session(b.runnable_classifier())
    n_l, n_w = b.style.n_layers, b.style.w_dim

    def probs(codes):
        img = s.run(None, {"ws": codes.astype(np.float32).reshape(-1, n_l, n_w)})[0]
        return softmax(q.run(None, {q.get_inputs()[0].name: img})[0].astype(np.float64))

    ref = apcr_from_grid(grid_probs(probs, r.latents, r.directions, 1, 1.0), r.labels, b.n_classes, 1)
    have = r.counts > 0
    np.testing.assert_allclose(r.apcr[:, have], ref["apcr"][:, have], rtol=1e-4, atol=1e-6)
    z = np.random.default_rng(0).standard_normal((4, b.style.z_dim)).astype(np.float32)
    w = e.generator.mapping(__import__("torch").from_numpy(z)).detach().numpy()
    avg = np.load(e.w_avg)
    np.testing.assert_allclose(view.draw(np.random.default_rng(0), 4).reshape(4, n_l, n_w)[:, 0],
                               avg + 0.7 * (w - avg), atol=1e-5)


def test_style_maps_of_the_twin_are_its_own_matrices(twin):
    from corrkit.methods.sefa import style_maps

    maps = style_maps(twin.runnable_synthesis(), L)
    for layer, (a_l, _) in enumerate(maps):
        np.testing.assert_array_equal(a_l, B[layer].T.astype(np.float64))


@pytest.mark.parametrize("layers", [[0, 1], [2, 3, 4], None])
def test_style_layer_sefa_equals_the_official_method_on_torch_weights(tmp_path, layers):
    pytest.importorskip("torch")
    from corrkit.methods.sefa import sefa
    from tests import stylegan2 as sg

    e = sg.export_style(tmp_path / "raw")
    b = create_style_bundle(e.mapping, e.synthesis, e.classifier, tmp_path / "b", w_avg=e.w_avg)
    got = sefa(b, layers)
    chosen = list(range(b.style.n_layers)) if layers is None else layers
    vectors, values = sg.official_sefa(e.generator.synthesis, chosen)
    order = np.argsort(values.real)[::-1]
    values, vectors = values.real[order], vectors.real[order]
    np.testing.assert_allclose(got.eigenvalues, values, rtol=1e-4, atol=1e-6)
    for k in range(3):
        assert abs(float(got.directions[k] @ vectors[k])) > 0.9999
    done = subprocess.run([sys.executable, "-m", "corrkit.cli", "sefa", str(tmp_path / "b"), "--json"] +
                          (["--layers", ",".join(map(str, layers))] if layers else []), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    np.testing.assert_allclose(json.loads(done.stdout)["eigenvalues"], got.eigenvalues[:10], rtol=1e-6)


def test_the_grouped_form_is_the_same_function_but_does_not_export_at_a_symbolic_batch(tmp_path):
    torch = pytest.importorskip("torch")
    from tests import stylegan2 as sg

    scaling, grouped = sg.Generator(sg.TINY, seed=0).eval(), sg.Generator(sg.TINY, seed=0, fused=True).eval()
    grouped.load_state_dict(scaling.state_dict())
    z = torch.randn(3, sg.TINY.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        np.testing.assert_allclose(grouped(z).numpy(), scaling(z).numpy(), atol=1e-5)
    with pytest.raises(Exception, match="unknown shape"):
        sg.export_style(tmp_path, fused=True)


def test_w_ganspace_is_the_pca_of_mapped_prior_samples(twin):
    from corrkit.methods.ganspace import ganspace

    view = twin.in_space(Space("w+", 0.9, ((1,),)))
    got = ganspace(view, samples=500, seed=4)
    w = twin.in_space(Space("w", 0.9)).draw(np.random.default_rng(4), 500).astype(np.float64)
    vals, vecs = np.linalg.eigh(np.cov(w, rowvar=False))  # an independent PCA: the covariance's eigenvectors
    vals, vecs = vals[::-1], vecs[:, ::-1].T
    np.testing.assert_allclose(got.explained_variance, vals / vals.sum(), rtol=1e-6)
    for k in range(NW):
        assert abs(float(got.directions[k] @ vecs[k])) > 1 - 1e-6
    with pytest.raises(Exception, match="--layer"):
        ganspace(view, layer="x")


def test_compare_in_w_plus_lifts_every_set_to_the_chosen_layers(twin, tmp_path):
    from corrkit.methods.compare import compare
    from corrkit.methods.sequential import APCRResult
    from corrkit.methods.sefa import style_sefa

    view = twin.in_space(Space("w+", 1.0, ((0, 2),)))
    s = compare(view, {"mine": np.eye(NW, dtype=np.float32)[:2]}, samples_per_class=3, steps=1, out=tmp_path / "c")
    assert set(s["methods"]) == {"coordinate", "random", "sefa", "ganspace", "interfacegan", "mine"}
    assert s["params"]["space"] == "w+" and s["params"]["layers"] == [[0, 2]]
    sefa_run = APCRResult.load(tmp_path / "c" / "sefa")
    assert sefa_run.directions.shape == (NW, L * NW)
    want = lift(style_sefa(view, [0, 2]).directions, view.style)
    np.testing.assert_allclose(sefa_run.directions, want, atol=1e-6)
    blocks = sefa_run.directions.reshape(NW, L, NW)
    assert not blocks[:, 1].any() and blocks[:, 0].any() and blocks[:, 2].any()  # layer 1 never moves
    mine = APCRResult.load(tmp_path / "c" / "mine")
    ref = apcr_from_grid(grid_probs(lambda c: np_probs_ws(c.reshape(-1, L, NW)), mine.latents, mine.directions, 1,
                                    s["params"]["delta"]), mine.labels, C, 1)
    have = mine.counts > 0
    np.testing.assert_allclose(mine.apcr[:, have], ref["apcr"][:, have], rtol=1e-5, atol=1e-7)


def test_compare_in_z_of_a_style_bundle_offers_no_w_methods(twin):
    from corrkit.methods.compare import compare

    s = compare(twin, samples_per_class=2, steps=1, with_interfacegan=False)
    assert set(s["methods"]) == {"coordinate", "random"} and s["params"]["space"] == "z"


def test_every_intervening_command_takes_the_space(twin, tmp_path):
    cli = [sys.executable, "-m", "corrkit.cli"]
    for cmd in (["compare", str(twin.path), "--samples-per-class", "2", "--steps", "1", "--no-interfacegan"],
                ["optimize", str(twin.path), "--iterations", "2", "--samples-per-class", "2", "--out",
                 str(tmp_path / "w.npz")],
                ["translate", str(twin.path), "--source", "0", "--target", "1", "--top-k", "2"],
                ["manipulate", str(twin.path), "--class", "0", "--top-k", "2"]):
        done = subprocess.run(cli + cmd + ["--space", "w", "--truncation", "0.8", "--json"], capture_output=True,
                              text=True)
        assert done.returncode == 0, (cmd[0], done.stderr)
        bad = subprocess.run(cli + cmd + ["--space", "w", "--layers", "0"], capture_output=True, text=True)
        assert bad.returncode == 1 and bad.stderr.startswith("error:") and "Traceback" not in bad.stderr, cmd[0]
    w = np.load(tmp_path / "w.npz", allow_pickle=False)
    assert w["w"].shape == (C, NW)
    pytest.importorskip("starlette")
    done = subprocess.run(cli + ["explore", str(twin.path), "--space", "w+", "--layers", "1", "--check"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["latent_dim"] == L * NW


def test_a_single_generator_graph_is_split_at_its_named_ws(tmp_path):
    """A StyleGAN2 exported whole (z -> image) as a user would, cut at the broadcast ws tensor."""
    torch = pytest.importorskip("torch")
    import onnx

    from corrkit._core.conventions import cpu_session
    from tests import stylegan2 as sg

    e = sg.export_style(tmp_path / "raw")
    whole = tmp_path / "whole.onnx"
    sg._export(e.generator, (torch.randn(2, sg.TINY.z_dim),), whole, ["z"], ["image"])
    ws_name = next(n.output[0] for n in onnx.load(str(whole)).graph.node if n.op_type == "Expand")
    out = tmp_path / "split"
    done = subprocess.run([sys.executable, "-m", "corrkit.cli", "bundle", "create", "--generator", str(whole),
                           "--split-at", ws_name, "--classifier", str(e.classifier), "--out", str(out)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    b = load_bundle(out)
    assert (b.style.z_dim, b.style.w_dim, b.style.n_layers, b.style.per_layer) == (sg.TINY.z_dim, sg.TINY.w_dim,
                                                                                  sg.TINY.n_layers, True)
    z = np.random.default_rng(0).standard_normal((5, sg.TINY.z_dim)).astype(np.float32)
    ws = np.random.default_rng(1).standard_normal((5, sg.TINY.n_layers, sg.TINY.w_dim)).astype(np.float32)
    m, s = cpu_session(onnx.load(str(out / "mapping.onnx"))), cpu_session(b.runnable_synthesis())
    with torch.no_grad():
        want_w = e.generator.mapping(torch.from_numpy(z)).numpy()
        want_img = e.generator.synthesis(torch.from_numpy(ws)).numpy()
    np.testing.assert_allclose(m.run(None, {m.get_inputs()[0].name: z})[0], want_w, atol=1e-5)  # ws[:, 0]
    np.testing.assert_allclose(s.run(None, {s.get_inputs()[0].name: ws})[0], want_img, atol=1e-5)
    bad = subprocess.run([sys.executable, "-m", "corrkit.cli", "bundle", "create", "--generator", str(whole),
                          "--split-at", "nope", "--classifier", str(e.classifier), "--out", str(tmp_path / "x")],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.startswith("error:") and "nope" in bad.stderr


E = rng0.normal(size=(C, NW)).astype(np.float32)  # a class embedding of the conditional twin


def _conditional_mapping(path, kind: str):
    """onnx.helper twin of ``w = tanh(z A + a + E[c])``: ``c`` an int64 index [B] or a float one-hot [B, C]."""
    from onnx import TensorProto, helper

    f = TensorProto.FLOAT
    if kind == "index":
        nodes = [helper.make_node("Gather", ["E", "c"], ["e"], axis=0)]
        cin = helper.make_tensor_value_info("c", TensorProto.INT64, ["batch"])
    else:
        nodes = [helper.make_node("MatMul", ["c", "E"], ["e"])]
        cin = helper.make_tensor_value_info("c", f, ["batch", C])
    nodes = [helper.make_node("MatMul", ["z", "A"], ["za"]), helper.make_node("Add", ["za", "a"], ["zb"])] + nodes + [
        helper.make_node("Add", ["zb", "e"], ["ze"]), helper.make_node("Tanh", ["ze"], ["w"])]
    return _save(nodes, [helper.make_tensor_value_info("z", f, ["batch", NZ]), cin],
                 [helper.make_tensor_value_info("w", f, ["batch", NW])], {"A": A, "a": a, "E": E}, path)


@pytest.mark.parametrize("kind", ["index", "onehot"])
def test_a_class_conditional_mapping_draws_its_class_from_the_last_coordinates(tmp_path, kind):
    m = _conditional_mapping(tmp_path / "cm.onnx", kind)
    _, s, q = twin_models(tmp_path)
    out = tmp_path / "b"
    done = subprocess.run([sys.executable, "-m", "corrkit.cli", "bundle", "create", "--mapping", str(m), "--synthesis",
                           str(s), "--classifier", str(q), "--class-input", "c", "--out", str(out)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    b = load_bundle(out)
    assert b.latent_dim == NZ + C and b.style.class_input == "c" and b.style.cond_kind == kind
    assert json.loads((out / "bundle.json").read_text())["style"]["class_input"] == {"name": "c", "classes": C,
                                                                                   "kind": kind}
    zc = np.random.default_rng(3).standard_normal((500, NZ + C)).astype(np.float32)
    want_w = np.tanh(zc[:, :NZ] @ A + a + E[zc[:, NZ:].argmax(1)])
    got_w = b.in_space(Space("w")).draw(np.random.default_rng(3), 500)
    np.testing.assert_allclose(got_w, want_w, rtol=1e-5, atol=1e-6)
    assert np.bincount(zc[:, NZ:].argmax(1), minlength=C).min() > 500 / C * 0.7  # every class drawn
    view = b.in_space(Space("w+", 1.0, ((0, 2),)))
    dirs, normalize = space_directions(view, None)
    r = apcr(view, directions=dirs, normalize_directions=normalize, samples_per_class=4, steps=1, threshold=0.4)
    ref = apcr_from_grid(grid_probs(lambda c: np_probs_ws(c.reshape(-1, L, NW)), r.latents, r.directions, 1,
                                    1.0), r.labels, C, 1)
    have = r.counts > 0
    np.testing.assert_allclose(r.apcr[:, have], ref["apcr"][:, have], rtol=1e-5, atol=1e-7)
    from corrkit._core.engine import Engine

    z_probs = Engine(b, device="cpu", autotune=False).probabilities(zc[:8])  # Z: the class coordinates ride along
    np.testing.assert_allclose(z_probs, np_probs_ws(np.repeat(want_w[:8, None], L, axis=1)), rtol=1e-5, atol=1e-6)


def test_by_layer_rows_are_labelled_with_their_layer_group(twin):
    from corrkit.viz.tables import direction_labels

    view = twin.in_space(Space("w+", 1.0, ((0, 1), (2,)), True))
    dirs, normalize = space_directions(view, None)
    r = apcr(view, directions=dirs, normalize_directions=normalize, samples_per_class=2, steps=1, threshold=0.3)
    assert direction_labels(r) == [f"{i}@L0-1" for i in range(NW)] + [f"{i}@L2" for i in range(NW)]
    plain = apcr(twin.in_space(Space("w")), samples_per_class=2, steps=1, threshold=0.3)
    assert direction_labels(plain) == [str(i) for i in range(NW)]
