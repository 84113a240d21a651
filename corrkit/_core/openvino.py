"""The OpenVINO backend: the fused z -> probabilities graph compiled by OpenVINO for the CPU.

It exists for ``--mode bf16``: on a CPU with native bf16 dot products (AVX-512 BF16,
AMX) OpenVINO runs the convolutions in bf16 with fp32 accumulation, which
onnxruntime's CPU provider does not do for fp32 graphs. ``precision="fp32"`` is
the same compiler without that, for checking the backend against onnxruntime.

:class:`Session` has the calling convention of an onnxruntime ``InferenceSession``
as the engine uses it (``run(None, {name: z})`` -> ``[probs]``, ``get_inputs()``,
``get_outputs()``, ``get_providers()``), so the engine can hold either.

Rows are fed in chunks of one fixed batch (the last one zero-padded), through a
model compiled for that static shape: with a dynamic batch OpenVINO picks kernels
per call shape, and a one-row call may sum in another order than a full one; one
compiled shape makes a row's probabilities independent of how a run splits its
rows and of where in a chunk it lands (SPEC §10: same inputs, same provider, same
result; tests/test_openvino.py checks it bit for bit). OpenVINO's own default
precision on a bf16-capable CPU is bf16; ``fp32`` is therefore asked for explicitly.
"""

from __future__ import annotations

import numpy as np

from corrkit.errors import BundleError, MissingExtraError

PRECISIONS = {"fp32": "f32", "bf16": "bf16"}
DEFAULT_CHUNK = 32


def _openvino():
    try:
        import openvino
    except ImportError:
        raise MissingExtraError("openvino", "openvino") from None
    return openvino


def available() -> bool:
    """True when openvino is importable and its CPU plugin reports native bf16."""
    try:
        import openvino
    except ImportError:
        return False
    try:
        caps = openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception:  # no CPU plugin on this platform
        return False
    return "BF16" in caps


def check_available() -> None:
    """Fail before any work when ``--mode bf16`` cannot run here: openvino missing, or a CPU without bf16."""
    _openvino()
    if not available():
        raise BundleError("--mode bf16 needs a CPU with native bf16 (AVX-512 BF16 or AMX), which this one lacks "
                          "in OpenVINO's view; use --mode fp32 or int8")


class _Arg:
    """What ``get_inputs()`` / ``get_outputs()`` of an onnxruntime session give: a name and a shape."""

    def __init__(self, name: str, shape: list):
        self.name, self.shape = name, shape

    def __repr__(self) -> str:
        return f"_Arg(name={self.name!r}, shape={self.shape})"


