"""Export torch modules to ONNX, each export validating itself (after HF Optimum).

Every exported model is described by a small :class:`ExportConfig`; after writing
the file, onnxruntime is run against the torch module on random inputs at several
batch sizes and every mismatch is gathered into one error.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from corrkit.errors import CorrkitError
from corrkit.export.models import LATENT_DIM


@dataclass(frozen=True)
class ExportConfig:
    """How one model is exported and checked."""

    input_name: str
    output_name: str
    input_shape: tuple[int, ...]  # without the batch axis
    opset: int = 17
    atol: float = 1e-4
    batch_sizes: tuple[int, ...] = field(default=(1, 7, 64))
    input_kind: str = "normal"  # "normal": N(0, 1); "image": U[-1, 1]


GENERATOR_CONFIG = ExportConfig("z", "image", (LATENT_DIM,))
CLASSIFIER_CONFIG = ExportConfig("image", "logits", (1, 28, 28), input_kind="image")


class ExportValidationError(CorrkitError):
    """The exported ONNX model disagrees with its torch module."""


def _random_input(cfg: ExportConfig, batch: int, rng: np.random.Generator) -> np.ndarray:
    shape = (batch, *cfg.input_shape)
    if cfg.input_kind == "image":
        return rng.uniform(-1, 1, size=shape).astype(np.float32)
    return rng.standard_normal(shape).astype(np.float32)


def validate(module: torch.nn.Module, path: Path, cfg: ExportConfig, seed: int = 0) -> dict[str, float]:
    """Run onnxruntime against ``module``; raise one error listing every mismatch.

    Returns the max absolute difference per batch size.
    """
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    diffs, problems = {}, []
    module.eval()
    for b in cfg.batch_sizes:
        x = _random_input(cfg, b, rng)
        with torch.no_grad():
            ref = module(torch.from_numpy(x)).numpy()
        got = sess.run([cfg.output_name], {cfg.input_name: x})[0]
        if got.shape != ref.shape:
            problems.append(f"{cfg.output_name}[batch {b}]: shape {got.shape} != torch {ref.shape}")
            continue
        d = float(np.max(np.abs(got - ref)))
        diffs[f"batch_{b}"] = d
        if not np.isfinite(d) or d > cfg.atol:
            problems.append(f"{cfg.output_name}[batch {b}]: max |onnx - torch| = {d:.3g} > {cfg.atol:g}")
    if problems:
        raise ExportValidationError(f"export of {path.name} failed validation: " + "; ".join(problems))
    return diffs


def export(module: torch.nn.Module, path: str | os.PathLike, cfg: ExportConfig) -> dict[str, float]:
    """Export ``module`` (eval mode, fp32) to ``path`` with a dynamic batch axis and validate it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = module.eval().float().to(memory_format=torch.contiguous_format)
    dummy = torch.from_numpy(_random_input(cfg, 2, np.random.default_rng(1)))
    tmp = path.with_suffix(".onnx.tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, (dummy,), str(tmp), dynamo=False, opset_version=cfg.opset,
            input_names=[cfg.input_name], output_names=[cfg.output_name],
            dynamic_axes={cfg.input_name: {0: "batch"}, cfg.output_name: {0: "batch"}},
        )
    try:
        diffs = validate(module, tmp, cfg)
    except Exception:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return diffs
