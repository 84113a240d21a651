"""Generator/classifier pairs in the forms users export them, each with an independent NumPy twin.

``torch.onnx.export(G, (torch.randn(4, 16),), "G.onnx")`` in the torch this project pins writes
opset 20, the example's batch of 4 baked into the input shape and into the ``Reshape`` shape
constants, and the weights as external data in ``G.onnx.data``. :func:`pair` builds that and its
neighbours with ``onnx.helper`` (no torch), so every command can be run on them anywhere; the
tests that have torch also export real modules the default way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests.naive import softmax

N, C = 16, 3


@dataclass
class Pair:
    """Files of a user's pair and the NumPy function they compute."""

    generator: Path
    classifier: Path
    weights: dict
    image: tuple[int, int, int]  # channels, height, width
    generator_range: tuple[float, float] = (-1.0, 1.0)
    softmax: bool = False  # the classifier's graph ends in a softmax

    def images(self, z: np.ndarray) -> np.ndarray:
        """float64 ``[B, ch, h, w]`` in the generator's output range."""
        w = self.weights
        h = np.asarray(z, np.float64) @ w["W1"].astype(np.float64) + w["b1"]
        img = np.tanh(h).reshape(len(z), *self.image)
        lo, hi = self.generator_range
        return lo + (img + 1.0) * (hi - lo) / 2.0

    def onnxruntime_probabilities(self, z: np.ndarray) -> np.ndarray:
        """float64 ``[B, C]`` from two raw onnxruntime sessions of the user's own files.

        Rows go in chunks of the graphs' fixed batch (the last one zero-padded), the
        range map and the softmax are done here in float64: nothing of corrkit's.
        """
        import onnxruntime as ort

        def run(path, x):
            sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            inp = sess.get_inputs()[0]
            if len(inp.shape) != x.ndim:  # z [B, N] fed to a [B, N, 1, 1] input
                x = x.reshape(len(x), *inp.shape[1:])
            if inp.type == "tensor(float16)":
                x = x.astype(np.float16)
            b = inp.shape[0] if isinstance(inp.shape[0], int) else len(x)
            outs = []
            for s in range(0, len(x), b):
                chunk = x[s:s + b]
                pad = np.zeros((b - len(chunk), *chunk.shape[1:]), chunk.dtype)
                outs.append(sess.run(None, {inp.name: np.concatenate([chunk, pad])})[0][:len(chunk)])
            return np.concatenate(outs)

        lo, hi = self.generator_range
        img = run(self.generator, np.asarray(z, np.float32)).astype(np.float64)
        x = ((img - lo) * 2.0 / (hi - lo) - 1.0).astype(np.float32)
        out = run(self.classifier, x).astype(np.float64)
        return out if self.softmax else softmax(out)

    def probabilities(self, z: np.ndarray) -> np.ndarray:
        """float64 ``[B, C]``: the classifier on the generator's images mapped to [-1, 1], then softmax."""
        w = self.weights
        lo, hi = self.generator_range
        x = (self.images(z) - lo) * 2.0 / (hi - lo) - 1.0
        return softmax(x.reshape(len(z), -1) @ w["W2"].astype(np.float64) + w["b2"])


def _save(graph, path: Path, opset: int, external: bool) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10 if opset >= 20 else 8
    onnx.checker.check_model(model)
    if external:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=path.name + ".data", size_threshold=1024)  # small tensors inline, as torch
    else:
        onnx.save_model(model, str(path))
    return path


