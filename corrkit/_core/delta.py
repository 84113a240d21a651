"""The difference graph behind ``--mode bf16-delta``: bf16 arithmetic on each grid point's change from its code.

Every grid point ``z + k·delta·d`` sits near its code ``z``, and the code's own activations
are the same for all of its ``K·2m`` points. So the code is run once in fp32, and each point
only carries the *change* ``Δ`` of every tensor from the code's value:

- a linear map ``L(a) = W a + b`` (Conv, ConvTranspose, Gemm, MatMul with a constant
  operand, BatchNormalization, scaling, reshaping, interleaving, pooling by averages)
  sends ``Δ`` to ``W Δ``: it runs on ``Δ`` alone, in bf16;
- any other node ``f`` (ReLU, Tanh, softmax, a product of two tensors ...) is evaluated
  on the full value, ``f(a + Δ) − f(a)``, with the code's ``a`` and ``f(a)`` (its *base*
  tensors) taken from the fp32 run, in fp32.

Exact in exact arithmetic for any graph (the rule for ``f`` holds for every node; the
linear one saves work). In bf16 a convolution rounds ``Δ`` to 8 bits instead of the whole
activation, so the error scales with the size of the intervention, not with the activations:
on the scale suite's DCGANs 20–50× smaller than the same convolutions in plain bf16
(benchmarks/RESULTS.md).

:func:`difference_graphs` builds, from a fused ``z -> probs`` graph, the *base* graph (the
same graph with the base tensors as extra outputs, run at batch 1 per code) and the
*delta* graph (inputs ``Δz [B, N]`` and each base tensor ``[1, ...]``, output the full
probabilities ``[B, C]``).
"""

from __future__ import annotations

import numpy as np

from corrkit._core.onnx_graph import attrs, constants
from corrkit.errors import BundleError

# Ops linear in their first input when every other input is constant: the same op runs on Δ.
SAME_ON_DELTA = {"Identity", "Neg", "Reshape", "Flatten", "Transpose", "DepthToSpace", "SpaceToDepth",
                 "Squeeze", "Unsqueeze", "Slice", "AveragePool", "GlobalAveragePool", "ReduceMean",
                 "ReduceSum", "Resize", "Expand", "Tile", "Gather", "Split", "Upsample"}
# Where the base of a Δ tensor is needed, it is fed under this prefix.
BASE = "base:"
# Nodes on Δ alone are named with this prefix: OpenVINO runs them in bf16 (:func:`low_precision`).
LOW = "bf16/"


