"""corrkit.methods.sefa (SPEC §7): reading the first layer from ONNX, the factorisation, the CLI.

Torch-exported generators are checked against a NumPy SeFa written here from the
torch modules' own weights, so an error in reading the ONNX graph shows up.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from corrkit._core.bundle import builtin_path
from corrkit.errors import BundleError
from corrkit.methods.sefa import first_linear_map, sefa

N = 100  # latent size of the exported test generators


def reference_sefa(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SeFa from scratch: eigenvalues descending [N], eigenvectors as rows [N, N] (signs arbitrary)."""
    a = np.asarray(a, dtype=np.float64)
    a = a / np.sqrt((a * a).sum(axis=1))[:, None]
    values, vectors = np.linalg.eigh(a.T @ a)
    return values[::-1], vectors[:, ::-1].T


def check_against_reference(result, a: np.ndarray) -> None:
    d = result.directions.astype(np.float64)
    values, vectors = reference_sefa(a)
    assert result.directions.dtype == np.float32 and result.eigenvalues.dtype == np.float64
    assert d.shape == (a.shape[1], a.shape[1])
    np.testing.assert_allclose(d @ d.T, np.eye(len(d)), atol=1e-6)
    np.testing.assert_allclose(result.eigenvalues, values, rtol=1e-6)
    # Unit rows: the trace of AᵀA is the number of rows.
    assert result.eigenvalues.sum() == pytest.approx(a.shape[0], rel=1e-9)
    # Eigenvectors are defined up to sign only where the eigenvalue is simple.
    gaps = np.minimum(np.abs(np.diff(values, prepend=np.inf)), np.abs(np.diff(values, append=-np.inf)))
    separated = gaps > 1e-4 * values.max()
    assert separated.sum() >= 0.5 * len(values)  # trained weights have a few near-degenerate pairs
    cos = np.abs((d * vectors).sum(axis=1))
    np.testing.assert_allclose(cos[separated], 1.0, atol=1e-5)
    lead = d[np.arange(len(d)), np.abs(d).argmax(axis=1)]
    assert (lead > 0).all()


# --- generators exported from torch -------------------------------------------------------------

