"""The sequential-intervention grid (SPEC §2): ``z^(i,k) = z + k * delta * d_i``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from corrkit.errors import GridError


@dataclass(frozen=True)
class Grid:
    """Codes x directions x steps, in the code-major flat order of :mod:`corrkit.kernels.apcr`.

    Attributes
    ----------
    latents : float32 [M, N]
    directions : float32 [K, N]
    steps : int
        ``m``; the grid holds ``k in {-m..m} \\ {0}``.
    delta : float
    """

    latents: np.ndarray
    directions: np.ndarray
    steps: int
    delta: float

    @property
    def n_points(self) -> int:
        return len(self.latents) * len(self.directions) * 2 * self.steps

    def points(self, p0: int, p1: int, out: np.ndarray | None = None) -> np.ndarray:
        """Latent codes of grid points ``p0 .. p1 - 1``, float32 ``[p1 - p0, N]``."""
        m, n_dirs = self.steps, len(self.directions)
        p = np.arange(p0, p1, dtype=np.int64)
        code, rem = np.divmod(p, n_dirs * 2 * m)
        i, s = np.divmod(rem, 2 * m)
        k = np.where(s < m, s - m, s - m + 1).astype(np.float32)
        scale = k * np.float32(self.delta)
        z = np.multiply(self.directions[i], scale[:, None], out=out)
        z += self.latents[code]
        return z

    def describe(self, p: int) -> str:
        m, n_dirs = self.steps, len(self.directions)
        code, rem = divmod(int(p), n_dirs * 2 * m)
        i, s = divmod(rem, 2 * m)
        k = s - m if s < m else s - m + 1
        return f"direction {i}, step {k} (code {code})"


MAX_STEPS = 10_000  # 2m+1 = 20,001 points per code and direction: far past any useful walk


# A grid this large takes about a day at a million points a second; its points are streamed, never stored.
MAX_GRID_POINTS = 10**11
# Memory one run may hold at once (prior draws kept while class sets fill, the float64 score-curve sums):
# refused before any work rather than found out by the kernel's out-of-memory killer.
MEMORY_CAP = 8 << 30


def _gib(n_bytes: float) -> str:
    return f"{n_bytes / (1 << 30):,.1f} GiB"


def check_whole(value, name: str, lo: int = 1, hi: int | None = None) -> int:
    """A whole number in ``lo .. hi`` (``hi=None``: no upper bound), else a :class:`GridError` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo \
            or (hi is not None and value > hi):
        span = f">= {lo}" if hi is None else f"from {lo} to {hi:,}"
        raise GridError(f"{name} must be a whole number {span} (got {value!r})")
    return int(value)


