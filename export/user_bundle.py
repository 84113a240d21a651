"""From a user's torch modules to a validated bundle: export both to ONNX, check them, write the card.

Each model is exported with a symbolic batch axis and validated against its torch
module at several batch sizes (:func:`corrkit.export.onnx_export.export`, one
tolerance); the pair then goes through :func:`corrkit._core.bundle.create_bundle`,
which checks shapes, reads the classifier's output kind from prior samples and
writes the bundle folder atomically, with a model card beside it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from corrkit.errors import BundleError
from corrkit.export.onnx_export import ExportConfig, export


def _shape(latent_shape) -> tuple[int, ...]:
    shape = (int(latent_shape),) if np.isscalar(latent_shape) else tuple(int(d) for d in latent_shape)
    if not (len(shape) == 1 or (len(shape) == 3 and shape[1:] == (1, 1))) or shape[0] < 1:
        raise BundleError(f"latent shape must be (N,) or (N, 1, 1) without the batch axis, got {shape}")
    return shape


def export_bundle(generator: torch.nn.Module, classifier: torch.nn.Module, out, latent_shape, *, classes=None,
                  generator_output_range=(-1.0, 1.0), classifier_input_range=(-1.0, 1.0),
                  classifier_output: str = "auto", opset: int = 17, force: bool = False):
    """Export a user's generator and classifier and write them as a bundle folder at ``out``.

    Parameters
    ----------
    generator, classifier : torch.nn.Module
        ``generator(z)`` maps ``z [B, *latent_shape]`` to images ``[B, ch, H, W]`` in
        ``generator_output_range``; ``classifier(x)`` maps images in
        ``classifier_input_range`` to ``[B, C]`` logits or probabilities.
    latent_shape : int or tuple
        ``N`` or ``(N, 1, 1)`` (the DCGAN convention), without the batch axis.

    Returns
    -------
    Bundle
        The bundle as loaded back from ``out``.
    """
    from corrkit._core.bundle import create_bundle

    shape = _shape(latent_shape)
    generator, classifier = generator.eval().float(), classifier.eval().float()
    with torch.no_grad():
        image = generator(torch.randn(2, *shape, generator=torch.Generator().manual_seed(0)))
    if image.ndim != 4:
        raise BundleError(f"the generator returned shape {list(image.shape)}; expected images [B, ch, H, W]")
    lo, hi = map(float, generator_output_range)
    g_cfg = ExportConfig("z", "image", shape, opset=opset)
    # classifier inputs drawn from its declared input range's interior, as it sees them
    q_cfg = ExportConfig("image", "scores", tuple(image.shape[1:]), opset=opset, input_kind="image")
    with tempfile.TemporaryDirectory(prefix=".corrkit-export-") as tmp:
        g_path, q_path = Path(tmp) / "generator.onnx", Path(tmp) / "classifier.onnx"
        validation = {"generator": export(generator, g_path, g_cfg), "classifier": export(classifier, q_path, q_cfg)}
        card = "\n".join([
            "# Model card", "",
            "Exported by `corrkit.export.export_bundle` from the user's torch modules "
            f"(`{type(generator).__name__}`, `{type(classifier).__name__}`).", "",
            f"- latent: `z [batch, {', '.join(map(str, shape))}]`, standard normal prior",
            f"- images: `[batch, {', '.join(map(str, image.shape[1:]))}]` in [{lo:g}, {hi:g}]",
            f"- classifier input range: [{classifier_input_range[0]:g}, {classifier_input_range[1]:g}]",
            f"- opset {opset}; each export checked against torch at batch sizes {list(g_cfg.batch_sizes)}: max "
            f"|onnx - torch| generator {max(validation['generator'].values()):.2g}, classifier "
            f"{max(validation['classifier'].values()):.2g} (tolerance {g_cfg.atol:g})",
            "", "Training data, intended use and limits: fill in.", ""])
        bundle = create_bundle(g_path, q_path, out, classes=classes, generator_output_range=(lo, hi),
                               classifier_input_range=classifier_input_range, classifier_output=classifier_output,
                               force=force, extra_files={"MODEL_CARD.md": card.encode()},
                               provenance={"created_by": "corrkit.export.export_bundle", "validation": validation})
    return bundle
