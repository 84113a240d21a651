"""Atomic file and folder writes: a killed process never leaves a half-written result.

A write that fails (a full disk, a read-only folder, ``--out`` naming a folder where a
file goes) removes its temporary and raises one :class:`~corrkit.errors.CorrkitError`
naming the path; :func:`check_writable` and :func:`check_readable` let a command find
such a path before any work.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tempfile
from io import BytesIO
from pathlib import Path

import numpy as np

from corrkit.errors import CorrkitError


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _existing_ancestor(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable(out: str | os.PathLike, kind: str = "folder", what: str = "--out") -> Path:
    """Fail before any work when ``out`` cannot take a result; returns ``out`` as a :class:`Path`.

    ``kind="folder"``: ``out`` is a folder or does not exist yet; ``kind="file"``: ``out``
    is a regular file or does not exist yet, and is never a folder, a device or a pipe
    (a rename would put the result in place of ``/dev/null``). A probe file is created
    and removed in ``out`` (a folder) or in the folder the file goes into, or, where
    those do not exist yet, in their nearest existing parent: nothing else is created,
    so a refused ``--out`` leaves no trace. A disk with a few bytes left passes; the
    writers then fail with one error and remove their temporaries.
    """
    out = Path(out)
    if kind not in ("folder", "file"):
        raise ValueError(f"kind must be 'folder' or 'file' (got {kind!r})")
    there = out.exists() or out.is_symlink()
    if kind == "folder" and there and not out.is_dir():
        raise CorrkitError(f"{what} {out} exists and is not a folder; give a new or existing folder")
    if kind == "file" and out.is_dir():
        raise CorrkitError(f"{what} {out} is a folder; give the path of a file (one inside it, for instance)")
    if kind == "file" and there and not out.is_file():
        raise CorrkitError(f"{what} {out} is not a regular file (a device, pipe, socket or broken link); "
                           "give a file path")
    folder = _existing_ancestor(out if kind == "folder" else out.parent)
    if not folder.is_dir():
        raise CorrkitError(f"{what} {out} cannot be made: {folder} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".corrkit-probe-", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise CorrkitError(f"cannot write {what} {out}: {_why(exc)} ({folder})") from None
    try:
        os.write(fd, b"\0")
    except OSError as exc:
        raise CorrkitError(f"cannot write {what} {out}: {_why(exc)} ({folder})") from None
    finally:
        os.close(fd)
        os.unlink(probe)
    return out


def check_readable(path: str | os.PathLike, what: str, kind: str = "file", hint: str = "") -> Path:
    """Fail before any work when an input is missing, of the wrong kind or unreadable; returns it as a Path.

    ``kind`` is ``"file"`` (a regular file: never a folder, and never a pipe, which
    would block the read), ``"folder"`` or ``"any"`` (either). ``hint`` is appended to
    the message of a missing path.
    """
    path = Path(path)
    hint = f"; {hint}" if hint else ""
    if not path.exists():
        if kind == "folder":
            raise CorrkitError(f"{what} {path} is not a folder: nothing is there{hint}")
        raise CorrkitError(f"{what} {path} does not exist{hint}")
    if kind == "file" and path.is_dir():
        raise CorrkitError(f"{what} {path} is a folder, expected a file")
    if kind == "folder" and not path.is_dir():
        raise CorrkitError(f"{what} {path} is not a folder")
    if not path.is_dir() and not stat.S_ISREG(path.stat().st_mode):
        raise CorrkitError(f"{what} {path} is not a regular file (a device, pipe or socket)")
    if not os.access(path, os.R_OK | (os.X_OK if path.is_dir() else 0)):
        raise CorrkitError(f"{what} {path} cannot be read (permission denied)")
    return path


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_bytes(path: str | os.PathLike, data: bytes) -> str:
    """Replace ``path`` by ``data`` atomically; returns the SHA-256 of what was written.

    The temporary file is removed when the write fails (a full disk, a read-only folder).
    """
    path = Path(path)
    if path.is_dir() or (path.exists() and not path.is_file()):
        raise CorrkitError(f"cannot write {path}: it is a folder or a special file, not a regular file")
    tmp = _tmp(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise CorrkitError(f"cannot write {path}: {_why(exc)}") from exc
        raise
    return hashlib.sha256(data).hexdigest()


def write_json(path: str | os.PathLike, obj) -> str:
    return write_bytes(path, (json.dumps(obj, indent=2, default=_default) + "\n").encode())


def write_npz(path: str | os.PathLike, **arrays) -> str:
    """``np.savez`` atomically; returns the file's SHA-256."""
    buf = BytesIO()
    np.savez(buf, **arrays)
    return write_bytes(path, buf.getvalue())


def write_folder(out: str | os.PathLike, fill, replace: bool = False) -> None:
    """Write a whole folder at once: ``fill(tmp)`` writes into a fresh folder beside ``out``, then it is renamed.

    The temporary folder is made by ``tempfile.mkdtemp`` (so it is never anyone's
    existing folder) and removed on any failure. ``out`` must not exist, or be an
    empty folder, unless ``replace``: then the old folder is first renamed aside and
    removed only after the new one is in place. Callers decide what may be replaced.
    """
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    except OSError as exc:
        raise CorrkitError(f"cannot write {out}: {_why(exc)}") from exc
    old = None
    try:
        fill(tmp)
        for f in tmp.rglob("*"):
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        if replace and out.is_dir() and any(out.iterdir()):
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.replace(out, old)
        os.replace(tmp, out)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not out.exists():
            os.replace(old, out)  # the earlier folder goes back where it was
        elif old is not None:
            try:
                old.rmdir()  # made empty by mkdtemp; the rename aside did not happen
            except OSError:
                pass
        if isinstance(exc, OSError):
            raise CorrkitError(f"cannot write {out}: {_why(exc)}") from exc
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
