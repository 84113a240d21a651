"""Controlling sets by optimisation (Li et al., ICPR 2020, Eq. 5-8; SPEC §3), torch-free.

The objective, shared with the gradient implementation in :mod:`corrkit.export.optimize`:
weights ``w = tanh(v)`` (``v = 0.5`` at the start) define the intervention

- ``objective="paper"`` (default): ``z± = z ± xi * w``, ``xi ~ U[xi_min, xi_max]`` per code;
- ``objective="authors"`` (the authors' released code): ``z± = z * (1 ± 10 mean(z) w)``;

and the per-code loss ``L = -max(|S_j(z+) - S_j(z)|, |S_j(z-) - S_j(z)|) + lambda ||w||_2``
is minimised by plain gradient descent on ``v`` (learning rate 0.05) over the codes of ``Z_j``.

Defaults **(choice)**: the whole class set (32 codes) per step, 1,000 steps, and ``w*``
the mean of ``w`` over the last 40 % of them (``average``; 0 gives the last iterate,
also stored as ``w_last``). ``w`` first shrinks from its start for some 550 steps;
averaging only after that keeps the common start out of ``w*`` (a constant added to
every entry would reorder ``|w*|``). Why not the authors' one code per step: on the
built-in bundle two exact-gradient runs that differed only in the order of codes and
``xi`` agreed on 0.55 of their top-10 sets (cosine 0.75; Shirt, Sneaker, Ankle boot
0.2, 0.0, 0.1): single codes pull ``w`` along a flat valley of near-equal solutions.
``w`` does not saturate there (``|w*| <= 0.31``), so ranking by ``|w*|`` has no ties.
With the whole class set per step the same comparison gave overlap 0.9 and cosine
0.99 or more on Pullover, Sneaker and Ankle boot (the classes that had agreed least).

Both implementations draw the same mini-batches and the same ``xi`` from
:class:`Schedule`, so for the same settings they follow the same trajectory up to
the gradient estimate. Here each code's ``grad_z S_j`` at its intervened point is
estimated from its own antithetic probes in latent space and chained into ``v``
(:func:`zo_gradient_codes`); all probes of a step go through the engine in one batch.
The gradient of the regulariser ``lambda ||tanh(v)||`` is known in closed form and used
exactly **(choice)**: it carries no information about the model, only variance.

Where the probes point decides how noisy that is. ``estimator="bands"`` (default, 4
probes per code and step): stratified over bands of the generator's SeFa directions
(:class:`ProbeStream` with a basis), where the gradient's energy is concentrated; ``"codes"``:
isotropic probes walking a random orthogonal basis per code (:class:`ProbeStream`);
``"weights"`` (:func:`zo_gradient`): perturbations of ``v`` shared by all codes, whose
noise does not average over the codes. On the built-in bundle, with isotropic probes
(2 per code) a step's estimate had a cosine of 0.2-0.5 with the exact gradient, the
descent settled at a higher loss than the gradient one, and zeroth-order against
gradient ``w*`` agreed on only 0.48 of the top-10 sets (cosine 0.83). With bands
(4 per code) see ``docs/optimize.md`` for the measured agreement.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from corrkit._core import io
from corrkit.errors import CorrkitError, GridError

OBJECTIVES = ("paper", "authors")
PERTURBATIONS = ("cyclic", "orthogonal", "gaussian")
ESTIMATORS = ("bands", "codes", "weights")
WEIGHTS_FILE = "optimized_weights.npz"


@dataclass
class Settings:
    """Everything that fixes an optimisation run (stored beside ``w*``)."""

    objective: str = "paper"
    iterations: int = 1000
    lr: float = 0.05
    lam: float = 0.2
    xi_min: float = 2.0
    xi_max: float = 4.0
    v_init: float = 0.5
    batch_size: int = 32
    samples_per_class: int = 32
    threshold: float = 0.5
    seed: int = 0
    method: str = "zeroth-order"
    perturbations: int = 4
    perturbation_kind: str = "cyclic"
    estimator: str = "bands"
    sigma: float = 0.01
    average: float = 0.4

    def check(self) -> "Settings":
        if self.objective not in OBJECTIVES:
            raise GridError(f"--objective must be one of {', '.join(OBJECTIVES)} (got {self.objective!r})")
        if self.perturbation_kind not in PERTURBATIONS:
            raise GridError(f"perturbations must be one of {', '.join(PERTURBATIONS)} (got {self.perturbation_kind!r})")
        if self.estimator not in ESTIMATORS:
            raise GridError(f"--estimator must be one of {', '.join(ESTIMATORS)} (got {self.estimator!r})")
        if self.iterations < 1 or self.batch_size < 1 or self.perturbations < 1:
            raise GridError("--iterations, --batch-size and --perturbations must be >= 1")
        if not (self.lr > 0 and self.lam >= 0 and self.sigma > 0 and 0 <= self.xi_min <= self.xi_max):
            raise GridError("need lr > 0, lambda >= 0, sigma > 0 and 0 <= xi_min <= xi_max")
        if not 0 <= self.average < 1:
            raise GridError(f"--average must be in [0, 1) (got {self.average})")
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

    def __init__(self, n_codes: int, settings: Settings, j: int):
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


def perturbation_matrix(rng: np.random.Generator, p: int, n: int, kind: str) -> np.ndarray:
    """``[p, n]`` float64 directions with ``E[u u^T] = I``.

    ``orthogonal``: rows of independent random orthogonal ``n x n`` matrices (Haar,
    by QR of a Gaussian matrix with signs fixed), times ``sqrt(n)``; with ``p = n`` the
    estimate is exact central differences in a random basis. ``gaussian``: ``N(0, I)``.
    """
    if kind == "gaussian":
        return rng.standard_normal((p, n))
    blocks = []
    for _ in range(-(-p // n)):
        q, r = np.linalg.qr(rng.standard_normal((n, n)))
        blocks.append(q * np.sign(np.diag(r)))
    return np.sqrt(n) * np.concatenate(blocks, axis=0)[:p]


BAND_EDGES = (10, 40)  # (choice) SeFa rows 0-9, 10-39 and 40-N: see ProbeStream


def band_probes(n: int, total: int, edges=BAND_EDGES) -> list[tuple[int, int, int]]:
    """``[(start, stop, probes)]``: the bands of an ``n``-row basis and the probes of each.

    The first band gets ``ceil(total / 2)`` probes, the rest share the others (at least one
    each: every band needs a probe for the estimate to stay unbiased). Bands past ``n``
    are dropped.
    """
    cuts = [0] + [e for e in edges if 0 < e < n] + [n]
    bands = list(zip(cuts[:-1], cuts[1:]))
    if total < len(bands):
        raise GridError(f"--estimator bands needs at least {len(bands)} perturbations (one per band of "
                        f"{bands}), got {total}")
    first = -(-total // 2) if len(bands) > 1 else total
    rest, m = total - first, len(bands) - 1
    counts = [first] + [rest // m + (1 if i < rest % m else 0) for i in range(m)]
    return [(a, b, c) for (a, b), c in zip(bands, counts)]


class ProbeStream:
    """Per-code probe directions in latent space for :func:`zo_gradient_codes`.

    ``take(codes)`` gives the step's probes ``u [B, P, N]`` and their weights ``[P]``.

    ``cyclic`` **(choice)**: each code walks through the rows of its own random orthogonal
    basis (times ``sqrt(N)``), ``P`` rows per visit, and draws a fresh basis once all ``N``
    are used. Each estimate is still unbiased, and over ``N / P`` visits the probes span
    the space exactly, so their errors cancel instead of piling up as a random walk
    (while the gradient changes little between visits). ``orthogonal``/``gaussian``:
    independent draws of :func:`perturbation_matrix` at every visit.

    With a ``basis`` (estimator ``bands``), the probes are stratified over bands of it. A
    code's gradient ``grad_z S_j`` is not spread evenly over latent space: on the
    built-in bundle 86-98 % of its energy lies in the first 10 SeFa directions of the
    generator and 96-99 % in the first 40, while no 10 latent axes hold more than 40 %.
    Isotropic probes spend most of their evaluations where little of the gradient is;
    here **(choice)** the SeFa basis is cut into bands (rows ``0-9``, ``10-39``, the rest,
    :func:`band_probes`) and each band gets its own probes (half of them to the first
    band), walked as in ``cyclic`` within the band and scaled by ``sqrt(band size)``, so
    ``E[u u^T]`` is the projector onto the band. Weighting each band's probes by
    ``1 / probes`` keeps the estimate unbiased (the projectors sum to ``I``), and its
    variance is about ``sum_b (d_b / P_b) |g_b|^2`` instead of ``(N / P) |g|^2``: with 4
    probes (2, 1, 1) and the energies above, a third to a sixth of isotropic probes'
    variance at the same cost.

    Parameters
    ----------
    basis : float64 [N, N] or None
        Orthonormal rows, strongest first (SeFa directions); only with ``cyclic``.
        ``None``: one band, the whole space.
    """

    def __init__(self, rng: np.random.Generator, n: int, p: int, kind: str = "cyclic",
                 basis: np.ndarray | None = None):
        self.rng, self.n, self.p, self.kind = rng, int(n), int(p), kind
        if basis is not None and kind != "cyclic":
            raise GridError(f"probes over a basis are walked cyclically, not drawn {kind!r}")
        self.basis = None if basis is None else np.asarray(basis, np.float64)
        self.bands = band_probes(self.n, self.p) if basis is not None else [(0, self.n, self.p)]
        self.weight = np.concatenate([np.full(c, 1.0 / c) for _, _, c in self.bands])
        self._left: dict[tuple[int, int], np.ndarray] = {}

    def take(self, codes) -> tuple[np.ndarray, np.ndarray]:
        """``(u [B, P, N], weight [P])``: the step's probes and their weights."""
        return np.stack([self._one(int(c)) for c in codes]), self.weight

    def _one(self, code: int) -> np.ndarray:
        if self.kind != "cyclic":
            return perturbation_matrix(self.rng, self.p, self.n, self.kind)
        return np.concatenate([self._walk(code, band, a, b, c) for band, (a, b, c) in enumerate(self.bands)])

    def _walk(self, code: int, band: int, a: int, b: int, count: int) -> np.ndarray:
        """The next ``count`` rows of the basis ``code`` walks in band ``a:b`` (a fresh one when used up)."""
        got = []
        while sum(map(len, got)) < count:
            left = self._left.get((code, band))
            if left is None or len(left) == 0:
                left = perturbation_matrix(self.rng, b - a, b - a, "orthogonal")  # sqrt(d) x orthogonal
                if self.basis is not None:
                    left = left @ self.basis[a:b]
            k = count - sum(map(len, got))
            got.append(left[:k])
            self._left[(code, band)] = left[k:]
        return np.concatenate(got)


