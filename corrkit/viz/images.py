"""The image grid: generator images as rows x columns on one canvas, as PNG (extra ``figures``).

Every picture of corrkit (traversals, concept manipulation, translation, inverted
codes) is this grid. Images arrive in [0, 1] as :func:`corrkit._core.engine.generate`
returns them, grey ``[R, S, H, W]`` or colour ``[R, S, H, W, C]``; the grid only
places them. They are pasted into one array and shown by a single ``imshow``, so
every image gets the same pixel scale and the figure stays small for big grids.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from corrkit.errors import CorrkitError
from corrkit.viz.plots import _figure, _finish


def _images(images) -> np.ndarray:
    a = np.asarray(images, dtype=np.float64)
    grey = a.ndim == 4
    if not (grey or (a.ndim == 5 and a.shape[-1] in (3, 4))) or 0 in a.shape:
        raise CorrkitError(f"images must be a non-empty 4-d [R, S, H, W] (grey) or 5-d [R, S, H, W, 3|4] (colour) "
                           f"array, got shape {list(a.shape)}")
    return a


def _mosaic(images: np.ndarray, pad: int, band: int) -> np.ndarray:
    """Images on a white canvas, ``pad`` pixels apart, with a ``band`` of pixels under each row for text."""
    r, s, h, w = images.shape[:4]
    canvas = np.ones((r * (h + pad + band) + pad, s * (w + pad) + pad, *images.shape[4:]), np.float32)
    norm = np.clip(images, 0.0, 1.0)
    for a in range(r):
        for b in range(s):
            y, x = pad + a * (h + pad + band), pad + b * (w + pad)
            canvas[y:y + h, x:x + w] = norm[a, b]
    return canvas


def image_grid(images, *, row_labels: Sequence[str] | None = None, col_labels: Sequence[str] | None = None,
               cell_text=None, title: str | None = None, cell_inches: float = 0.62, out=None) -> bytes:
    """Rows = codes (or directions), columns = intervention steps (SPEC §5 pictures).

    Parameters
    ----------
    images : float [R, S, H, W] or [R, S, H, W, C]
        Grey or colour (``C`` = 3 or 4, channels last) images in [0, 1]: 0 is black,
        1 white; values outside are clipped.
    row_labels, col_labels : list of str, optional
    cell_text : [R, S] of str or float, optional
        Written under each image (e.g. the class probability).

    Returns
    -------
    bytes
        The PNG, also written atomically to ``out`` when given.
    """
    images = _images(images)
    r, s, h, w = images.shape[:4]
    pad = max(1, h // 14)
    band = h * 3 // 10 if cell_text is not None else 0
    canvas = _mosaic(images, pad, band)
    # Room for the labels and the title, which a fixed-aspect image does not make by itself.
    left = 0.3 + 0.075 * max((len(str(t)) for t in row_labels), default=0) if row_labels is not None else 0.2
    top = (0.45 if title else 0.1) + (0.3 if col_labels is not None else 0.0)
    width = max(left + s * cell_inches + 0.3, 0.09 * len(title or "") + 0.4)
    fig = _figure(width, top + r * cell_inches * (h + pad + band) / (h + pad) + 0.15)
    ax = fig.add_subplot()
    if canvas.ndim == 2:
        ax.imshow(canvas, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(canvas, interpolation="nearest")
    centres_x = pad + np.arange(s) * (w + pad) + w / 2 - 0.5
    centres_y = pad + np.arange(r) * (h + pad + band) + h / 2 - 0.5
    ax.set_xticks(centres_x, list(col_labels) if col_labels is not None else [])
    ax.set_yticks(centres_y, list(row_labels) if row_labels is not None else [])
    ax.xaxis.tick_top()
    ax.tick_params(length=0, labelsize=8)
    for side in ax.spines.values():
        side.set_visible(False)
    if cell_text is not None:
        text = np.asarray(cell_text, dtype=object)
        if text.shape != (r, s):
            raise CorrkitError(f"cell_text has shape {list(text.shape)}, images need [{r}, {s}]")
        for a in range(r):
            for b in range(s):
                v = text[a, b]
                label = f"{v:.2f}" if isinstance(v, (float, np.floating)) else str(v)
                ax.text(centres_x[b], pad + a * (h + pad + band) + h + band / 2 - 0.5, label, ha="center",
                        va="center", fontsize=7, color="0.15")
    if title:
        ax.set_title(title, fontsize=10)
    return _finish(fig, out)
