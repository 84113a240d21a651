"""Fashion-MNIST reader for the IDX files of Debian's ``dataset-fashion-mnist``.

The files are read directly (gzip or plain IDX); nothing is downloaded.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from corrkit.errors import DataError

DEFAULT_DATA_DIR = Path("/usr/share/datasets/fashion-mnist")
CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
_FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}
_COUNTS = {"train": 60000, "test": 10000}
_INSTALL_HINT = (
    "install Debian's package with `apt-get install dataset-fashion-mnist` "
    "(files under /usr/share/datasets/fashion-mnist/), or point --data-dir / "
    "CORRKIT_DATA at a folder holding the four IDX files"
)


@dataclass(frozen=True)
class Split:
    """One split of Fashion-MNIST.

    Attributes
    ----------
    images : ndarray, uint8, shape [n, 28, 28]
    labels : ndarray, uint8, shape [n]
    """

    images: np.ndarray
    labels: np.ndarray


def data_dir(path: str | os.PathLike | None = None) -> Path:
    """Resolve the data folder: argument, then ``$CORRKIT_DATA``, then Debian's path."""
    if path is not None:
        return Path(path)
    env = os.environ.get("CORRKIT_DATA")
    return Path(env) if env else DEFAULT_DATA_DIR


def _find(folder: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        candidate = folder / name
        if candidate.is_file():
            return candidate
    raise DataError(f"Fashion-MNIST file {stem}(.gz) not found in {folder}: {_INSTALL_HINT}")


def _read_idx(path: Path, expected_ndim: int) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read {path} ({exc}); the file is damaged: {_INSTALL_HINT}") from None
    if len(raw) < 4:
        raise DataError(f"{path} is too short to be an IDX file: {_INSTALL_HINT}")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08 or ndim != expected_ndim:
        raise DataError(f"{path} is not a uint8 IDX file with {expected_ndim} dims: {_INSTALL_HINT}")
    header = 4 + 4 * ndim
    shape = struct.unpack(">" + "I" * ndim, raw[4:header])
    if len(raw) - header != int(np.prod(shape)):
        raise DataError(
            f"{path} holds {len(raw) - header} bytes of data, its header promises "
            f"{int(np.prod(shape))}: the file is truncated or damaged: {_INSTALL_HINT}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def load_split(split: str, path: str | os.PathLike | None = None) -> Split:
    """Read ``"train"`` (60,000) or ``"test"`` (10,000) images and labels, checked."""
    if split not in _COUNTS:
        raise DataError(f"unknown split {split!r}; use 'train' or 'test'")
    folder = data_dir(path)
    if not folder.is_dir():
        raise DataError(f"Fashion-MNIST folder {folder} does not exist: {_INSTALL_HINT}")
    images = _read_idx(_find(folder, _FILES[(split, "images")]), 3)
    labels = _read_idx(_find(folder, _FILES[(split, "labels")]), 1)
    n = _COUNTS[split]
    if images.shape != (n, 28, 28) or labels.shape != (n,):
        raise DataError(
            f"{split} split has images {images.shape} and labels {labels.shape}, "
            f"expected ({n}, 28, 28) and ({n},): {_INSTALL_HINT}"
        )
    if labels.max() > 9:
        raise DataError(f"{split} labels go up to {labels.max()}, expected 0..9: {_INSTALL_HINT}")
    return Split(images=images, labels=labels)


def file_hashes(path: str | os.PathLike | None = None) -> dict[str, str]:
    """SHA-256 of each of the four dataset files, keyed by file name."""
    folder = data_dir(path)
    out = {}
    for stem in _FILES.values():
        f = _find(folder, stem)
        out[f.name] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out