def probe_basis(bundle) -> tuple[np.ndarray | None, str]:
    """The SeFa directions of ``bundle``'s generator as an exact orthonormal float64 basis, and where from.

    ``(None, reason)`` when the generator has no linear first layer (then the
    ``bands`` estimator uses one band, isotropic probes).
    """
    from corrkit.methods.sefa import sefa

    try:
        found = sefa(bundle)
    except CorrkitError as exc:
        return None, f"none ({exc})"
    q, r = np.linalg.qr(found.directions.astype(np.float64).T)
    return (q * np.sign(np.diag(r))).T, f"sefa of {found.layer}"


def zo_gradient(probs_fn, z: np.ndarray, s0: np.ndarray, j: int, scale: np.ndarray, v: np.ndarray,
                u: np.ndarray, sigma: float, lam: float) -> tuple[np.ndarray, float]:
    """Zeroth-order estimate of ``dL/dv`` and the loss at ``v``.

    Two engine calls: the ``2B`` points ``z ± a w`` at ``v`` give the loss and, per code,
    the branch that attains the max; then one batch of ``2 P B`` points evaluates that
    branch at ``v + sigma u_p`` and ``v - sigma u_p`` for every perturbation and code.
    The max is locally its active branch, so this is the same derivative autograd
    takes, at half the cost of evaluating both branches.

    Parameters
    ----------
    probs_fn : callable float32 [R, N] -> float32 [R, C]
        The model ``S`` (e.g. :meth:`corrkit._core.engine.Engine.probabilities`).
    z : float32 [B, N]; s0 : float [B]
        Codes and their ``S_j(z)``.
    scale : float32 [B, N]
        :func:`intervention_scale` of the codes (fixed across perturbations: common random numbers).
    v : float64 [N]; u : float64 [P, N]

    Returns
    -------
    grad : float64 [N]
        ``mean_p (L_d(v + sigma u_p) - L_d(v - sigma u_p)) / (2 sigma) u_p`` plus the exact
        regulariser gradient, ``L_d`` the mean data term over the codes.
    loss : float
        The loss at ``v``.
    """
    p, (b, n) = len(u), z.shape
    s0 = np.asarray(s0, np.float64)
    w = np.tanh(v).astype(np.float32)
    here = probs_fn(np.concatenate([z + scale * w, z - scale * w]))[:, j].astype(np.float64)
    d_plus, d_minus = np.abs(here[:b] - s0), np.abs(here[b:] - s0)
    sign = np.where(d_plus >= d_minus, np.float32(1), np.float32(-1))[:, None]
    ws = np.tanh(np.concatenate([v[None] + sigma * u, v[None] - sigma * u])).astype(np.float32)  # [2P, N]
    pts = (z[None] + (sign * scale)[None] * ws[:, None, :]).reshape(-1, n)  # [2P * B, N]
    s = probs_fn(np.ascontiguousarray(pts)).reshape(2 * p, b, -1)[:, :, j].astype(np.float64)
    data = -np.abs(s - s0[None]).mean(axis=1)  # [2P]
    diff = (data[:p] - data[p:]) / (2.0 * sigma)
    grad = (diff[:, None] * u).mean(axis=0) + regulariser_grad(v, lam)
    return grad, float(-np.maximum(d_plus, d_minus).mean() + lam * np.linalg.norm(np.tanh(v)))