def _torch_cases(torch):
    """name -> (module, latent shape without batch, A [M, N] computed from the module in torch)."""
    nn = torch.nn

    class LinearFirst(nn.Module):  # the built-in DCGAN's head
        def __init__(self):
            super().__init__()
            self.l1 = nn.Linear(N, 128 * 7 * 7)
            self.body = nn.Sequential(nn.BatchNorm2d(128), nn.Upsample(scale_factor=2),
                                      nn.Conv2d(128, 1, 3, padding=1), nn.Tanh())

        def forward(self, z):
            return self.body(self.l1(z).view(z.shape[0], 128, 7, 7))

    class MatMulFirst(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(N, 300))

        def forward(self, z):
            return torch.tanh(z.reshape(z.shape[0], N) @ self.w)

    class PaddedDeconv(nn.Module):  # pads crop the kernel: output 2x2 of a 4x4 kernel
        def __init__(self):
            super().__init__()
            self.up = nn.ConvTranspose2d(N, 64, 4, 1, 1)

        def forward(self, z):
            return torch.relu(self.up(z.view(z.shape[0], N, 1, 1)))

    class SinFirst(nn.Module):
        def __init__(self):
            super().__init__()
            self.l1 = nn.Linear(N, 64)

        def forward(self, z):
            return self.l1(torch.sin(z))

    def padded_map(m):  # A by pushing basis vectors through the layer, not from the weight's layout
        with torch.no_grad():
            eye = torch.eye(N).view(N, N, 1, 1)
            return (m.up(eye) - m.up(torch.zeros(1, N, 1, 1))).reshape(N, -1).double().numpy().T

    deconv = nn.Sequential(nn.ConvTranspose2d(N, 64, 4, 1, 0), nn.BatchNorm2d(64), nn.ReLU(),
                           nn.ConvTranspose2d(64, 1, 4, 2, 1), nn.Tanh())
    conv = nn.Sequential(nn.Conv2d(N, 300, 1), nn.ReLU())
    lin, mm, pad = LinearFirst(), MatMulFirst(), PaddedDeconv()
    w = lambda p: p.detach().double().numpy()  # noqa: E731
    return {
        "linear": (lin, (N,), w(lin.l1.weight)),
        "convtranspose": (deconv, (N, 1, 1), w(deconv[0].weight).reshape(N, -1).T),
        "matmul": (mm, (N,), w(mm.w).T),
        "conv1x1": (conv, (N, 1, 1), w(conv[0].weight)[:, :, 0, 0]),
        "padded_convtranspose": (pad, (N,), padded_map(pad)),
        "sin": (SinFirst(), (N,), None),
    }


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """name -> (generator.onnx path, expected A or None); exported once for the module."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("sefa_generators")
    out = {}
    for name, (module, shape, a) in _torch_cases(torch).items():
        path = folder / f"{name}.onnx"
        with warnings.catch_warnings():  # the legacy exporter's deprecation notice
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(module.eval(), (torch.randn(2, *shape),), str(path), dynamo=False,
                              opset_version=17,
                              input_names=["z"], output_names=["image"],
                              dynamic_axes={"z": {0: "batch"}, "image": {0: "batch"}})
        out[name] = (path, a)
    return out


LINEAR_CASES = {"linear": "Gemm", "convtranspose": "ConvTranspose", "matmul": "MatMul", "conv1x1": "Conv",
                "padded_convtranspose": "ConvTranspose"}


@pytest.mark.parametrize("name", list(LINEAR_CASES))
def test_first_linear_map_reads_torch_weight(exported, name):
    path, expected = exported[name]
    a, layer = first_linear_map(onnx.load(str(path)))
    assert layer.startswith(LINEAR_CASES[name] + " ")
    assert a.dtype == np.float64 and a.shape == expected.shape
    np.testing.assert_allclose(a, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", list(LINEAR_CASES))
def test_sefa_matches_numpy_reference(exported, name):
    path, expected = exported[name]
    check_against_reference(sefa(path), expected)


def test_no_linear_first_layer_names_what_it_found(exported):
    with pytest.raises(BundleError, match=r"latent input 'z' feeds Sin -> Gemm.*Gemm/MatMul/ConvTranspose/Conv"):
        sefa(exported["sin"][0])


# --- hand-built graphs: Gemm attributes, Constant weights, errors (no torch) --------------------

def _model(nodes, initializers=(), n=6):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", n])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _const(name, array):
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(array.astype(np.float32)))


W = np.random.default_rng(0).standard_normal((9, 6)).astype(np.float32)  # [M, N]


@pytest.mark.parametrize("nodes, expected", [
    # torch Linear: z @ Wᵀ, weight a Constant node, alpha scales the map
    ([_const("w", W), helper.make_node("Gemm", ["z", "w"], ["y"], transB=1, alpha=2.0)], 2 * W),
    ([_const("w", W.T), helper.make_node("Gemm", ["z", "w"], ["y"])], W),
    # latent as the second operand: W @ zᵀ and (Wᵀ)ᵀ @ zᵀ
    ([_const("w", W), helper.make_node("Gemm", ["w", "z"], ["y"], transB=1)], W),
    ([_const("w", W.T), helper.make_node("Gemm", ["w", "z"], ["y"], transA=1, transB=1)], W),
    # reached through Flatten and Identity
    ([helper.make_node("Flatten", ["z"], ["f"]), helper.make_node("Identity", ["f"], ["i"]), _const("w", W.T),
      helper.make_node("MatMul", ["i", "w"], ["y"])], W),
], ids=["transB_alpha", "plain", "latent_second", "latent_second_transA", "flatten_identity_matmul"])
def test_gemm_and_matmul_layouts(nodes, expected):
    a, _ = first_linear_map(_model(nodes))
    np.testing.assert_allclose(a, expected, rtol=1e-6)


def test_initializer_weight_and_description():
    m = _model([helper.make_node("Gemm", ["z", "fc.weight"], ["y"], transB=1, name="fc")],
               [numpy_helper.from_array(W, "fc.weight")])
    a, layer = first_linear_map(m)
    np.testing.assert_array_equal(a, W.astype(np.float64))
    assert layer == "Gemm 'fc' (weight 'fc.weight'): A [9, 6]"


@pytest.mark.parametrize("nodes, message", [
    ([_const("w", W.T), helper.make_node("Gemm", ["z", "w"], ["y"], transA=1)], "mixes the latent across the batch"),
    ([helper.make_node("Relu", ["z"], ["r"]), _const("w", W.T), helper.make_node("MatMul", ["r", "w"], ["y"])],
     "feeds Relu -> MatMul;"),
    ([_const("w", W.T), helper.make_node("MatMul", ["z", "w"], ["m"]), helper.make_node("Add", ["m", "z"], ["y"])],
     "feeds Add, MatMul;"),  # a skip connection around the first layer
    ([helper.make_node("MatMul", ["z", "z2"], ["y"]), helper.make_node("Relu", ["z"], ["z2"])],
     "feeds Relu"),
    ([helper.make_node("Relu", ["x"], ["y"])], "feeds nothing"),
])
def test_unreadable_first_layer_raises(nodes, message):
    with pytest.raises(BundleError, match=message):
        first_linear_map(_model(nodes))


def test_weight_computed_at_runtime_is_refused():
    nodes = [helper.make_node("Relu", ["w0"], ["w"]), helper.make_node("MatMul", ["z", "w"], ["y"])]
    with pytest.raises(BundleError, match="not a constant weight"):
        first_linear_map(_model(nodes, [numpy_helper.from_array(W.T, "w0")]))


# --- the built-in bundle -------------------------------------------------------------------------

@pytest.mark.skipif(not (builtin_path() / "generator.onnx").is_file(), reason="no built-in generator")
def test_builtin_generator():
    result = sefa()  # None: the built-in bundle
    assert result.layer.startswith("Gemm ")
    model = onnx.load(str(builtin_path() / "generator.onnx"))
    weight = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}["l1.weight"]  # torch [M, N]
    check_against_reference(result, weight)


# --- CLI -----------------------------------------------------------------------------------------

def test_cli_writes_npz_and_json(exported, tmp_path):
    from corrkit.cli.main import app

    path = exported["convtranspose"][0]
    out = tmp_path / "dirs.npz"
    res = CliRunner().invoke(app, ["sefa", str(path), "--out", str(out), "--json", "--top", "3"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    expected = sefa(path)
    with np.load(out) as saved:
        assert set(saved.files) == {"directions", "eigenvalues"}
        assert saved["directions"].shape == (N, N) and saved["eigenvalues"].shape == (N,)
        np.testing.assert_array_equal(saved["directions"], expected.directions)
        np.testing.assert_array_equal(saved["eigenvalues"], expected.eigenvalues)
    assert summary["n_directions"] == N and summary["out"] == str(out) and summary["layer"] == expected.layer
    np.testing.assert_allclose(summary["eigenvalues"], expected.eigenvalues[:3])


def test_cli_table(exported):
    from corrkit.cli.main import app

    res = CliRunner().invoke(app, ["sefa", str(exported["linear"][0]), "--top", "4"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.strip().splitlines()
    assert lines[0].startswith("Gemm ") and len(lines) == 1 + 4


@pytest.mark.parametrize("make", [lambda p: p.write_text("not a model"), lambda p: p.mkdir()],
                         ids=["not_onnx", "folder_without_card"])
def test_cli_bad_model_is_one_line_error(tmp_path, make):
    from corrkit.cli.main import app

    bad = tmp_path / "bad.onnx"
    make(bad)
    res = CliRunner().invoke(app, ["sefa", str(bad)])
    assert res.exit_code == 1
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(bad) in lines[0]


def test_sefa_stays_torch_free_and_help_runs():
    code = ("import sys; import corrkit.methods.sefa, corrkit.cli.sefa; from corrkit.cli.main import app; "
            "assert 'torch' not in sys.modules; sys.argv = ['corrkit', 'sefa', '--help']; app()")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "--out" in res.stdout and "--top" in res.stdout
