"""Tiny hand-built ONNX models for bad-input tests (no torch needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


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


def linear_logits(path: Path, n: int = 6, c: int = 3, seed: int = 0) -> Path:
    """Fused z [B, n] -> logits z @ W: a model whose APCR is easy to reason about."""
    w = np.random.default_rng(seed).normal(size=(n, c)).astype(np.float32)
    x = helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", n])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", c])
    graph = helper.make_graph([helper.make_node("MatMul", ["z", "W"], ["logits"])], "lin", [x], [y],
                              initializer=[numpy_helper.from_array(w, "W")])
    return save(graph, path)
