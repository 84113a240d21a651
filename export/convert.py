"""Torch modules of a bundle's own ONNX models, so the torch commands work on any bundle.

Gradients (``export optimize``), learned directions (``export discover``) and
inversion (``export invert``) need the generator and classifier as torch modules.
The built-in bundle ships its torch weights (:mod:`corrkit.export.weights`); for
any other bundle the modules are converted from the ONNX graphs with onnx2torch.

What is converted is the graph in the one form corrkit runs
(:meth:`corrkit._core.bundle.Bundle.runnable_generator`, ``runnable_classifier``):
extra inputs held, one output picked, float32 at the boundary, the batch freed
where exact and a ``[B, N, 1, 1]`` latent flattened. So the conventions of
:mod:`corrkit._core.conventions` are handled once, there, and not again here.

Two things stand between onnx2torch 1.5 and the graphs users export, both handled
on a copy of the graph before converting:

- it has converters up to about opset 17, and ``torch.onnx.export`` writes opset 20
  (``Reshape-19``, ``Resize-19``, ``Pad-19``, the opset-18 reductions with axes as an
  input ...): the graph is first taken down to opset 17 by ``onnx.version_converter``,
  which rewrites the ops whose meaning changed, not only their version;
- its ``Reshape`` refuses ``allowzero=1``, which torch's exporter writes on every
  ``view``: every ``Reshape`` goes to :class:`Reshape` here, registered through
  onnx2torch's public converter registry under a domain of corrkit's own.

A converted module is returned in eval mode: onnx2torch hands back a module in
training mode, where a ``BatchNormalization`` normalises with the statistics of the
batch (and overwrites its running ones), which is a different function. Every
conversion is then checked against onnxruntime on prior samples with the one
tolerance :data:`corrkit.export.weights.MATCH_ATOL`, and refused in one
:class:`~corrkit.errors.BundleError` line naming the largest difference.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import torch
from torch import nn

from corrkit.errors import BundleError, MissingExtraError
from corrkit.export import weights as _weights

CONVERTER_OPSET = 17  # the newest default-domain opset onnx2torch 1.5 converts as a whole
DOMAIN = "corrkit"  # the domain of the ops corrkit converts itself (no dots: onnx2torch names modules by it)
_REGISTERED = False
FIX = ("give the torch module instead (--torch-generator package.module:factory with --generator-weights, or "
       "--weights DIR for the paper's networks)")


def is_builtin(bundle) -> bool:
    """Whether ``bundle`` is the built-in bundle (whose torch weights ship)."""
    from corrkit._core.bundle import BUILTIN

    return bundle.path is not None and Path(bundle.path).resolve() == BUILTIN.resolve()


# --- onnx2torch ---------------------------------------------------------------------------------------------------


def _onnx2torch():
    """``onnx2torch``, imported without torchvision when that is absent.

    onnx2torch imports torchvision at import time for two detection ops (NonMaxSuppression,
    RoiAlign) that no generator or classifier here uses; without torchvision those two get a
    stand-in that is removed from ``sys.modules`` again, so nothing else sees a torchvision.
    """
    global _REGISTERED
    if "onnx2torch" in sys.modules:
        if not _REGISTERED:
            _register()
            _REGISTERED = True
        return sys.modules["onnx2torch"]
    if importlib.util.find_spec("onnx2torch") is None:
        raise MissingExtraError("onnx2torch", "convert", "beside a CPU-only torch: pip install --no-deps onnx2torch")
    stand_in = importlib.util.find_spec("torchvision") is None
    if not stand_in:
        try:  # a torchvision built for another torch (a CPU torch beside PyPI's torchvision) fails on import
            import torchvision  # noqa: F401
        except Exception:
            for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
                sys.modules.pop(name)
            stand_in = True
    if stand_in:
        def absent(*args, **kwargs):
            raise BundleError("this graph needs torchvision (NonMaxSuppression or RoiAlign); install torchvision")

        tv, ops = types.ModuleType("torchvision"), types.ModuleType("torchvision.ops")
        ops.nms = ops.roi_align = ops.box_convert = absent
        tv.ops = ops
        sys.modules["torchvision"], sys.modules["torchvision.ops"] = tv, ops
    try:
        import onnx2torch  # noqa: F401  (into sys.modules; registered below)
    finally:
        if stand_in:
            sys.modules.pop("torchvision", None)
            sys.modules.pop("torchvision.ops", None)
    return _onnx2torch()


class Reshape(nn.Module):
    """ONNX ``Reshape`` (any opset): ``allowzero=1`` is ``torch.reshape``; else a 0 copies the input's dimension."""

    def __init__(self, allowzero: int = 0):
        super().__init__()
        self.allowzero = int(allowzero)

    def forward(self, x: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        dims = [int(d) for d in shape]
        if not self.allowzero:
            dims = [x.shape[i] if d == 0 else d for i, d in enumerate(dims)]
        return torch.reshape(x, dims)


def _register() -> None:
    """corrkit's converters, in onnx2torch's public registry (once: onnx2torch refuses a second registration)."""
    from onnx2torch.node_converters.registry import add_converter
    from onnx2torch.utils.common import OperationConverterResult, onnx_mapping_from_node

    def reshape(node, graph):  # noqa: ARG001  (the converter signature)
        return OperationConverterResult(torch_module=Reshape(node.attributes.get("allowzero", 0)),
                                        onnx_mapping=onnx_mapping_from_node(node))

    try:
        add_converter(operation_type="Reshape", version=1, domain=DOMAIN)(reshape)
    except ValueError:  # registered by an earlier import of this module (importlib.reload)
        pass


def for_converter(model):
    """A copy of ``model`` that onnx2torch converts: at most opset 17, every ``Reshape`` in corrkit's domain.

    A graph ``onnx.version_converter`` cannot take down is converted at its own opset
    (onnx2torch then names the op it lacks).
    """
    import onnx
    from onnx import version_converter

    m = as_onnxruntime_runs(model)
    opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), CONVERTER_OPSET)
    if opset > CONVERTER_OPSET:
        try:
            m = version_converter.convert_version(m, CONVERTER_OPSET)
        except Exception:  # an op without a down-adapter: try the graph as it is
            pass
    try:  # shapes first: onnx2torch reads them (a BatchNormalization's rank), and cannot infer past corrkit's ops
        m = onnx.shape_inference.infer_shapes(m)
    except Exception:
        pass
    for node in m.graph.node:
        if node.op_type == "Reshape" and node.domain in ("", "ai.onnx"):
            node.domain = DOMAIN
    m.opset_import.append(onnx.helper.make_opsetid(DOMAIN, 1))
    return m


