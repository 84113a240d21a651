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


def cpu_session(model, threads: int | None = None):
    """A plain onnxruntime CPU session of ``model`` (no corrkit rewrites), its log kept quiet."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def run_rows(session, x: np.ndarray, batch: int | None = None) -> np.ndarray:
    """The first output of ``session`` for any number of rows of ``x``.

    A graph with a fixed batch gets chunks of that size (:func:`run_in_chunks`);
    otherwise rows go in slices of ``batch`` (default: all at once).
    """
    inp = session.get_inputs()[0]
    if isinstance(inp.shape[0], int):
        return run_in_chunks(session, inp.name, x, inp.shape[0])
    step = batch or max(len(x), 1)
    return np.concatenate([session.run(None, {inp.name: x[s:s + step]})[0] for s in range(0, len(x), step)])


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
        free = cpu_session(copy).run(None, {copy.graph.input[0].name: x})[0]
        orig = cpu_session(model)
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


def latent_size(dims: list) -> int | None:
    """``N`` of a latent input ``[B, N]`` or ``[B, N, 1, 1]`` (the DCGAN convention); ``None`` for anything else."""
    if len(dims) == 2 and isinstance(dims[1], int) and dims[1] > 0:
        return dims[1]
    if len(dims) == 4 and isinstance(dims[1], int) and dims[1] > 0 and list(dims[2:]) == [1, 1]:
        return dims[1]
    return None


def flat_latent(model):
    """``model`` taking ``z [B, N]``: a ``[B, N, 1, 1]`` latent input gets a Reshape in front (a copy); else as is."""
    import onnx
    from onnx import helper, numpy_helper

    vi = model.graph.input[0]
    dims = vi.type.tensor_type.shape.dim
    if len(dims) != 4:
        return model
    m = onnx.ModelProto()
    m.CopyFrom(model)
    old = m.graph.input[0]
    name, n = old.name, dims[1].dim_value
    inner = name + "/as_nchw"
    for node in m.graph.node:
        for k, x in enumerate(node.input):
            if x == name:
                node.input[k] = inner
    batch = dims[0].dim_value if dims[0].HasField("dim_value") else (dims[0].dim_param or BATCH)
    new = helper.make_tensor_value_info(name, old.type.tensor_type.elem_type, [batch, n])
    m.graph.initializer.append(numpy_helper.from_array(np.array([-1, n, 1, 1], np.int64), inner + "/shape"))
    m.graph.node.insert(0, helper.make_node("Reshape", [name, inner + "/shape"], [inner], name=inner))
    del m.graph.input[0]
    m.graph.input.insert(0, new)
    return m


def float32_boundary(model):
    """``model`` with float32 inputs and outputs: an fp16/bf16 graph gets Casts at its boundary (a copy).

    Inside, the graph keeps its own precision; everything corrkit feeds and reads
    (codes, images between the two models, probabilities) stays float32, so the
    reductions are those of an fp32 model.
    """
    import onnx
    from onnx import TensorProto, helper

    low = (TensorProto.FLOAT16, TensorProto.BFLOAT16)
    ios = list(model.graph.input) + list(model.graph.output)
    if not any(v.type.tensor_type.elem_type in low for v in ios):
        return model
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    front, back = [], []
    for vi in g.input:
        t = vi.type.tensor_type
        if t.elem_type not in low:
            continue
        inner, kind = vi.name + "/low", t.elem_type
        for node in g.node:
            for k, x in enumerate(node.input):
                if x == vi.name:
                    node.input[k] = inner
        front.append(helper.make_node("Cast", [vi.name], [inner], to=kind, name=inner))
        t.elem_type = TensorProto.FLOAT
    for vi in g.output:
        t = vi.type.tensor_type
        if t.elem_type not in low:
            continue
        inner = vi.name + "/low"
        for node in g.node:
            for k, x in enumerate(node.output):
                if x == vi.name:
                    node.output[k] = inner
            for k, x in enumerate(node.input):
                if x == vi.name:
                    node.input[k] = inner
        back.append(helper.make_node("Cast", [inner], [vi.name], to=TensorProto.FLOAT, name=vi.name + "/fp32"))
        t.elem_type = TensorProto.FLOAT
    nodes = front + list(g.node) + back
    del g.node[:]
    g.node.extend(nodes)
    return m


def _describe(vi) -> str:
    from onnx import helper

    t = vi.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim]
    try:
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(t.elem_type)).name
    except Exception:
        dtype = str(t.elem_type)
    return f"{vi.name} [{', '.join(map(str, dims))}] {dtype}"


def bind_io(model, role: str, path, inputs: dict | None = None, output: str | None = None):
    """``model`` with exactly one input and one output: extra inputs held at constants, one output picked.

    A conditional generator's class label, a truncation or a noise input is held at
    the value given (``inputs`` by name: ``--input NAME=VALUE`` or ``bundle.json``'s
    ``inputs``); an input whose first dimension is the batch gets that value in every
    row. With several outputs, ``output`` names the one to use. Anything still open
    is one error that lists it.
    """
    import onnx
    from onnx import helper, numpy_helper

    from corrkit.errors import BundleError

    inputs = dict(inputs or {})
    g = model.graph
    init_names = {t.name for t in g.initializer}
    graph_inputs = [vi for vi in g.input if vi.name not in init_names]  # old exporters list weights as inputs
    free = [vi for vi in graph_inputs if vi.name not in inputs]
    bound = [vi for vi in graph_inputs if vi.name in inputs]
    outs = list(g.output)
    if output is not None and output not in {o.name for o in outs}:
        raise BundleError(f"{role} {path} has no output {output!r}; its outputs: "
                          + ", ".join(_describe(o) for o in outs))
    if len(free) != 1:
        what = "no input left for the latent" if not free else "inputs still unset: " + ", ".join(
            _describe(vi) for vi in free[1:])
        raise BundleError(f"{role} {path} has inputs {', '.join(_describe(vi) for vi in graph_inputs)}; {what}; "
                          "hold each extra input at a value with --input NAME=VALUE (or `inputs` in bundle.json)")
    if len(outs) != 1 and output is None:
        raise BundleError(f"{role} {path} has outputs {', '.join(_describe(o) for o in outs)}; pick one with "
                          f"--{'generator' if role == 'generator' else 'classifier'}-output-name NAME")
    if not bound and len(outs) == 1 and len(graph_inputs) == len(g.input):
        return model
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    main = free[0].name
    nodes, inits = [], []
    for vi in bound:
        t = vi.type.tensor_type
        dtype = helper.tensor_dtype_to_np_dtype(t.elem_type)
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        try:
            value = np.asarray(inputs[vi.name], dtype=dtype)
        except (TypeError, ValueError):
            raise BundleError(f"--input {vi.name}={inputs[vi.name]!r} is not a {np.dtype(dtype).name} value") from None
        per_row = len(dims) >= 1 and (dims[0] is None or (value.ndim < len(dims)))
        rest = dims[1:] if per_row else dims
        if any(d is None for d in rest):
            raise BundleError(f"{role} input {_describe(vi)}: only its first (batch) dimension may be symbolic")
        try:
            value = np.broadcast_to(value, rest).copy()
        except ValueError:
            raise BundleError(f"--input {vi.name}: a value of shape {list(value.shape)} does not fit "
                              f"{_describe(vi)}") from None
        if per_row:  # the same value in every row: Expand to [batch of the main input, ...]
            inits += [numpy_helper.from_array(value[None], vi.name + "/value"),
                      numpy_helper.from_array(np.array([0], np.int64), vi.name + "/start"),
                      numpy_helper.from_array(np.array([1], np.int64), vi.name + "/stop"),
                      numpy_helper.from_array(np.array(rest, np.int64), vi.name + "/rest")]
            nodes += [helper.make_node("Shape", [main], [vi.name + "/shape"]),
                      helper.make_node("Slice", [vi.name + "/shape", vi.name + "/start", vi.name + "/stop"],
                                       [vi.name + "/batch"]),
                      helper.make_node("Concat", [vi.name + "/batch", vi.name + "/rest"], [vi.name + "/to"], axis=0),
                      helper.make_node("Expand", [vi.name + "/value", vi.name + "/to"], [vi.name])]
        else:
            inits.append(numpy_helper.from_array(value, vi.name))
    keep_in = [vi for vi in g.input if vi.name == main]
    keep_out = [o for o in g.output if output is None or o.name == output]
    all_nodes = nodes + list(g.node)
    del g.input[:]
    g.input.extend(keep_in)
    del g.output[:]
    g.output.extend(keep_out)
    del g.node[:]
    g.node.extend(all_nodes)
    g.initializer.extend(inits)
    return m
