"""int8 mode: static QDQ quantization of the fused model's convolutions (SPEC §10: a faster mode).

onnxruntime's CPU kernels run int8 convolutions with VNNI instructions, several
times faster than fp32 on processors that have them. Activation ranges are
calibrated on the generator's own activations for seeded prior samples, so the
quantized model is a function of the bundle and the seed. fp32 stays the
reference; the fidelity of this mode is always reported beside its results.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

from corrkit.errors import CorrkitError

MODES = ("fp32", "int8")


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise CorrkitError(f"--mode must be one of {', '.join(MODES)}, not {mode!r}")
    return mode


def quantize_int8(model, latent_dim: int, seed: int = 0, n_calib: int = 512, batch: int = 64):
    """Return a QDQ int8 copy of ``model`` (z -> probs) with every Conv quantized.

    Weights: int8 per output channel; activations: uint8, MinMax ranges from
    ``n_calib`` prior samples drawn with ``numpy.random.default_rng(seed)``.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static,
    )

    z = np.random.default_rng(seed).standard_normal((n_calib, latent_dim)).astype(np.float32)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter([{"z": z[s:s + batch]} for s in range(0, n_calib, batch)])

        def get_next(self):
            return next(self._it, None)

    with tempfile.TemporaryDirectory() as d:
        src, dst = os.path.join(d, "fp32.onnx"), os.path.join(d, "int8.onnx")
        onnx.save(model, src)
        try:
            quantize_static(src, dst, Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["Conv"],
                            calibrate_method=CalibrationMethod.MinMax)
        except Exception as exc:
            first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise CorrkitError(f"int8 quantization failed ({first}); use --mode fp32") from None
        return onnx.load(dst)