def as_onnxruntime_runs(model):
    """``model`` as onnxruntime's CPU session runs it: its basic (hardware-independent) optimisations applied.

    A float16 graph is where this matters: onnxruntime has few float16 kernels on a CPU,
    so it casts around the ops it lacks them for and removes the casts that meet, which
    decides where values are rounded to float16. Converting the graph it writes out
    (``SessionOptions.optimized_model_filepath``) gives a module that rounds where it
    does; a float32 graph only gets its constants folded.
    """
    import tempfile

    import onnx
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    with tempfile.TemporaryDirectory(prefix="corrkit-convert-") as tmp:
        so.optimized_model_filepath = str(Path(tmp) / "runs.onnx")
        try:
            ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
            return onnx.load(so.optimized_model_filepath)
        except Exception:  # written only by a session that starts; the check against onnxruntime decides
            return model


class Converted(nn.Module):
    """A module converted from an ONNX graph: ``x float32 -> float32``, eval mode, parameters frozen.

    A class of corrkit's own around onnx2torch's module, so that unpickling one (discover's
    worker processes) imports this module, and with it onnx2torch, first.
    """

    def __init__(self, module: nn.Module, latent_dim: int | None = None):
        super().__init__()
        self.module = module
        if latent_dim is not None:
            self.latent_dim = int(latent_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x).float()

    def __reduce__(self):
        import pickle

        return _restore, (pickle.dumps(self.module), getattr(self, "latent_dim", None))


def _restore(data: bytes, latent_dim: int | None) -> Converted:
    import pickle

    _onnx2torch()  # before the module's onnx2torch classes are looked up
    return _weights._frozen(Converted(pickle.loads(data), latent_dim))


