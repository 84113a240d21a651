"""Sharded APCR on a local Ray instance equals the single process to the last bit, even when a worker dies."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import corrkit
from corrkit._core.execution import Execution
from corrkit.cli.main import app
from corrkit.methods.compare import compare
from tests import onnx_fixtures as fx

ray = pytest.importorskip("ray")

# 20 codes x 6 directions x 4 steps = 480 points: 15 shards of 2 batches.
KW = dict(samples_per_class=2, steps=2, delta=0.75, seed=3)


def on_cpu(**kw) -> Execution:
    return Execution(device="cpu", batch_size=16, shard_points=32, **kw)
ARRAYS = ("apcr", "curves", "up", "down", "counts", "latents", "labels", "base", "directions", "contributions",
          "curves_sd")


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def single(bundle, dirs):
    return corrkit.apcr(bundle, directions=dirs, execution=on_cpu(), **KW)


def _assert_bitwise_equal(a, b):
    for key in ARRAYS:
        assert np.array_equal(getattr(a, key), getattr(b, key)), key


def test_ray_equals_single_process_to_the_last_bit(bundle, dirs, single):
    stages = []
    res = corrkit.apcr(bundle, directions=dirs, execution=on_cpu(executor="ray"), progress=lambda *a: stages.append(a),
                       **KW)
    _assert_bitwise_equal(res, single)
    ex = res.params["executor"]
    assert ex["name"] == "ray" and ex["workers"] == 2 and ex["shards"] == 15 and ex["retried_shards"] == 0
    assert [s for s in stages if s[0] == "shards"][-1] == ("shards", 15, 15)
    assert res.provider == "CPUExecutionProvider" and res.params["shard_points"] == single.params["shard_points"]
    assert not [a for a in ray.util.list_named_actors() if a.startswith("corrkit-")], "workers left behind"


def test_killed_worker_is_replaced_and_the_result_is_still_exact(bundle, dirs, single):
    killed = []

    def kill_one(stage, done, total):
        if stage == "shards" and done == 2 and not killed:  # mid-run: 13 shards to go, some in flight
            name = sorted(a for a in ray.util.list_named_actors() if a.startswith("corrkit-"))[0]
            ray.kill(ray.get_actor(name), no_restart=True)
            killed.append(name)

    res = corrkit.apcr(bundle, directions=dirs, execution=on_cpu(executor="ray"), progress=kill_one, **KW)
    assert killed
    ex = res.params["executor"]
    assert ex["replaced_workers"] >= 1 and ex["retried_shards"] >= 1, ex
    _assert_bitwise_equal(res, single)


class _Stop(Exception):
    pass


def test_a_pool_serves_several_runs_and_resumes_a_local_checkpoint(bundle, dirs, single, tmp_path):
    from corrkit._core.distributed import RayPool
    from corrkit._core.engine import Engine

    def stop_midway(stage, done, total):
        if stage == "grid" and done >= 200:
            raise _Stop

    with pytest.raises(_Stop):  # a local run stopped after a few shards leaves a checkpoint
        corrkit.apcr(bundle, directions=dirs, out=tmp_path, execution=on_cpu(checkpoint_seconds=0),
                     progress=stop_midway, **KW)
    assert (tmp_path / "checkpoint.npz").exists()
    engine = Engine(bundle, device="cpu", batch_size=16)
    with RayPool(engine, device="cpu", batch_size=16, workers=1) as pool:
        resumed = corrkit.apcr(bundle, directions=dirs, execution=on_cpu(), pool=pool, engine=engine, out=tmp_path,
                               **KW)
        fresh = corrkit.apcr(bundle, directions=dirs[:3], execution=on_cpu(), pool=pool, engine=engine, **KW)
    assert resumed.resumed_from == 192 and not (tmp_path / "checkpoint.npz").exists()
    _assert_bitwise_equal(resumed, single)
    assert fresh.params["executor"]["workers"] == 1 and fresh.apcr.shape == (3, 10)
    np.testing.assert_allclose(fresh.apcr, single.apcr[:3], rtol=1e-12)  # other cuts: equal up to the last bits


def test_compare_runs_every_method_on_ray(tmp_path):
    from corrkit._core.bundle import from_fused

    b = from_fused(fx.linear_logits(tmp_path / "lin.onnx", n=6, c=3), classifier_output="logits")
    kw = dict(samples_per_class=3, steps=2, delta=0.5)
    local = compare(b, execution=Execution(device="cpu"), **kw)
    on_ray = compare(b, execution=Execution(device="cpu", executor="ray", workers=2), **kw)
    assert on_ray["params"]["executor"] == "ray"
    def found(methods):  # what each method found; the seconds it took differ between runs
        timing = ("seconds", "apcr_seconds")
        return {name: {k: v for k, v in m.items() if k not in timing} for name, m in methods.items()}

    assert found(on_ray["methods"]) == found(local["methods"])


def test_cli_ray_flag_runs_on_ray_and_matches(bundle, dirs, single, tmp_path):
    np.save(tmp_path / "d.npy", dirs)
    grid = "--samples-per-class 2 --steps 2 --delta 0.75 --seed 3 --device cpu --batch-size 16 --shard-points 32"
    args = ["apcr", "--directions", str(tmp_path / "d.npy"), *grid.split(), "--out", str(tmp_path / "run"), "--json"]
    r = CliRunner().invoke(app, args[:1] + ["--ray", "local"] + args[1:])  # joins the test's Ray instance
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["params"]["executor"]["name"] == "ray"
    saved = np.load(tmp_path / "run" / "apcr.npz")
    for key in ("apcr", "curves", "up", "down"):
        assert np.array_equal(saved[key], getattr(single, key)), key


def test_a_model_error_on_a_worker_is_the_users_one_line_error_not_retried(tmp_path):
    nan = fx.log_logits(tmp_path / "nan.onnx")
    args = "--output logits --threshold 0 --delta 4 --steps 3 --samples-per-class 1 --device cpu --ray local"
    r = CliRunner().invoke(app, ["apcr", str(nan), *args.split()])
    assert r.exit_code == 1, r.output
    assert r.output.startswith("error: ") and "NaN" in r.output and "step -3" in r.output, r.output
    assert "Traceback" not in r.output and "RayTaskError" not in r.output


def test_an_unreachable_or_malformed_address_fails_fast():
    import socket

    from corrkit._core.distributed import check_reachable
    from corrkit.errors import CorrkitError

    with socket.socket() as free:  # a port nobody listens on
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    for address, match in (
        (f"127.0.0.1:{port}", "cannot reach"),
        (f"ray://127.0.0.1:{port}", "cannot reach"),
        ("nonsense", "not a Ray address"),
    ):
        with pytest.raises(CorrkitError, match=match):
            check_reachable(address, timeout=2)
    assert check_reachable("auto") is None and check_reachable("local") is None  # left to ray.init
