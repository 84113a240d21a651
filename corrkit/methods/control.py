"""Intersection ratio of the two controlling sets (Li et al., ICPR 2020, Table 1; SPEC §4).

``IR_j = |C_j^seq ∩ C_j^opt| / k``: ``C_j^seq`` are the top-``k`` latent dims of class
``j`` by APCR (sequential intervention, SPEC §2), ``C_j^opt`` the top-``k`` by
``|w*_j|`` (optimisation, SPEC §3).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from corrkit._core.defaults import TOP_K
from corrkit._core.linalg import overlap
from corrkit.errors import CorrkitError

# Li et al. (ICPR 2020), Table 1: Fashion-MNIST, k = 10, classes in the dataset's order.
PAPER_TABLE1 = (0.7, 0.9, 0.7, 0.8, 0.4, 1.0, 0.7, 0.9, 0.7, 0.7)
PAPER_TABLE1_MEAN = 0.75
PAPER_TABLE1_K = 10


def intersection_ratio(seq: np.ndarray, opt: np.ndarray) -> np.ndarray:
    """``|C_j^seq ∩ C_j^opt| / k`` per class.

    Parameters
    ----------
    seq, opt : int [C, k]
        Controlling sets, one row per class (each row without repeats).

    Returns
    -------
    float64 [C]
    """
    seq, opt = np.asarray(seq), np.asarray(opt)
    if seq.shape != opt.shape or seq.ndim != 2 or seq.shape[1] == 0:
        raise CorrkitError(f"controlling sets must both be [C, k] with k >= 1 (got {list(seq.shape)} and "
                           f"{list(opt.shape)})")
    return overlap(seq, opt)


@dataclass
class ControlResult:
    """Both controlling sets and their intersection ratio per class.

    Attributes
    ----------
    seq, opt : int64 [C, k]; ratio : float64 [C]; classes : list of str; k : int
    paper : tuple of float or None
        Table 1 of the paper, when the model has its 10 Fashion-MNIST classes.
    """

    seq: np.ndarray
    opt: np.ndarray
    ratio: np.ndarray
    classes: list[str]
    k: int
    paper: tuple | None = None
    weights_path: str = ""
    # SPEC §11: 95% bootstrap intervals [C, 2] of each ratio (the APCR run's codes resampled, C_opt held) and of
    # their mean; None when the run kept no per-code contributions
    ratio_interval: np.ndarray | None = None
    mean_interval: tuple | None = None

    @property
    def mean(self) -> float | None:
        """Mean over the classes that have a ratio (``None`` when none has)."""
        ok = np.isfinite(self.ratio)
        return float(self.ratio[ok].mean()) if ok.any() else None

    def to_json(self) -> dict:
        out = {
            "k": self.k,
            "classes": list(self.classes),
            "intersection_ratio": {"per_class": [float(r) if np.isfinite(r) else None for r in self.ratio],
                                   "mean": self.mean,
                                   **({"interval": [None if np.isnan(v[0]) else [float(v[0]), float(v[1])]
                                                    for v in self.ratio_interval],
                                       "mean_interval": None if self.mean_interval is None else
                                       list(self.mean_interval)} if self.ratio_interval is not None else {})},
            "sets": {"seq": self.seq.tolist(), "opt": self.opt.tolist(),
                     "common": [sorted(set(a) & set(b)) for a, b in zip(self.seq.tolist(), self.opt.tolist())]},
            "weights": self.weights_path,
        }
        if self.paper is not None:
            out["paper"] = {"per_class": list(self.paper), "mean": PAPER_TABLE1_MEAN}
        return out


def default_weights_path(run) -> Path:
    """``optimized_weights.npz`` in the folder of the bundle the run analysed.

    A run on model files (no bundle folder) has none: :class:`CorrkitError`, never the built-in's.
    """
    from corrkit._core.bundle import builtin_path
    from corrkit.methods.optimize import WEIGHTS_FILE

    card = run.bundle_card or {}
    if not card.get("path") and (card.get("models") or card.get("files")):
        # a run on model files given as --generator/--classifier has no bundle folder to hold weights:
        # falling back to the built-in bundle's would compare against another model's w*
        raise CorrkitError("this run analysed model files, not a bundle folder, so it has no optimised weights "
                           "of its own; make them with `corrkit optimize --generator G --classifier Q --out w.npz` "
                           "and pass --weights w.npz")
    where = Path(card.get("path") or str(builtin_path()))
    return (where if where.is_dir() else where.parent) / WEIGHTS_FILE


def control(run=None, weights=None, top_k: int = TOP_K, progress=None) -> ControlResult:
    """Compare ``C_j^seq`` of an APCR run with ``C_j^opt`` of optimised weights (SPEC §4).

    Parameters
    ----------
    run : APCRResult, run folder or None
        ``None`` runs :func:`corrkit.apcr` with its defaults on the built-in bundle.
        The run must use the latent axes as directions.
    weights : OptimizedWeights, path or None
        ``None``: ``optimized_weights.npz`` of the run's bundle.
    """
    from corrkit._core.grid import is_axes
    from corrkit.methods.optimize import OptimizedWeights
    from corrkit.methods.sequential import APCRResult, apcr

    if run is None:
        run = apcr(progress=progress)
    elif not isinstance(run, APCRResult):
        run = APCRResult.load(run)
    path = ""
    if not isinstance(weights, OptimizedWeights):
        path = Path(weights) if weights is not None else default_weights_path(run)
        if not path.is_file():
            raise CorrkitError(f"no optimised weights at {path}; make them with `corrkit export optimize` or "
                               "`corrkit optimize --out w.npz`, or pass --weights")
        weights = OptimizedWeights.load(path)
    c = run.apcr.shape[1]
    n = run.latents.shape[1]
    if not is_axes(run.directions, n):
        raise CorrkitError("the APCR run did not use the latent axes as directions; the intersection ratio "
                           "compares latent dims, so run `corrkit apcr` without --directions")
    if weights.w.shape != (c, n):
        raise CorrkitError(f"the weights have shape {list(weights.w.shape)}, the run has {c} classes and {n} dims")
    if not 1 <= top_k <= n:
        raise CorrkitError(f"--top-k must be between 1 and {n} (got {top_k})")
    seq, opt = run.controlling_set(top_k), weights.controlling_set(top_k)
    paper = PAPER_TABLE1 if (c == len(PAPER_TABLE1) and top_k == PAPER_TABLE1_K) else None
    ratio = intersection_ratio(seq, opt)
    # A class without codes in either run has no controlling set to compare: its ratio is missing, never 1.
    empty = np.asarray(run.counts) == 0
    if np.asarray(weights.counts).shape == (c,):
        empty |= np.asarray(weights.counts) == 0
    ratio[empty] = np.nan
    iv, mean_iv = ratio_intervals(run, opt, top_k, ~empty)
    return ControlResult(seq=seq, opt=opt, ratio=ratio, classes=list(run.classes), k=top_k, paper=paper,
                         weights_path=str(path), ratio_interval=iv, mean_interval=mean_iv)


def ratio_intervals(run, opt: np.ndarray, k: int, measured: np.ndarray) -> tuple[np.ndarray | None, tuple | None]:
    """SPEC §11: 95% intervals of ``IR_j`` and of their mean, ``C_j^seq`` re-ranked in every resample of the
    run's codes (:func:`corrkit.methods.bootstrap.resample_weights`, the resamples of its APCR intervals),
    ``C_j^opt`` held fixed. A class with one code gets ``[0, 1]`` and leaves the mean without one."""
    from corrkit.methods.bootstrap import mean_interval, percentiles, resample_weights

    if getattr(run, "contributions", None) is None:
        return None, None
    c = run.apcr.shape[1]
    weights = resample_weights(run.labels, c)
    iv = np.full((c, 2), np.nan)
    draws, whole = [], True
    for j in np.flatnonzero(measured):
        if weights[j] is None:
            iv[j], whole = (0.0, 1.0), False
            continue
        means = run.contributions[:, run.labels == j] @ weights[j]  # [K, B]
        tops = np.argsort(-means, axis=0, kind="stable")[:k]  # C_j^seq of each resample [k, B]
        b = np.isin(tops, opt[j]).sum(axis=0) / k
        iv[j] = percentiles(b)
        draws.append(b)
    return iv, mean_interval(draws, iv[measured], whole)