def from_onnx(model, what: str, latent_dim: int | None = None) -> Converted:
    """``model`` (an ONNX ModelProto with one float32 input and output) as a frozen torch module in eval mode."""
    import warnings

    onnx2torch = _onnx2torch()
    try:
        with warnings.catch_warnings():  # its "might differ" warnings: the check against onnxruntime decides
            warnings.simplefilter("ignore")
            module = onnx2torch.convert(for_converter(model))
    except BundleError:
        raise
    except Exception as exc:  # onnx2torch's NotImplementedError names the op it lacks
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BundleError(f"the {what} cannot be converted to torch ({first[:300]}); {FIX}") from None
    return _weights._frozen(Converted(module, latent_dim))  # eval mode before any forward: see the docstring


# --- a bundle's models, checked -----------------------------------------------------------------------------------


def _prior(bundle, n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, bundle.latent_dim)).astype(np.float32)


class _Chunked(nn.Module):
    """A converted graph whose batch stayed fixed at ``b0``: any batch, in zero-padded chunks of ``b0`` rows."""

    def __init__(self, inner: Converted, b0: int):
        super().__init__()
        self.inner, self.b0 = inner, int(b0)
        if hasattr(inner, "latent_dim"):
            self.latent_dim = inner.latent_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = []
        for s in range(0, x.shape[0], self.b0):
            chunk = x[s:s + self.b0]
            short = self.b0 - chunk.shape[0]
            if short:
                chunk = torch.cat([chunk, chunk.new_zeros((short, *chunk.shape[1:]))])
            parts.append(self.inner(chunk)[: self.b0 - short])
        return torch.cat(parts)


def _runs_any_batch(module: nn.Module, model) -> nn.Module:
    from corrkit._core.conventions import fixed_batch

    b0 = fixed_batch(model)
    return module if b0 is None else _weights._frozen(_Chunked(module, b0))


def torch_generator(bundle, samples: int = 8) -> nn.Module:
    """The bundle's generator as a torch module ``z float32 [B, N] -> image float32 [B, ...]``, checked.

    Converted from :meth:`~corrkit._core.bundle.Bundle.runnable_generator` and checked
    against the bundle's generator in onnxruntime on ``samples`` prior codes
    (:func:`corrkit.export.weights.check_generator`, within ``MATCH_ATOL``).
    """
    from corrkit._core.bundle import as_bundle

    bundle = as_bundle(bundle)
    model = bundle.runnable_generator()
    G = _runs_any_batch(from_onnx(model, "generator", bundle.latent_dim), model)
    _weights.check_generator(G, bundle, samples)
    return G


def torch_classifier(bundle, samples: int = 8) -> nn.Module:
    """The bundle's classifier as a torch module ``x float32 [B, ...] -> float32 [B, C]`` (its own outputs), checked.

    Checked against onnxruntime on the generator's images of ``samples`` prior codes,
    mapped to the classifier's input range (the inputs it sees in every command).
    """
    from corrkit._core.bundle import as_bundle
    from corrkit._core.conventions import cpu_session, run_rows
    from corrkit._core.engine import generate

    bundle = as_bundle(bundle)
    model = bundle.runnable_classifier()
    Q = _runs_any_batch(from_onnx(model, "classifier"), model)
    lo, hi = map(float, bundle.classifier_input_range)
    img = generate(bundle, _prior(bundle, samples), raw=True)
    lo_g, hi_g = map(float, bundle.generator_output_range)
    x = (lo + (img.astype(np.float64) - lo_g) * (hi - lo) / (hi_g - lo_g)).astype(np.float32)
    want = run_rows(cpu_session(model), x)
    with torch.no_grad():
        got = Q(torch.from_numpy(x)).numpy()
    _weights.check_matches(got, want, "classifier's outputs", FIX)
    return Q


def torch_fused(bundle) -> nn.Module:
    """A fused bundle's ``z -> S(z)`` graph (:meth:`~corrkit._core.bundle.Bundle.fused_model`) as a torch module.

    Checked by the caller (``export optimize`` compares ``S(z)`` on its code sets).
    """
    model = bundle.fused_model()
    return _runs_any_batch(from_onnx(model, "model", bundle.latent_dim), model)
