"""Matplotlib for the two pictures export/ draws itself (``rca.png`` of discover, ``recon.png`` of invert).

export/ does not import :mod:`corrkit.viz`, whose figures are the torch-free
side's; these two pictures need only a figure, a grey mosaic and an atomic PNG write.
"""

from __future__ import annotations

import io as _bytes_io
import os

import numpy as np

from corrkit._core import io
from corrkit.errors import MissingExtraError

DPI = 100


def figure(width: float, height: float):
    """A constrained-layout Figure of ``width x height`` inches; :class:`MissingExtraError` without matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingExtraError("matplotlib", "figures") from None
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def png(fig, out: str | os.PathLike | None = None) -> bytes:
    """The figure as PNG bytes (white background), written atomically to ``out`` if given."""
    buf = _bytes_io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white")
    data = buf.getvalue()
    if out is not None:
        io.write_bytes(out, data)
    return data


def mosaic(images: np.ndarray, lo: float, hi: float, pad: int) -> np.ndarray:
    """Grey images float ``[R, S, H, W]`` in ``[lo, hi]`` on a white canvas in [0, 1], ``pad`` pixels apart."""
    r, s, h, w = images.shape
    canvas = np.ones((r * (h + pad) + pad, s * (w + pad) + pad), np.float32)
    norm = np.clip((images - lo) / (hi - lo), 0.0, 1.0)
    for a in range(r):
        for b in range(s):
            y, x = pad + a * (h + pad), pad + b * (w + pad)
            canvas[y:y + h, x:x + w] = norm[a, b]
    return canvas
