"""ONNX model files as a user hands them over: loading, external data, hashes, inputs and shapes.

A model file may keep its weights in external-data files beside it
(``torch.onnx.export``'s ``G.onnx.data``); its hash covers them. Loading binds
extra inputs and picks one output (:func:`corrkit._core.conventions.bind_io`), so
every model corrkit runs has one input and one output.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from corrkit.errors import BundleError


def external_files(path: Path) -> list[Path]:
    """The external-data files an ``.onnx`` file's tensors live in (``torch.onnx.export``'s ``.onnx.data``)."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:
        return []
    names = {e.value for t in _all_tensors(model) if t.data_location == onnx.TensorProto.EXTERNAL
             for e in t.external_data if e.key == "location"}
    return [Path(path).parent / n for n in sorted(names)]


def _all_tensors(model):
    from onnx.external_data_helper import _get_all_tensors

    return _get_all_tensors(model)


def sha256(path: Path) -> str:
    """SHA-256 of an ``.onnx`` file, and of its external-data files when it has any (then over both)."""
    h = hashlib.sha256(Path(path).read_bytes())
    extra = external_files(path) if str(path).endswith(".onnx") else []
    if not extra:
        return h.hexdigest()
    for f in extra:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def load_onnx(path: str | os.PathLike, role: str = "model", io: dict | None = None):
    """Load and check an ONNX file with one input and one output; any failure becomes a :class:`BundleError`.

    ``io`` holds extra inputs at values and picks one of several outputs
    (``{"inputs": {name: value}, "output": name}``, :func:`conventions.bind_io`).
    """
    import onnx

    path = Path(path)
    if not path.exists():
        raise BundleError(f"{role} {path} does not exist")
    if path.is_dir():
        raise BundleError(f"{role} {path} is a folder, expected an .onnx file")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as exc:  # onnx raises DecodeError, ValidationError, OSError ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BundleError(f"{role} {path} is not a valid ONNX model ({first[:200]})") from None
    from corrkit._core.conventions import bind_io

    return bind_io(model, role, path, (io or {}).get("inputs"), (io or {}).get("output"))


def input_names(path: str | os.PathLike) -> list[str]:
    """Names of an ONNX file's graph inputs (weights listed as inputs by old exporters left out)."""
    import onnx

    try:
        m = onnx.load(str(path), load_external_data=False)
    except Exception:
        return []
    inits = {t.name for t in m.graph.initializer}
    return [vi.name for vi in m.graph.input if vi.name not in inits]


def role_inputs(by_role: dict | None) -> dict:
    """``{role: {name: value}}`` (bundle.json's ``inputs``) as ``{"role.name": value}``."""
    if not isinstance(by_role, dict):
        return {}
    return {f"{role}.{name}": v for role, vals in by_role.items() if isinstance(vals, dict) for name, v in vals.items()}


def split_inputs(inputs: dict | None, paths: dict[str, Path]) -> dict[str, dict]:
    """``{role: {name: value}}`` of ``--input NAME=VALUE`` values: by ``role.NAME``, else by which model has NAME."""
    out: dict[str, dict] = {role: {} for role in paths}
    if not inputs:  # the common case: no model file is read for it
        return out
    names = {role: input_names(p) for role, p in paths.items()}
    for key, value in (inputs or {}).items():
        role, _, name = key.partition(".") if key.partition(".")[0] in paths else ("", "", key)
        owners = [role] if role else [r for r, ns in names.items() if name in ns]
        if len(owners) != 1:
            where = "both models" if owners else "neither model"
            raise BundleError(f"--input {key}: {where} has an input {name!r}" + (
                f"; write {owners[0]}.{name}=... or {owners[1]}.{name}=..." if len(owners) > 1 else
                f" (inputs: {', '.join(f'{r}: {n}' for r, ns in names.items() for n in ns)})"))
        out[owners[0]][name] = value
    return out


def _dims(value_info) -> list:
    """Dims of a graph input/output: int for fixed, str for symbolic, None if unknown."""
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return []
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]


def io_shapes(model) -> tuple[list, list]:
    return _dims(model.graph.input[0]), _dims(model.graph.output[0])


def _latent_input(dims: list, path) -> int:
    """``N`` of a generator's latent input ``[B, N]`` or ``[B, N, 1, 1]``."""
    from corrkit._core.conventions import latent_size

    n = latent_size(dims)
    if n is None:
        shown = "[" + ", ".join("batch" if not isinstance(d, int) else str(d) for d in dims) + "]"
        raise BundleError(f"generator input of {path} has shape {shown}; expected [batch, N] or [batch, N, 1, 1] "
                          "with a fixed N")
    return n


def _check_rank2(dims: list, what: str, path) -> int:
    if len(dims) != 2 or not isinstance(dims[1], int) or dims[1] <= 0:
        shown = "[" + ", ".join("batch" if not isinstance(d, int) else str(d) for d in dims) + "]"
        raise BundleError(f"{what} of {path} has shape {shown}; expected [batch, N] with a fixed N")
    return dims[1]
