"""Voynov–Babenko learned directions (export/discover/, SPEC §8), on tiny models."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from typer.testing import CliRunner  # noqa: E402

from corrkit.cli.main import app  # noqa: E402
from corrkit.methods.compare import load_directions  # noqa: E402
from corrkit.errors import BundleError, CorrkitError  # noqa: E402
from corrkit.export.discover import (  # noqa: E402
    DirectionMatrix, DiscoverSettings, discover, discover_bundle, load_generator, prepare_generator, rca,
    reconstruction_loss, sample_batch, train_method, vb_loss,
)
from corrkit.export.discover.train import _initial  # noqa: E402

runner = CliRunner()


class ToyGenerator(torch.nn.Module):
    """z [B, N] -> tanh(W z) as a 1x28x28 image: enough for the reconstructor, ~1 ms a batch."""

    def __init__(self, n: int = 6, seed: int = 0):
        super().__init__()
        self.latent_dim = n
        self.l1 = torch.nn.Linear(n, 28 * 28)
        with torch.no_grad():
            self.l1.weight.copy_(torch.randn(28 * 28, n, generator=torch.Generator().manual_seed(seed)))

    def forward(self, z):
        return torch.tanh(self.l1(z)).view(len(z), 1, 28, 28)


class Flat(torch.nn.Module):
    """z [B, N] -> z as a [B, 1, 1, N] "image"."""

    def forward(self, z):
        return z[:, None, None, :]


class DiffReconstructor:
    """Reads k off the pair: logits = |x2 - x1|, eps_hat = the signed change (perfect for A = I)."""

    def __init__(self, offset: int = 0):
        self.offset = offset

    def __call__(self, x1, x2):
        d = (x2 - x1).flatten(1)
        return d.abs().roll(self.offset, dims=1), d.sum(1)


def tiny(**kw) -> DiscoverSettings:
    base = dict(kind="proj", n_directions=3, steps=6, batch_size=8, eval_samples=64, eval_batch=32,
                checkpoint_every=2, log_every=3, threads=1, workers=1)
    return DiscoverSettings(**{**base, **kw})


def quiet(*_):
    pass


def test_ortho_matrix_is_orthogonal():
    a = DirectionMatrix(100, 100, "ortho", generator=torch.Generator().manual_seed(0)).matrix().detach().double()
    err = (a.T @ a - torch.eye(100, dtype=torch.float64)).abs().max().item()
    assert err < 1e-5
    assert (a - torch.eye(100)).abs().max() > 0.1  # a real rotation, not the identity
    with pytest.raises(CorrkitError, match="K = N"):
        DirectionMatrix(10, 5, "ortho")


def test_proj_columns_are_unit_norm_and_linear_ones_are_not():
    g = torch.Generator().manual_seed(1)
    a = DirectionMatrix(20, 7, "proj", generator=g).matrix().detach()
    np.testing.assert_allclose(a.norm(dim=0).numpy(), np.ones(7), atol=1e-6)
    lin = DirectionMatrix(20, 7, "linear", generator=g)
    assert not np.allclose(lin.matrix().detach().norm(dim=0).numpy(), 1.0, atol=1e-2)
    np.testing.assert_allclose(np.linalg.norm(lin.directions(), axis=1), 1.0, atol=1e-6)
    # shift of row b is eps_b times column k_b
    s = lin(torch.tensor([2, 0]), torch.tensor([3.0, -1.0]))
    w = lin.matrix().detach()
    np.testing.assert_allclose(s.detach().numpy(), torch.stack([3 * w[:, 2], -w[:, 0]]).numpy(), rtol=1e-6)


def test_proj_init_scale_sets_the_turning_speed_not_the_start():
    """Same seed, init scales 0.1 and 0.01: the same unit columns at step 0; one Adam step (lr 1e-4)
    turns the 0.01 ones ~10x further, because Adam moves each entry by ~lr whatever its scale."""
    def turned(scale):
        a = DirectionMatrix(100, 16, "proj", generator=torch.Generator().manual_seed(3), init_scale=scale)
        start = a.matrix().detach().clone()
        opt = torch.optim.Adam(a.parameters(), lr=1e-4)
        target = torch.randn(100, 16, generator=torch.Generator().manual_seed(4))
        (-(a.matrix() * target).sum()).backward()
        opt.step()
        cos = (a.matrix().detach() * start).sum(0).clamp(-1, 1)
        return start, torch.arccos(cos).mean().item()

    start_big, angle_big = turned(0.1)
    start_small, angle_small = turned(0.01)
    np.testing.assert_allclose(start_small.numpy(), start_big.numpy(), atol=1e-6)
    assert 1e-4 < angle_big < 1e-2
    assert 8 < angle_small / angle_big < 12
    # linear keeps the authors' 0.1 (its column norm is the shift size), whatever init_scale says
    lin = DirectionMatrix(100, 16, "linear", generator=torch.Generator().manual_seed(3), init_scale=0.01)
    assert 0.8 < lin.matrix().detach().norm(dim=0).mean().item() < 1.2


def test_generator_batch_norms_are_folded_exactly():
    from corrkit.export.models import Generator

    torch.manual_seed(0)
    g = Generator().eval()
    for m in g.modules():  # running statistics far from (0, 1), as after training
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1); m.running_var.uniform_(0.5, 2)
    z = torch.randn(5, 100)
    with torch.no_grad():
        want = g(z)
        folded = prepare_generator(g, DiscoverSettings())
        got = folded(z)
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert n_bn == 1  # the two after convolutions are gone; the one after the linear layer stays
    assert (got - want).abs().max().item() < 1e-5
    assert not any(p.requires_grad for p in folded.parameters())


def test_loss_by_hand():
    logits = torch.tensor([[0.0, math.log(3.0)], [math.log(2.0), 0.0]])
    k = torch.tensor([1, 1])
    eps_hat, eps = torch.tensor([1.0, -2.0]), torch.tensor([2.0, -0.5])
    total, ce, sh = vb_loss(logits, eps_hat, k, eps, 0.25)
    ce_hand = (-math.log(3 / 4) - math.log(1 / 3)) / 2  # softmax(0, ln3)_1 = 3/4; softmax(ln2, 0)_1 = 1/3
    sh_hand = (1.0 + 1.5) / 2
    assert ce.item() == pytest.approx(ce_hand, rel=1e-6)
    assert sh.item() == pytest.approx(sh_hand, rel=1e-6)
    assert total.item() == pytest.approx(ce_hand + 0.25 * sh_hand, rel=1e-6)


def test_full_batch_loss_by_hand():
    # G flat, A = I (N = K = 2), R reads |G(z + eps e_k) - G(z)|: z = 0, k = 1, eps = 2
    a = DirectionMatrix(2, 2, "fixed", matrix=np.eye(2))
    s = DiscoverSettings(bf16=False, channels_last=False)
    r = lambda x1, x2: ((x2 - x1).flatten(1).abs(), torch.tensor([1.5]))  # noqa: E731
    total, ce, sh, acc = reconstruction_loss(Flat(), a, r, torch.zeros(1, 2), torch.tensor([1]),
                                             torch.tensor([2.0]), s)
    # logits (0, 2): CE = log(1 + e^-2); |1.5 - 2| = 0.5
    assert total.item() == pytest.approx(math.log(1 + math.exp(-2)) + 0.25 * 0.5, rel=1e-6)
    assert acc.item() == 1.0


def test_shift_sampling():
    z, k, eps = sample_batch(torch.Generator().manual_seed(0), 4000, 5, 7)
    assert z.shape == (4000, 5) and set(k.tolist()) == set(range(7))
    assert eps.abs().min() >= 0.5 and eps.abs().max() <= 6.0
    assert (eps > 0).float().mean().item() == pytest.approx(0.5, abs=0.05)


def test_rca_of_a_perfect_reconstructor_is_one():
    s = DiscoverSettings(eval_samples=300, eval_batch=64, bf16=False, channels_last=False)
    a = DirectionMatrix(6, 6, "fixed", matrix=np.eye(6))
    acc, mae = rca(Flat(), a, DiffReconstructor(), 6, 6, s)
    assert acc == 1.0 and mae < 1e-5
    wrong, _ = rca(Flat(), a, DiffReconstructor(offset=1), 6, 6, s)
    assert wrong == 0.0


def _params(t):
    out = {f"A.{k}": v for k, v in t.A.state_dict().items()}
    out.update({f"R.{k}": v for k, v in t.R.state_dict().items()})
    return out


@pytest.mark.parametrize("kind", ["proj", "ortho"])
def test_tiny_training_is_seeded_and_resumes_to_the_same_parameters(tmp_path, kind):
    torch.set_num_threads(1)
    g = ToyGenerator()
    s = tiny(kind=kind, n_directions=None if kind == "ortho" else 3)
    whole = train_method(g, 6, s, "learned", tmp_path / "a.pt", log=quiet)
    again = train_method(g, 6, s, "learned", None, log=quiet)
    other = train_method(g, 6, tiny(kind=kind, n_directions=s.n_directions, seed=1), "learned", None, log=quiet)
    pa, pb, po = _params(whole), _params(again), _params(other)
    assert all(torch.equal(pa[k], pb[k]) for k in pa)
    assert not torch.equal(pa["R.fc_logits.3.weight"], po["R.fc_logits.3.weight"])
    start, _ = _initial("learned", 6, s.n_k(6), 1, s)
    assert (whole.A.matrix() - start.matrix()).abs().max().item() > 0
    # Adam moves each parameter by at most ~lr a step: six steps of lr 1e-4, whatever the init scale
    for p0, p1 in zip(start.parameters(), whole.A.parameters()):
        assert 0 < (p1 - p0).abs().max().item() <= 6 * s.lr * 1.01

    # killed after step 4 (checkpoint at 4), restarted with the same settings
    def kill(stage, done, total):
        if done == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_method(g, 6, s, "learned", tmp_path / "b.pt", log=quiet, progress=kill)
    assert torch.load(tmp_path / "b.pt", weights_only=True)["step"] == 4
    resumed = train_method(g, 6, s, "learned", tmp_path / "b.pt", log=quiet)
    pr = _params(resumed)
    assert all(torch.equal(pa[k], pr[k]) for k in pa)
    assert resumed.rca == whole.rca and 0 <= whole.rca <= 1
    # a finished checkpoint is reused, not retrained; other settings are refused
    assert train_method(g, 6, s, "learned", tmp_path / "a.pt", log=quiet).rca == whole.rca
    # the default K given explicitly is the same run (ortho: None and 6 both mean K = N = 6)
    explicit = tiny(kind=kind, n_directions=s.n_k(6))
    assert train_method(g, 6, explicit, "learned", tmp_path / "a.pt", log=quiet).rca == whole.rca
    for other in ({"lr": 1e-3}, {"init_scale": 0.1}):
        with pytest.raises(CorrkitError, match="other settings"):
            train_method(g, 6, tiny(kind=kind, n_directions=s.n_directions, **other), "learned", tmp_path / "a.pt",
                         log=quiet)


def test_baselines_keep_their_directions_fixed():
    g = ToyGenerator()
    s = tiny(n_directions=None, kind="ortho", steps=3)
    coord = train_method(g, 6, s, "coordinate", None, log=quiet)
    np.testing.assert_array_equal(coord.A.directions(), np.eye(6, dtype=np.float32))
    rnd = train_method(g, 6, s, "random", None, log=quiet)
    d = rnd.A.directions()
    np.testing.assert_allclose(d @ d.T, np.eye(6), atol=1e-5)
    assert len(list(rnd.A.parameters())) == 0


def test_discover_writes_directions_rca_and_figure(tmp_path):
    pytest.importorskip("matplotlib")
    r = discover(ToyGenerator(), 6, tiny(steps=4), tmp_path, log=quiet)
    assert r.directions.shape == (3, 6)
    np.testing.assert_allclose(np.linalg.norm(r.directions, axis=1), 1.0, atol=1e-6)
    d, extra = load_directions(tmp_path / "directions.npz")
    np.testing.assert_array_equal(d, r.directions)
    assert set(extra) == {"rca", "rca_random", "rca_coordinate"}  # what `corrkit compare` shows
    assert extra["rca"] == r.rca
    with np.load(tmp_path / "directions.npz") as z:
        assert json.loads(z["settings"][0])["steps"] == 4
    j = json.loads((tmp_path / "discover.json").read_text())
    assert j["rca_coordinate"] == r.rca_coordinate and set(j["history"]) == {"learned", "random", "coordinate"}
    png = (tmp_path / "rca.png").read_bytes()
    assert png[:4] == b"\x89PNG"
    assert (int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")) == (900, 360)  # bars + curves


def test_trainings_in_worker_processes_equal_one_after_the_other(tmp_path):
    seen = []
    g = ToyGenerator()
    one = discover(g, 6, tiny(steps=4), tmp_path / "one", log=quiet)
    two = discover(g, 6, tiny(steps=4, workers=2, threads=2), tmp_path / "two",
                   progress=lambda *a: seen.append(a))
    np.testing.assert_array_equal(one.directions, two.directions)
    assert (one.rca, one.rca_random, one.rca_coordinate) == (two.rca, two.rca_random, two.rca_coordinate)
    assert {a[0] for a in seen} == {"learned", "random", "coordinate"} and ("learned", 4, 4) in seen
    assert sorted(p.name for p in (tmp_path / "two").glob("checkpoint_*.pt")) == [
        "checkpoint_coordinate.pt", "checkpoint_learned.pt", "checkpoint_random.pt"]


def test_interrupted_worker_run_stops_its_workers_and_resumes_to_the_same_result(tmp_path):
    import multiprocessing as mp

    g = ToyGenerator()
    s = tiny(steps=600, workers=2, threads=2, checkpoint_every=10, log_every=300)
    whole = discover(g, 6, s, tmp_path / "whole")

    def interrupt(stage, done, total):  # at the first progress report
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        discover(g, 6, s, tmp_path / "cut", progress=interrupt)
    assert not [p for p in mp.active_children() if p.is_alive()]  # no worker left running
    steps = [torch.load(p, weights_only=True)["step"] for p in sorted((tmp_path / "cut").glob("checkpoint_*.pt"))]
    assert steps and all(0 < n < 600 for n in steps)
    again = discover(g, 6, s, tmp_path / "cut")
    np.testing.assert_array_equal(again.directions, whole.directions)
    assert (again.rca, again.rca_random, again.rca_coordinate) == (whole.rca, whole.rca_random, whole.rca_coordinate)


def test_worker_processes_train_the_builtin_generator(bundle, tmp_path):
    # its prepared (batch-norm folded) copy is an fx graph that does not pickle: workers get the module
    r = discover(load_generator(bundle), 100, tiny(steps=2, workers=2, threads=2, eval_samples=32), tmp_path)
    assert r.directions.shape == (3, 100) and 0 <= r.rca <= 1 and r.elapsed > 0


def test_user_bundle_without_a_torch_generator_is_converted(bundle, tmp_path):
    import shutil

    from corrkit._core.bundle import load_bundle
    from corrkit.export.convert import Converted
    from corrkit.export.discover.generator import load_generator

    user = tmp_path / "mine"
    shutil.copytree(bundle.path, user)
    assert isinstance(load_generator(load_bundle(user)), Converted)  # its generator.onnx, checked, in torch
    with pytest.raises(BundleError, match="package.module:factory"):
        discover_bundle(user, tiny(), tmp_path / "out", torch_generator="nocolon")
    # the paper's architecture with other weights disagrees with the bundle's ONNX generator
    torch.manual_seed(0)
    torch.save(ToyGenerator(100).state_dict(), tmp_path / "toy.pt")
    with pytest.raises(BundleError, match="torch and ONNX disagree on the generator"):
        discover_bundle(user, tiny(), tmp_path / "out", torch_generator=f"{__name__}:ToyGenerator100",
                        generator_weights=tmp_path / "toy.pt")


def ToyGenerator100():
    return ToyGenerator(100)


def test_settings_are_checked():
    with pytest.raises(CorrkitError, match="ortho, proj, linear"):
        DiscoverSettings(kind="rotation")
    with pytest.raises(CorrkitError, match="K = N"):
        DiscoverSettings(kind="ortho", n_directions=10).n_k(100)
    with pytest.raises(CorrkitError, match="init_scale must be positive"):
        DiscoverSettings(init_scale=0.0)


def test_cli_calls_the_library(monkeypatch, tmp_path):
    import corrkit.export.discover as mod

    seen = {}

    def fake(bundle, settings, out, **kw):
        seen.update(settings=settings, out=out, **kw)
        return mod.DiscoverResult(np.eye(2, 3, dtype=np.float32), 0.9, 0.5, 0.4, {}, settings, {"learned": 1.0}, {})

    monkeypatch.setattr(mod, "discover_bundle", fake)
    r = runner.invoke(app, ["export", "discover", "--type", "proj", "--steps", "7", "--directions", "2",
                            "--init-scale", "0.05", "--out", str(tmp_path), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["rca"] == 0.9 and out["gap_over_best_baseline"] == pytest.approx(0.4)
    assert seen["settings"].kind == "proj" and seen["settings"].steps == 7 and seen["settings"].n_directions == 2
    assert seen["settings"].init_scale == 0.05
    r = runner.invoke(app, ["export", "discover", "--type", "nope", "--out", str(tmp_path)])
    assert r.exit_code == 1 and "ortho, proj, linear" in r.output
    # the CLI's defaults are the library's (read from the torch-free settings module)
    seen.clear()
    r = runner.invoke(app, ["export", "discover", "--out", str(tmp_path), "--json"])
    assert r.exit_code == 0, r.output
    assert seen["settings"] == DiscoverSettings()


def test_cli_help_in_a_subprocess():
    r = subprocess.run([sys.executable, "-m", "corrkit.cli", "export", "discover", "--help"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "--torch-generator" in r.stdout and "--type" in r.stdout


def test_cli_help_imports_no_torch():
    code = textwrap.dedent("""
        import sys
        from corrkit.cli.main import app
        try:
            app(["export", "discover", "--help"])
        except SystemExit as exc:
            print(exc.code, "torch" in sys.modules, "corrkit.export.discover.train" in sys.modules)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "--torch-generator" in r.stdout and r.stdout.split()[-3:] == ["0", "False", "False"], r.stdout


