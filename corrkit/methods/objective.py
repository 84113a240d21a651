"""What fixes an optimisation run and its objective (Li et al., ICPR 2020, Eq. 5-8; SPEC §3).

Shared by the torch-free descent (:mod:`corrkit.methods.optimize`, with gradients
from :mod:`corrkit.methods.zeroth_order`) and the gradient one
(:mod:`corrkit.export.optimize`): the same settings, intervention, loss and
mini-batch schedule, so both follow the same trajectory up to the gradient estimate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from corrkit._core import defaults
from corrkit._core.execution import MAX_BATCH_SIZE
from corrkit._core.grid import check_real, check_seed, check_whole
from corrkit.errors import GridError

OBJECTIVES = ("paper", "authors")
MAX_ITERATIONS = 1_000_000  # the losses are kept per class and step
MAX_PERTURBATIONS = 10_000
PERTURBATIONS = ("cyclic", "orthogonal", "gaussian")
ESTIMATORS = ("bands", "codes", "weights")


@dataclass
class OptimizeSettings:
    """Everything that fixes an optimisation run (stored beside ``w*``)."""

    objective: str = "paper"
    iterations: int = 1000
    lr: float = 0.05
    lam: float = 0.2
    xi_min: float = 2.0
    xi_max: float = 4.0
    v_init: float = 0.5
    batch_size: int = 32
    samples_per_class: int = defaults.SAMPLES_PER_CLASS
    threshold: float = defaults.THRESHOLD
    seed: int = defaults.SEED
    method: str = "zeroth-order"
    perturbations: int = 4
    perturbation_kind: str = "cyclic"
    estimator: str = "bands"
    sigma: float = 0.01
    average: float = 0.4

    def check(self) -> "OptimizeSettings":
        if self.objective not in OBJECTIVES:
            raise GridError(f"--objective must be one of {', '.join(OBJECTIVES)} (got {self.objective!r})")
        if self.perturbation_kind not in PERTURBATIONS:
            raise GridError(f"perturbations must be one of {', '.join(PERTURBATIONS)} (got {self.perturbation_kind!r})")
        if self.estimator not in ESTIMATORS:
            raise GridError(f"--estimator must be one of {', '.join(ESTIMATORS)} (got {self.estimator!r})")
        check_whole(self.iterations, "--iterations", 1, MAX_ITERATIONS)
        check_whole(self.batch_size, "--batch-size", 1, MAX_BATCH_SIZE)
        check_whole(self.perturbations, "--perturbations", 1, MAX_PERTURBATIONS)
        check_seed(self.seed)
        values = (self.lr, self.lam, self.sigma, self.xi_min, self.xi_max)
        if not all(isinstance(v, (int, float)) and np.isfinite(v) for v in values) or not (
                self.lr > 0 and self.lam >= 0 and self.sigma > 0 and 0 <= self.xi_min <= self.xi_max):
            raise GridError("need finite lr > 0, lambda >= 0, sigma > 0 and 0 <= xi_min <= xi_max")
        check_real(self.average, "--average", 0, 1, hi_open=True)
        return self

    def to_dict(self) -> dict:
        return asdict(self)


def intervention_scale(z: np.ndarray, xi: np.ndarray, objective: str) -> np.ndarray:
    """``a`` with ``z± = z ± a * w`` (elementwise), float32 ``[B, N]``.

    ``paper``: ``a = xi`` broadcast over dims; ``authors``: ``a = 10 mean(z) z``
    (``xi`` unused), so that ``z ± a w = z * (1 ± 10 mean(z) w)``.
    """
    z = np.asarray(z, np.float32)
    if objective == "paper":
        return np.repeat(np.asarray(xi, np.float32)[:, None], z.shape[1], axis=1)
    return (np.float32(10.0) * z.mean(axis=1, keepdims=True) * z).astype(np.float32)


def data_term(s_plus: np.ndarray, s_minus: np.ndarray, s0: np.ndarray) -> np.ndarray:
    """``-max(|S_j(z+) - S_j(z)|, |S_j(z-) - S_j(z)|)`` elementwise (any shape)."""
    return -np.maximum(np.abs(s_plus - s0), np.abs(s_minus - s0))


def loss(s_plus, s_minus, s0, w: np.ndarray, lam: float) -> float:
    """Mean over codes of the SPEC §3 loss; ``s_*`` are ``S_j`` values ``[B]``, ``w`` is ``[N]``."""
    return float(np.mean(data_term(s_plus, s_minus, s0)) + lam * np.linalg.norm(w))


def regulariser_grad(v: np.ndarray, lam: float) -> np.ndarray:
    """Exact ``d/dv lambda ||tanh(v)||_2``."""
    w = np.tanh(v)
    norm = np.linalg.norm(w)
    return lam * (w / norm if norm > 0 else np.zeros_like(w)) * (1.0 - w * w)


class Schedule:
    """Mini-batches and ``xi`` draws of class ``j``, identical for both implementations.

    Codes are visited in a fresh seeded permutation each pass (``batch_size`` at a
    time, the last batch of a pass may be short), ``xi ~ U[xi_min, xi_max]`` per code.
    """

    def __init__(self, n_codes: int, settings: OptimizeSettings, j: int):
        self.n, self.s = int(n_codes), settings
        self.rng = np.random.default_rng([settings.seed, j, 0])
        self._order: list[int] = []

    def next(self) -> tuple[np.ndarray, np.ndarray]:
        """``(indices int64 [B], xi float32 [B])`` of the next step."""
        if not self._order:
            self._order = self.rng.permutation(self.n).tolist()
        b = min(self.s.batch_size, len(self._order))
        idx, self._order = np.array(self._order[:b], np.int64), self._order[b:]
        xi = self.rng.uniform(self.s.xi_min, self.s.xi_max, size=b).astype(np.float32)
        return idx, xi