def torch_dcgan(torch, n_classes: int, seed: int = 0, spread: bool = False):
    """``(generator, classifier)`` torch modules in eval mode: an RGB DCGAN ``z [B, 16, 1, 1]`` -> 3x32x32 of
    ConvTranspose + BatchNorm + ReLU stages (statistics drawn away from (0, 1), so folding them is not a
    no-op) and a strided-conv classifier to ``n_classes`` logits. ``spread``: logits centred and scaled to
    3 standard deviations on prior samples, so every class fills. ``torch``: the caller's module (from
    ``pytest.importorskip``: this file stays torch-free)."""
    nn = torch.nn
    torch.manual_seed(seed)
    g = nn.Sequential(nn.ConvTranspose2d(16, 32, 4, 1, 0, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
                      nn.ConvTranspose2d(32, 16, 4, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                      nn.ConvTranspose2d(16, 8, 4, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                      nn.ConvTranspose2d(8, 3, 4, 2, 1), nn.Tanh())
    for m in g.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.3)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.7, 1.3)
            m.bias.data.normal_(0, 0.1)
    q = nn.Sequential(nn.Conv2d(3, 8, 4, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(8, 16, 4, 2, 1), nn.LeakyReLU(0.2),
                      nn.Flatten(), nn.Linear(16 * 64, n_classes))
    g, q = g.eval(), q.eval()
    if spread:
        with torch.no_grad():
            logits = q(g(torch.randn(256, 16, 1, 1)))
            scale = 3.0 / float((logits - logits.mean(0)).std())
            q[-1].weight.mul_(scale)
            q[-1].bias.copy_((q[-1].bias - logits.mean(0)) * scale)
    return g, q


def pin_batch(p: "Pair", rows: int = 4) -> None:
    """Add a ``[rows, P]`` zero constant to every row of ``p``'s generator: the same function, but its batch can
    no longer be freed (an export whose batch is baked into an initializer)."""
    g = onnx.load(str(p.generator))
    g.graph.initializer.append(numpy_helper.from_array(np.zeros((rows, int(np.prod(p.image))), np.float32), "rows"))
    gemm = next(n for n in g.graph.node if n.op_type == "Gemm")
    gemm.output[0] = "h0"
    g.graph.node.insert(1, helper.make_node("Add", ["h0", "rows"], ["h"]))
    del g.graph.value_info[:]
    onnx.save(g, str(p.generator))


def pair(folder: Path, *, batch: int | None = 4, external: bool = True, opset: int = 20,
         image: tuple[int, int, int] = (1, 8, 8), generator_range=(-1.0, 1.0), seed: int = 0,
         names: tuple[str, str, str, str] = ("z", "tanh", "x", "linear"), softmax: bool = False,
         nchw_latent: bool = False, fp16: bool = False, dead_class: int | None = None) -> Pair:
    """A user's pair: ``G(z) = tanh(z W1 + b1)`` reshaped to ``image``, ``Q(x) = flatten(x) W2 + b2`` (logits).

    ``dead_class``: that class's logit is lowered by 50, so no code is ever of that class.
    ``fp16``: both graphs in float16, inputs and outputs included (weights rounded to fp16 here too,
    so the NumPy twin computes the same model).
    ``nchw_latent``: the generator takes ``z [B, N, 1, 1]`` (DCGAN's convention) and flattens it first.
    ``softmax``: the classifier emits probabilities (its graph ends in Softmax).
    ``batch``: the fixed batch baked into both graphs as ``torch.onnx.export`` does without
    ``dynamic_axes`` (``None``: a symbolic batch, ``-1`` in the Reshapes). ``generator_range``
    other than ``(-1, 1)``: the generator maps tanh to that range (e.g. a sigmoid-like [0, 1]).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pixels = int(np.prod(image))
    w = {"W1": rng.normal(0, 0.6, (N, pixels)).astype(np.float32), "b1": rng.normal(0, 0.1, pixels).astype(np.float32),
         "W2": rng.normal(0, 0.5, (pixels, C)).astype(np.float32), "b2": rng.normal(0, 0.1, C).astype(np.float32)}
    if dead_class is not None:
        w["b2"][dead_class] -= 50.0
    if fp16:
        w = {k: v.astype(np.float16).astype(np.float32) for k, v in w.items()}
    ft = TensorProto.FLOAT16 if fp16 else TensorProto.FLOAT
    fl = (lambda a: a.astype(np.float16)) if fp16 else (lambda a: a)  # noqa: E731
    b = batch if batch is not None else "batch"
    first = batch if batch is not None else -1
    z_name, img_name, x_name, out_name = names
    lo, hi = map(float, generator_range)
    g_nodes = [helper.make_node("Gemm", ["z_flat" if nchw_latent else z_name, "W1", "b1"], ["h"]),
               helper.make_node("Reshape", ["h", "g_shape"], ["r"]),
               helper.make_node("Tanh", ["r"], ["t"] if (lo, hi) != (-1.0, 1.0) else [img_name])]
    g_init = [numpy_helper.from_array(fl(w["W1"]), "W1"), numpy_helper.from_array(fl(w["b1"]), "b1"),
              numpy_helper.from_array(np.array([first, *image], np.int64), "g_shape")]
    if nchw_latent:
        g_nodes.insert(0, helper.make_node("Flatten", [z_name], ["z_flat"], axis=1))
    if (lo, hi) != (-1.0, 1.0):
        g_nodes += [helper.make_node("Mul", ["t", "g_scale"], ["ts"]), helper.make_node("Add", ["ts", "g_shift"],
                                                                                          [img_name])]
        g_init += [numpy_helper.from_array(fl(np.array((hi - lo) / 2, np.float32)), "g_scale"),
                   numpy_helper.from_array(fl(np.array(lo + (hi - lo) / 2, np.float32)), "g_shift")]
    g = helper.make_graph(g_nodes, "user_generator",
                          [helper.make_tensor_value_info(z_name, ft, [b, N, 1, 1] if nchw_latent else [b, N])],
                          [helper.make_tensor_value_info(img_name, ft, [b, *image])], g_init)
    q_nodes = [helper.make_node("Reshape", [x_name, "q_shape"], ["flat"]),
               helper.make_node("Gemm", ["flat", "W2", "b2"], ["logits" if softmax else out_name])]
    if softmax:  # a classifier that ends in its own softmax: probabilities
        q_nodes.append(helper.make_node("Softmax", ["logits"], [out_name], axis=-1))
    q_init = [numpy_helper.from_array(np.array([first, pixels], np.int64), "q_shape"),
              numpy_helper.from_array(fl(w["W2"]), "W2"), numpy_helper.from_array(fl(w["b2"]), "b2")]
    q = helper.make_graph(q_nodes, "user_classifier",
                          [helper.make_tensor_value_info(x_name, ft, [b, *image])],
                          [helper.make_tensor_value_info(out_name, ft, [b, C])], q_init)
    return Pair(_save(g, folder / "G.onnx", opset, external), _save(q, folder / "Q.onnx", opset, external), w,
                tuple(image), (lo, hi), softmax)


def class_sets(probs_fn, n: int, tau: float = 0.5, seed: int = 0, draw_batch: int = 1024, draws_per_code: int = 50):
    """The SPEC §1 class sets drawn in NumPy from ``probs_fn``: ``(latents float32 [M, N], labels [M], base [M, C])``.

    The first ``n`` prior samples per class (``default_rng(seed)``, batches of ``draw_batch`` up to
    ``draws_per_code * n * C`` draws) whose top class is that class with probability ``>= tau``.
    """
    rng = np.random.default_rng(seed)
    cap, drawn, taken, zs, ps = draws_per_code * n * C, 0, [[] for _ in range(C)], [], []
    while drawn < cap and min(map(len, taken)) < n:
        z = rng.standard_normal((min(draw_batch, cap - drawn), N)).astype(np.float32)
        p = probs_fn(z)
        for r in range(len(z)):
            j = int(p[r].argmax())
            if p[r, j] >= tau and len(taken[j]) < n:
                taken[j].append(drawn + r)
        zs.append(z), ps.append(p)
        drawn += len(z)
    rows = [r for t in taken for r in t]
    labels = np.array([j for j, t in enumerate(taken) for _ in t], np.int64)
    return np.concatenate(zs)[rows], labels, np.concatenate(ps)[rows]


def first_step(probs_fn, sets, *, seed: int = 0, lam: float = 0.2, lr: float = 0.05, v_init: float = 0.5,
               xi=(2.0, 4.0), batch_size: int = 32, h: float = 1e-3):
    """The SPEC §3 objective (``objective="paper"``) at ``v = v_init`` on each class's first mini-batch, and
    ``tanh(v)`` after one exact gradient step, the gradient by central differences in ``v`` (step ``h``).

    Mini-batch and ``xi`` as Li et al.'s loop draws them: a permutation of the class set from
    ``default_rng([seed, j, 0])``, its first ``batch_size`` codes, then ``xi ~ U[xi]`` per code.

    Returns
    -------
    loss : float64 [C]; w1 : float64 [C, N]
    """
    latents, labels, base = sets
    losses, w1, blocks = np.zeros(C), np.zeros((C, N)), []
    vs = np.concatenate([np.full((1, N), v_init), v_init + h * np.eye(N), v_init - h * np.eye(N)])  # [1 + 2N, N]
    for j in range(C):
        rows = np.flatnonzero(labels == j)
        rng = np.random.default_rng([seed, j, 0])
        idx = rng.permutation(len(rows))[:min(batch_size, len(rows))]
        a = rng.uniform(*xi, size=len(idx)).astype(np.float32)[:, None]
        z = latents[rows[idx]]
        shift = a[None] * np.tanh(vs).astype(np.float32)[:, None, :]  # [V, B, N]
        blocks.append((j, base[rows[idx], j], len(idx), np.concatenate([z[None] + shift, z[None] - shift], 1)))
    pts = np.concatenate([b[3].reshape(-1, N) for b in blocks]).astype(np.float32)
    s_all, at = probs_fn(pts), 0
    for j, s0, b, block in blocks:
        s = s_all[at:at + block.shape[0] * 2 * b, j].reshape(len(vs), 2, b)
        at += block.shape[0] * 2 * b
        data = -np.maximum(np.abs(s[:, 0] - s0), np.abs(s[:, 1] - s0)).mean(1)
        loss = data + lam * np.linalg.norm(np.tanh(vs), axis=1)
        losses[j] = loss[0]
        grad = (loss[1:1 + N] - loss[1 + N:]) / (2 * h)
        w1[j] = np.tanh(v_init - lr * grad)
    return losses, w1


def top_k_is_valid(scores: np.ndarray, chosen) -> bool:
    """Whether ``chosen`` (k distinct indices) holds ``k`` of the largest ``scores`` (ties either way)."""
    chosen = list(chosen)
    rest = np.delete(scores, chosen)
    return len(set(chosen)) == len(chosen) and (not rest.size or scores[chosen].min() >= rest.max())