class _Builder:
    def __init__(self, model, ranks: dict[str, int]):
        self.model, self.consts, self.ranks = model, constants(model), ranks
        self.nodes: list = []
        self.delta: dict[str, str] = {}  # tensor -> its Δ tensor in the delta graph
        self.full: dict[str, str] = {}  # tensor -> its full value in the delta graph
        self.bases: list[str] = []  # base tensors the delta graph takes as inputs, in order
        self.fixed: set[str] = set(self.consts)  # tensors that do not depend on z: the same in both graphs
        self._n = 0

    def name(self, hint: str) -> str:
        self._n += 1
        return f"d{self._n}:{hint}"

    def add(self, op: str, inputs: list[str], hint: str, lin: bool = True, **kw) -> str:
        from onnx import helper

        out = self.name(hint)
        self.nodes.append(helper.make_node(op, inputs, [out], name=(LOW if lin else "") + out, **kw))
        return out

    def base(self, t: str) -> str:
        if t not in self.bases:
            self.bases.append(t)
        return BASE + t

    def get_delta(self, t: str) -> str:
        if t not in self.delta:
            self.delta[t] = self.add("Sub", [self.full[t], self.base(t)], t, lin=False)
        return self.delta[t]

    def get_full(self, t: str) -> str:
        if t in self.fixed:
            return t
        if t not in self.full:
            self.full[t] = self.add("Add", [self.base(t), self.delta[t]], t, lin=False)
        return self.full[t]

    def copy(self, node, inputs: list[str], outputs: list[str], lin: bool = True):
        from onnx import helper

        n = helper.make_node(node.op_type, inputs, outputs, domain=node.domain or None,
                             name=(LOW if lin else "") + outputs[0])
        n.attribute.extend(node.attribute)
        self.nodes.append(n)

    def linear(self, node) -> bool:
        """Emit ``node`` on Δ if it is linear in its one z-dependent input; False if it is not."""
        ins = list(node.input)
        dep = [i for i, t in enumerate(ins) if t and t not in self.fixed]
        op, out = node.op_type, list(node.output)
        if op in ("Conv", "ConvTranspose") and dep == [0] and len(out) == 1:
            self.delta[out[0]] = self.name(out[0])
            self.copy(node, [self.get_delta(ins[0]), ins[1]], [self.delta[out[0]]])  # no bias
            return True
        if op == "Gemm" and dep == [0] and len(out) == 1:
            self.delta[out[0]] = self.name(out[0])
            self.copy(node, [self.get_delta(ins[0]), ins[1]], [self.delta[out[0]]])  # no C
            return True
        if op == "MatMul" and len(dep) == 1:
            d = self.get_delta(ins[dep[0]])
            self.delta[out[0]] = self.add("MatMul", [d, ins[1]] if dep == [0] else [ins[0], d], out[0])
            return True
        if op == "BatchNormalization" and dep == [0] and len(out) == 1:
            a = attrs(node)
            s, v = self.consts.get(ins[1]), self.consts.get(ins[4])
            if s is None or v is None:
                return False
            from onnx import numpy_helper

            scale = (s / np.sqrt(v + a.get("epsilon", 1e-5))).astype(np.float32)
            c = self.name(out[0] + ":scale")
            rank = self.ranks.get(ins[0], 4)
            self.model.graph.initializer.append(numpy_helper.from_array(scale.reshape([-1] + [1] * (rank - 2)), c))
            self.fixed.add(c)
            self.delta[out[0]] = self.add("Mul", [self.get_delta(ins[0]), c], out[0])
            return True
        if op in ("Add", "Sub") and len(dep) == 2 and len(out) == 1:
            self.delta[out[0]] = self.add(op, [self.get_delta(ins[0]), self.get_delta(ins[1])], out[0])
            return True
        if op in ("Mul", "Div") and dep == [0] or op == "Mul" and dep == [1]:
            d = self.get_delta(ins[dep[0]])
            self.delta[out[0]] = self.add(op, [d, ins[1]] if dep == [0] else [ins[0], d], out[0])
            return True
        if op == "Concat" and len(dep) == len(ins):
            self.delta[out[0]] = self.add("Concat", [self.get_delta(t) for t in ins], out[0], **attrs(node))
            return True
        if (op == "Pad" and dep == [0] and attrs(node).get("mode", b"constant") == b"constant"
                and not attrs(node).get("value", 0.0)):  # (opset < 11 keeps a pad value in an attribute)
            self.delta[out[0]] = self.name(out[0])
            self.copy(node, [self.get_delta(ins[0]), *ins[1:2], "", *ins[3:4]][:max(2, len(ins))],
                      [self.delta[out[0]]])  # padded with zeros: the base carries the pad value
            return True
        if op in SAME_ON_DELTA and dep == [0]:
            if op == "Resize" and attrs(node).get("mode", b"nearest") not in (b"nearest", b"linear"):
                return False
            for o in out:
                self.delta[o] = self.name(o)
            self.copy(node, [self.get_delta(ins[0]), *ins[1:]], [self.delta[o] for o in out])
            return True
        return False

    def general(self, node):
        """``f(a + Δ)`` on the full values; the outputs' Δ (``f(a + Δ) − f(a)``) made when a linear node needs it."""
        ins = [self.get_full(t) if t else "" for t in node.input]
        outs = [self.name(o + ":full") for o in node.output]
        self.copy(node, ins, outs, lin=False)
        for o, f in zip(node.output, outs):
            self.full[o] = f