def check_real(value, name: str, lo: float | None = None, hi: float | None = None, *,
               lo_open: bool = False, hi_open: bool = False) -> float:
    """A finite number within the bounds (open ends excluded), else a :class:`GridError` naming option ``name``."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating)) \
        and np.isfinite(value)
    ok = ok and (lo is None or (value > lo if lo_open else value >= lo))
    ok = ok and (hi is None or (value < hi if hi_open else value <= hi))
    if not ok:
        bounds = [f"{'>' if lo_open else '>='} {lo:g}"] if lo is not None else []
        bounds += [f"{'<' if hi_open else '<='} {hi:g}"] if hi is not None else []
        raise GridError(f"{name} must be a finite number{' ' + ' and '.join(bounds) if bounds else ''} "
                        f"(got {value!r})")
    return float(value)


def check_value_range(r, what: str) -> tuple[float, float]:
    """Two finite numbers ``lo < hi`` (a model's input or output range), else a :class:`BundleError` naming ``what``."""
    from corrkit.errors import BundleError

    try:
        lo, hi = (float(v) for v in r)
    except (TypeError, ValueError):
        raise BundleError(f"{what} must be two numbers [lo, hi], got {r!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
        raise BundleError(f"{what} must satisfy lo < hi, got [{lo}, {hi}]")
    return lo, hi


def check_steps(steps: int, delta: float) -> None:
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not 1 <= steps <= MAX_STEPS:
        raise GridError(f"--steps must be a whole number from 1 to {MAX_STEPS:,} (got {steps}): the grid needs at "
                        "least k = -1, +1")
    if isinstance(delta, bool) or not isinstance(delta, (int, float, np.integer, np.floating)) \
            or not np.isfinite(delta) or delta <= 0:
        raise GridError(f"--delta must be a positive number (got {delta})")


def check_grid_size(n_codes: int, n_directions: int, steps: int, n_classes: int) -> None:
    """Refuse, before any work, a grid past :data:`MAX_GRID_POINTS` or score curves past :data:`MEMORY_CAP`."""
    points = int(n_codes) * int(n_directions) * 2 * int(steps)
    if points > MAX_GRID_POINTS:
        raise GridError(f"the grid of {n_codes:,} codes x {n_directions:,} directions x {2 * steps:,} steps has "
                        f"{points:,} points, over corrkit's cap of {MAX_GRID_POINTS:,} (about a day at a million "
                        "points a second); use fewer codes (--samples-per-class), directions or --steps")
    sums = int(n_directions) * (2 * int(steps) + 1) * int(n_classes) ** 2 * 8
    if sums > MEMORY_CAP:
        raise GridError(f"the score curves of {n_directions:,} directions x {2 * steps + 1:,} steps x "
                        f"{n_classes:,}x{n_classes:,} classes need {_gib(sums)} of memory, over corrkit's cap of "
                        f"{_gib(MEMORY_CAP)}; use fewer directions or --steps")


def check_seed(seed: int) -> int:
    """A seed for ``numpy.random.default_rng``: a whole number >= 0."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise GridError(f"--seed must be a whole number >= 0 (got {seed!r})")
    return int(seed)


def axis_directions(n: int) -> np.ndarray:
    return np.eye(n, dtype=np.float32)


def is_axes(directions: np.ndarray, latent_dim: int | None = None) -> bool:
    """Whether ``directions`` are the latent axes ``e_0 .. e_{K-1}`` (all ``N`` of them when ``latent_dim`` is given).

    Methods that read a run's rows as latent dimensions (optimisation, control,
    manipulation, axis labels in figures) ask this.
    """
    d = np.asarray(directions)
    if d.ndim != 2 or d.shape[0] > d.shape[1] or (latent_dim is not None and d.shape != (latent_dim, latent_dim)):
        return False
    return bool(np.array_equal(d, np.eye(d.shape[0], d.shape[1], dtype=d.dtype)))


def check_directions(d, latent_dim: int, normalize: bool = True) -> np.ndarray:
    """Validate a direction matrix ``[K, N]``; rows are made unit-norm unless told otherwise."""
    d = np.asarray(d)
    if d.ndim != 2 or d.shape[1] != latent_dim or d.shape[0] < 1:
        raise GridError(f"directions have shape {list(d.shape)}; expected [K, {latent_dim}] (one row per direction)")
    if not np.issubdtype(d.dtype, np.floating) or not np.isfinite(d).all():
        raise GridError("directions must be finite floating-point numbers")
    d = d.astype(np.float64)
    norms = np.linalg.norm(d, axis=1)
    if (norms == 0).any():
        raise GridError(f"direction row {int(np.argmin(norms))} is all zeros")
    if normalize:
        d = d / norms[:, None]
    return np.ascontiguousarray(d, dtype=np.float32)


NPY_MAGIC = b"\x93NUMPY"
MAX_NPY_HEADER = 10_000  # numpy's own limit on a header's length; longer ones are refused unread


def _read_npy(fp, size: int) -> np.ndarray:
    """The array of one ``.npy`` stream of ``size`` bytes; ``ValueError`` when it is damaged or unsafe.

    The header is read first, so a header claiming more data than the stream holds, or
    Python objects (a pickle), is refused before any memory is taken or any code runs.
    """
    fmt = np.lib.format
    version = fmt.read_magic(fp)
    if version not in ((1, 0), (2, 0)):
        raise ValueError(f".npy format version {version[0]}.{version[1]} is not supported (1.0 and 2.0 are)")
    read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
    shape, fortran, dtype = read_header(fp, max_header_size=MAX_NPY_HEADER)
    if dtype.hasobject:
        raise ValueError("it holds Python objects (a pickle), which corrkit never loads")
    need = int(np.prod(shape, dtype=object)) * dtype.itemsize
    left = size - fp.tell()
    if need > left:
        raise ValueError(f"its header claims {list(shape)} {dtype} ({need:,} bytes) but only {left:,} bytes follow")
    data = fp.read(need)
    if len(data) != need or fp.read(1):  # reading to the end makes zipfile check the member's CRC
        raise ValueError(f"its data is not the {need:,} bytes its header claims")
    arr = np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")
    return arr.copy()


def _first_line(exc: BaseException) -> str:
    """An exception's message as one short line (numpy's and zipfile's run over several, or quote the file)."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def _member_name(name: str) -> str:
    return name[:-4] if name.endswith(".npy") else name


def _open_checked(path: Path, what: str) -> bytes:
    """The first bytes of ``path`` (a file that exists and can be read), to tell ``.npy`` from ``.npz``."""
    if not path.is_file():
        raise GridError(f"{what} file {path} does not exist")
    try:
        with open(path, "rb") as fh:
            return fh.read(len(NPY_MAGIC))
    except OSError as exc:
        raise GridError(f"{what} file {path} cannot be read ({exc.strerror or exc})") from None


def read_npz(path: str | os.PathLike, what: str, names=None, *, data: bytes | None = None,
             fix: str = "write it again with numpy.savez") -> dict[str, np.ndarray]:
    """Arrays of an ``.npz`` file by name (all, or those of ``names`` that it holds), each checked as it is read.

    ``data``: the file's bytes, already read (so that what was hashed is what is parsed);
    ``path`` then only names it. Every failure (not a zip, a bad CRC, a truncated member,
    a pickle, a header claiming more data than stored, a ``.npy`` given instead) is one
    :class:`GridError` naming the file and ending with ``fix``, what to do about it.
    """
    import zipfile
    from io import BytesIO

    path = Path(path)
    head = _open_checked(path, what) if data is None else data[:len(NPY_MAGIC)]
    if head.startswith(NPY_MAGIC):
        raise GridError(f"{what} file {path} is a single .npy array; expected an .npz archive of named arrays; {fix}")
    member = "?"
    try:
        out = {}
        with zipfile.ZipFile(path if data is None else BytesIO(data)) as z:
            for info in z.infolist():
                key = _member_name(info.filename)
                if info.is_dir() or (names is not None and key not in names):
                    continue
                member = info.filename
                with z.open(info) as fp:
                    out[key] = _read_npy(fp, info.file_size)
        return out
    except Exception as exc:  # zipfile.BadZipFile, ValueError, OSError, EOFError, zlib.error, MemoryError ...
        where = "" if member == "?" else f"{member!r}: "  # repr: a member's name is the file author's text
        raise GridError(f"{what} file {path} is damaged or not a NumPy .npz file ({where}{_first_line(exc)}); "
                        f"{fix}") from None


def load_array(path: str | os.PathLike, what: str, key: str | None = None) -> np.ndarray:
    """Read a ``.npy`` file, or array ``key`` (default: ``directions`` if present, else the first) of an ``.npz`` file.

    Nothing is read past a header that does not fit the file; pickles are never loaded.
    Any damage is one :class:`GridError` naming the file.
    """
    import zipfile

    path = Path(path)
    head = _open_checked(path, what)
    if not head.startswith(NPY_MAGIC):
        try:
            with zipfile.ZipFile(path) as z:
                names = [_member_name(i.filename) for i in z.infolist() if not i.is_dir()]
        except Exception as exc:
            raise GridError(f"{what} file {path} is not a NumPy .npy/.npz file ({_first_line(exc)})") from None
        if not names:
            raise GridError(f"{what} file {path} holds no arrays")
        name = key if key in names else ("directions" if "directions" in names else names[0])
        return read_npz(path, what, [name])[name]
    try:
        with open(path, "rb") as fp:
            return _read_npy(fp, path.stat().st_size)
    except Exception as exc:  # ValueError, OSError, MemoryError ...
        raise GridError(f"{what} file {path} is damaged or not a NumPy .npy file ({_first_line(exc)}); "
                        "write it again with numpy.save") from None


def check_latents(z, latent_dim: int) -> np.ndarray:
    z = np.asarray(z)
    if z.ndim != 2 or z.shape[1] != latent_dim or z.shape[0] < 1:
        raise GridError(f"latents have shape {list(z.shape)}; expected [M, {latent_dim}]")
    if z.dtype != np.float32:
        raise GridError(f"latents must be float32 (got {z.dtype}); save them with z.astype(np.float32)")
    if not np.isfinite(z).all():
        raise GridError("latents contain NaN or infinite values")
    return np.ascontiguousarray(z)
