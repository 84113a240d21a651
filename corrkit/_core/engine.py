"""The inference engine: one onnxruntime session over the fused z -> probabilities graph.

CPU and CUDA share one code path; the device, IO binding and a preallocated
output buffer are parameters. Batches are sized from a memory budget.
"""

from __future__ import annotations

import os
from typing import Callable

import numpy as np

from corrkit.errors import BundleError, ModelOutputError

DEFAULT_BUDGET_MB = {"cpu": 256, "cuda": 4096}
PROB_TOL = 1e-3


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def cuda_available() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def resolve_device(device: str) -> str:
    if device not in ("auto", "cpu", "cuda"):
        raise BundleError(f"--device must be auto, cpu or cuda, not {device!r}")
    if device == "auto":
        return "cuda" if cuda_available() else "cpu"
    if device == "cuda" and not cuda_available():
        raise BundleError("--device cuda needs onnxruntime-gpu and a GPU: pip install 'corrkit[gpu]'")
    return device


def bytes_per_point(model) -> int:
    """Peak activation bytes for one batch row, fp32: the most that is alive at once in node order.

    Each tensor lives from the node that writes it to the last node that reads it.
    onnxruntime plans memory the same way and reuses freed buffers, so this is close to
    its peak and still above it. A convolution's column buffer is not counted: onnxruntime's
    CPU Conv and ConvTranspose fill it for one image at a time and loop over the batch,
    so it does not grow with the rows a call holds.
    """
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    for vi in list(m.graph.input) + list(m.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = 1
    try:
        inferred = onnx.shape_inference.infer_shapes(m, data_prop=True)
    except Exception:
        return 1 << 20
    shapes, types = {}, {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        dims = vi.type.tensor_type.shape.dim
        types[vi.name] = vi.type.tensor_type.elem_type
        if dims and all(d.HasField("dim_value") for d in dims):
            shapes[vi.name] = [d.dim_value for d in dims]
    weights = {t.name for t in m.graph.initializer}
    unknown = [t for n in m.graph.node for t in n.output if t and t not in shapes and types.get(t)]
    if unknown:  # shape inference stops at data-dependent reshapes (a modulated conv's, say): ask onnxruntime
        shapes.update(_run_shapes(m, unknown, types))
    nodes = list(m.graph.node)
    last = {}
    for i, n in enumerate(nodes):
        for t in n.input:
            last[t] = i
    for o in m.graph.output:
        last[o.name] = len(nodes)

    def size(t):
        return int(np.prod(shapes[t])) * 4 if t in shapes and t not in weights else 0

    live = sum(size(i.name) for i in m.graph.input)
    peak = live
    for i, n in enumerate(nodes):
        out = sum(size(t) for t in n.output)
        peak = max(peak, live + out)
        live += out
        live -= sum(size(t) for t in set(n.input) | set(n.output) if last.get(t, -1) <= i)
    return max(int(peak), 4096)


def _run_shapes(m, names: list[str], types: dict[str, int]) -> dict[str, list[int]]:
    """The shapes of tensors ``names`` of ``m`` (batch 1 set on its inputs) from one onnxruntime run on zeros.

    Empty when the graph does not run that way (an input of unknown size, an error): the estimate
    then counts those tensors as zero, as before.
    """
    import onnx
    import onnxruntime as ort
    from onnx import helper

    feeds = {}
    for vi in m.graph.input:
        dims = [d.dim_value if d.HasField("dim_value") else 0 for d in vi.type.tensor_type.shape.dim]
        if not dims or min(dims) < 1:
            return {}
        feeds[vi.name] = np.zeros(dims, helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type))
    probe = onnx.ModelProto()
    probe.CopyFrom(m)
    have = {o.name for o in probe.graph.output}
    names = [t for t in names if t not in have]
    probe.graph.output.extend(helper.make_tensor_value_info(t, types[t], None) for t in names)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # every tensor stays a tensor
    so.log_severity_level = 3
    try:
        sess = ort.InferenceSession(probe.SerializeToString(), so, providers=["CPUExecutionProvider"])
        got = sess.run(names, feeds)
    except Exception:
        return {}
    return {t: list(a.shape) for t, a in zip(names, got) if a.ndim}


def default_batch_size(model, device: str, memory_budget_mb: int | None = None) -> int:
    """Rows per session call that fit ``memory_budget_mb`` (default 256 on CPU, 4096 on CUDA) of activations."""
    budget = (memory_budget_mb or DEFAULT_BUDGET_MB[device]) * (1 << 20)
    return int(np.clip(budget // bytes_per_point(model), 16, 16384))


THIN_OUT_CHANNELS = 16  # onnxruntime CPU: ConvTransposes to fewer channels are left whole (rewritten())
TRANSPOSE_FORM = {  # backend -> transpose_rewrites' options (rewritten())
    "onnxruntime": {"min_out_channels": THIN_OUT_CHANNELS, "into_conv": True},
    "openvino": {"interleave": "depth_to_space", "min_side": 1},
    "delta": {"interleave": "depth_to_space", "min_side": 1, "min_out_channels": 32},
}


def rewritten(model, backend: str = "onnxruntime", **form):
    """``(model, rewrites)``: the exact graph rewrites applied (SPEC §10), and how many of each.

    ``backend="openvino"`` shapes the ConvTranspose phase form for OpenVINO's kernels
    (DepthToSpace interleave, every layer: :func:`~corrkit._core.rewrite_transpose.transpose_rewrites`);
    ``"delta"`` the same but for layers to fewer than 32 channels (``--mode bf16-delta``).
    On onnxruntime a layer to fewer than :data:`THIN_OUT_CHANNELS` channels (a generator's last,
    RGB layer) stays a ConvTranspose: its phases fill a fraction of one 16-channel block of
    onnxruntime's blocked layout, and their interleave moves the padding (benchmarks/RESULTS.md).
    Where a stride-2 conv reads such a layer (a classifier's first conv on the image), that conv reads
    its phases directly instead, with no interleave (``conv_transpose_into_conv``, onnxruntime only).
    ``form`` overrides the backend's transpose_rewrites options (the benchmarks' A/B graphs).
    """
    from corrkit._core.rewrite import subpixel_phase_form, thin_conv_split
    from corrkit._core.rewrite_transpose import transpose_rewrites

    model, done = transpose_rewrites(model, **{**TRANSPOSE_FORM.get(backend, TRANSPOSE_FORM["onnxruntime"]), **form})
    model, n_sub = subpixel_phase_form(model)
    model, n_split = thin_conv_split(model, max_out=4)
    done.update({k: v for k, v in [("subpixel_phase_form", n_sub), ("thin_conv_split", n_split)] if v})
    return model, done


def _ort_session(model, options, providers):
    import onnxruntime as ort

    try:
        return ort.InferenceSession(model.SerializeToString(), options, providers=providers)
    except Exception as exc:
        raise BundleError(f"onnxruntime cannot load the model: {str(exc).splitlines()[0][:300]}") from None


def _session_options(threads: int, spin: bool = True):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    if not spin:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return so


def _ort_lanes(model, providers, threads: int, lanes: int | None, can_split: bool):
    """``(session, lanes)``: one onnxruntime session, or a :class:`~corrkit._core.lanes.Lanes` of ``lanes``."""
    from corrkit._core.lanes import Lanes, default_lanes, lane_threads

    n = (default_lanes(threads) if lanes is None else int(lanes)) if can_split else 1
    if n <= 1:
        return _ort_session(model, _session_options(threads), providers), 1
    # no spinning: a lane's spinning threads would take the cores of the others
    return Lanes([_ort_session(model, _session_options(t, spin=False), providers)
                  for t in lane_threads(threads, n)], "z"), n


OPENVINO_PRECISION = {"bf16": "bf16", "ov-fp32": "fp32"}  # --mode -> the generator part's OpenVINO precision


def _openvino_session(model, parts, threads: int, options, providers, rewrite: bool, mode: str):
    """``(session, rewrites)`` for ``--mode bf16`` / ``ov-fp32``: the generator part on OpenVINO in bf16 (or
    fp32), the classifier part on onnxruntime fp32 (:class:`corrkit._core.openvino.Pipeline`); a graph
    ``parts`` could not split (a user's fused model) runs whole on OpenVINO, and ``rewrites`` is then ``None``.

    The generator part gets the phase form shaped for OpenVINO (``backend="openvino"``); the
    classifier's onnxruntime threads do not spin after a call, since OpenVINO's threads take
    the cores next (spinning cost the pipeline 28% at 64 px, benchmarks/RESULTS.md).
    """
    from corrkit._core.openvino import Pipeline, Session, _openvino, check_available

    precision = OPENVINO_PRECISION[mode]
    if precision == "bf16":
        check_available()
    else:
        _openvino()
    if parts is None:
        return Session(model, precision=precision, threads=threads), None
    g, q, boundary = parts
    done = {}
    if rewrite:
        (g, done_g), (q, done_q) = rewritten(g, backend="openvino"), rewritten(q)
        done = {k: done_g.get(k, 0) + done_q.get(k, 0) for k in {*done_g, *done_q}}
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return Pipeline(Session(g, precision=precision, threads=threads), _ort_session(q, options, providers),
                    boundary), done


class Engine:
    """Batched probabilities ``S(z)`` on onnxruntime.

    Parameters
    ----------
    bundle : Bundle or onnx.ModelProto
        A bundle (its fused graph is built) or a fused ModelProto ``z -> probs``.
    device : {"auto", "cpu", "cuda"}
    batch_size : int, optional
        Rows per session call; by default derived from ``memory_budget_mb``.
    memory_budget_mb : int, optional
        Activation memory allowed for one batch (default 256 on CPU, 4096 on CUDA).
    threads : int, optional
        onnxruntime intra-op threads (default: all cores of this process). Numba
        kernels run between session calls, never at the same time, so they get the
        same cores without contention.
    lanes : int, optional
        onnxruntime CPU sessions that each run a contiguous part of every batch at once, the
        threads shared out among them (:mod:`corrkit._core.lanes`; default 2 from 2 threads up, on
        CPU fp32 and int8; 1 on CUDA, OpenVINO and graphs of a fixed batch). Rows do not depend on it.
    io_binding : bool, optional
        Bind input and a preallocated output buffer (default: on for CUDA).
    check_probabilities : bool
        Verify rows are non-negative and sum to 1 (catches logits declared as probabilities).
    mode : {"fp32", "int8", "bf16", "ov-fp32", "bf16-delta"}
        ``fp32`` is the reference; ``int8`` quantizes the convolutions (see :mod:`corrkit._core.quantize`);
        ``bf16`` and ``ov-fp32`` run the generator part on OpenVINO (bf16, or fp32 arithmetic on its kernels);
        ``bf16-delta`` runs grid points as bf16 changes from their codes (:mod:`corrkit._core.delta`; other
        calls in fp32).
    autotune : bool, optional
        Measure the batch size when none is given (default, unless ``$CORRKIT_AUTOTUNE`` is
        ``0``: the test suite's setting, so its many small models are not each timed); False:
        the memory budget's.
    attributes : bool, optional
        The rows are attribute score pairs ``[σ, 1 - σ]`` (SPEC §11); default: what the bundle declares
        (``False`` for a bare ModelProto).
    rewrite : bool
        Apply exact graph rewrites (:mod:`corrkit._core.rewrite_transpose`, then
        :mod:`corrkit._core.rewrite`; equal to the plain graph within 1e-5 relative, SPEC §10).
        ``self.rewrites`` records what was applied.
    """

    def __init__(self, bundle, *, device: str = "auto", batch_size: int | None = None,
                 memory_budget_mb: int | None = None, threads: int | None = None,
                 io_binding: bool | None = None, check_probabilities: bool = True, mode: str = "fp32",
                 seed: int = 0, rewrite: bool = True, autotune: bool | None = None, attributes: bool | None = None,
                 lanes: int | None = None):
        import onnx

        from corrkit._core.quantize import check_mode, quantize_int8

        from corrkit._core.attributes import is_attributes

        model = bundle.fused_model() if hasattr(bundle, "fused_model") else bundle
        # attribute scores (SPEC §11): codes may sit in several sets, and rows are [σ, 1 - σ] pairs
        self.attributes = (hasattr(bundle, "fused_model") and is_attributes(bundle)) if attributes is None \
            else bool(attributes)
        self.device = resolve_device(device)
        self.latent_dim = int(model.graph.input[0].type.tensor_type.shape.dim[1].dim_value)
        # Prior codes in the model's space (a mapping/synthesis bundle maps them to W, SPEC §12).
        self.draw = getattr(bundle, "draw", None) or (
            lambda rng, n: rng.standard_normal((n, self.latent_dim)).astype(np.float32))
        self.mode = check_mode(mode)
        self.rewrites: dict[str, int] = {}
        # The rewrites write float32 weights: they serve float32 graphs only (an fp16 graph runs as exported).
        low = (onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16)
        can_rewrite = rewrite and all(t.data_type not in low for t in model.graph.initializer)
        parts, self.delta = None, None
        if mode == "bf16-delta":
            from corrkit._core.conventions import fixed_batch
            from corrkit._core.delta import DEFAULT_CHUNK, DeltaSession

            if any(t.data_type in low for t in model.graph.initializer):
                raise BundleError("--mode bf16-delta runs float32 graphs (this one has float16 or bfloat16 weights)")
            fixed = fixed_batch(model)
            if fixed is not None:
                raise BundleError("--mode bf16-delta needs a model whose batch dimension is free; this one's is "
                                  f"fixed at {fixed}: use --mode bf16")
            m_ov, self.rewrites = rewritten(model, backend="delta") if can_rewrite else (model, {})
            # static chunks of at most the batch: a call never pads more rows than it brings
            chunk = min(DEFAULT_CHUNK, batch_size or DEFAULT_CHUNK)
            self.delta = DeltaSession(m_ov, threads or cpu_count(), chunk=chunk)
        ov = mode in OPENVINO_PRECISION  # the generator on OpenVINO, the classifier in fp32 (openvino.Pipeline)
        if ov:
            from corrkit._core.openvino import split_at_classifier

            parts = split_at_classifier(model)
        if can_rewrite:
            model, done = rewritten(model, backend="openvino" if ov else "onnxruntime")
            self.rewrites = self.rewrites or done
        if mode == "int8":
            model = quantize_int8(model, self.latent_dim, seed=seed)
        self.threads = threads or cpu_count()
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if self.device == "cuda" else [
            "CPUExecutionProvider"]
        from corrkit._core.conventions import fixed_batch

        # A graph whose batch could not be freed runs on chunks of its own size (conventions.run_in_chunks).
        self.fixed_batch = fixed_batch(model)
        if ov:
            self.session, done = _openvino_session(model, parts, self.threads, _session_options(self.threads),
                                                   providers, can_rewrite, mode)
            self.rewrites, self.lanes = done or self.rewrites, 1
        else:
            self.session, self.lanes = _ort_lanes(model, providers, self.threads, lanes,
                                                  self.device == "cpu" and self.fixed_batch is None)
        self.provider = self.session.get_providers()[0] if self.delta is None else self.delta.provider
        self.model = model
        self.io_binding = (self.device == "cuda") if io_binding is None else bool(io_binding)
        if self.fixed_batch is not None or ov:
            self.io_binding = False
        if ov:
            self.fixed_batch = None  # the OpenVINO session runs its own fixed chunks
        self.check_probabilities = check_probabilities
        self.n_classes: int | None = None
        self._out: np.ndarray | None = None
        budget_rows = default_batch_size(model, self.device, memory_budget_mb)
        if autotune is None:
            autotune = os.environ.get("CORRKIT_AUTOTUNE", "1") != "0"
        self._plain_rows = None  # bf16-delta: rows per fp32 call, when fewer than the batch
        if batch_size:
            self.batch_size, self.batch_source = int(batch_size), "given"
        elif self.delta is not None:
            # whole chunks of its static shape: a code's rows then fill them but for one partial chunk per code
            c = self.delta.chunk
            self.batch_size, self.batch_source = max(c, budget_rows // c * c), "memory budget, whole chunks"
            self._plain_rows = min(self.batch_size, budget_rows)  # its fp32 calls hold every row's full activations
        elif not autotune or self.fixed_batch is not None:
            self.batch_size, self.batch_source = budget_rows, "memory budget"
        else:
            from corrkit._core import autotune as tune

            self.batch_size, self.batch_source = tune.tuned_batch_size(
                self._run, self.latent_dim, budget_rows,
                tune.key(model.SerializeToString(), self.device, self.provider, self.threads, budget_rows,
                         self.lanes))

    def _run(self, z: np.ndarray) -> np.ndarray:
        try:
            return self._run_session(z)
        except Exception as exc:  # onnxruntime's own errors (a Reshape that cannot hold the batch ...)
            if isinstance(exc, (BundleError, ModelOutputError)) or type(exc).__module__.split(".")[0] != "onnxruntime":
                raise
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BundleError(f"onnxruntime failed while running the model on a batch of {len(z)}: "
                              f"{first[:400]}") from None

    def _run_session(self, z: np.ndarray) -> np.ndarray:
        if self.fixed_batch is not None:
            from corrkit._core.conventions import run_in_chunks

            return run_in_chunks(self.session, "z", z, self.fixed_batch)
        if not self.io_binding:
            return self.session.run(["probs"], {"z": z})[0]
        b = self.session.io_binding()
        b.bind_cpu_input("z", z)
        if self.n_classes is None:
            b.bind_output("probs", "cpu")
            self.session.run_with_iobinding(b)
            return b.copy_outputs_to_cpu()[0]
        if self._out is None or self._out.shape[0] < len(z):
            self._out = np.empty((self.batch_size, self.n_classes), np.float32)
        out = self._out[: len(z)]
        b.bind_output("probs", "cpu", 0, np.float32, list(out.shape), out.ctypes.data)
        self.session.run_with_iobinding(b)
        return out.copy()

    @property
    def plain_batch(self) -> int:
        """Rows per call of the plain fp32 session (bf16-delta's batch is for its chunks of changes)."""
        return self._plain_rows or self.batch_size

    def probabilities(self, z: np.ndarray, describe: Callable[[int], str] | None = None,
                      near: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """``S(z)`` for ``z`` float32 ``[B, N]``; returns float32 ``[B, C]``.

        ``near = (refs [U, N], index [B])`` says row ``r`` lies near code ``refs[index[r]]`` (grid
        points near their code): ``--mode bf16-delta`` then runs the rows as changes from their
        codes (:mod:`corrkit._core.delta`); every other mode, and bf16-delta without it, ignores it
        (bf16-delta then runs fp32). Raises :class:`ModelOutputError` on NaN/inf or
        non-probability rows, naming the first bad row through ``describe(row)`` when given.
        """
        z = np.ascontiguousarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise BundleError(f"latent batch has shape {z.shape}, the model takes [batch, {self.latent_dim}]")
        parts = []
        for s in range(0, len(z), self.batch_size):
            if near is not None and self.delta is not None:
                p = self.delta.run(z[s:s + self.batch_size], near[0], near[1][s:s + self.batch_size])
            elif self._plain_rows and self.batch_size > self._plain_rows:
                r = self._plain_rows
                p = np.concatenate([self._run(z[t:t + r]) for t in range(s, min(s + self.batch_size, len(z)), r)])
            else:
                p = self._run(z[s:s + self.batch_size])
            self._check(p, s, describe)
            parts.append(p)
        return np.concatenate(parts) if parts else np.zeros((0, self.n_classes or 0), np.float32)

    def _check(self, p: np.ndarray, offset: int, describe) -> None:
        if p.ndim != 2:
            raise BundleError(f"the classifier output has shape {list(p.shape)}, expected [batch, C]")
        if self.n_classes is None:
            self.n_classes = p.shape[1]
        where = (lambda r: describe(offset + r)) if describe else (lambda r: f"row {offset + r}")
        finite = np.isfinite(p).all(axis=1)
        if not finite.all():
            r = int(np.argmin(finite))
            raise ModelOutputError(f"the model produced NaN or infinite outputs at {where(r)}")
        if self.check_probabilities and self.attributes:
            from corrkit._core.attributes import check_scores

            bad = check_scores(p, PROB_TOL)
            if bad.any():
                r = int(np.argmax(bad))
                raise ModelOutputError(f"the attribute scores are not [σ, 1 - σ] pairs in [0, 1] at {where(r)}")
        elif self.check_probabilities:
            bad = (np.abs(p.sum(axis=1) - 1.0) > PROB_TOL) | (p.min(axis=1) < -PROB_TOL)
            if bad.any():
                r = int(np.argmax(bad))
                raise ModelOutputError(
                    f"the classifier outputs are not probabilities (row sums to {p[r].sum():.4g}) at {where(r)}; "
                    "if the model emits logits, declare it (--output logits / classifier_output: logits)"
                )


def generate(bundle, z: np.ndarray, batch_size: int = 256, raw: bool = False) -> np.ndarray:
    """The generator's images for codes ``z`` float32 ``[B, N]``, mapped from its output range to [0, 1].

    The one image-generating function of corrkit (figures, traversals, edits,
    inversion checks). Returns float32 ``[B, H, W]`` for one channel and
    ``[B, H, W, C]`` (channels last, for drawing in colour) for more. ``raw``: the
    generator's own output ``[B, ...]``, float32, in its range.
    """
    from corrkit._core.conventions import cpu_session, run_rows

    session = cpu_session(bundle.runnable_generator(), threads=cpu_count())
    images = run_rows(session, np.ascontiguousarray(z, dtype=np.float32), batch_size)
    if raw:
        return np.asarray(images, np.float32)
    lo, hi = map(float, bundle.generator_output_range)
    images = np.clip((images.astype(np.float32) - lo) / (hi - lo), 0.0, 1.0)
    if images.ndim == 4:  # [B, C, H, W]
        images = images[:, 0] if images.shape[1] == 1 else images.transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images, dtype=np.float32)
