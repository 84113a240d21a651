"""corrkit.methods.ganspace: PCA of an activation, regressed back to the latent (Härkönen et al. 2020).

The known answer: a linear generator ``x = U diag(s) Vᵀ z`` with distinct ``s``. Its activations
have covariance ``U diag(s²) Uᵀ``, so the principal components are ``U``'s columns with
coordinates ``s_k v_kᵀ z``, and regressing ``z`` on them gives ``v_k``: the top-k directions
must be ``V``'s top-k columns, explained variance ``s_k² / Σ s²``.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from corrkit.cli.main import app
from corrkit.errors import BundleError, CorrkitError
from corrkit.methods.compare import load_directions
from corrkit.methods.ganspace import default_layer, ganspace
from tests.user_models import pair

runner = CliRunner()
S = np.array([5.0, 4.0, 3.0, 2.5, 2.0, 1.5, 1.0, 0.5])  # distinct singular values, descending


def linear_generator(path, n=8, m=12, seed=0, tanh=False):
    """``x = U diag(S) Vᵀ z`` (as ``z [B, n] @ V diag(S) Uᵀ``), optionally followed by a Tanh; returns V."""
    rng = np.random.default_rng(seed)
    u = np.linalg.qr(rng.normal(size=(m, n)))[0]
    v = np.linalg.qr(rng.normal(size=(n, n)))[0]
    w = (v * S[:n]) @ u.T  # [n, m]
    nodes = [helper.make_node("MatMul", ["z", "W"], ["x" if not tanh else "h"], name="first")]
    if tanh:
        nodes.append(helper.make_node("Tanh", ["h"], ["x"], name="act"))
    graph = helper.make_graph(nodes, "linear_g", [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["b", n])],
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", m])],
                              [numpy_helper.from_array(w.astype(np.float32), "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return v


def test_linear_generator_recovers_v(tmp_path):
    v = linear_generator(tmp_path / "g.onnx")
    r = ganspace(tmp_path / "g.onnx", samples=4000, seed=1)
    assert r.directions.shape == (8, 8) and r.directions.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(r.directions, axis=1), 1, atol=1e-6)
    cos = np.abs(np.sum(r.directions[:4].astype(np.float64) * v[:, :4].T, axis=1))
    assert (cos > 0.99).all(), cos
    # explained variance: s_k² / Σ s², estimated from 4000 codes
    np.testing.assert_allclose(r.explained_variance, S**2 / (S**2).sum(), rtol=0.1)
    assert np.all(np.diff(r.explained_variance) <= 0)
    assert "MatMul 'first'" in r.layer
    # seeded: the same seed gives the same directions, another seed nearly the same subspace
    assert np.array_equal(r.directions, ganspace(tmp_path / "g.onnx", samples=4000, seed=1).directions)


def test_deeper_layer_and_bad_layers(tmp_path):
    v = linear_generator(tmp_path / "g.onnx", tanh=True)
    model = onnx.load(str(tmp_path / "g.onnx"))
    assert default_layer(model)[0] == "h"  # the first layer after the latent, not the graph's output
    r = ganspace(tmp_path / "g.onnx", samples=3000, layer="x", components=3)
    assert r.directions.shape == (3, 8) and r.layer.startswith("x ")
    # tanh of a spread-out linear map keeps the leading direction on top
    assert abs(float(r.directions[0] @ v[:, 0])) > 0.9
    with pytest.raises(BundleError, match="not a tensor"):
        ganspace(tmp_path / "g.onnx", samples=100, layer="nope")
    with pytest.raises(BundleError, match="an input or a weight"):
        ganspace(tmp_path / "g.onnx", samples=100, layer="W")
    with pytest.raises(CorrkitError, match="--components"):
        ganspace(tmp_path / "g.onnx", samples=100, components=50)


def test_latent_feeding_two_nodes_asks_for_a_layer(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Relu", ["z"], ["a"]), helper.make_node("Neg", ["z"], ["b"]),
         helper.make_node("Add", ["a", "b"], ["x"])], "two",
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["b", 4])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "two.onnx"))
    with pytest.raises(BundleError, match="--layer"):
        ganspace(tmp_path / "two.onnx", samples=100)
    assert ganspace(tmp_path / "two.onnx", samples=200, layer="x").directions.shape == (4, 4)


def test_cli_builtin_bundle_writes_sefa_format(tmp_path):
    out = tmp_path / "gs.npz"
    r = runner.invoke(app, ["ganspace", "--samples", "300", "--components", "20", "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.output)
    assert s["n_directions"] == 20 and s["layer"].startswith("/l1/Gemm_output_0")
    d, extra = load_directions(out)  # compare's reader: no warning, no stray scalars
    assert d.shape == (20, 100) and extra == {}
    with np.load(out) as f:
        assert f["explained_variance"].shape == (20,) and str(f["layer"][0]) == s["layer"]


def test_cli_user_pair_and_compare_reads_it(tmp_path):
    p = pair(tmp_path / "m")  # torch's default export: fixed batch 4, external data, opset 20
    out = tmp_path / "gs.npz"
    r = runner.invoke(app, ["ganspace", str(p.generator), "--samples", "500", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "Gemm" in r.output and "wrote" in r.output
    d = np.load(out)["directions"].astype(np.float64)
    # The same recipe in NumPy on the pair's own weights (its first layer, a Gemm: y = z W1 + b1), same codes:
    # the ONNX path (fixed batch 4 fed in chunks, external data) must give the same directions.
    z = np.random.default_rng(0).standard_normal((500, 16)).astype(np.float32)
    y = z.astype(np.float64) @ p.weights["W1"] + p.weights["b1"]
    y -= y.mean(0)
    _, sv, vt = np.linalg.svd(y, full_matrices=False)
    sv, vt = sv[:16], vt[:16]  # y has rank 16: the latent size is the default K
    x = y @ vt.T / (sv / np.sqrt(len(y) - 1))
    m = np.linalg.lstsq(x, z.astype(np.float64), rcond=None)[0]
    ref = m / np.linalg.norm(m, axis=1, keepdims=True)
    cos = np.abs(np.sum(d * ref, axis=1))
    assert d.shape == (16, 16) and (cos > 0.999).all(), cos
    r = runner.invoke(app, ["compare", "--generator", str(p.generator), "--classifier", str(p.classifier),
                            "--output", "logits", "--directions", f"gs={out}", "--no-sefa", "--no-ganspace",
                            "--no-interfacegan", "--samples-per-class", "2", "--steps", "1", "--device", "cpu",
                            "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.output)
    assert set(s["methods"]) == {"coordinate", "random", "gs"} and s["methods"]["gs"]["n_directions"] == 16


@pytest.mark.parametrize("argv, what", [
    (["--samples", "1"], "--samples"), (["--components", "0"], "--components"),
    (["--layer", "no_such_tensor"], "not a tensor"), (["--samples", "100", "--components", "200"], "--components"),
])
def test_cli_bad_input_is_one_error_line(argv, what):
    r = runner.invoke(app, ["ganspace", *argv])
    assert r.exit_code == 1, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and what in lines[0], r.stderr
