"""Generator quality numbers, torch-free (NumPy)."""

from __future__ import annotations

import numpy as np


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets.

    Parameters
    ----------
    a, b : ndarray, float, shape [n, d] and [m, d]

    Returns
    -------
    float
        ``|mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^{1/2})``, the trace
        term computed as the sum of square roots of the eigenvalues of
        ``S_a^{1/2} S_b S_a^{1/2}`` (symmetric, so ``eigh`` is stable).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(s_a)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = np.linalg.eigvalsh(root_a @ s_b @ root_a)
    trace_root = np.sqrt(np.clip(inner, 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2 * trace_root)


def class_shares(probs: np.ndarray, n_classes: int) -> np.ndarray:
    """Share of samples whose argmax is each class; ``probs`` [n, C] -> [C] float64."""
    return np.bincount(np.argmax(probs, axis=1), minlength=n_classes) / len(probs)