def difference_graphs(model):
    """``(base_model, delta_model, base_names)`` for a fused ``z [B, N] -> probs [B, C]`` float32 graph.

    ``base_model``: ``model`` with the tensors ``base_names`` (but ``z`` itself) as extra outputs after ``probs``.
    ``delta_model``: inputs ``z`` (the change ``Δz``, ``[B, N]``) then ``base:<name>`` for each base
    name (``[1, ...]``: one code's values, broadcast over the rows); output ``probs`` ``[B, C]``.
    Raises BundleError for a graph with more than one input or output.
    """
    import onnx
    from onnx import helper

    g = model.graph
    if len(g.input) != 1 or len(g.output) != 1:
        raise BundleError("--mode bf16-delta runs one-input one-output graphs")
    z, probs = g.input[0].name, g.output[0].name
    inferred = onnx.shape_inference.infer_shapes(model)
    info = {v.name: v for v in [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]}
    ranks = {k: len(v.type.tensor_type.shape.dim) for k, v in info.items()}
    work = onnx.ModelProto()
    work.CopyFrom(model)
    b = _Builder(work, ranks)
    b.delta[z] = z
    for node in model.graph.node:
        if all(not t or t in b.fixed for t in node.input):
            b.nodes.append(node)  # constants and shapes: the same in both graphs
            b.fixed.update(node.output)
        elif node.op_type in ("Shape", "Size"):  # of a Δ tensor: the same shape as the full value's
            b.copy(node, [b.get_delta(node.input[0])], list(node.output))
            b.fixed.update(node.output)
        elif not b.linear(node):
            b.general(node)
    final = b.full.get(probs) or b.add("Add", [b.base(probs), b.delta[probs]], probs, lin=False)
    b.nodes.append(helper.make_node("Identity", [final], [probs]))
    base_names = list(b.bases)

    for t in base_names:
        if t not in info:  # shape inference did not reach it: a float tensor of unknown shape
            info[t] = helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None)
    base_model = onnx.ModelProto()
    base_model.CopyFrom(model)
    base_model.graph.output.extend(info[t] for t in base_names if t not in (probs, z))

    def one_row(t):  # one code's value: batch 1, the other dimensions as far as they are known
        v = onnx.ValueInfoProto()
        v.CopyFrom(info[t])
        v.name = BASE + t
        dims = v.type.tensor_type.shape.dim
        if len(dims):
            dims[0].Clear()
            dims[0].dim_value = 1
        return v

    del work.graph.node[:]
    work.graph.node.extend(b.nodes)
    work.graph.input.extend(one_row(t) for t in base_names)
    del work.graph.value_info[:]
    return base_model, work, base_names


def low_precision(model) -> int:
    """Run the nodes on Δ alone of an OpenVINO ``model`` (read from the delta graph) in bf16, the rest in f32.

    Converts go where a float tensor crosses between the two; constant operands of bf16 nodes
    become bf16 constants. Compile the result with an f32 precision hint, so OpenVINO keeps the
    types as they are. Returns how many ops run in bf16.
    """
    import openvino as ov
    import openvino.opset13 as ops

    bf16, f32 = ov.Type.bf16, ov.Type.f32
    low = [op for op in model.get_ordered_ops() if op.get_friendly_name().startswith(LOW)
           and op.get_type_name() not in ("Constant", "Parameter", "Result")]
    is_low = {id(op.output(0).get_node()) for op in low}
    names = {op.get_friendly_name() for op in low}
    for op in low:
        for inp in op.inputs():
            src = inp.get_source_output()
            if src.get_element_type() != f32 or src.get_node().get_friendly_name() in names:
                continue
            inp.replace_source_output(ops.convert(src, bf16).output(0))
    for op in low:
        for out in op.outputs():
            if out.get_element_type() != f32:
                continue
            targets = [t for t in out.get_target_inputs() if t.get_node().get_friendly_name() not in names]
            if targets:
                back = ops.convert(out, f32).output(0)
                for t in targets:
                    t.replace_source_output(back)
    del is_low
    model.validate_nodes_and_infer_types()
    return len(low)


DEFAULT_CHUNK = 64  # rows per OpenVINO call (static shape); the base tensors' reorders are paid once per call


