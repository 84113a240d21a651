"""int8 mode: static QDQ quantization of the fused model's convolutions (SPEC §10: a faster mode).

onnxruntime's CPU kernels run int8 convolutions with VNNI instructions, several
times faster than fp32 on processors that have them. Activation ranges are
calibrated on the generator's own activations for seeded prior samples, so the
quantized model is a function of the bundle and the seed. fp32 stays the
reference; the fidelity of this mode is always reported beside its results.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile

import numpy as np

from corrkit.errors import CorrkitError
from corrkit._core.execution import MODES  # the one list of --mode values
from corrkit._core.rewrite import THIN


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise CorrkitError(f"--mode must be one of {', '.join(MODES)}, not {mode!r}")
    return mode


def wide_convs(model, min_channels: int = 16) -> list[str]:
    """Names of the convolutions worth quantizing: those that read and write ``>= min_channels`` channels.

    Thin convolutions (the generator's last layer to one grey channel, the
    classifier's first from it) carry the image itself; quantizing them costs the
    most fidelity and saves the least time. In a fused bundle only the
    generator's (``g/``) convolutions are taken: they hold almost all the work.
    """
    from onnx import numpy_helper

    weights = {i.name: i for i in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "Conv" and n.input[1] in weights]
    if any(n.name.startswith("g/") for n in convs):
        convs = [n for n in convs if n.name.startswith("g/")]
    out = []
    for n in convs:
        if THIN + "/" in n.name:  # corrkit._core.rewrite.thin_conv_split's halves of a thin conv carry the image
            continue
        shape = numpy_helper.to_array(weights[n.input[1]]).shape
        if shape[0] >= min_channels and shape[1] >= min_channels:
            out.append(n.name)
    return out


CALIBRATION_BYTES = 2 << 30  # what the percentile calibrator may hold (it keeps every activation value)


def activation_bytes_per_row(model) -> int:
    """float32 bytes of every intermediate tensor of one batch row (what the calibrator keeps per sample)."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    total = 0
    for vi in inferred.graph.value_info:
        dims = vi.type.tensor_type.shape.dim[1:]
        if dims and all(d.HasField("dim_value") for d in dims):
            total += 4 * int(np.prod([d.dim_value for d in dims]))
    return max(total, 1)


def calibration_rows(model, most: int = 512, least: int = 32) -> int:
    """Prior samples for the int8 calibration: ``most``, fewer when their activations pass
    :data:`CALIBRATION_BYTES` (a 256-px StyleGAN2 held 24 GB at 512), never under ``least``.
    A function of the model only, so the quantized graph is too."""
    return int(np.clip(CALIBRATION_BYTES // activation_bytes_per_row(model), least, most))


def quantize_int8(model, latent_dim: int, seed: int = 0, n_calib: int | None = None, batch: int = 64):
    """Return a QDQ int8 copy of ``model`` (z -> probs) with its wide convolutions quantized.

    Weights: int8 per output channel; activations: uint8, ranges from the
    0.01-99.99 percentiles over ``n_calib`` prior samples (default :func:`calibration_rows`; rounded down
    to equal batches of at most ``batch``) drawn with
    ``numpy.random.default_rng(seed)`` (percentiles, not min/max: one outlier
    activation would otherwise stretch the whole range). Measured on the built-in
    bundle (after the exact rewrites): 1.36x the fp32 points/s end to end on the default grid, max
    |dAPCR| 0.025, top-10 overlap >= 0.9 per class (benchmarks/RESULTS.md).
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static,
    )

    n_calib = n_calib or calibration_rows(model)
    # equal batches: onnxruntime's percentile calibrator stacks each batch's activations into one
    # array and fails on a shorter last batch (100 rows in 64 + 36 did; 50 + 50 runs)
    n_batches = -(-n_calib // batch)
    batch = n_calib // n_batches
    n_calib = batch * n_batches
    z = np.random.default_rng(seed).standard_normal((n_calib, latent_dim)).astype(np.float32)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter([{"z": z[s:s + batch]} for s in range(0, n_calib, batch)])

        def get_next(self):
            return next(self._it, None)

    with tempfile.TemporaryDirectory() as d:
        src, dst = os.path.join(d, "fp32.onnx"), os.path.join(d, "int8.onnx")
        onnx.save(model, src)
        nodes = wide_convs(model)
        if not nodes:
            raise CorrkitError("int8 mode found no convolution with >= 16 channels to quantize; use --mode fp32")
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # the calibrator prints progress to stdout
                quantize_static(src, dst, Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                                weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["Conv"],
                                nodes_to_quantize=nodes, calibrate_method=CalibrationMethod.Percentile,
                                extra_options={"CalibPercentile": 99.99})
        except Exception as exc:
            first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise CorrkitError(f"int8 quantization failed ({first}); use --mode fp32") from None
        return onnx.load(dst)
