"""Plain NumPy twins of corrkit's kernels and a slow reference of the whole APCR job.

Written separately from the library on purpose: loops in the paper's terms.
"""

from __future__ import annotations

import numpy as np


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class TwoSessions:
    """S(z) with the generator and classifier run as two separate onnxruntime sessions."""

    def __init__(self, bundle):
        import onnxruntime as ort

        self.g = ort.InferenceSession(str(bundle.generator), providers=["CPUExecutionProvider"])
        self.q = ort.InferenceSession(str(bundle.classifier), providers=["CPUExecutionProvider"])
        (glo, ghi), (qlo, qhi) = bundle.generator_output_range, bundle.classifier_input_range
        self.scale, self.shift = (qhi - qlo) / (ghi - glo), qlo - glo * (qhi - qlo) / (ghi - glo)
        self.logits = bundle.classifier_output == "logits"

    def __call__(self, z: np.ndarray) -> np.ndarray:
        img = self.g.run(None, {self.g.get_inputs()[0].name: z.astype(np.float32)})[0]
        out = self.q.run(None, {self.q.get_inputs()[0].name: (img * self.scale + self.shift).astype(np.float32)})[0]
        return softmax(out.astype(np.float64)) if self.logits else out.astype(np.float64)


def grid_probs(probs_fn, latents, directions, m, delta) -> np.ndarray:
    """``[M, K, 2m+1, C]``: S(z + k delta d_i) for every code, direction and step (k=0 included)."""
    out = []
    for z in latents:
        per_dir = []
        for d in directions:
            pts = np.stack([z + np.float32(k) * np.float32(delta) * d for k in range(-m, m + 1)]).astype(np.float32)
            per_dir.append(probs_fn(pts))
        out.append(np.stack(per_dir))
    return np.stack(out)


def apcr_from_grid(probs: np.ndarray, labels: np.ndarray, n_classes: int, m: int) -> dict:
    """SPEC §2 quantities from the full grid ``[M, K, 2m+1, C]``, by explicit loops."""
    n_codes, n_dirs = probs.shape[:2]
    curves = np.zeros((n_dirs, 2 * m + 1, n_classes, n_classes))
    apcr = np.zeros((n_dirs, n_classes)); up = np.zeros((n_dirs, n_classes)); down = np.zeros((n_dirs, n_classes))
    counts = np.zeros(n_classes)
    for c in range(n_codes):
        j = labels[c]
        counts[j] += 1
        for i in range(n_dirs):
            base = probs[c, i, m, j]
            curves[i, :, j, :] += probs[c, i]
            for s in range(2 * m + 1):
                k = s - m
                if k == 0:
                    continue
                apcr[i, j] += abs(probs[c, i, s, j] - base) / base / (2 * m)
                if k > 0:
                    up[i, j] += (probs[c, i, s, j] - base) / m
                else:
                    down[i, j] += (probs[c, i, s, j] - base) / m
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"curves": curves / counts[None, None, :, None], "apcr": apcr / counts, "up": up / counts,
                "down": down / counts}


def per_code_from_grid(probs: np.ndarray, labels: np.ndarray, n_classes: int, m: int) -> dict:
    """SPEC §11 per-code quantities from the full grid ``[M, K, 2m+1, C]``, by explicit loops: each code's
    own APCR ``contributions [K, M]`` and the own-class score's standard deviation ``curves_sd [K, 2m+1, C]``."""
    n_codes, n_dirs = probs.shape[:2]
    contrib = np.zeros((n_dirs, n_codes))
    sd = np.full((n_dirs, 2 * m + 1, n_classes), np.nan)
    for c in range(n_codes):
        j = labels[c]
        for i in range(n_dirs):
            base = probs[c, i, m, j]
            contrib[i, c] = sum(abs(probs[c, i, s, j] - base) / base for s in range(2 * m + 1) if s != m) / (2 * m)
    for j in range(n_classes):
        codes = [c for c in range(n_codes) if labels[c] == j]
        for i in range(n_dirs):
            for s in range(2 * m + 1):
                if codes:
                    sd[i, s, j] = np.std([probs[c, i, s, j] for c in codes])
    return {"contributions": contrib, "curves_sd": sd}


def flat_grid_probs(probs: np.ndarray, m: int) -> np.ndarray:
    """``[M, K, 2m+1, C]`` -> the library's flat grid order (k = 0 removed) ``[M*K*2m, C]``."""
    keep = [s for s in range(2 * m + 1) if s != m]
    return probs[:, :, keep, :].reshape(-1, probs.shape[-1])


def rank(scores: np.ndarray) -> np.ndarray:
    """Descending, ties by index, NaN last; ``[K, C]`` int."""
    out = np.empty(scores.shape, dtype=np.int64)
    for j in range(scores.shape[1]):
        keyed = [(-(s if not np.isnan(s) else -np.inf), i) for i, s in enumerate(scores[:, j])]
        out[:, j] = [i for _, i in sorted(keyed)]
    return out


def threshold_mask(scores: np.ndarray, s: float) -> np.ndarray:
    out = np.zeros(scores.shape, dtype=bool)
    for j in range(scores.shape[1]):
        col = scores[:, j]
        ok = col[~np.isnan(col)]
        if len(ok) == 0:
            continue
        out[:, j] = col >= ok.mean() + s * ok.std()
    return out
