"""corrkit.export.convert: a bundle's ONNX models as torch modules, checked, and the torch commands on user bundles."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
if importlib.util.find_spec("onnx2torch") is None:  # not importorskip: it imports torchvision, convert does not
    pytest.skip("onnx2torch is not installed (extra `train`)", allow_module_level=True)

from torch import nn  # noqa: E402

from corrkit._core.bundle import from_pair, load_bundle  # noqa: E402
from corrkit._core.engine import generate  # noqa: E402
from corrkit.cli.main import app  # noqa: E402
from corrkit.errors import BundleError  # noqa: E402
from corrkit.export import convert  # noqa: E402
from corrkit.export.weights import MATCH_ATOL  # noqa: E402
from tests import user_models as um  # noqa: E402
from tests.test_user_models import CONVENTIONS, invoke, rtol, runner  # noqa: E402


def _fresh(bundle, n=13, seed=7):
    return np.random.default_rng(seed).standard_normal((n, bundle.latent_dim)).astype(np.float32)


def _max_diff_generator(G, bundle) -> float:
    z = _fresh(bundle)
    with torch.no_grad():
        got = G(torch.from_numpy(z)).numpy()
    want = generate(bundle, z, raw=True)
    return float(np.abs(got.reshape(want.shape) - want).max())


def _max_diff_classifier(Q, bundle) -> float:
    from corrkit._core.conventions import cpu_session, run_rows

    x = np.random.default_rng(3).uniform(-1, 1, (11, *bundle.image_shape)).astype(np.float32)
    with torch.no_grad():
        got = Q(torch.from_numpy(x)).numpy()
    return float(np.abs(got - run_rows(cpu_session(bundle.runnable_classifier()), x)).max())


class DCGAN(nn.Module):  # z [B, N, 1, 1] -> RGB, ConvTranspose + BatchNorm, as DCGAN's generator
    def __init__(self, n=um.N, size=32):
        super().__init__()
        layers, c = [nn.ConvTranspose2d(n, 16, 4, 1, 0, bias=False), nn.BatchNorm2d(16), nn.ReLU()], 16
        s = 4
        while s < size // 2:
            layers += [nn.ConvTranspose2d(c, c // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(c // 2), nn.ReLU()]
            c, s = c // 2, s * 2
        layers += [nn.ConvTranspose2d(c, 3, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z):
        return self.net(z)


class Linear(nn.Module):  # z [B, N] -> grey 16x16 through a view with the batch baked in
    def __init__(self):
        super().__init__()
        self.fc, self.up = nn.Linear(um.N, 4 * 8 * 8), nn.ConvTranspose2d(4, 1, 4, 2, 1)

    def forward(self, z):
        return torch.tanh(self.up(torch.relu(self.fc(z).view(z.shape[0], 4, 8, 8))))


class Classify(nn.Module):
    def __init__(self, channels=1, size=16):
        super().__init__()
        self.c, self.fc = nn.Conv2d(channels, 4, 3, 2, 1), nn.Linear(4 * (size // 2) ** 2, um.C)
        with torch.no_grad():  # confident logits: every class has codes above the threshold
            self.fc.weight.mul_(30.0)

    def forward(self, x):
        return self.fc(torch.relu(self.c(x)).flatten(1))


def _randomise_batch_norms(module):
    g = torch.Generator().manual_seed(1)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):  # running statistics far from (0, 1): eval and train mode differ
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return module.eval()


def _calibrate_batch_norms(module, latent):
    """Running statistics from 256 prior samples, then moved off them (mean by 0.3 std, variance by x0.5-1.5).

    As in a trained DCGAN, the activations are about unit-scale, so the images depend on z (with the default
    running statistics a random DCGAN's pixels vary by 0.003 over the prior and no class set fills), while
    eval and train mode still differ (by ~0.5 on the images).
    """
    g = torch.Generator().manual_seed(1)
    norms = [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average: after one batch, that batch's statistics
    module.train()
    with torch.no_grad():
        module(torch.randn(256, *latent, generator=g))
        for m in norms:
            m.running_mean.add_(0.3 * torch.randn(m.num_features, generator=g) * m.running_var.sqrt())
            m.running_var.mul_(torch.rand(m.num_features, generator=g) + 0.5)
            m.momentum = 0.1
    return module.eval()


def _centre_logits(Q, G, latent):
    """Q's bias set so that its logits average 0 over G's prior images: each class wins about a third of the codes."""
    with torch.no_grad():
        z = torch.randn(256, *latent, generator=torch.Generator().manual_seed(2))
        Q.fc.bias.sub_(Q(G(z)).mean(0))
    return Q


def _export_pair(folder, G, Q, latent, image, **export):
    """Both modules exported the way a user does: ``torch.onnx.export`` with its defaults (opset 20, batch 4
    baked in, external data), then ``corrkit bundle create``."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(G, (torch.randn(4, *latent),), str(folder / "G.onnx"), **export)
    torch.onnx.export(Q, (torch.randn(4, *image),), str(folder / "Q.onnx"), **export)
    invoke("bundle", "create", "--generator", folder / "G.onnx", "--classifier", folder / "Q.onnx",
           "--out", folder / "b")
    return load_bundle(folder / "b")


@pytest.fixture(scope="module")
def dcgan_bundle(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("dcgan")
    G = _calibrate_batch_norms(DCGAN(), (um.N, 1, 1))
    Q = _centre_logits(Classify(3, 32).eval(), G, (um.N, 1, 1))
    b = _export_pair(folder, G, Q, (um.N, 1, 1), (3, 32, 32))
    return b, G, Q


@pytest.fixture(scope="module")
def linear_bundle(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("linear")
    G, Q = Linear().eval(), Classify().eval()
    b = _export_pair(folder, G, Q, (um.N,), (1, 16, 16))
    return b, G, Q


def test_builtin_bundle_converts_to_its_shipped_torch_modules():
    from corrkit.export.weights import load_modules

    b = load_bundle(None)
    G, Q = convert.torch_generator(b), convert.torch_classifier(b)
    assert not G.training and not any(p.requires_grad for p in G.parameters())
    g0, q0 = load_modules()
    z = torch.from_numpy(_fresh(b, 16))
    with torch.no_grad():
        x = g0(z)
        assert float((G(z) - x).abs().max()) <= MATCH_ATOL  # its one BatchNormalization in eval mode
        assert float((Q(x) - q0(x)).abs().max()) <= MATCH_ATOL
    assert _max_diff_generator(G, b) <= MATCH_ATOL


def test_converted_in_training_mode_would_be_another_function():
    """What the previous attempt saw (max |diff| 1.78): onnx2torch's module comes back in training mode."""
    b = load_bundle(None)
    raw = convert._onnx2torch().convert(convert.for_converter(b.runnable_generator()))
    assert raw.training
    z = _fresh(b, 8)
    with torch.no_grad():
        diff = np.abs(raw(torch.from_numpy(z)).numpy() - generate(b, z, raw=True)).max()
    assert diff > 0.5


@pytest.mark.parametrize("form", ["default", "symbolic", "nchw", "fp16", "names", "softmax", "range01", "rgb",
                                  "opset17"])
def test_user_pair_conventions_convert_within_match_atol(tmp_path, form):
    kw = {"default": {}, "symbolic": dict(batch=None), "nchw": dict(nchw_latent=True), "fp16": dict(fp16=True),
          "names": dict(names=("latent", "img", "inp", "out")), "softmax": dict(softmax=True),
          "range01": dict(generator_range=(0.0, 1.0)), "rgb": dict(image=(3, 8, 8)),
          "opset17": dict(opset=17, external=False)}[form]
    p = um.pair(tmp_path, **kw)
    b = from_pair(p.generator, p.classifier, generator_output_range=p.generator_range)
    G, Q = convert.torch_generator(b), convert.torch_classifier(b)
    assert _max_diff_generator(G, b) <= MATCH_ATOL
    assert _max_diff_classifier(Q, b) <= MATCH_ATOL
    z = _fresh(b, 5)
    with torch.no_grad():  # and the pair's independent NumPy twin
        np.testing.assert_allclose(G(torch.from_numpy(z)).numpy().reshape(5, -1), p.images(z).reshape(5, -1),
                                   atol=1e-4 if form == "fp16" else 1e-5)


def test_torch_default_exports_convert(dcgan_bundle, linear_bundle):
    for b, G0, Q0 in (dcgan_bundle, linear_bundle):
        G, Q = convert.torch_generator(b), convert.torch_classifier(b)
        assert _max_diff_generator(G, b) <= MATCH_ATOL and _max_diff_classifier(Q, b) <= MATCH_ATOL
        z = _fresh(b, 6)
        with torch.no_grad():  # the user's own torch modules, up to the exporter's batch-norm folding
            want = G0(torch.from_numpy(z).reshape(6, *([b.latent_dim, 1, 1] if isinstance(G0, DCGAN) else [-1])))
            assert float((G(torch.from_numpy(z)) - want).abs().max()) <= MATCH_ATOL
    assert dcgan_bundle[0].image_shape == (3, 32, 32)


def test_converted_module_pickles_into_a_fresh_process(linear_bundle):
    import pickle
    import subprocess
    import sys

    G = convert.torch_generator(linear_bundle[0])
    z = torch.from_numpy(_fresh(linear_bundle[0], 3))
    with torch.no_grad():
        want = G(z).numpy()
    code = ("import pickle, sys, numpy as np, torch; G = pickle.loads(sys.stdin.buffer.read()); "
            f"z = torch.from_numpy(np.asarray({z.numpy().tolist()}, np.float32)); "
            "sys.stdout.write(repr(G(z).detach().numpy().ravel().tolist()))")
    out = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(G), capture_output=True, check=True)
    np.testing.assert_allclose(np.asarray(eval(out.stdout)), want.ravel(), atol=1e-6)


def _bicubic_generator(tmp_path):
    """A generator whose Resize is cubic with coefficient -0.5 (TensorFlow's): torch's bicubic uses -0.75, so
    onnx2torch's conversion computes another function."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Gemm", ["z", "W", "b"], ["h"]), helper.make_node("Reshape", ["h", "shape"], ["r"]),
             helper.make_node("Resize", ["r", "", "scales"], ["u"], mode="cubic", cubic_coeff_a=-0.5),
             helper.make_node("Tanh", ["u"], ["img"])]
    init = [numpy_helper.from_array(rng.normal(0, 0.6, (um.N, 64)).astype(np.float32), "W"),
            numpy_helper.from_array(np.zeros(64, np.float32), "b"),
            numpy_helper.from_array(np.array([-1, 1, 8, 8], np.int64), "shape"),
            numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", um.N])],
                          [helper.make_tensor_value_info("img", TensorProto.FLOAT, ["batch", 1, 16, 16])], init)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(tmp_path / "G.onnx"))
    return tmp_path / "G.onnx"


def test_a_conversion_that_computes_another_function_is_one_error_line(tmp_path, linear_bundle):
    gen = _bicubic_generator(tmp_path)
    q = linear_bundle[0].classifier
    with pytest.raises(BundleError, match=r"max \|torch - onnx\| = [0-9.e-]+ > 0.0001") as err:
        convert.torch_generator(from_pair(gen, q))
    assert "\n" not in str(err.value)
    r = runner.invoke(app, ["export", "discover", "--generator", str(gen), "--classifier", str(q), "--steps", "1",
                            "--out", str(tmp_path / "vb")])
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert r.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error: torch and ONNX disagree")


def test_export_optimize_on_a_user_bundle(tmp_path, linear_bundle):
    b = linear_bundle[0]
    out = tmp_path / "w.npz"
    summary = json.loads(invoke("export", "optimize", b.path, "--iterations", "3", "--samples-per-class", "4",
                                "--batch-size", "4", "--out", out, "--json"))
    w = np.load(out)
    assert w["w"].shape == (um.C, um.N) and np.isfinite(w["w"]).all()
    assert summary["settings"]["torch_vs_onnx_max_abs_diff"] <= MATCH_ATOL


def test_export_discover_on_user_bundles(tmp_path, linear_bundle):
    b = linear_bundle[0]
    invoke("export", "discover", "--generator", b.generator, "--classifier", b.classifier, "--steps", "3",
           "--eval-samples", "16", "--workers", "1", "--threads", "1", "--out", tmp_path / "vb")
    d = np.load(tmp_path / "vb" / "directions.npz")
    assert d["directions"].shape[1] == um.N and np.isfinite(d["directions"]).all()


def test_discover_at_64px_trains_the_resnet_reconstructor(tmp_path):
    from corrkit.export.discover import DiscoverSettings, discover
    from corrkit.export.discover.modules import Reconstructor, ResNetReconstructor, reconstructor
    from corrkit.export.discover.train import train_method

    torch.manual_seed(0)
    folder = tmp_path / "m"
    b = _export_pair(folder, _randomise_batch_norms(DCGAN(size=64)), Classify(3, 64).eval(), (um.N, 1, 1),
                     (3, 64, 64))
    assert b.image_shape == (3, 64, 64)
    G = convert.torch_generator(b)
    assert isinstance(reconstructor(4, (3, 64, 64)), ResNetReconstructor)
    assert isinstance(reconstructor(4, (1, 28, 28)), Reconstructor)
    s = DiscoverSettings(steps=2, eval_samples=8, eval_batch=8, batch_size=4, workers=1, threads=1,
                         n_directions=4, bf16=False)
    t = train_method(G, b.latent_dim, s, "learned", log=lambda m: None)
    assert isinstance(t.R, ResNetReconstructor)
    with torch.no_grad():
        logits, eps = t.R(torch.zeros(5, 3, 64, 64), torch.zeros(5, 3, 64, 64))
    assert logits.shape == (5, 4) and eps.shape == (5,)
    r = discover(G, b.latent_dim, s, tmp_path / "vb", log=lambda m: None)
    assert r.directions.shape == (4, um.N) and 0 <= r.rca <= 1


def test_export_invert_on_a_user_bundle(tmp_path, dcgan_bundle):
    b = dcgan_bundle[0]
    z = _fresh(b, 2 * um.C, seed=11)
    x = generate(b, z, raw=True)  # images the generator can make, in its range, 2 per class
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.repeat(np.arange(um.C), 2))
    summary = json.loads(invoke("export", "invert", b.path, "--images", tmp_path / "x.npy", "--labels",
                                tmp_path / "y.npy", "--steps", "4", "--explore-steps", "2", "--restarts", "2",
                                "--pool", "16", "--no-bf16", "--out", tmp_path / "inv", "--json"))
    codes = np.load(tmp_path / "inv" / "codes.npy")
    assert codes.shape == (2 * um.C, um.N) and np.isfinite(codes).all()
    assert np.load(tmp_path / "inv" / "labels.npy").tolist() == np.repeat(np.arange(um.C), 2).tolist()
    assert summary["n_images"] == 2 * um.C and summary["recon_error_mean"] <= summary["start_error_mean"]
    assert not (tmp_path / "inv" / "indices.npy").exists()
    # refused in one line: images of another shape, images outside the range, no images for a user bundle
    np.save(tmp_path / "bad.npy", x[:, :1])
    for extra, words in ((["--images", tmp_path / "bad.npy"], "--images must be [n, 3, 32, 32]"),
                         ([], "give the images to invert")):
        r = runner.invoke(app, ["export", "invert", str(b.path), *map(str, extra), "--out", str(tmp_path / "o")])
        lines = [line for line in r.output.splitlines() if line.strip()]
        assert r.exit_code == 1 and len(lines) == 1 and words in lines[0], r.output
    np.save(tmp_path / "far.npy", x * 255)
    r = runner.invoke(app, ["export", "invert", str(b.path), "--images", str(tmp_path / "far.npy"), "--out",
                            str(tmp_path / "o")])
    assert r.exit_code == 1 and "outside the generator's output range" in r.output


@pytest.fixture(scope="module", params=list(CONVENTIONS), ids=list(CONVENTIONS))
def user_bundle(request, tmp_path_factory):
    """Each convention of tests/test_user_models.py: its pair and the bundle `corrkit bundle create` makes of it."""
    root = tmp_path_factory.mktemp("export_" + request.param)
    p = um.pair(root / "export", **CONVENTIONS[request.param])
    lo, hi = p.generator_range
    invoke("bundle", "create", "--generator", p.generator, "--classifier", p.classifier, "--out", root / "bundle",
           "--generator-range", f"{lo:g},{hi:g}", "--classes", "a,b,c")
    return request.param, p, load_bundle(root / "bundle")


def test_export_optimize_takes_the_exact_first_step_on_every_convention(user_bundle, tmp_path):
    name, p, b = user_bundle
    G, Q = convert.torch_generator(b), convert.torch_classifier(b)  # as loaded: fixed batch, [B, N, 1, 1], fp16
    assert _max_diff_generator(G, b) <= MATCH_ATOL and _max_diff_classifier(Q, b) <= MATCH_ATOL
    s = json.loads(invoke("export", "optimize", b.path, "--iterations", "1", "--samples-per-class", "2",
                          "--out", tmp_path / "w.npz", "--json"))
    assert s["settings"]["torch_vs_onnx_max_abs_diff"] <= MATCH_ATOL and s["counts"] == [2, 2, 2]
    w = np.load(tmp_path / "w.npz")
    assert w["w"].shape == (um.C, um.N) and w["loss"].shape == (um.C, 1)
    # the objective at v_init and one step along its gradient (central differences of the user's files in raw
    # onnxruntime sessions, h = 1e-3: a few 1e-6 of w from the autograd step on fp32 models)
    loss, w1 = um.first_step(p.onnxruntime_probabilities, um.class_sets(p.onnxruntime_probabilities, 2))
    np.testing.assert_allclose(w["loss"][:, 0], loss, rtol=rtol(name, 1e-5), atol=1e-6)
    if not CONVENTIONS[name].get("fp16"):  # fp16 sessions' rounding swamps a difference quotient
        np.testing.assert_allclose(w["w"], w1, atol=2e-5)
    assert not np.allclose(w["w"], np.tanh(0.5), atol=1e-4)  # it moved


def test_export_discover_on_every_convention(user_bundle, tmp_path):
    name, p, b = user_bundle
    s = json.loads(invoke("export", "discover", b.path, "--steps", "2", "--eval-samples", "16", "--directions", "4",
                          "--workers", "1", "--threads", "1", "--no-bf16", "--out", tmp_path / "vb", "--json"))
    d = np.load(tmp_path / "vb" / "directions.npz")["directions"]
    assert d.shape == (4, um.N) and np.isfinite(d).all() and s["n_directions"] == 4 and s["latent_dim"] == um.N
    assert all(0 <= s[k] <= 1 for k in ("rca", "rca_random", "rca_coordinate")) and s["chance"] == 0.25


def test_export_invert_on_every_convention(user_bundle, tmp_path):
    name, p, b = user_bundle
    z = _fresh(b, 2 * um.C, seed=11)
    x = p.images(z).astype(np.float32)  # the NumPy twin's images, in the generator's own range
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.repeat(np.arange(um.C), 2))
    s = json.loads(invoke("export", "invert", b.path, "--images", tmp_path / "x.npy", "--labels", tmp_path / "y.npy",
                          "--steps", "4", "--explore-steps", "2", "--restarts", "2", "--pool", "16", "--no-bf16",
                          "--out", tmp_path / "inv", "--json"))
    codes, err = np.load(tmp_path / "inv" / "codes.npy"), np.load(tmp_path / "inv" / "recon_error.npy")
    assert codes.shape == (2 * um.C, um.N) and np.isfinite(codes).all() and s["n_images"] == 2 * um.C
    assert s["recon_error_mean"] <= s["start_error_mean"]
    assert s["objective"].endswith(f"generator's units {list(map(float, p.generator_range))}")
    want = ((p.images(codes) - x) ** 2).reshape(len(x), -1).mean(1)  # mean squared pixel error of G(z*), by the twin
    np.testing.assert_allclose(err, want, rtol=rtol(name, 1e-4), atol=1e-3 if CONVENTIONS[name].get("fp16") else 1e-6)


def test_a_torch_default_dcgan_export_through_the_commands(dcgan_bundle, tmp_path):
    """``torch.onnx.export``'s defaults on a DCGAN (z [4, N, 1, 1] baked in, BatchNorm, opset 20, external data),
    against the user's own torch modules."""
    from tests import naive
    from tests.test_user_models import TINY

    b, G0, Q0 = dcgan_bundle

    def torch_probs(z):
        with torch.no_grad():
            z = torch.from_numpy(np.asarray(z, np.float32)).reshape(len(z), um.N, 1, 1)
            return torch.softmax(Q0(G0(z)), 1).double().numpy()

    files = um.Pair(b.path.parent / "G.onnx", b.path.parent / "Q.onnx", {}, (3, 32, 32))  # the user's [4, N, 1, 1]
    invoke("apcr", b.path, *TINY, "--out", tmp_path / "run")
    d = np.load(tmp_path / "run" / "apcr.npz")
    assert d["counts"].tolist() == [2, 2, 2]
    for probs, tol in ((files.onnxruntime_probabilities, 1e-5), (torch_probs, 1e-3)):  # torch: up to BN folding
        want = naive.apcr_from_grid(naive.grid_probs(probs, d["latents"], d["directions"], 1, 1.0), d["labels"],
                                    um.C, 1)
        np.testing.assert_allclose(d["apcr"], want["apcr"], rtol=tol, atol=1e-7)
    # h = 1e-4: ReLUs make S piecewise linear, and h = 1e-3 steps over kinks (4e-4 off w; 9e-5 at 1e-4)
    loss, w1 = um.first_step(files.onnxruntime_probabilities, um.class_sets(files.onnxruntime_probabilities, 2), h=1e-4)
    for command, extra in (("optimize", ["--perturbations", "2", "--device", "cpu"]), ("export optimize", [])):
        out = tmp_path / (command.replace(" ", "_") + ".npz")
        invoke(*command.split(), b.path, "--iterations", "1", "--samples-per-class", "2", *extra, "--out", out)
        w = np.load(out)
        assert w["w"].shape == (um.C, um.N)
        np.testing.assert_allclose(w["loss"][:, 0], loss, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(w["w"], w1, atol=2e-4)  # the gradient step of `export optimize` (moves ~1e-2)
    c = json.loads(invoke("control", tmp_path / "run", "--weights", out, "--top-k", "3", "--json"))
    assert all(r == len(set(a) & set(o)) / 3 for r, a, o in zip(c["intersection_ratio"]["per_class"],
                                                                 c["sets"]["seq"], c["sets"]["opt"]))
    s = json.loads(invoke("export", "discover", b.path, "--steps", "2", "--eval-samples", "16", "--directions", "4",
                          "--workers", "1", "--threads", "1", "--no-bf16", "--out", tmp_path / "vb", "--json"))
    assert np.load(tmp_path / "vb" / "directions.npz")["directions"].shape == (4, um.N) and 0 <= s["rca"] <= 1
    figs = json.loads(invoke("figures", tmp_path / "run", "--out", tmp_path / "figs", "--json"))["figures"]
    assert "traversal_overview.png" in {Path(f).name for f in figs}
