"""Base latent codes and class-conditional code sets (SPEC §1)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from corrkit._core import defaults
from corrkit.errors import GridError


@dataclass
class CodeSets:
    """Class-conditional codes, grouped by class (class 0's codes first).

    Attributes
    ----------
    latents : float32 [M, N]
    labels : int64 [M]
        Class of each code.
    base : float32 [M, C]
        ``S(z)`` of each code (the ``k = 0`` point).
    counts : int64 [C]
        Codes found per class (below ``n`` when a class could not be filled).
    draws : int
        Prior samples drawn (or user codes seen).
    """

    latents: np.ndarray
    labels: np.ndarray
    base: np.ndarray
    counts: np.ndarray
    draws: int


def _select(probs: np.ndarray, n: int, tau: float, taken: list[list[int]], offset: int,
            multi: bool = False) -> None:
    """Append to ``taken[j]`` (up to ``n``) the rows whose top class is ``j`` with probability ``>= tau``.

    ``multi`` (attribute concepts, SPEC §11): every row whose score of concept ``j`` is ``>= tau``,
    whatever its other scores, so a row can join several sets.
    """
    if multi:
        for j in range(probs.shape[1]):
            room = n - len(taken[j])
            if room > 0:
                taken[j].extend(offset + int(r) for r in np.flatnonzero(probs[:, j] >= tau)[:room])
        return
    top = probs.argmax(1)
    for r in np.flatnonzero(qualifies(probs, top, tau)):
        j = top[r]
        if len(taken[j]) < n:
            taken[j].append(offset + int(r))


def qualifies(probs: np.ndarray, labels: np.ndarray, tau: float, multi: bool = False) -> np.ndarray:
    """Whether each row would join the set of its label by :func:`_select`'s rule (bool ``[M]``).

    Used to ask whether another engine (fp32 against a faster mode) puts a code in the same set.
    """
    own = probs[np.arange(len(probs)), labels]
    return own >= tau if multi else (own >= tau) & (probs.argmax(1) == labels)


# Prior draws kept per code wanted while the class sets fill (the default draw cap of class_sets).
DRAWS_PER_CODE = 50


def check_class_sets(n: int, tau: float, n_classes: int, latent_dim: int, user_latents: bool = False,
                     max_draws: int | None = None) -> None:
    """Refuse, before any work, impossible class-set settings and a draw past the memory cap.

    Every prior draw is kept (code and probabilities, float32) until the sets are full,
    at most ``max_draws`` (default ``50 n C``) of them.
    """
    from corrkit._core.grid import MEMORY_CAP, _gib, check_real, check_whole

    check_whole(n, "--samples-per-class", 1)
    check_real(tau, "--threshold", 0, 1, hi_open=True)
    if user_latents:
        return
    cap = max_draws or DRAWS_PER_CODE * n * n_classes
    need = cap * (latent_dim + n_classes) * 4
    if need > MEMORY_CAP:
        raise GridError(f"--samples-per-class {n:,}: filling {n_classes:,} class sets may draw up to {cap:,} prior "
                        f"codes ({DRAWS_PER_CODE} per code wanted), {_gib(need)} kept in memory, over corrkit's cap "
                        f"of {_gib(MEMORY_CAP)}; use a smaller --samples-per-class or give your own --latents")


def class_sets(engine, n_classes: int, n: int = defaults.SAMPLES_PER_CLASS, tau: float = defaults.THRESHOLD,
               seed: int = defaults.SEED, latents: np.ndarray | None = None, draw_batch: int = 1024,
               max_draws: int | None = None, progress=None) -> CodeSets:
    """First ``n`` codes per class (draw order) with ``argmax S = j`` and ``S_j >= tau``
    (attribute concepts, ``engine.attributes``: with ``S_j >= tau``, a code in every set it qualifies for).

    Codes come from ``N(0, I)`` via ``numpy.random.default_rng(seed)`` until every class is
    full or ``max_draws`` (default ``50 n C``) is reached, or from the user's ``latents``.
    Unfilled classes give a warning. The draws come in batches growing from ``2 n C`` (at least 64)
    to ``draw_batch``: one stream either way (the same codes and sets), but a run whose classes
    fill early does not evaluate hundreds of codes it then throws away (at 256 px that was a fifth
    of a short run).
    """
    check_class_sets(n, tau, n_classes, engine.latent_dim, user_latents=latents is not None, max_draws=max_draws)
    taken: list[list[int]] = [[] for _ in range(n_classes)]
    multi = bool(getattr(engine, "attributes", False))
    zs, ps = [], []
    drawn = 0
    if latents is not None:
        probs = engine.probabilities(latents, describe=lambda r: f"latent code {r}")
        _select(probs, n, tau, taken, 0, multi)
        zs, ps, drawn = [latents], [probs], len(latents)
    else:
        rng = np.random.default_rng(seed)
        cap = max_draws or DRAWS_PER_CODE * n * n_classes
        batch = min(draw_batch, max(64, 2 * n * n_classes))
        while drawn < cap and min(len(t) for t in taken) < n:
            z = engine.draw(rng, min(batch, cap - drawn))
            batch = min(draw_batch, 2 * batch)
            p = engine.probabilities(z, describe=lambda r, o=drawn: f"prior sample {o + r}")
            _select(p, n, tau, taken, drawn, multi)
            zs.append(z); ps.append(p)
            drawn += len(z)
            if progress:
                progress(sum(map(len, taken)), n * n_classes)
    z_all, p_all = np.concatenate(zs), np.concatenate(ps)
    idx = np.array([r for t in taken for r in t], dtype=np.int64)
    labels = np.array([j for j, t in enumerate(taken) for _ in t], dtype=np.int64)
    counts = np.array([len(t) for t in taken], dtype=np.int64)
    short = [j for j in range(n_classes) if counts[j] < n]
    if short:
        warnings.warn(
            "could not fill class set(s) "
            + ", ".join(f"{j} ({counts[j]}/{n})" for j in short)
            + f" after {drawn} codes; `counts` records it. Lower --threshold or raise the draw cap.",
            stacklevel=2,
        )
    if len(idx) == 0:
        raise GridError(f"no code reached probability {tau} for any class; lower --threshold")
    return CodeSets(z_all[idx].copy(), labels, p_all[idx].copy(), counts, drawn)
