"""Class-to-class translation by extreme interventions (Li et al., ICPR 2020, Figure 6; SPEC §5).

For a source class ``j`` and a target ``l`` (``tgt`` in the code), the APCR run's curves
say how ``S_l`` moves on the codes of ``Z_j`` along every latent axis: the gain of dim ``i`` is
``max over k != 0 of curves[i, k, j, l] - curves[i, 0, j, l]``, its sign the side
(``k > 0`` or ``k < 0``) where that maximum lies. The ``k`` dims with the largest
gain are pushed together, ``z' = z + alpha * sum_i s_i e_i``, for growing ``alpha``;
the success rate is the share of ``Z_j`` whose argmax is ``l`` afterwards.

Conventions **(choice)**: the success matrix is read at the largest ``alpha``
(``success_by_alpha`` holds every step; ``success_any_alpha`` counts a code as
translated when it is classified ``l`` at any step up to ``alpha``, i.e. when growing
``alpha`` stops at the target); its diagonal is 1, since every code of
``Z_j`` is already classified ``j`` (nothing is intervened), and it is left out
of the off-diagonal mean and of the easiest/hardest pair lists.

Attribute concepts (``classifier_output: sigmoid``, SPEC §11): the pairs are "turn attribute
``a`` off" (``a -> not a``) and "turn it on" (``not a -> a``), and a code is translated when
the target concept's score reaches 1/2 (the attribute's state changed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from corrkit._core.defaults import TOP_K
from corrkit._core.execution import Execution
from corrkit.errors import CorrkitError
from corrkit.methods.manipulate import MAX_ALPHA_STEPS, alpha_labels, edit_images, load_run, shifted, slug


def translation_dims(curves: np.ndarray, j: int, tgt: int, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dims, signs and gains that raise ``S_l`` on ``Z_j`` most.

    Parameters
    ----------
    curves : float [K, 2m+1, C, C]
        ``curves[i, k+m, j, tgt]`` of an APCR run.

    Returns
    -------
    dims : int64 [k]   sorted by gain, descending (ties by index)
    signs : int8 [k]   ``+1`` when the gain is on the ``k > 0`` side
    gains : float64 [k]
    """
    from corrkit.kernels.ranking import rank

    m = (curves.shape[1] - 1) // 2
    c = curves[:, :, j, tgt].astype(np.float64)
    plus = c[:, m + 1:].max(axis=1) - c[:, m]
    minus = c[:, :m].max(axis=1) - c[:, m]
    gain = np.maximum(plus, minus)
    dims = rank(gain[:, None])[:k, 0]
    return dims, np.where(plus[dims] >= minus[dims], 1, -1).astype(np.int8), gain[dims]


@dataclass
class TranslationResult:
    """``success_by_alpha[a, j, l]``: share of ``Z_j`` classified ``l`` after the ``j -> l`` intervention.

    Attributes
    ----------
    success_by_alpha : float64 [A, C, C]; alphas : float64 [A]
    success_any_alpha : float64 [C, C]
        Share of ``Z_j`` classified ``l`` at one step or more.
    pairs : list of (j, tgt) that were computed (others are NaN off the diagonal)
    dims, signs : dict (j, tgt) -> int64 [k] / int8 [k]
    """

    classes: list[str]
    alphas: np.ndarray
    success_by_alpha: np.ndarray
    top_k: int
    pairs: list[tuple[int, int]]
    success_any_alpha: np.ndarray | None = None
    # SPEC §11: 95% bootstrap interval of each success at ``alpha`` [C, C, 2] (NaN: not measured), and of the
    # mean off-diagonal success; the source class's codes resampled with the run's resamples
    success_interval: np.ndarray | None = None
    mean_interval: tuple | None = None
    dims: dict = field(default_factory=dict)
    signs: dict = field(default_factory=dict)
    images: list[str] = field(default_factory=list)

    @property
    def alpha(self) -> float:
        return float(self.alphas[-1])

    @property
    def success(self) -> np.ndarray:
        """``[C, C]`` at the largest alpha."""
        return self.success_by_alpha[-1]

    def ranked_pairs(self) -> list[tuple[int, int, float]]:
        """Computed off-diagonal pairs, easiest first (ties by source, then target).

        A pair whose source class has no codes has no success rate: it is left out
        (``null`` in the matrix), never ranked.
        """
        got = [(j, tgt, float(self.success[j, tgt])) for j, tgt in self.pairs
               if j != tgt and np.isfinite(self.success[j, tgt])]
        return sorted(got, key=lambda t: (-t[2], t[0], t[1]))

    def to_json(self, n_pairs: int = 10) -> dict:
        def nan_none(a):
            return [[None if np.isnan(x) else float(x) for x in row] for row in a]

        ranked = self.ranked_pairs()
        name = lambda t: {"source": self.classes[t[0]], "target": self.classes[t[1]], "success": t[2]}  # noqa: E731
        off = [t[2] for t in ranked]
        return {
            "alpha": self.alpha, "alphas": self.alphas.tolist(), "top_k": self.top_k, "classes": list(self.classes),
            "success": nan_none(self.success),
            "success_by_alpha": [nan_none(s) for s in self.success_by_alpha],
            "success_any_alpha": nan_none(self.success_any_alpha),
            "mean_off_diagonal": float(np.mean(off)) if off else None,
            **({"success_interval": [[None if np.isnan(v[0]) else [float(v[0]), float(v[1])] for v in row]
                                     for row in self.success_interval],
                "mean_off_diagonal_interval": None if self.mean_interval is None else list(self.mean_interval)}
               if self.success_interval is not None else {}),
            "easiest": [name(t) for t in ranked[:n_pairs]],
            "hardest": [name(t) for t in ranked[::-1][:n_pairs]],
            "pairs": [{"source": j, "target": tgt, "dims": self.dims[(j, tgt)].tolist(),
                       "signs": self.signs[(j, tgt)].tolist()} for j, tgt in self.pairs
                      if j != tgt and (j, tgt) in self.dims],
            "images": self.images,
        }