class DeltaSession:
    """Probabilities of grid points near their codes: each code's base tensors by onnxruntime fp32, the
    changes by OpenVINO with the convolutions in bf16 (:func:`difference_graphs`, :func:`low_precision`).

    ``run(z, refs, index)``: rows ``z [B, N]``, each near its code ``refs[index[r]]``. ``precision="fp32"``
    leaves the changes in fp32 too (the same result as the plain graph to summation order). A row's result does
    not depend on the other rows of its call: the base of a code is computed alone (batch 1), and the
    changes run through a model compiled for one static chunk (the last one zero-padded).
    """

    def __init__(self, model, threads: int, chunk: int = DEFAULT_CHUNK, precision: str = "bf16"):
        import onnxruntime as ort

        from corrkit._core.openvino import _openvino, check_available

        ov = _openvino()
        if precision not in ("bf16", "fp32"):
            raise BundleError(f"precision must be bf16 or fp32, not {precision!r}")
        if precision == "bf16":
            check_available()
        base_model, delta_model, self.base_names = difference_graphs(model)
        self.input = model.graph.input[0].name
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads, so.log_severity_level = int(threads), 1, 3
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")  # OpenVINO takes the cores next
        self._base = ort.InferenceSession(base_model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        self._base_out = [o.name for o in self._base.get_outputs()]
        core = ov.Core()
        m = core.read_model(delta_model.SerializeToString())
        self.chunk = int(chunk)
        n = int(model.graph.input[0].type.tensor_type.shape.dim[1].dim_value)
        zero = np.zeros(n, np.float32)
        got = self._base_tensors(zero)  # the base tensors' shapes, as they come out
        m.reshape({i.any_name: [self.chunk, n] if i.any_name == self.input else list(got[i.any_name[len(BASE):]].shape)
                   for i in m.inputs})
        self.low_ops = low_precision(m) if precision == "bf16" else 0  # fp32: for checking the plumbing
        config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY",
                  "INFERENCE_NUM_THREADS": int(threads)}
        try:
            compiled = core.compile_model(m, "CPU", config)
        except Exception as exc:
            raise BundleError(f"OpenVINO cannot compile the difference graph: "
                              f"{str(exc).strip().splitlines()[0][:300]}") from None
        self._request = compiled.create_infer_request()
        self._feed(zero.tobytes(), got)  # the check below runs on this code: its base is at hand
        self.provider = f"OpenVINO CPU {precision} on differences + onnxruntime CPUExecutionProvider fp32 (codes)"
        # No change must give the code's own probabilities. A graph that mixes its batch into other axes
        # (a batch-grouped modulated convolution, say) cannot broadcast one code over the rows: refuse it here.
        try:
            p = self.run(zero[None], zero[None], np.zeros(1, np.int64))
        except Exception as exc:  # OpenVINO's own errors, on a shape it cannot broadcast
            raise BundleError("--mode bf16-delta cannot run this graph (its rows do not stay apart: "
                              f"{str(exc).strip().splitlines()[0][:200]}); use --mode bf16") from None
        want = got[model.graph.output[0].name]
        if p.shape != want.shape or not np.allclose(p, want, atol=1e-3):
            raise BundleError("--mode bf16-delta cannot run this graph (no change does not give the code's own "
                              "output); use --mode bf16")

    def _base_tensors(self, ref: np.ndarray) -> dict[str, np.ndarray]:
        got = dict(zip(self._base_out, self._base.run(None, {self.input: ref[None]})))
        got[self.input] = ref[None]
        return got

    def _set_base(self, ref: np.ndarray) -> None:
        key = ref.tobytes()
        if key != self._ref:
            self._feed(key, self._base_tensors(ref))

    def _feed(self, key: bytes, got: dict[str, np.ndarray]) -> None:
        """Bind one code's base tensors to the request (kept alive here: OpenVINO reads them in place)."""
        import openvino as ov

        self._keep = [np.ascontiguousarray(got[t], np.float32) for t in self.base_names]
        for t, a in zip(self.base_names, self._keep):
            self._request.set_tensor(BASE + t, ov.Tensor(a, shared_memory=True))
        self._ref = key

    def run(self, z: np.ndarray, refs: np.ndarray, index: np.ndarray) -> np.ndarray:
        """float32 ``[B, C]`` probabilities of rows ``z`` float32 ``[B, N]``, row ``r`` near ``refs[index[r]]``."""
        out = None
        c = self.chunk
        for u in np.unique(index):
            rows = np.flatnonzero(index == u)
            ref = np.ascontiguousarray(refs[u], np.float32)
            self._set_base(ref)
            d = z[rows] - ref
            for s in range(0, len(rows), c):
                x = d[s:s + c]
                n = len(x)
                if n < c:
                    x = np.concatenate([x, np.zeros((c - n, x.shape[1]), np.float32)])
                self._request.infer({self.input: x})
                p = self._request.get_output_tensor(0).data
                if out is None:
                    out = np.empty((len(z), p.shape[1]), np.float32)
                out[rows[s:s + n]] = p[:n]
        return out if out is not None else np.zeros((0, 0), np.float32)
