"""Reading ONNX graphs: node attributes, constant values, and who consumes each tensor.

Shared by the exact rewrites (:mod:`corrkit._core.rewrite`) and SeFa's search for
the latent's first linear map (:mod:`corrkit.methods.sefa`).
"""

from __future__ import annotations

import numpy as np


def attrs(node) -> dict:
    """A node's attributes as plain Python values (ints, floats, bytes, lists, tensors)."""
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def constants(model) -> dict[str, np.ndarray]:
    """Values of every initializer and every ``Constant`` node's output, by tensor name."""
    from onnx import numpy_helper

    values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            a = attrs(node)
            if "value" in a:
                values[node.output[0]] = numpy_helper.to_array(a["value"])
    return values


class GraphIndex:
    """Constant values, the consumers of each tensor and the graph's output names of one model."""

    def __init__(self, model):
        self.consts = constants(model)
        self.consumers: dict[str, list] = {}
        for node in model.graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.outputs = {o.name for o in model.graph.output}

    def chain(self, node, depth: int = 3) -> str:
        """``Relu -> Gemm -> ...``: the ops after ``node`` along first consumers, for messages."""
        ops = [node.op_type]
        while len(ops) < depth and node.output and self.consumers.get(node.output[0]):
            node = self.consumers[node.output[0]][0]
            ops.append(node.op_type)
        more = node.output and self.consumers.get(node.output[0])
        return " -> ".join(ops) + (" -> ..." if more else "")
