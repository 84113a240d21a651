"""Small linear-algebra and set helpers every method shares: orthonormal bases and top-k overlaps."""

from __future__ import annotations

import numpy as np


def orthonormal_rows(rows: np.ndarray) -> np.ndarray:
    """float64 ``[K, N]``: the rows' Gram-Schmidt basis (QR of ``rows.T``), signs fixed by R's diagonal.

    Fixing the signs makes the basis a function of the input alone (LAPACK may
    return either sign of each column), so seeded bases are reproducible.
    """
    q, r = np.linalg.qr(np.asarray(rows, dtype=np.float64).T)
    return (q * np.sign(np.diag(r))).T


def random_orthogonal(n: int, seed: int | np.random.Generator = 0, dtype=np.float32) -> np.ndarray:
    """``[n, n]`` random orthogonal rows: the sign-fixed QR factor ``Q`` of a seeded Gaussian ``G``, transposed."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    return orthonormal_rows(rng.standard_normal((n, n)).T).astype(dtype)


def overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """float64 ``[C]``: ``|a_j ∩ b_j| / k`` for two ``[C, k]`` index sets (top-k overlap, intersection ratio)."""
    a, b = np.asarray(a), np.asarray(b)
    k = a.shape[1]
    return np.array([len(set(x.tolist()) & set(y.tolist())) / k for x, y in zip(a, b)], dtype=np.float64)
