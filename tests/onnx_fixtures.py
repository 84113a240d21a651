"""Tiny hand-built ONNX models for bad-input and known-answer tests (no torch needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests.naive import softmax


def save(graph, path: Path, opset: int = 17) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def identity(path: Path, shape: list) -> Path:
    """A model whose input and output have ``shape`` (first entry symbolic batch)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)
    return save(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "id", [x], [y]), path)


def log_logits(path: Path, n: int = 4, offset: float = 8.0) -> Path:
    """Fused z [B, n] -> logits log(z + offset): finite near 0, NaN once z < -offset."""
    x = helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", n])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", n])
    off = numpy_helper.from_array(np.array(offset, np.float32), "off")
    nodes = [helper.make_node("Add", ["z", "off"], ["s"]), helper.make_node("Log", ["s"], ["logits"])]
    return save(helper.make_graph(nodes, "loglogits", [x], [y], initializer=[off]), path)


def matmul_logits(path: Path, w: np.ndarray) -> Path:
    """Fused z [B, N] -> logits z @ w for a float32 ``w`` [N, C]."""
    x = helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", w.shape[0]])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", w.shape[1]])
    graph = helper.make_graph([helper.make_node("MatMul", ["z", "W"], ["logits"])], "lin", [x], [y],
                              initializer=[numpy_helper.from_array(w, "W")])
    return save(graph, path)


def linear_logits(path: Path, n: int = 6, c: int = 3, seed: int = 0) -> Path:
    """Fused z [B, n] -> logits z @ W: a model whose APCR is easy to reason about."""
    return matmul_logits(path, np.random.default_rng(seed).normal(size=(n, c)).astype(np.float32))


# The known-answer model of the manipulation and translation tests, logits = z KNOWN_W: dims 0 and 1 raise class 0
# only, dims 2 and 3 raise classes 1 and 2, dims 4 and 5 do nothing.
KNOWN_W = np.array([[2.5, 0, 0], [2.0, 0, 0], [0, 1.5, 0], [0, 0, 1.5], [0, 0, 0], [0, 0, 0]], np.float32)
# The apcr run both start from.
KNOWN_RUN = dict(steps=2, delta=1.0, samples_per_class=8, threshold=0.5, seed=0)  # run on the CPU


def known_probs(z: np.ndarray) -> np.ndarray:
    """Class probabilities [B, 3] of the known-answer model for codes ``z`` [B, 6], in float64 NumPy."""
    return softmax(z @ KNOWN_W.astype(np.float64))