def translate(bundle=None, *, run=None, pairs: list[tuple[int, int]] | None = None, top_k: int = TOP_K,
              alpha: float = 2.0, steps: int = 4, out: str | Path | None = None, draw=None,
              execution: Execution | None = None,
              engine=None, progress=None) -> TranslationResult:
    """Success matrix of ``j -> l`` translation (SPEC §5).

    Parameters
    ----------
    bundle : Bundle, path or None
    run : APCRResult, run folder or None
        ``None`` runs :func:`corrkit.apcr` with its defaults.
    pairs : list of (source, target), optional
        Default: every ordered pair of distinct classes.
    alpha, steps : float, int
        ``alphas = alpha * (1..steps) / steps``; the matrix is read at ``alpha``.
    out : path, optional
        Folder for ``translate.json`` and, with ``draw``, PNG grids: one per pair when
        pairs are given, else one with each source class pushed toward its easiest target.
    draw : callable, optional
        The image grid, :func:`corrkit.viz.images.image_grid` (what ``corrkit
        translate`` passes); without it no PNG is written.
    """
    from corrkit._core.bundle import as_bundle

    from corrkit._core.grid import check_real, check_whole

    check_real(alpha, "--alpha", 0, lo_open=True)
    check_whole(steps, "--steps", 1, MAX_ALPHA_STEPS)
    bundle = as_bundle(bundle)
    c = bundle.n_classes
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or not 1 <= top_k <= bundle.latent_dim:
        raise CorrkitError(f"--top-k must be between 1 and {bundle.latent_dim} (got {top_k})")
    from corrkit._core.attributes import flipped, is_attributes, partner

    attrs = is_attributes(bundle)
    explicit = pairs is not None
    if pairs is None:  # attributes: turn each one off (a -> not a) and on (not a -> a), SPEC §11
        pairs = [(j, partner(j, c)) for j in range(c)] if attrs else [
            (j, tgt) for j in range(c) for tgt in range(c) if j != tgt]
    pairs = list(pairs)
    for j, tgt in pairs:
        if not (0 <= j < c and 0 <= tgt < c):
            raise CorrkitError(f"pair {j} -> {tgt} is out of range for {c} classes")
    engine = engine or (execution or Execution()).engine(bundle)
    run = load_run(run, bundle, progress)
    alphas = alpha * np.arange(1, steps + 1, dtype=np.float64) / steps
    success, reached = np.full((steps, c, c), np.nan), np.full((c, c), np.nan)
    for j in range(c):
        success[:, j, j] = reached[j, j] = 1.0
    result = TranslationResult(classes=list(bundle.classes), alphas=alphas, success_by_alpha=success, top_k=top_k,
                               pairs=pairs, success_any_alpha=reached)
    outcome: dict[tuple[int, int], np.ndarray] = {}  # each code's success at alpha, for the intervals
    by_source: dict[int, list[int]] = {}
    for j, tgt in pairs:
        by_source.setdefault(j, []).append(tgt)
    for done, (j, targets) in enumerate(sorted(by_source.items())):
        z = run.latents[run.labels == j]
        targets = [tgt for tgt in targets if tgt != j]
        if len(z) == 0 or not targets:
            continue
        pts = []
        for tgt in targets:
            dims, signs, _ = translation_dims(run.curves, j, tgt, top_k)
            result.dims[(j, tgt)], result.signs[(j, tgt)] = dims, signs
            pts.append(shifted(z, dims, signs, alphas))
        p = engine.probabilities(np.concatenate(pts).reshape(-1, z.shape[1]))
        p = p.reshape(len(targets), steps, len(z), -1)
        for r, tgt in enumerate(targets):
            hit = ~flipped(p[r], tgt, attrs)  # [A, M]: argmax is the target (an attribute: its score >= 1/2)
            success[:, j, tgt] = hit.mean(axis=1)
            reached[j, tgt] = hit.any(axis=0).mean()
            outcome[(j, tgt)] = hit[-1]
        if progress:
            progress("translate", done + 1, len(by_source))
    result.success_interval, result.mean_interval = success_intervals(outcome, run.labels, c)
    if out is not None:
        from corrkit._core import io

        out = Path(out)
        if draw is not None and bundle.generator is not None:
            _pictures(bundle, run, result, out, explicit, draw)
        io.write_json(out / "translate.json", result.to_json())
    return result