class SmallColourGenerator(torch.nn.Module):
    """z [B, N] -> tanh(W z) as a 3x12x12 image: smaller than the reconstructor's 28 px, and in colour."""

    def __init__(self, n: int = 6):
        super().__init__()
        self.l1 = torch.nn.Linear(n, 3 * 12 * 12)

    def forward(self, z):
        return torch.tanh(self.l1(z)).view(len(z), 3, 12, 12)


def test_small_colour_images_are_enlarged_for_the_reconstructor(tmp_path):
    from corrkit.export.discover.modules import Reconstructor

    torch.manual_seed(0)
    R = Reconstructor(3, channels=3).eval()
    x1, x2 = torch.randn(4, 3, 12, 12), torch.randn(4, 3, 12, 12)

    def up(x):  # each pixel repeated, to 28 x 28
        return torch.nn.functional.interpolate(x, size=(28, 28), mode="nearest")

    with torch.no_grad():
        (a, ea), (b, eb) = R(x1, x2), R(up(x1), up(x2))
    assert torch.equal(a, b) and torch.equal(ea, eb)
    torch.manual_seed(1)
    r = discover(SmallColourGenerator(), 6, tiny(steps=4), tmp_path, log=quiet)
    assert r.directions.shape == (3, 6) and 0 <= r.rca <= 1 and 0 <= r.rca_random <= 1
