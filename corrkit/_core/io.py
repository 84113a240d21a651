"""Atomic file and folder writes: a killed process never leaves a half-written result."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from io import BytesIO
from pathlib import Path

import numpy as np


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_bytes(path: str | os.PathLike, data: bytes) -> str:
    """Replace ``path`` by ``data`` atomically; returns the SHA-256 of what was written.

    The temporary file is removed when the write fails (a full disk, a read-only folder).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return hashlib.sha256(data).hexdigest()


def write_json(path: str | os.PathLike, obj) -> str:
    return write_bytes(path, (json.dumps(obj, indent=2, default=_default) + "\n").encode())


def write_npz(path: str | os.PathLike, **arrays) -> str:
    """``np.savez`` atomically; returns the file's SHA-256."""
    buf = BytesIO()
    np.savez(buf, **arrays)
    return write_bytes(path, buf.getvalue())


def npz_arrays(data: bytes) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file's bytes (no pickles); ``ValueError``/``OSError`` when damaged."""
    import zipfile

    try:
        with np.load(BytesIO(data), allow_pickle=False) as d:
            return {k: d[k] for k in d.files}
    except (zipfile.BadZipFile, EOFError, KeyError) as exc:
        raise ValueError(f"damaged .npz ({type(exc).__name__}: {exc})") from None


def write_folder(out: str | os.PathLike, fill, replace: bool = False) -> None:
    """Write a whole folder at once: ``fill(tmp)`` writes into a fresh folder beside ``out``, then it is renamed.

    The temporary folder is made by ``tempfile.mkdtemp`` (so it is never anyone's
    existing folder) and removed on any failure. ``out`` must not exist, or be an
    empty folder, unless ``replace``: then the old folder is first renamed aside and
    removed only after the new one is in place. Callers decide what may be replaced.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        fill(tmp)
        for f in tmp.rglob("*"):
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        old = None
        if replace and out.is_dir() and any(out.iterdir()):
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