def success_intervals(outcome: dict, labels: np.ndarray, n_classes: int) -> tuple[np.ndarray, tuple | None]:
    """SPEC §11: ``[C, C, 2]`` 95% intervals of each measured pair's success (``[0, 1]`` for a source with one
    code, NaN where not measured) and the interval of the mean off-diagonal success: resample ``b`` of every
    source class at once, the run's resamples (:func:`corrkit.methods.bootstrap.resample_weights`)."""
    from corrkit.methods.bootstrap import mean_interval, resample_weights, share_interval

    weights = resample_weights(labels, n_classes)
    iv = np.full((n_classes, n_classes, 2), np.nan)
    draws, whole = [], True
    for (j, tgt), x in sorted(outcome.items()):
        if weights[j] is None:
            iv[j, tgt] = (0.0, 1.0)
            whole = False
            continue
        iv[j, tgt], b = share_interval(x, weights[j])
        draws.append(b)
    return iv, mean_interval(draws, [iv[j, tgt] for j, tgt in sorted(outcome)], whole)


def _pictures(bundle, run, result: TranslationResult, out: Path, explicit: bool, draw, rows: int = 4) -> None:
    """One grid per given pair (``rows`` codes), or one row per source class toward its easiest target."""
    steps = np.concatenate([[0.0], result.alphas])
    names = bundle.classes
    if explicit:
        for j, tgt in result.pairs:
            if j == tgt or (j, tgt) not in result.dims:
                continue
            z = run.latents[run.labels == j][:rows]
            images = edit_images(bundle, z, result.dims[(j, tgt)], result.signs[(j, tgt)], steps)
            path = out / f"translate_{j:02d}_{tgt:02d}_{slug(names[j])}_to_{slug(names[tgt])}.png"
            draw(images, row_labels=[f"{names[j]} → {names[tgt]}"] + [""] * (len(z) - 1),
                 col_labels=alpha_labels(steps),
                 title=f"{names[j]} → {names[tgt]}: success {result.success[j, tgt]:.2f}", out=path)
            result.images.append(str(path))
        return
    best = {}
    for j, tgt, _ in result.ranked_pairs():
        best.setdefault(j, tgt)
    if not best:
        return
    images = np.concatenate([edit_images(bundle, run.latents[run.labels == j][:1], result.dims[(j, tgt)],
                                         result.signs[(j, tgt)], steps) for j, tgt in sorted(best.items())])
    path = out / "translate_easiest.png"
    draw(images, row_labels=[f"{names[j][:9]}→{names[tgt][:9]}" for j, tgt in sorted(best.items())],
         col_labels=alpha_labels(steps), title="each class toward its easiest target", out=path)
    result.images.append(str(path))