def zo_gradient_codes(probs_fn, z: np.ndarray, s0: np.ndarray, j: int, scale: np.ndarray, v: np.ndarray,
                      u: np.ndarray, sigma: float, lam: float,
                      weight: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Zeroth-order estimate of ``dL/dv`` from per-code gradients in latent space, and the loss at ``v``.

    The ``2B`` points ``z ± a w`` give the loss and, per code, the active branch
    ``z' = z + s a w`` (``s = ±1``, the side attaining the max). Then ``grad_z S_j(z')``
    is estimated per code from its own ``P`` antithetic probes
    ``(S_j(z' + sigma u) - S_j(z' - sigma u)) / (2 sigma) u`` (one engine batch of
    ``2 P B`` points) and chained into ``v``:
    ``dL/dv = -mean_b sign(S_j(z'_b) - S_j(z_b)) s_b a_b * grad_z S_j(z'_b) * (1 - w^2)``.
    Every code has its own probes, so their noise averages over the mini-batch, while
    the signal (the codes' shared direction) adds up.

    Parameters
    ----------
    probs_fn : callable float32 [R, N] -> float32 [R, C]
    z : float32 [B, N]; s0 : float [B]; scale : float32 [B, N] (:func:`intervention_scale`)
    v : float64 [N]
    u : float [B, P, N]
        Probe directions in latent space, ``E[u u^T] = I`` per code.
    sigma : float
        Probe size in latent space.
    weight : float [P], optional
        Weight of each probe's term (default ``1 / P``; :class:`ProbeStream` over bands
        gives ``1 / probes of its band``, with ``E[u u^T]`` the band's projector).

    Returns
    -------
    grad : float64 [N] (the regulariser's part exact); loss : float
    """
    (b, n), p = z.shape, u.shape[1]
    s0 = np.asarray(s0, np.float64)
    w64 = np.tanh(v)
    w = w64.astype(np.float32)
    here = probs_fn(np.concatenate([z + scale * w, z - scale * w]))[:, j].astype(np.float64)
    d_plus, d_minus = np.abs(here[:b] - s0), np.abs(here[b:] - s0)
    plus = d_plus >= d_minus
    side = np.where(plus, 1.0, -1.0)
    s_side = np.where(plus, here[:b], here[b:])
    z_side = z + (side[:, None] * scale * w).astype(np.float32)  # [B, N]
    du = (np.float32(sigma) * u).astype(np.float32)
    pts = np.concatenate([z_side[:, None] + du, z_side[:, None] - du]).reshape(-1, n)  # [2 B P, N]
    s = probs_fn(np.ascontiguousarray(pts))[:, j].astype(np.float64).reshape(2, b, p)
    weight = np.full(p, 1.0 / p) if weight is None else np.asarray(weight, np.float64)
    grad_z = np.einsum("bp,bpn->bn", (s[0] - s[1]) / (2.0 * sigma) * weight, u)  # [B, N]
    d_w = -(np.sign(s_side - s0) * side)[:, None] * scale * grad_z
    grad = d_w.mean(axis=0) * (1.0 - w64 * w64) + regulariser_grad(v, lam)
    return grad, float(-np.maximum(d_plus, d_minus).mean() + lam * np.linalg.norm(w64))


@dataclass
class OptimizedWeights:
    """``w*`` for every class and how it was found.

    Attributes
    ----------
    w : float32 [C, N]
        ``w*`` per class: the mean of ``tanh(v)`` over the last ``average`` share of the
        steps (the last iterate when ``average`` is 0).
    loss : float64 [C, T]
        Loss of each step's mini-batch at the step's ``v`` (before the update).
    classes : list of str; counts : int64 [C] (codes per class set); settings : dict
    w_last : float32 [C, N] or None
        ``tanh(v)`` after the last step.
    """

    w: np.ndarray
    loss: np.ndarray
    classes: list[str]
    counts: np.ndarray
    settings: dict = field(default_factory=dict)
    seconds: float = 0.0
    w_last: np.ndarray | None = None

    def controlling_set(self, k: int = 10) -> np.ndarray:
        """``[C, k]`` int64: the top-``k`` dims per class by ``|w*_j|`` (``C_j^opt``)."""
        from corrkit.kernels.ranking import top_k

        return top_k(np.abs(self.w).T, k)

    def summary(self, k: int = 10) -> dict:
        sets = self.controlling_set(min(k, self.w.shape[1]))
        return {"settings": self.settings, "seconds": round(self.seconds, 3), "counts": self.counts.tolist(),
                "classes": list(self.classes), "final_loss": self.loss[:, -1].round(6).tolist(),
                "top": {c: [{"dim": int(i), "w": round(float(self.w[j, i]), 6)} for i in sets[j]]
                        for j, c in enumerate(self.classes)}}

    def save(self, path: str | Path) -> None:
        """One ``.npz``: ``w``, ``loss``, ``counts``, ``classes`` and ``settings`` (a JSON string), atomically."""
        meta = dict(self.settings, seconds=round(self.seconds, 3))
        last = {} if self.w_last is None else {"w_last": self.w_last.astype(np.float32)}
        io.write_npz(path, w=self.w.astype(np.float32), loss=self.loss, counts=self.counts,
                     classes=np.array(self.classes), settings=np.array(json.dumps(meta, sort_keys=True)), **last)

    @classmethod
    def load(cls, path: str | Path) -> "OptimizedWeights":
        path = Path(path)
        try:
            d = np.load(path, allow_pickle=False)
            w = d["w"]
            settings = json.loads(str(d["settings"])) if "settings" in d.files else {}
        except (OSError, ValueError, KeyError) as exc:
            raise CorrkitError(f"{path} is not an optimized-weights file with an array `w` ({exc}); "
                               "make one with `corrkit optimize --out` or `corrkit export optimize`") from None
        if w.ndim != 2:
            raise CorrkitError(f"{path}: `w` has shape {list(w.shape)}, expected [C, N]")
        classes = [str(c) for c in d["classes"]] if "classes" in d.files else [str(j) for j in range(len(w))]
        loss = d["loss"] if "loss" in d.files else np.zeros((len(w), 0))
        counts = d["counts"] if "counts" in d.files else np.zeros(len(w), np.int64)
        return cls(w=w, loss=loss, classes=classes, counts=counts, settings=settings,
                   seconds=float(settings.get("seconds", 0.0)), w_last=d["w_last"] if "w_last" in d.files else None)


def code_sets(bundle, settings: Settings, engine=None, device: str = "auto", progress=None,
              threads: int | None = None):
    """The class-conditional sets of SPEC §1, drawn exactly as ``corrkit apcr`` draws them."""
    from corrkit._core.engine import Engine
    from corrkit._core.codesets import class_sets

    engine = engine or Engine(bundle, device=device, threads=threads)
    return class_sets(engine, bundle.n_classes, settings.samples_per_class, settings.threshold, settings.seed,
                      progress=progress), engine


def optimize(bundle=None, settings: Settings | None = None, *, engine=None, device: str = "auto",
             threads: int | None = None, classes: list[int] | None = None, progress=None,
             **overrides) -> OptimizedWeights:
    """Zeroth-order ``w*`` for every class on the ONNX models (SPEC §3), no torch.

    Parameters
    ----------
    bundle : Bundle, path or None
        ``None`` is the built-in bundle.
    settings : Settings, optional
        Defaults of :class:`Settings`; keyword ``overrides`` replace single fields.
    threads : int, optional
        onnxruntime threads (default: all cores of this process).
    classes : list of int, optional
        Optimise only these classes (the others' rows of ``w`` stay ``tanh(v_init)``).
    progress : callable(stage, done, total), optional

    Returns
    -------
    OptimizedWeights
    """
    from corrkit._core.bundle import Bundle, load_bundle

    settings = Settings(**{**asdict(settings or Settings()), **overrides, "method": "zeroth-order"}).check()
    if not isinstance(bundle, Bundle):
        bundle = load_bundle(bundle)
    t0 = time.perf_counter()
    report = progress or (lambda *a: None)
    n = bundle.latent_dim
    basis, basis_from = probe_basis(bundle) if settings.estimator == "bands" else (None, "none")
    if basis is not None:
        band_probes(n, settings.perturbations)  # too few probes for the bands: say so before any work
    sets, engine = code_sets(bundle, settings, engine, device, lambda d, t: report("codes", d, t), threads)

    def make_grad(j: int):
        rng_u = np.random.default_rng([settings.seed, j, 1])
        probes = ProbeStream(rng_u, n, settings.perturbations, "cyclic" if basis is not None
                             else settings.perturbation_kind, basis)

        def grad(z, s0, scale, v, codes):
            if settings.estimator == "weights":
                u = perturbation_matrix(rng_u, settings.perturbations, n, settings.perturbation_kind)
                return zo_gradient(engine.probabilities, z, s0, j, scale, v, u, settings.sigma, settings.lam)
            u, weight = probes.take(codes)
            return zo_gradient_codes(engine.probabilities, z, s0, j, scale, v, u, settings.sigma, settings.lam,
                                     weight)

        return grad

    w, w_last, losses, took = descend(sets, settings, bundle.n_classes, n, make_grad, classes, report)
    return OptimizedWeights(w=w, loss=losses, classes=list(bundle.classes), counts=sets.counts, w_last=w_last,
                            settings=dict(settings.to_dict(), device=engine.device, provider=engine.provider,
                                          class_seconds=took, probe_basis=basis_from),
                            seconds=time.perf_counter() - t0)


def descend(sets, settings: Settings, n_classes: int, n: int, make_grad, classes=None, report=None):
    """Plain gradient descent on ``v`` per class, the loop both implementations share.

    Parameters
    ----------
    sets : CodeSets
    make_grad : callable(j) -> callable(z [B, N], s0 [B], scale [B, N], v [N], codes int64 [B]) -> (grad [N], loss)
        ``codes`` are the mini-batch's indices into the class set.
    classes : list of int, optional
        Classes to optimise (default all); the others keep ``tanh(v_init)``.

    Returns
    -------
    w : float32 [C, N]  (mean of ``tanh(v)`` over the last ``average`` share of steps)
    w_last : float32 [C, N]; losses : float64 [C, T]
    seconds : list of float [C]
        Time each class's descent took (0 for classes not optimised).
    """
    t = settings.iterations
    n_avg = max(1, int(round(settings.average * t)))
    todo = list(range(n_classes)) if classes is None else list(classes)
    w = np.full((n_classes, n), np.tanh(settings.v_init), np.float32)
    w_last = w.copy()
    losses = np.full((n_classes, t), np.nan)
    seconds = [0.0] * n_classes
    for done, j in enumerate(todo):
        t0 = time.perf_counter()
        rows = np.flatnonzero(sets.labels == j)
        if len(rows) == 0:
            continue
        z_j, s0_j = sets.latents[rows], sets.base[rows, j]
        sched, grad_fn = Schedule(len(rows), settings, j), make_grad(j)
        v = np.full(n, settings.v_init, np.float64)
        w_sum = np.zeros(n)
        for it in range(t):
            idx, xi = sched.next()
            scale = intervention_scale(z_j[idx], xi, settings.objective)
            grad, losses[j, it] = grad_fn(z_j[idx], s0_j[idx], scale, v, idx)
            v -= settings.lr * grad
            if it >= t - n_avg:
                w_sum += np.tanh(v)
            if report:
                report("optimise", done * t + it + 1, len(todo) * t)
        w[j], w_last[j] = w_sum / n_avg, np.tanh(v)
        seconds[j] = round(time.perf_counter() - t0, 3)
    return w, w_last, losses, seconds


def agreement(a: np.ndarray, b: np.ndarray, k: int = 10, start: float | None = None) -> dict:
    """How far two ``[C, N]`` weight sets agree (SPEC §3): top-``k`` overlap of ``|w|`` and ``|cosine|`` of ``w``.

    The loss is unchanged by ``w -> -w``, so the cosine is taken up to that global sign.

    With ``start`` (the common initial weight ``tanh(v_init)``), also the cosine of the
    moves ``w - start``, which the shared starting point cannot inflate.
    """
    from corrkit.kernels.ranking import top_k

    def cosine(x, y):
        x, y = x.astype(np.float64), y.astype(np.float64)
        return (x * y).sum(1) / np.maximum(np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1), 1e-300)

    if a.shape != b.shape:
        raise CorrkitError(f"weights of shapes {list(a.shape)} and {list(b.shape)} cannot be compared")
    sa, sb = top_k(np.abs(a).T, k), top_k(np.abs(b).T, k)
    overlap = np.array([len(set(x) & set(y)) / k for x, y in zip(sa.tolist(), sb.tolist())])
    cos = np.abs(cosine(a, b))
    out = {"k": k, "overlap": overlap.tolist(), "mean_overlap": float(overlap.mean()),
           "cosine": cos.tolist(), "mean_cosine": float(cos.mean())}
    if start is not None:
        moved = cosine(a - start, b - start)
        out.update(cosine_of_moves=moved.tolist(), mean_cosine_of_moves=float(moved.mean()))
    return out


def compare_with(result: OptimizedWeights, other: str | Path, k: int = 10) -> dict:
    """:func:`agreement` of ``result`` with the weights stored in ``other`` (e.g. the gradient ``w*``)."""
    ref = OptimizedWeights.load(other)
    start = float(np.tanh(result.settings.get("v_init", 0.5)))
    shared = ("objective", "iterations", "lr", "lam", "xi_min", "xi_max", "v_init", "batch_size",
              "samples_per_class", "threshold", "seed")
    differ = [key for key in shared if result.settings.get(key) != ref.settings.get(key)]
    return {"against": str(other), "method": ref.settings.get("method"), "settings_differ": differ,
            **agreement(result.w, ref.w, k, start)}
