"""InterFaceGAN: a linear SVM's normal per class, and conditional editing (issue 18).

Shen, Gu, Tang, Zhou, "Interpreting the Latent Space of GANs for Semantic Face Editing"
(CVPR 2020, arXiv 1907.10786), Section 2.2 and the authors' ``train_boundary``: draw prior
codes, score each by the classifier (here ``S_j(z)``, the probability of class ``j``), sort by
score, take the top and bottom ``ratio`` share (default 0.02 of all codes each) as positives and
negatives, split each 0.7 / 0.3 into training and validation codes, fit a linear SVM and take
its unit normal ``n_j`` (pointing to higher ``S_j``) as class ``j``'s direction. Validation
accuracy says how linearly separable the two ends are. Conditional editing (Section 2.3,
``project_boundary``) moves along ``n_j`` with its components along the normals of concepts to
keep removed, so that, to first order, those concepts stay where they are.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from corrkit._core.defaults import SEED
from corrkit._core.execution import Execution
from corrkit.errors import CorrkitError

SAMPLES = 10_000  # the authors' default number of codes per attribute
MAX_SAMPLES = 1_000_000
RATIO = 0.02  # top and bottom share (train_boundary's chosen_num_or_ratio)
SPLIT = 0.7  # training share of each end (its split_ratio)


@dataclass
class InterfaceganResult:
    """Boundary normals found by InterFaceGAN.

    Attributes
    ----------
    directions : ndarray, float32, shape [C, N]
        Row ``j``: the unit normal of class ``j``'s SVM boundary, towards higher ``S_j``.
    accuracy : ndarray, float64, shape [C]
        Validation accuracy of each SVM on its held-out codes (NaN when none were held out).
    classes : list of str
    samples : int
    """

    directions: np.ndarray
    accuracy: np.ndarray
    classes: list
    samples: int

    def summary(self) -> dict:
        return {"n_directions": len(self.directions), "samples": self.samples, "classes": list(self.classes),
                "accuracy": [None if not np.isfinite(a) else float(a) for a in self.accuracy],
                "mean_accuracy": float(np.nanmean(self.accuracy)) if np.isfinite(self.accuracy).any() else None}

    def save(self, path: str | os.PathLike) -> None:
        """``directions``, ``accuracy`` and ``classes`` to an ``.npz`` (``corrkit sefa --out``'s format), atomically."""
        from corrkit._core.io import write_npz

        write_npz(path, directions=self.directions, accuracy=self.accuracy, classes=np.array(self.classes))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "InterfaceganResult":
        from corrkit._core.grid import read_npz

        a = read_npz(path, "--boundaries")
        if "directions" not in a or "accuracy" not in a or a["directions"].ndim != 2:
            raise CorrkitError(f"{path} holds no InterFaceGAN boundaries (directions [C, N] and accuracy [C]); "
                               "write it with `corrkit interfacegan --out`")
        classes = [str(c) for c in a["classes"]] if "classes" in a else [str(j) for j in range(len(a["directions"]))]
        return cls(np.asarray(a["directions"], np.float32), np.asarray(a["accuracy"], np.float64), classes, 0)


def train_boundary(z: np.ndarray, scores: np.ndarray, *, ratio: float = RATIO, split: float = SPLIT,
                   seed: int = SEED) -> tuple[np.ndarray, float]:
    """One boundary: ``(unit normal float64 [N], validation accuracy)`` (the authors' ``train_boundary``).

    ``z [S, N]`` codes, ``scores [S]``; the top and bottom ``int(S * ratio)`` codes by score are
    positives and negatives, ``int(chosen * split)`` of each train an ``SVC(kernel="linear")``.
    """
    from sklearn.svm import SVC

    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    chosen = min(int(len(z) * ratio), len(z) // 2)
    train = int(chosen * split)
    if train < 1:
        raise CorrkitError(f"{len(z)} codes at ratio {ratio} give {chosen} positives and negatives, {train} to train "
                           f"on; raise --samples to at least {int(np.ceil(2 / (ratio * split)))}")
    rng = np.random.default_rng(seed)
    pos, neg = order[:chosen][rng.permutation(chosen)], order[::-1][:chosen][rng.permutation(chosen)]
    x = np.concatenate([z[pos[:train]], z[neg[:train]]]).astype(np.float64)
    y = np.r_[np.ones(train), np.zeros(train)]
    clf = SVC(kernel="linear").fit(x, y)
    val = np.concatenate([z[pos[train:]], z[neg[train:]]]).astype(np.float64)
    acc = float((clf.predict(val) == np.r_[np.ones(chosen - train), np.zeros(chosen - train)]).mean()) \
        if chosen > train else float("nan")
    w = clf.coef_.reshape(-1)
    norm = np.linalg.norm(w)
    if not norm > 0:
        raise CorrkitError("the SVM found no boundary (its normal is zero): the scores do not depend on the codes")
    return w / norm, acc


def project_boundary(primal: np.ndarray, conditions: np.ndarray) -> np.ndarray:
    """``primal`` with its components along every row of ``conditions`` removed, unit norm (conditional editing).

    The authors' ``project_boundary`` for one or two conditions, for any number: the
    orthogonal projection onto the complement of the conditions' span.

    Parameters
    ----------
    primal : ndarray [N]
    conditions : ndarray [M, N] (M may be 0)

    Returns
    -------
    ndarray, float64 [N], orthogonal to every condition.
    """
    p = np.asarray(primal, np.float64).reshape(-1)
    c = np.asarray(conditions, np.float64).reshape(-1, len(p))
    if len(c):
        p = p - c.T @ np.linalg.lstsq(c.T, p, rcond=None)[0]
    norm = np.linalg.norm(p)
    if not norm > 1e-6:
        raise CorrkitError("the direction to edit lies in the span of the directions to keep: nothing is left to "
                           "move along; keep fewer classes")
    return p / norm


def interfacegan(bundle=None, *, samples: int = SAMPLES, ratio: float = RATIO, split: float = SPLIT,
                 seed: int = SEED, execution: Execution | None = None, engine=None,
                 progress=None) -> InterfaceganResult:
    """One SVM boundary normal per class (Shen et al. 2020; the authors' ``train_boundary``).

    Parameters
    ----------
    bundle : Bundle, path or None
        Any model corrkit runs (a pair, a bundle, a fused model); ``None`` is the built-in bundle.
    samples : int
        Prior codes ``z ~ N(0, I)`` drawn with ``numpy.random.default_rng(seed)``.
    ratio, split : float
        Share of codes at each end, and the training share of each end.

    Returns
    -------
    InterfaceganResult
        ``directions`` float32 [C, N], ``accuracy`` float64 [C].
    """
    from corrkit._core.bundle import as_bundle
    from corrkit._core.grid import check_real, check_seed, check_whole

    check_whole(samples, "--samples", 2, MAX_SAMPLES)
    check_real(ratio, "ratio", 0, 0.5, lo_open=True)
    check_real(split, "split", 0, 1, lo_open=True)
    check_seed(seed)
    bundle = as_bundle(bundle)
    engine = engine or (execution or Execution()).engine(bundle)
    z = bundle.draw(np.random.default_rng(seed), samples)
    p = engine.probabilities(z)
    normals, accuracy = [], []
    for j in range(bundle.n_classes):
        n_j, acc = train_boundary(z, p[:, j], ratio=ratio, split=split, seed=seed + j)
        normals.append(n_j)
        accuracy.append(acc)
        if progress:
            progress("interfacegan", j + 1, bundle.n_classes)
    return InterfaceganResult(np.asarray(normals, np.float32), np.asarray(accuracy, np.float64),
                              list(bundle.classes), int(samples))


def load_boundaries(source, bundle, **kwargs) -> InterfaceganResult:
    """Boundaries given, read from a ``corrkit interfacegan --out`` file, or fitted now (``source=None``)."""
    if source is None:
        return interfacegan(bundle, **kwargs)
    result = source if isinstance(source, InterfaceganResult) else InterfaceganResult.load(Path(source))
    if result.directions.shape != (bundle.n_classes, bundle.latent_dim):
        raise CorrkitError(f"the boundaries are {list(result.directions.shape)} (classes × latent size), the model "
                           f"has {bundle.n_classes} classes and latent size {bundle.latent_dim}")
    return result
