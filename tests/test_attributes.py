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


def test_user_exported_torch_attribute_classifier(tmp_path):
    """As a user would: a torch multi-label head exported with torch.onnx.export's defaults (fixed batch 4),
    beside the built-in generator, run from the CLI with --output sigmoid; APCR checked against torch on the
    run's own codes (generator images through onnxruntime, the classifier and the sigmoid in torch)."""
    torch = pytest.importorskip("torch")
    import onnxruntime as ort

    from corrkit._core.bundle import builtin_path
    from corrkit.methods.sequential import APCRResult

    torch.manual_seed(0)
    q = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 3)).eval()
    with torch.no_grad():
        q[1].weight.mul_(8.0)  # confident enough that every set fills at tau 0.5
    torch.onnx.export(q, (torch.randn(4, 1, 28, 28),), str(tmp_path / "Q.onnx"))
    g = builtin_path() / "generator.onnx"
    r = subprocess.run([sys.executable, "-m", "corrkit.cli", "apcr", "--generator", str(g), "--classifier",
                        str(tmp_path / "Q.onnx"), "--output", "sigmoid", "--classes", "a,b,c", "--steps", "1",
                        "--samples-per-class", "3", "--device", "cpu", "--out", str(tmp_path / "run"), "--json"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    run = APCRResult.load(tmp_path / "run")
    assert run.classes == ["a", "b", "c", "not a", "not b", "not c"]
    sess = ort.InferenceSession(str(g), providers=["CPUExecutionProvider"])

    def scores(z):
        img = np.concatenate([sess.run(None, {sess.get_inputs()[0].name: z[i:i + 1]})[0]
                              for i in range(len(z))])
        with torch.no_grad():
            p = torch.sigmoid(q(torch.from_numpy(img))).double().numpy()
        return np.concatenate([p, 1 - p], axis=1)

    base = scores(run.latents)
    want = np.zeros_like(run.apcr)
    for j in range(6):
        codes = run.latents[run.labels == j]
        b = base[run.labels == j, j]
        for i in range(100):
            moved = [scores(codes + k * np.eye(100, dtype=np.float32)[i])[:, j] for k in (-1, 1)]
            want[i, j] = np.mean([np.abs(m - b) / b for m in moved])
    np.testing.assert_allclose(run.apcr, want, rtol=1e-3, atol=1e-5)


def test_shipped_attribute_bundle_matches_its_card():
    """builtin:attributes: the built-in generator unchanged, and the classifier's test accuracy per attribute
    recomputed here with onnxruntime from the attribute definitions (no torch) is the card's."""
    import hashlib

    import onnxruntime as ort

    from corrkit._core.bundle import BUILTIN, BUILTIN_ATTRIBUTES
    from corrkit._core.data import load_split

    b = load_bundle("builtin:attributes")
    assert b.attributes == ["footwear", "upper body", "dark", "large"] and b.n_classes == 8
    same = [hashlib.sha256((p / "generator.onnx").read_bytes()).hexdigest() for p in (BUILTIN, BUILTIN_ATTRIBUTES)]
    assert same[0] == same[1]
    card = json.loads((BUILTIN_ATTRIBUTES / "bundle.json").read_text())
    assert (BUILTIN_ATTRIBUTES / "MODEL_CARD.md").is_file() and card["classifier_output"] == "sigmoid"
    test = load_split("test")
    x = test.images.astype(np.float32)
    ink = x > 25
    tone = (x * ink).sum((1, 2)) / np.maximum(ink.sum((1, 2)), 1)
    want = np.stack([np.isin(test.labels, (5, 7, 9)), np.isin(test.labels, (0, 2, 4, 6)), tone < 165.68281261432648,
                     ink.mean((1, 2)) > 0.4604591836734694], axis=1)
    s = ort.InferenceSession(str(BUILTIN_ATTRIBUTES / "classifier.onnx"), providers=["CPUExecutionProvider"])
    logits = np.concatenate([s.run(None, {s.get_inputs()[0].name: (x[i:i + 1000, None] / 127.5 - 1)})[0]
                             for i in range(0, len(x), 1000)])
    acc = ((logits > 0) == want).mean(0)
    np.testing.assert_allclose(acc, [card["metrics"]["test_accuracy"][a] for a in b.attributes], atol=2e-4)
    assert (acc > 0.95).all()


def test_latents_refuses_to_label_prior_codes_by_attributes(tmp_path):
    np.save(tmp_path / "c.npy", np.random.default_rng(0).standard_normal((20, 100)).astype(np.float32))
    np.save(tmp_path / "l.npy", np.arange(20) % 2)
    base = [sys.executable, "-m", "corrkit.cli", "latents", str(tmp_path / "c.npy"), str(tmp_path / "l.npy"),
            "--model", "builtin:attributes", "--out", str(tmp_path / "o"), "--folds", "2"]
    r = subprocess.run(base, capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.startswith("error:") and "--n-prior 0" in r.stderr
    assert not (tmp_path / "o" / "latents.json").exists()
    r = subprocess.run(base + ["--n-prior", "0"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
