"""The forms a user's exported model comes in, brought to the one form the engine runs.

``torch.onnx.export`` without ``dynamic_axes`` (its default) bakes the example's
batch size into the graph: into the input and output shapes and into the shape
constants of ``Reshape`` nodes (``view(z.shape[0], ...)`` becomes ``[4, 4, 8, 8]``).
:func:`free_batch` makes the batch dimension symbolic in a copy of the graph and
then *checks* that copy against the original on random inputs, rows at a time; a
copy that does not reproduce the original exactly is not used, and the engine
feeds the original fixed-size chunks instead (:func:`fixed_batch`).
"""

from __future__ import annotations

import numpy as np

from corrkit._core.onnx_graph import attrs

BATCH = "batch"


def _first_dim(value_info):
    dims = value_info.type.tensor_type.shape.dim
    if not dims:
        return None
    return dims[0].dim_value if dims[0].HasField("dim_value") else None


def fixed_batch(model) -> int | None:
    """The batch size baked into ``model``'s input, or ``None`` when its batch dimension is symbolic."""
    return _first_dim(model.graph.input[0])


def _reshape_shapes(model):
    """``(tensor, values)`` of every constant shape input of a ``Reshape`` node."""
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    consts = {n.output[0]: n for n in model.graph.node if n.op_type == "Constant"}
    for node in model.graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2:
            continue
        name = node.input[1]
        if name in inits:
            yield node, inits[name], numpy_helper.to_array(inits[name])
        elif name in consts and "value" in attrs(consts[name]):
            t = next(a.t for a in consts[name].attribute if a.name == "value")
            yield node, t, numpy_helper.to_array(t)


def _symbolic_copy(model, b0: int):
    """A copy with batch ``b0`` replaced by a symbolic dimension in the I/O and in Reshape shapes, or None."""
    import onnx
    from onnx import numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    for vi in list(m.graph.input) + list(m.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_value") and dims[0].dim_value == b0:
            dims[0].Clear()
            dims[0].dim_param = BATCH
    del m.graph.value_info[:]  # inferred shapes hold the old batch; onnxruntime infers them again
    seen = set()
    for node, tensor, shape in _reshape_shapes(m):
        if id(tensor) in seen or shape.ndim != 1 or len(shape) == 0 or shape[0] != b0:
            continue
        seen.add(id(tensor))
        shape = shape.copy()
        if -1 not in shape[1:]:
            shape[0] = -1
        elif attrs(node).get("allowzero", 0) == 0:
            shape[0] = 0  # copy the batch dimension of the Reshape's input
        else:
            return None
        tensor.CopyFrom(numpy_helper.from_array(shape.astype(numpy_helper.to_array(tensor).dtype), tensor.name))
    return m


def _session(model):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _sample_input(model, b: int, rng: np.random.Generator) -> np.ndarray:
    from onnx import helper

    vi = model.graph.input[0]
    dims = [d.dim_value for d in vi.type.tensor_type.shape.dim[1:]]
    dtype = helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)
    return rng.uniform(-1.0, 1.0, size=(b, *dims)).astype(dtype)


def free_batch(model, seed: int = 0):
    """``(model, how)``: ``model`` with a symbolic batch dimension when that can be made exactly so.

    ``how`` is ``"symbolic"`` (nothing to do), ``"freed"`` (a checked copy: on random
    inputs of ``2 b0 + 1`` rows it gives, row for row, what the original gives on
    chunks of ``b0``) or ``"fixed"`` (the original, to be fed chunks of ``b0`` rows).
    """
    b0 = fixed_batch(model)
    if b0 is None:
        return model, "symbolic"
    copy = _symbolic_copy(model, b0)
    if copy is None:
        return model, "fixed"
    rng = np.random.default_rng(seed)
    x = _sample_input(model, 2 * b0 + 1, rng)
    try:
        free = _session(copy).run(None, {copy.graph.input[0].name: x})[0]
        orig = _session(model)
        name = model.graph.input[0].name
        ref = [orig.run(None, {name: x[i:i + b0]})[0] for i in (0, b0)]
    except Exception:  # the graph holds the batch somewhere else (Expand, Tile, a constant ...)
        return model, "fixed"
    ok = free.shape[0] == 2 * b0 + 1 and all(
        np.allclose(free[i:i + b0], r, rtol=1e-5, atol=1e-6) for i, r in zip((0, b0), ref))
    return (copy, "freed") if ok else (model, "fixed")


def run_in_chunks(session, name: str, x: np.ndarray, b0: int) -> np.ndarray:
    """Outputs of a fixed-batch ``session`` for any number of rows: chunks of ``b0``, the last one zero-padded."""
    parts = []
    for s in range(0, len(x), b0):
        chunk = x[s:s + b0]
        if len(chunk) < b0:
            chunk = np.concatenate([chunk, np.zeros((b0 - len(chunk), *chunk.shape[1:]), chunk.dtype)])
        parts.append(session.run(None, {name: chunk})[0][: min(b0, len(x) - s)])
    return np.concatenate(parts) if parts else np.zeros((0,), np.float32)
