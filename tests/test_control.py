"""Intersection ratio (corrkit/control.py) on hand-made controlling sets and runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from corrkit.cli.main import app
from corrkit.methods.control import PAPER_TABLE1, control, intersection_ratio
from corrkit.errors import CorrkitError
from corrkit.methods.optimize import OptimizedWeights
from corrkit.methods.sequential import APCRResult

runner = CliRunner()
C, N, K = 10, 20, 10
NAMES = [f"class{j}" for j in range(C)]


def test_intersection_ratio_by_hand():
    seq = np.array([[0, 1, 2, 3], [4, 5, 6, 7], [0, 1, 2, 3]])
    opt = np.array([[3, 2, 9, 8], [8, 9, 10, 11], [3, 2, 1, 0]])
    np.testing.assert_allclose(intersection_ratio(seq, opt), [0.5, 0.0, 1.0])
    with pytest.raises(CorrkitError):
        intersection_ratio(seq, opt[:, :3])


def fake_run(tmp_path, bundle_dir) -> APCRResult:
    """APCR whose top-10 for class j is dims j..j+9 (APCR falls with distance from j)."""
    dims = np.arange(N)[:, None]
    apcr = 1.0 / (1.0 + ((dims - np.arange(C)[None]) % N))
    z = np.zeros((C, N), np.float32)
    run = APCRResult(apcr=apcr, curves=np.zeros((N, 3, C, C)), up=-apcr, down=apcr, counts=np.ones(C, np.int64),
                     latents=z, labels=np.arange(C), base=np.eye(C, dtype=np.float32),
                     directions=np.eye(N, dtype=np.float32), classes=NAMES, params={}, provider="test",
                     bundle_card={"path": str(bundle_dir)})
    run.save(tmp_path / "run")
    return run


def fake_weights(shift: int) -> OptimizedWeights:
    """|w_j| largest on dims j+shift .. j+shift+9, with mixed signs."""
    dims = np.arange(N)[None]
    dist = (dims - np.arange(C)[:, None] - shift) % N
    w = np.where(dist < K, 0.9 - 0.01 * dist, 0.05) * np.where(dims % 2, -1, 1)
    return OptimizedWeights(w=w.astype(np.float32), loss=np.zeros((C, 1)), classes=NAMES,
                            counts=np.ones(C, np.int64), settings={"method": "test"})


def test_control_on_known_sets(tmp_path):
    run = fake_run(tmp_path, tmp_path)
    for shift, want in ((0, 1.0), (3, 0.7), (10, 0.0)):
        res = control(run, fake_weights(shift), top_k=K)
        np.testing.assert_allclose(res.ratio, want)
        assert res.mean == pytest.approx(want)
        assert sorted(res.seq[2].tolist()) == list(range(2, 12))
    assert res.paper == PAPER_TABLE1
    assert control(run, fake_weights(3), top_k=4).paper is None  # Table 1 is for k = 10
    np.testing.assert_allclose(control(run, fake_weights(3), top_k=4).ratio, 0.25)  # j..j+3 vs j+3..j+6


def test_control_errors(tmp_path):
    run = fake_run(tmp_path, tmp_path)
    with pytest.raises(CorrkitError, match="no optimised weights"):
        control(run, None)
    bad = fake_weights(0)
    bad.w = bad.w[:, :5]
    with pytest.raises(CorrkitError, match="shape"):
        control(run, bad)
    run.directions = np.roll(run.directions, 1, axis=0)
    with pytest.raises(CorrkitError, match="latent axes"):
        control(run, fake_weights(0))


def test_cli_json_and_table(tmp_path):
    fake_run(tmp_path, tmp_path)
    fake_weights(3).save(tmp_path / "optimized_weights.npz")  # the run's bundle folder: found by default
    r = runner.invoke(app, ["control", str(tmp_path / "run"), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["intersection_ratio"]["per_class"] == [0.7] * C
    assert out["intersection_ratio"]["mean"] == pytest.approx(0.7)
    assert out["paper"]["mean"] == 0.75 and out["sets"]["seq"][0] == list(range(10))
    assert len(out["sets"]["common"][0]) == 7
    r = runner.invoke(app, ["control", str(tmp_path / "run")], env={"COLUMNS": "250"})
    assert r.exit_code == 0, r.output
    assert "Li et al." in r.output and "class9" in r.output and "0.75" in r.output
    r = runner.invoke(app, ["control", str(tmp_path / "run"), "--weights", str(tmp_path / "missing.npz")])
    # refused before any work by the option checks, in one line naming the missing file
    assert r.exit_code == 1 and r.output.count("\n") == 1 and "missing.npz does not exist" in r.output
    r = runner.invoke(app, ["control", str(tmp_path / "nowhere")])
    assert r.exit_code == 1 and r.output.count("\n") == 1 and "nowhere is not a folder" in r.output


def _run_with_codes(per_class: int, noise: float, seed: int = 0) -> APCRResult:
    """fake_run's APCR, now a mean of ``per_class`` codes whose contributions scatter by ``noise`` around it."""
    dims = np.arange(N)[:, None]
    apcr = 1.0 / (1.0 + ((dims - np.arange(C)[None]) % N))
    labels = np.repeat(np.arange(C), per_class)
    rng = np.random.default_rng(seed)
    contrib = np.abs(apcr[:, labels] * (1 + noise * rng.standard_normal((N, len(labels)))))
    mean = np.stack([contrib[:, labels == j].mean(1) for j in range(C)], axis=1)
    return APCRResult(apcr=mean, curves=np.zeros((N, 3, C, C)), up=-mean, down=mean,
                      counts=np.full(C, per_class), latents=np.zeros((len(labels), N), np.float32), labels=labels,
                      base=np.eye(C, dtype=np.float32)[labels], directions=np.eye(N, dtype=np.float32),
                      classes=NAMES, contributions=contrib)


def test_ratio_intervals_narrow_for_a_clear_ranking_wide_for_a_noisy_one():
    clear = control(_run_with_codes(20, 0.01), fake_weights(3), top_k=K)
    np.testing.assert_allclose(clear.ratio, 0.7)
    np.testing.assert_allclose(clear.ratio_interval, 0.7)  # no resample changes the top 10
    assert clear.mean_interval == pytest.approx((0.7, 0.7))
    noisy = control(_run_with_codes(20, 3.0), fake_weights(3), top_k=K)
    width = noisy.ratio_interval[:, 1] - noisy.ratio_interval[:, 0]
    assert (width > 0).sum() >= C // 2 and (noisy.ratio_interval[:, 0] <= noisy.ratio).all() \
        and (noisy.ratio <= noisy.ratio_interval[:, 1]).all()
    one = control(_run_with_codes(1, 0.5), fake_weights(3), top_k=K)  # one code per class: honest, not zero
    assert (one.ratio_interval == [0.0, 1.0]).all() and one.mean_interval is None
    js = one.to_json()["intersection_ratio"]
    assert js["interval"][0] == [0.0, 1.0] and js["mean_interval"] is None