class Session:
    """A fused ``z [B, N] -> probs [B, C]`` model compiled by OpenVINO for the CPU.

    Parameters
    ----------
    model : onnx.ModelProto or bytes
        The fused graph (one float32 input, one float32 output, batch first).
    precision : {"bf16", "fp32"}
        OpenVINO's ``INFERENCE_PRECISION_HINT``: bf16 convolutions with fp32
        accumulation, or fp32 throughout.
    threads : int, optional
        ``INFERENCE_NUM_THREADS`` (default: all cores of this process).
    chunk : int
        The static batch the model is compiled for; any number of rows runs as chunks of it.
    """

    def __init__(self, model, precision: str = "bf16", threads: int | None = None, chunk: int = DEFAULT_CHUNK):
        ov = _openvino()
        if precision not in PRECISIONS:
            raise BundleError(f"OpenVINO precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
        if precision == "bf16" and not available():
            raise BundleError("--mode bf16 needs a CPU with native bf16 (AVX-512 BF16 or AMX); "
                              "this one has none: use --mode fp32 or int8")
        from corrkit._core.engine import cpu_count

        blob = model if isinstance(model, (bytes, bytearray)) else model.SerializeToString()
        self.precision, self.threads, self.chunk = precision, int(threads or cpu_count()), int(chunk)
        core = ov.Core()
        try:
            m = core.read_model(bytes(blob))
        except Exception as exc:
            raise BundleError(f"OpenVINO cannot read the model: {str(exc).strip().splitlines()[0][:300]}") from None
        if len(m.inputs) != 1 or len(m.outputs) != 1:
            raise BundleError(f"the OpenVINO backend runs one-input one-output graphs; this one has "
                              f"{len(m.inputs)} inputs and {len(m.outputs)} outputs")
        shape = m.inputs[0].partial_shape
        if shape.rank.is_dynamic or any(d.is_dynamic for d in list(shape)[1:]):
            raise BundleError(f"the OpenVINO backend needs every dimension but the batch fixed; the input is {shape}")
        rest = [d.get_length() for d in list(shape)[1:]]
        self._input = _Arg(m.inputs[0].any_name, ["batch", *rest])
        self._output = _Arg(m.outputs[0].any_name, ["batch", *[
            d.get_length() if d.is_static else "?" for d in list(m.outputs[0].partial_shape)[1:]]])
        fixed = shape[0].get_length() if shape[0].is_static else None
        if fixed is not None:  # a graph whose batch could not be freed runs on chunks of its own size
            self.chunk = fixed
        else:
            m.reshape({m.inputs[0].any_name: [self.chunk, *rest]})
        config = {"INFERENCE_PRECISION_HINT": PRECISIONS[precision], "PERFORMANCE_HINT": "LATENCY",
                  "INFERENCE_NUM_THREADS": self.threads}
        try:
            compiled = core.compile_model(m, "CPU", config)
        except Exception as exc:
            raise BundleError(f"OpenVINO cannot compile the model: {str(exc).strip().splitlines()[0][:300]}") from None
        self._request = compiled.create_infer_request()
        self._rest = rest
        self.provider = f"OpenVINO CPU {precision}"

    def get_inputs(self) -> list[_Arg]:
        return [self._input]

    def get_outputs(self) -> list[_Arg]:
        return [self._output]

    def get_providers(self) -> list[str]:
        return [self.provider]

    def run(self, output_names, feeds: dict) -> list[np.ndarray]:
        """``[probs]`` float32 ``[B, C]`` for ``feeds = {input name: z float32 [B, N]}``, as onnxruntime's ``run``."""
        if set(feeds) != {self._input.name}:
            raise BundleError(f"the model takes one input {self._input.name!r}, not {sorted(feeds)}")
        if output_names is not None and list(output_names) != [self._output.name]:
            raise BundleError(f"the model has one output {self._output.name!r}, not {list(output_names)}")
        z = np.ascontiguousarray(feeds[self._input.name], dtype=np.float32)
        if z.ndim != 1 + len(self._rest) or list(z.shape[1:]) != self._rest:
            dims = ", ".join(map(str, self._rest))
            raise BundleError(f"input has shape {list(z.shape)}, the model takes [batch, {dims}]")
        parts, c = [], self.chunk
        for s in range(0, len(z), c):
            x = z[s:s + c]
            n = len(x)
            if n < c:
                x = np.concatenate([x, np.zeros((c - n, *x.shape[1:]), np.float32)])
            self._request.infer({0: x})
            parts.append(self._request.get_output_tensor(0).data[:n].copy())
        if not parts:
            return [np.zeros((0, *[d if isinstance(d, int) else 0 for d in self._output.shape[1:]]), np.float32)]
        return [np.concatenate(parts)]


def split_at_classifier(model):
    """``(generator part, classifier part, boundary name)`` of a fused bundle graph, or ``None``.

    :func:`corrkit._core.fuse.compose` prefixes the classifier's tensors with ``q/`` and
    feeds its input from the one node that writes a ``q/`` tensor from none (the range
    map's ``Add``, or an ``Identity``); that node's output is the boundary. A user's fused model has no such
    node, and is not split.
    """
    import onnx

    heads = [n for n in model.graph.node if n.input and any(o.startswith("q/") for o in n.output)
             and not any(i.startswith("q/") for i in n.input)]
    if len(heads) != 1 or len(heads[0].output) != 1:
        return None
    boundary = heads[0].output[0]
    inferred = onnx.shape_inference.infer_shapes(model)
    ex = onnx.utils.Extractor(inferred)
    g = ex.extract_model([model.graph.input[0].name], [boundary])
    q = ex.extract_model([boundary], [model.graph.output[0].name])
    return g, q, boundary


class Pipeline:
    """The generator part on OpenVINO bf16, then the classifier part on an onnxruntime fp32 session.

    Why: on the scale suite's models all of bf16's error came from the classifier
    (benchmarks/RESULTS.md: generator bf16 + classifier fp32 moved probabilities by
    7e-6 to 1.4e-5, the classifier in bf16 by 0.065 to 0.10), while the generator
    holds most of the work. Same calling convention as :class:`Session`.
    """

    def __init__(self, generator: Session, classifier, boundary: str):
        self.generator, self.classifier, self.boundary = generator, classifier, boundary
        self.chunk = generator.chunk
        inputs = classifier.get_inputs()[0].shape
        self._fixed = inputs[0] if isinstance(inputs[0], int) else None
        self.provider = f"{generator.provider} + onnxruntime {classifier.get_providers()[0]} fp32 (classifier)"

    def get_inputs(self) -> list:
        return self.generator.get_inputs()

    def get_outputs(self) -> list:
        return self.classifier.get_outputs()

    def get_providers(self) -> list[str]:
        return [self.provider]

    def run(self, output_names, feeds: dict) -> list[np.ndarray]:
        images = self.generator.run(None, feeds)[0]
        if self._fixed is not None:  # a classifier whose batch could not be freed: chunks of its size
            from corrkit._core.conventions import run_in_chunks

            return [run_in_chunks(self.classifier, self.boundary, images, self._fixed)]
        return self.classifier.run(output_names, {self.boundary: images})
