"""Zeroth-order gradient estimates for the torch-free optimisation (SPEC §3): probes and estimators.

:mod:`corrkit.methods.optimize` descends on the controlling-set weights ``v``;
the gradient of its data term comes from here, estimated by antithetic probes that
the engine evaluates in one batch per step. :class:`ProbeStream` chooses where the
probes point (isotropic, or stratified over bands of the generator's SeFa basis),
:func:`zo_gradient_codes` chains each code's latent gradient into ``v``, and
:func:`zo_gradient` perturbs ``v`` directly. Why bands and what they buy is measured
in ``docs/optimize.md``.
"""

from __future__ import annotations

import numpy as np

from corrkit._core.linalg import orthonormal_rows
from corrkit.errors import CorrkitError, GridError
from corrkit.methods.objective import regulariser_grad


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
        blocks.append(orthonormal_rows(rng.standard_normal((n, n)).T).T)  # Q of the QR, rows kept
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

    style = getattr(bundle, "style", None)
    if style is not None and style.space.name != "w":  # style-layer SeFa is a basis of W only
        return None, f"none (SeFa of a mapping/synthesis bundle is a basis of W, not of {style.space.name.upper()})"
    try:
        found = sefa(bundle)
    except CorrkitError as exc:
        return None, f"none ({exc})"
    return orthonormal_rows(found.directions), f"sefa of {found.layer}"


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
