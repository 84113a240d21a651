"""Attribute classifiers, ``classifier_output: sigmoid`` (SPEC §11), against an independent NumPy reference."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from corrkit._core.bundle import load_bundle
from corrkit._core.execution import Execution
from corrkit.errors import CorrkitError
from corrkit.methods.sequential import apcr
from tests.onnx_fixtures import matmul_logits

# logits = z W: dim 0 drives attribute 0, dim 1 attribute 1, dim 2 attribute 2, dim 3 both 0 and 1
W = np.array([[2.0, 0, 0], [0, 1.5, 0], [0, 0, 1.0], [0.5, -0.5, 0], [0, 0, 0], [0, 0, 0]], np.float32)
KW = dict(samples_per_class=8, steps=2, delta=1.0, threshold=0.6, seed=3)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def reference(n, tau, seed, steps, delta):
    """SPEC §11 by hand: on-sets p_a >= tau and off-sets p_a <= 1 - tau over the same prior draws, APCR of
    p_a on the first and of 1 - p_a on the second, with explicit loops."""
    a = W.shape[1]
    z = np.random.default_rng(seed).standard_normal((1024, W.shape[0])).astype(np.float32)
    score = lambda x: np.concatenate([sigmoid(x @ W.astype(np.float64)), 1 - sigmoid(x @ W.astype(np.float64))], -1)  # noqa: E731
    s0 = score(z.astype(np.float64))
    out = np.zeros((W.shape[0], 2 * a))
    members = []
    for j in range(2 * a):
        rows = np.flatnonzero(s0[:, j] >= tau)[:n]
        assert len(rows) == n
        members.append(rows)
        for i in range(W.shape[0]):
            total = 0.0
            for r in rows:
                for k in [k for k in range(-steps, steps + 1) if k]:
                    zk = z[r].astype(np.float64).copy()
                    zk[i] += k * delta
                    total += abs(score(zk[None])[0, j] - s0[r, j]) / s0[r, j]
            out[i, j] = total / (len(rows) * 2 * steps)
    return out, members


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return matmul_logits(tmp_path_factory.mktemp("attr") / "m.onnx", W)


def test_sigmoid_apcr_equals_numpy_reference(model):
    b = load_bundle(model, classifier_output="sigmoid")
    assert b.attributes == ["0", "1", "2"] and b.classes == ["0", "1", "2", "not 0", "not 1", "not 2"]
    run = apcr(b, execution=Execution(device="cpu", batch_size=64), **KW)
    want, members = reference(KW["samples_per_class"], KW["threshold"], KW["seed"], KW["steps"], KW["delta"])
    np.testing.assert_allclose(run.apcr, want, rtol=2e-4, atol=1e-6)
    assert run.counts.tolist() == [8] * 6
    # a code joins every set it qualifies for: the same prior draw can sit in an on-set and another's off-set
    z = np.random.default_rng(KW["seed"]).standard_normal((1024, 6)).astype(np.float32)
    np.testing.assert_array_equal(run.latents, z[np.concatenate(members)])
    assert len({r for m in members for r in m}) < sum(len(m) for m in members)
    # known by construction: dim j moves attribute j, in both directions
    for j in range(3):
        assert run.controlling_set(1)[j, 0] == j and run.controlling_set(1)[3 + j, 0] == j


def test_manipulate_and_translate_turn_attributes_off_and_on(model, tmp_path):
    from corrkit.methods.manipulate import manipulate
    from corrkit.methods.translate import translate

    b = load_bundle(model, classifier_output="sigmoid")
    run = apcr(b, execution=Execution(device="cpu"), **KW)
    m = manipulate(b, run=run, top_k=1, alpha=3.0, steps=1)
    for r in m.per_class:  # a flip: the concept's score below 1/2, computed here by hand
        z = run.latents[run.labels == r.j]
        step = np.zeros(6, np.float32)
        step[r.sets["top"]] = r.signs["top"]
        s = np.concatenate([sigmoid((z + 3.0 * step) @ W), 1 - sigmoid((z + 3.0 * step) @ W)], -1)[:, r.j]
        np.testing.assert_array_equal(r.flipped["top"][-1], s < 0.5)
        assert r.flip_rate("top") > 0.8 and r.flip_rate("bottom") == 0.0
    t = translate(b, run=run, top_k=1, alpha=4.0, steps=2)
    assert sorted(t.pairs) == [(0, 3), (1, 4), (2, 5), (3, 0), (4, 1), (5, 2)]  # each attribute off, and on
    for j, tgt in t.pairs:
        assert t.success[j, tgt] > 0.8


def test_sigmoid_declared_on_probabilities_is_refused_in_one_line(tmp_path):
    # a softmax model already gives probabilities: a second sigmoid would squash them
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", 3])
    y = helper.make_tensor_value_info("p", TensorProto.FLOAT, ["batch", 3])
    path = tmp_path / "soft.onnx"
    m = helper.make_model(helper.make_graph([helper.make_node("Softmax", ["z"], ["p"], axis=-1)], "s", [x], [y]),
                          opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, path)
    with pytest.raises(CorrkitError, match="look like probabilities already"):
        load_bundle(path, classifier_output="sigmoid")
    r = subprocess.run([sys.executable, "-m", "corrkit.cli", "apcr", str(path), "--output", "sigmoid", "--steps", "1",
                        "--samples-per-class", "1", "--device", "cpu"], capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.startswith("error:") and len(r.stderr.strip().splitlines()) == 1


def test_cli_json_names_concepts(model, tmp_path):
    r = subprocess.run([sys.executable, "-m", "corrkit.cli", "apcr", str(model), "--output", "sigmoid", "--steps",
                        "1", "--samples-per-class", "4", "--device", "cpu", "--top-k", "2", "--json", "--out",
                        str(tmp_path / "run")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["classes"] == ["0", "1", "2", "not 0", "not 1", "not 2"] and s["bundle"]["classifier_output"] == "sigmoid"
    assert s["bundle"]["classes"] == ["0", "1", "2"]  # the card records the attributes the bundle is built from
    assert s["top"]["not 2"][0]["direction"] == 2
