"""Controlling sets by optimisation (Li et al., ICPR 2020, Eq. 5-8; SPEC §3), torch-free.

Weights ``w = tanh(v)`` define the intervention ``z± = z ± xi * w`` (``objective="paper"``)
or ``z± = z * (1 ± 10 mean(z) w)`` (``"authors"``, the authors' released code); the
per-code loss ``-max(|S_j(z+) - S_j(z)|, |S_j(z-) - S_j(z)|) + lambda ||w||_2`` is
minimised by plain gradient descent on ``v`` over the codes of ``Z_j``
(:mod:`corrkit.methods.objective`). :func:`descend` is the loop shared with the gradient
implementation in :mod:`corrkit.export.optimize`; here the data term's gradient is
estimated from antithetic probes (:mod:`corrkit.methods.zeroth_order`) and the
regulariser's is exact, since it carries no information about the model.

Defaults **(choice)**: the whole class set per step, 1,000 steps, and ``w*`` the mean
of ``w`` over the last 40 % of them (``average``; ``w_last`` is the last iterate), so
the common start stays out of ``w*``. Why these, and the measured agreement with the
gradient ``w*``, are in ``docs/optimize.md``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from corrkit._core import io
from corrkit._core.execution import Execution
from corrkit.errors import CorrkitError
from corrkit.methods.objective import OptimizeSettings, Schedule, intervention_scale
from corrkit.methods.zeroth_order import (ProbeStream, band_probes, perturbation_matrix, probe_basis, zo_gradient,
                                          zo_gradient_codes)

WEIGHTS_FILE = "optimized_weights.npz"


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
        """Read what :meth:`save` wrote; anything else, or a damaged file, is one :class:`CorrkitError`.

        ``w`` must be finite floats ``[C, N]``; ``classes`` ``[C]`` strings, ``counts``
        ``[C]`` whole numbers >= 0, ``loss`` floats ``[C, T]``, ``w_last`` like ``w`` and
        ``settings`` one JSON object, when present.
        """
        from corrkit._core.grid import read_npz

        path = Path(path)
        hint = "make one with `corrkit optimize --out` or `corrkit export optimize`"
        d = read_npz(path, "optimised weights", fix=hint)

        def bad(problem: str):
            return CorrkitError(f"{path} is not an optimised-weights file: {problem}; {hint}")

        w = d.get("w")
        if w is None:
            raise bad("it has no array `w`")
        if w.ndim != 2 or 0 in w.shape:
            raise bad(f"`w` has shape {list(w.shape)}, expected [C, N]")
        if not np.issubdtype(w.dtype, np.floating) or not np.isfinite(w).all():
            raise bad("`w` must be finite floating-point numbers")
        c = len(w)
        settings = {}
        if "settings" in d:
            try:
                settings = json.loads(str(d["settings"])) if d["settings"].ndim == 0 else None
            except (ValueError, RecursionError):
                settings = None
            if not isinstance(settings, dict):
                raise bad("`settings` is not one JSON object")
        seconds = settings.get("seconds", 0.0)
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not np.isfinite(seconds):
            raise bad(f"settings' `seconds` is {seconds!r}, expected a number")
        classes = d.get("classes", np.array([str(j) for j in range(c)]))
        if classes.shape != (c,) or classes.dtype.kind != "U":
            raise bad(f"`classes` must be {c} names (strings), one per row of `w`")
        counts = d.get("counts", np.zeros(c, np.int64))
        if counts.shape != (c,) or not np.issubdtype(counts.dtype, np.integer) or (counts < 0).any():
            raise bad(f"`counts` must be {c} whole numbers >= 0")
        loss = d.get("loss", np.zeros((c, 0)))
        if loss.ndim != 2 or len(loss) != c or not np.issubdtype(loss.dtype, np.floating):
            raise bad(f"`loss` has shape {list(loss.shape)}, expected floats [{c}, steps]")
        w_last = d.get("w_last")
        if w_last is not None and (w_last.shape != w.shape or not np.issubdtype(w_last.dtype, np.floating)
                                   or not np.isfinite(w_last).all()):
            raise bad(f"`w_last` must be finite floats of the shape of `w` {list(w.shape)}")
        return cls(w=w, loss=loss, classes=[str(x) for x in classes], counts=counts, settings=settings,
                   seconds=float(seconds), w_last=w_last)


def code_sets(bundle, settings: OptimizeSettings, engine=None, execution: Execution | None = None, progress=None):
    """The class-conditional sets of SPEC §1, drawn exactly as ``corrkit apcr`` draws them."""
    from corrkit._core.codesets import class_sets

    engine = engine or (execution or Execution()).engine(bundle)
    return class_sets(engine, bundle.n_classes, settings.samples_per_class, settings.threshold, settings.seed,
                      progress=progress), engine


def optimize(bundle=None, settings: OptimizeSettings | None = None, *, engine=None,
             execution: Execution | None = None, classes: list[int] | None = None, progress=None,
             **overrides) -> OptimizedWeights:
    """Zeroth-order ``w*`` for every class on the ONNX models (SPEC §3), no torch.

    Parameters
    ----------
    bundle : Bundle, path or None
        ``None`` is the built-in bundle.
    settings : OptimizeSettings, optional
        Defaults of :class:`OptimizeSettings`; keyword ``overrides`` replace single fields.
    execution : Execution, optional
        Device and threads of the engine (:class:`corrkit._core.execution.Execution`).
    classes : list of int, optional
        Optimise only these classes (the others' rows of ``w`` stay ``tanh(v_init)``).
    progress : callable(stage, done, total), optional

    Returns
    -------
    OptimizedWeights
    """
    from corrkit._core.bundle import as_bundle
    from corrkit._core.codesets import check_class_sets

    settings = OptimizeSettings(**{**asdict(settings or OptimizeSettings()), **overrides,
                                   "method": "zeroth-order"}).check()
    bundle = as_bundle(bundle)
    check_class_sets(settings.samples_per_class, settings.threshold, bundle.n_classes, bundle.latent_dim)
    t0 = time.perf_counter()
    report = progress or (lambda *a: None)
    n = bundle.latent_dim
    basis, basis_from = probe_basis(bundle) if settings.estimator == "bands" else (None, "none")
    if basis is not None:
        band_probes(n, settings.perturbations)  # too few probes for the bands: say so before any work
    sets, engine = code_sets(bundle, settings, engine, execution, lambda d, t: report("codes", d, t))

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
                                          class_seconds=took, probe_basis=basis_from,
                                          **(bundle.style.space.record() if bundle.style else {})),
                            seconds=time.perf_counter() - t0)


def descend(sets, settings: OptimizeSettings, n_classes: int, n: int, make_grad, classes=None, report=None):
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
