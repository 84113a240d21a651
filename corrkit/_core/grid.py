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


def check_steps(steps: int, delta: float) -> None:
    if isinstance(steps, bool) or int(steps) != steps or not 1 <= steps <= MAX_STEPS:
        raise GridError(f"--steps must be a whole number from 1 to {MAX_STEPS:,} (got {steps}): the grid needs at "
                        "least k = -1, +1")
    if not np.isfinite(delta) or delta <= 0:
        raise GridError(f"--delta must be a positive number (got {delta})")


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


def load_array(path: str | os.PathLike, what: str, key: str | None = None) -> np.ndarray:
    """Read a ``.npy`` file, or array ``key`` (default: the first) of an ``.npz`` file."""
    path = Path(path)
    if not path.is_file():
        raise GridError(f"{what} file {path} does not exist")
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise GridError(f"{what} file {path} is not a NumPy .npy/.npz file ({exc})") from None
    if isinstance(data, np.lib.npyio.NpzFile):
        names = list(data.keys())
        if not names:
            raise GridError(f"{what} file {path} holds no arrays")
        name = key if key in names else ("directions" if "directions" in names else names[0])
        return data[name]
    return data


def check_latents(z, latent_dim: int) -> np.ndarray:
    z = np.asarray(z)
    if z.ndim != 2 or z.shape[1] != latent_dim or z.shape[0] < 1:
        raise GridError(f"latents have shape {list(z.shape)}; expected [M, {latent_dim}]")
    if z.dtype != np.float32:
        raise GridError(f"latents must be float32 (got {z.dtype}); save them with z.astype(np.float32)")
    if not np.isfinite(z).all():
        raise GridError("latents contain NaN or infinite values")
    return np.ascontiguousarray(z)
