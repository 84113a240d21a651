"""One ONNX graph ``z [B, N] -> probabilities [B, C]`` from a bundle's models.

The generator, then the linear map from its output range to the classifier's
input range, then the classifier, then softmax when the classifier emits logits;
or a user's fused model with the softmax added. Opsets and IR versions are
aligned first, so models exported by different tools can be merged.
"""

from __future__ import annotations

import numpy as np

from corrkit._core.onnx_files import _dims
from corrkit.errors import BundleError


def _align(models: list):
    """Bring models to one default-domain opset and IR version so they can be merged."""
    import onnx
    from onnx import version_converter

    def opset(m):
        return max((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), default=17)

    target = max(opset(m) for m in models)
    out = []
    for m in models:
        if opset(m) != target:
            m = version_converter.convert_version(m, target)
        out.append(m)
    ir = max(m.ir_version for m in out)
    for m in out:
        m.ir_version = ir
    return out, target, onnx


def common_batch(first, second, what: str) -> int | str:
    """The batch dimension of a graph made of two models: their one fixed size, else symbolic ``"batch"``."""
    from corrkit._core.conventions import fixed_batch

    fixed = {b for b in (fixed_batch(first), fixed_batch(second)) if b is not None}
    if len(fixed) > 1:
        raise BundleError(f"{what} were exported with different fixed batch sizes {sorted(fixed)}; export them "
                          "with dynamic_axes={input: {0: 'batch'}} or one size")
    return fixed.pop() if fixed else "batch"


def compose(generator, classifier, gen_range, cls_range, classifier_output: str):
    """One ONNX graph z -> probabilities from a generator and a classifier ModelProto."""
    from onnx import TensorProto, helper, numpy_helper

    batch = common_batch(generator, classifier, "the generator and the classifier")
    (g, q), opset, onnx = _align([generator, classifier])
    g = onnx.compose.add_prefix(g, "g/")
    q = onnx.compose.add_prefix(q, "q/")
    lo_g, hi_g = map(float, gen_range)
    lo_q, hi_q = map(float, cls_range)
    scale = (hi_q - lo_q) / (hi_g - lo_g)
    shift = lo_q - lo_g * scale
    g_out, q_in = g.graph.output[0].name, q.graph.input[0].name
    nodes = list(g.graph.node)
    inits = list(g.graph.initializer) + list(q.graph.initializer)
    if abs(scale - 1.0) > 0 or abs(shift) > 0:
        inits += [numpy_helper.from_array(np.array(scale, np.float32), "range/scale"),
                  numpy_helper.from_array(np.array(shift, np.float32), "range/shift")]
        nodes += [helper.make_node("Mul", [g_out, "range/scale"], ["range/scaled"]),
                  helper.make_node("Add", ["range/scaled", "range/shift"], [q_in])]
    else:
        nodes += [helper.make_node("Identity", [g_out], [q_in])]
    nodes += list(q.graph.node)
    q_out = q.graph.output[0].name
    columns = 1
    if classifier_output == "logits":
        nodes.append(helper.make_node("Softmax", [q_out], ["probs"], axis=-1))
    elif classifier_output == "sigmoid":  # attributes: [σ(l), 1 - σ(l)] (corrkit._core.attributes)
        from corrkit._core.attributes import sigmoid_head

        columns = sigmoid_head(nodes, inits, q_out)
    else:
        nodes.append(helper.make_node("Identity", [q_out], ["probs"]))
    out = helper.make_tensor_value_info("probs", TensorProto.FLOAT,
                                        [batch, columns * _dims(classifier.graph.output[0])[1]])
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, [batch, _dims(generator.graph.input[0])[1]])
    nodes = [_rename_input(n, g.graph.input[0].name, "z") for n in nodes]
    graph = helper.make_graph(nodes, "corrkit_fused", [z], [out], initializer=inits,
                              value_info=list(g.graph.value_info) + list(q.graph.value_info))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = g.ir_version
    return model


def _rename_input(node, old: str, new: str):
    for k, name in enumerate(node.input):
        if name == old:
            node.input[k] = new
    return node


def wrap_fused(model, classifier_output: str):
    """A fused user model z -> logits/probabilities, renamed to z -> probs."""
    from onnx import TensorProto, helper

    g = model.graph
    old_in, old_out = g.input[0].name, g.output[0].name
    nodes = [_rename_input(n, old_in, "z") for n in g.node]
    if old_out == "probs":  # keep our output name unique
        for n in nodes:
            _rename_input(n, "probs", "probs/raw")
            for k, name in enumerate(n.output):
                if name == "probs":
                    n.output[k] = "probs/raw"
        old_out = "probs/raw"
    inits, columns = list(g.initializer), 1
    if classifier_output == "sigmoid":  # attributes: [σ(l), 1 - σ(l)] (corrkit._core.attributes)
        from corrkit._core.attributes import sigmoid_head

        columns = sigmoid_head(nodes, inits, old_out)
    else:
        op = "Softmax" if classifier_output == "logits" else "Identity"
        kw = {"axis": -1} if op == "Softmax" else {}
        nodes.append(helper.make_node(op, [old_out], ["probs"], **kw))
    n = _dims(g.input[0])[1]
    batch = _dims(g.input[0])[0] if isinstance(_dims(g.input[0])[0], int) else "batch"
    graph = helper.make_graph(
        nodes, "corrkit_fused", [helper.make_tensor_value_info("z", TensorProto.FLOAT, [batch, n])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [batch, columns * _dims(g.output[0])[1]])],
        initializer=inits, value_info=list(g.value_info),
    )
    out = helper.make_model(graph, opset_imports=list(model.opset_import))
    out.ir_version = model.ir_version
    return out
