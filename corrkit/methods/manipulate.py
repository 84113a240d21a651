"""Concept manipulation through a controlling set (Li et al., ICPR 2020, Figure 5; SPEC §5).

For class ``j`` and a set ``C`` of latent dims, ``z' = z + alpha * sum_{i in C} s_i e_i``
with ``s_i`` the sign that lowers ``S_j`` (from the APCR run's ``up``/``down``). The
paper's claim: the top-ranked set changes the concept, the bottom-ranked set barely
does. Measured on the codes of ``Z_j``: the mean drop of ``S_j`` and the flip rate
(share whose argmax leaves ``j``; for an attribute concept, whose score falls below 1/2:
the attribute turned off, or on for a ``not <attribute>`` concept), for the top-``k``,
bottom-``k`` and a seeded random-``k`` set at the same ``alpha``.

With ``keep`` (``corrkit manipulate --keep CLASS,...``) a fourth row, ``boundary``, is
InterFaceGAN's conditional edit (Shen et al., CVPR 2020, Section 2.3): along minus class
``j``'s SVM normal with its components along the kept classes' normals removed
(:func:`corrkit.methods.interfacegan.project_boundary`), stepped as far as the top-``k`` set
moves (``alpha * sqrt(k)``), and every row reports how much it moved the kept classes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from corrkit._core.defaults import SEED, TOP_K
from corrkit._core.execution import Execution
from corrkit.errors import CorrkitError

SETS = ("top", "bottom", "random")
BOUNDARY = "boundary"  # the conditional InterFaceGAN edit, a row only when classes are kept
# Alpha steps measured (and drawn): far more than a table or a picture can show; each holds every code's probabilities.
MAX_ALPHA_STEPS = 1_000


def class_index(value: str | int, classes: list[str]) -> int:
    """A class given by index (``"3"``) or name (case-insensitive) -> its index."""
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        j = int(text)
        if 0 <= j < len(classes):
            return j
        raise CorrkitError(f"class {j} is out of range: the model has classes 0..{len(classes) - 1}")
    names = [c.lower() for c in classes]
    if text.lower() in names:
        return names.index(text.lower())
    raise CorrkitError(f"unknown class {text!r}; give an index 0..{len(classes) - 1} or one of: {', '.join(classes)}")


def lowering_signs(up: np.ndarray, down: np.ndarray) -> np.ndarray:
    """``[K, C]`` int8: ``+1`` where stepping up lowers ``S_j`` more than stepping down, else ``-1``."""
    return np.where(np.asarray(up) <= np.asarray(down), 1, -1).astype(np.int8)


def choose_sets(apcr: np.ndarray, j: int, k: int, seed: int = SEED) -> dict[str, np.ndarray]:
    """Top-``k``, bottom-``k`` (lowest APCR) and random-``k`` dims of class ``j``, each int64 ``[k]``."""
    from corrkit.kernels.ranking import rank

    n_dims = apcr.shape[0]
    if not 1 <= k <= n_dims:
        raise CorrkitError(f"--top-k must be between 1 and {n_dims} (got {k})")
    order = rank(apcr)[:, j]
    rng = np.random.default_rng([seed, j])
    return {"top": order[:k].copy(), "bottom": order[::-1][:k].copy(),
            "random": np.sort(rng.choice(n_dims, size=k, replace=False)).astype(np.int64)}


def shifted(z: np.ndarray, dims: np.ndarray, signs: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """``z + alpha * sum_i s_i e_i`` for every alpha: float32 ``[A, M, N]``."""
    step = np.zeros(z.shape[1], np.float32)
    step[dims] = signs
    return (z[None] + np.asarray(alphas, np.float32)[:, None, None] * step[None, None]).astype(np.float32)


def edit_images(bundle, z: np.ndarray, dims: np.ndarray, signs: np.ndarray, alphas) -> np.ndarray:
    """Generator images of codes ``z [R, N]`` after :func:`shifted` at every alpha, rows = codes.

    Returns float32 ``[R, A, H, W]`` (grey) or ``[R, A, H, W, C]`` (colour) in [0, 1]
    (:func:`corrkit._core.engine.generate`).
    """
    from corrkit._core.engine import generate

    pts = shifted(z, dims, signs, alphas)  # [A, R, N]
    images = generate(bundle, pts.transpose(1, 0, 2).reshape(-1, z.shape[1]))
    return images.reshape(len(z), len(pts), *images.shape[1:])


def alpha_labels(alphas) -> list[str]:
    """Column labels of an edit picture: ``α=0``, ``α=0.05`` ..."""
    return [f"α={a:.3g}" for a in alphas]


@dataclass
class Manipulation:
    """Per-class outcome: sets, signs and the effect at every alpha.

    Attributes
    ----------
    j : int; sets : dict name -> int64 [k]; signs : dict name -> int8 [k]
    alphas : float [A] (``A`` steps up to ``alpha``)
    s_j : dict name -> float64 [A, M]   ``S_j(z')`` per code
    flipped : dict name -> bool [A, M]  argmax of ``S(z')`` is not ``j``
    base : float64 [M] ``S_j(z)``
    kept_change : dict name -> float64 [A]  mean ``|S_k(z') − S_k(z)|`` over codes and kept classes ``k``
    """

    j: int
    sets: dict
    signs: dict
    alphas: np.ndarray
    s_j: dict
    flipped: dict
    base: np.ndarray
    kept_change: dict = field(default_factory=dict)

    def flip_rate(self, name: str, a: int = -1) -> float:
        return float(self.flipped[name][a].mean())

    def drop(self, name: str, a: int = -1) -> float:
        return float((self.base - self.s_j[name][a]).mean())


@dataclass
class ManipulationResult:
    classes: list[str]
    alpha: float
    alphas: np.ndarray
    top_k: int
    per_class: list[Manipulation]
    images: list[str] = field(default_factory=list)
    keep: list[int] = field(default_factory=list)
    # SPEC §11: 95% bootstrap intervals of the flip rates at ``alpha``, resampling each class's codes with the
    # run's resamples: per class index -> set -> (lo, hi); "all" -> set -> (lo, hi) or None
    flip_intervals: dict = field(default_factory=dict)

    @property
    def sets(self) -> tuple[str, ...]:
        """The rows measured: :data:`SETS`, and ``boundary`` when classes are kept."""
        return SETS + ((BOUNDARY,) if self.keep else ())

    def overall(self) -> dict:
        """Flip rate and drop over the codes of every manipulated class, per set, at ``alpha``."""
        out = {"flip_rate": {}, "drop": {}}
        for name in self.sets:
            flips = np.concatenate([m.flipped[name][-1] for m in self.per_class])
            drops = np.concatenate([m.base - m.s_j[name][-1] for m in self.per_class])
            out["flip_rate"][name], out["drop"][name] = float(flips.mean()), float(drops.mean())
        return out

    def to_json(self) -> dict:
        names = self.sets

        def one(m: Manipulation) -> dict:
            kept = {"kept_change": {s: float(m.kept_change[s][-1]) for s in names}} if self.keep else {}
            return {"class": self.classes[m.j], "index": m.j, "n": len(m.base),
                    "flip_rate": {s: m.flip_rate(s) for s in names}, "drop": {s: m.drop(s) for s in names},
                    **({"flip_rate_interval": {s: list(v) for s, v in self.flip_intervals[m.j].items()}}
                       if m.j in self.flip_intervals else {}),
                    "sets": {s: m.sets[s].tolist() for s in SETS}, "signs": {s: m.signs[s].tolist() for s in SETS},
                    "flip_rate_by_alpha": {s: m.flipped[s].mean(axis=1).tolist() for s in names}, **kept}

        head = {"alpha": self.alpha, "alphas": self.alphas.tolist(), "top_k": self.top_k,
                **({"keep": [self.classes[k] for k in self.keep]} if self.keep else {})}
        if len(self.per_class) == 1:
            return {**head, **one(self.per_class[0]), "images": self.images}
        pooled = self.flip_intervals.get("all") or {}
        return {**head, **self.overall(), "flip_rate_interval": {s: None if v is None else list(v)
                                                                 for s, v in pooled.items()},
                "per_class": [one(m) for m in self.per_class], "images": self.images}


def load_run(run, bundle, progress=None):
    """An APCR run: given, loaded from a folder, or computed with ``corrkit apcr``'s defaults."""
    from corrkit.methods.sequential import APCRResult, apcr

    if run is None:
        return apcr(bundle, progress=progress)
    from corrkit._core.grid import is_axes

    run = run if isinstance(run, APCRResult) else APCRResult.load(run)
    n = run.latents.shape[1]
    if not is_axes(run.directions, n):
        raise CorrkitError("the APCR run did not use the latent axes as directions; run `corrkit apcr` without "
                           "--directions")
    if bundle is not None and (run.apcr.shape[1] != bundle.n_classes or n != bundle.latent_dim):
        raise CorrkitError(f"the run has {run.apcr.shape[1]} classes and {n} dims, the model "
                           f"{bundle.n_classes} and {bundle.latent_dim}")
    files = (run.bundle_card or {}).get("files")
    if bundle is not None and files and set(files.values()) != set(bundle.hashes().values()):
        raise CorrkitError("the APCR run was made on another model (its files' hashes differ); run `corrkit apcr` "
                           "on this model, or pass the model the run was made on")
    return run


def manipulate(bundle=None, *, run=None, classes: list[int] | None = None, top_k: int = TOP_K, alpha: float = 0.2,
               steps: int = 4, seed: int = SEED, out: str | Path | None = None, image_rows: int = 4,
               draw=None, execution: Execution | None = None, engine=None, progress=None,
               keep: list[int] | None = None, boundaries=None) -> ManipulationResult:
    """Lower ``S_j`` through the top-, bottom- and random-``k`` sets of an APCR run (SPEC §5).

    Parameters
    ----------
    bundle : Bundle, path or None
        ``None`` is the built-in bundle.
    run : APCRResult, run folder or None
        Supplies ``apcr``, ``up``/``down`` and the code sets ``Z_j``; ``None`` runs
        :func:`corrkit.apcr` with its defaults.
    classes : list of int, optional
        Classes to manipulate (default: all).
    alpha : float
        Step along each dim of the set; effects are also measured at ``steps`` equal
        fractions of it (``alphas = alpha * (1..steps) / steps``).
    seed : int
        Seed of the random sets.
    out : path, optional
        Folder for ``manipulate.json`` and, with ``draw``, one PNG grid per class
        (rows = ``image_rows`` codes per set, columns = alpha steps from 0).
    draw : callable, optional
        The image grid, :func:`corrkit.viz.images.image_grid` (what ``corrkit
        manipulate`` passes); methods do not import the drawing layer. Without it
        no PNG is written.
    keep : list of int, optional
        Classes to hold fixed: adds the ``boundary`` row, InterFaceGAN's conditional edit, and
        reports every row's ``kept_change``. Kept classes are not manipulated themselves.
    boundaries : InterfaceganResult, path or None
        The SVM normals for ``keep`` (a ``corrkit interfacegan --out`` file); ``None`` fits them
        now with :func:`corrkit.methods.interfacegan.interfacegan`'s defaults and ``seed``.

    Returns
    -------
    ManipulationResult
    """
    from corrkit._core.bundle import as_bundle
    from corrkit._core.grid import check_real, check_seed, check_whole

    check_real(alpha, "--alpha", 0, lo_open=True)
    check_whole(steps, "--steps", 1, MAX_ALPHA_STEPS)
    check_seed(seed)
    bundle = as_bundle(bundle)
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or not 1 <= top_k <= bundle.latent_dim:
        raise CorrkitError(f"--top-k must be between 1 and {bundle.latent_dim} (got {top_k})")
    engine = engine or (execution or Execution()).engine(bundle)
    run = load_run(run, bundle, progress)
    signs = lowering_signs(run.up, run.down)
    alphas = alpha * np.arange(1, steps + 1, dtype=np.float64) / steps
    keep = sorted(set(keep or []))
    todo = [j for j in range(bundle.n_classes) if j not in keep] if classes is None else list(classes)
    if set(todo) & set(keep):
        raise CorrkitError("a class cannot be both manipulated (--class) and kept fixed (--keep)")
    normals = None
    if keep:
        from corrkit.methods.interfacegan import load_boundaries

        normals = load_boundaries(boundaries, bundle, seed=seed, engine=engine).directions.astype(np.float64)
    names = SETS + ((BOUNDARY,) if keep else ())
    from corrkit._core.attributes import flipped, is_attributes

    attrs = is_attributes(bundle)  # an attribute concept flips when its score falls below 1/2 (SPEC §11)
    per_class = []
    for done, j in enumerate(todo):
        rows = np.flatnonzero(run.labels == j)
        if len(rows) == 0:
            continue
        z = run.latents[rows]
        sets = choose_sets(run.apcr, j, top_k, seed)
        pts = [shifted(z, sets[s], signs[sets[s], j], alphas) for s in SETS]  # each [A, M, N]
        if keep:
            from corrkit.methods.interfacegan import project_boundary

            d = -project_boundary(normals[j], normals[keep])  # lowers S_j, leaves the kept classes' boundaries
            pts.append((z[None] + (alphas * np.sqrt(top_k))[:, None, None] * d[None, None]).astype(np.float32))
        p = engine.probabilities(np.concatenate(pts).reshape(-1, z.shape[1])).reshape(
            len(names), len(alphas), len(z), -1)
        kept_change = {s: np.abs(p[a][:, :, keep] - run.base[rows][None][:, :, keep]).mean(axis=(1, 2))
                       for a, s in enumerate(names)} if keep else {}
        per_class.append(Manipulation(
            j=j, sets={**sets, **({BOUNDARY: np.zeros(0, np.int64)} if keep else {})},
            signs={s: signs[sets[s], j] for s in SETS}, alphas=alphas,
            s_j={s: p[a, :, :, j].astype(np.float64) for a, s in enumerate(names)},
            flipped={s: flipped(p[a], j, attrs) for a, s in enumerate(names)},
            base=run.base[rows, j].astype(np.float64), kept_change=kept_change))
        if progress:
            progress("manipulate", done + 1, len(todo))
    if not per_class:
        raise CorrkitError("none of the chosen classes has codes in the run; lower the APCR run's --threshold")
    result = ManipulationResult(classes=list(bundle.classes), alpha=float(alpha), alphas=alphas, top_k=top_k,
                                per_class=per_class, keep=keep, flip_intervals=flip_intervals(per_class, run.labels,
                                                                                              bundle.n_classes, names))
    if out is not None:
        from corrkit._core import io

        out = Path(out)
        if draw is not None and bundle.generator is not None:
            steps_0 = np.concatenate([[0.0], alphas])
            for m in per_class:
                z = run.latents[run.labels == m.j][:image_rows]
                images = np.concatenate([edit_images(bundle, z, m.sets[s], m.signs[s], steps_0) for s in SETS])
                path = out / f"manipulate_{m.j:02d}_{slug(bundle.classes[m.j])}.png"
                draw(images, row_labels=[s if r == 0 else "" for s in SETS for r in range(len(z))],
                     col_labels=alpha_labels(steps_0),
                     title=f"{bundle.classes[m.j]}: lowering its probability through {top_k} dims", out=path)
                result.images.append(str(path))
        io.write_json(out / "manipulate.json", result.to_json())
    return result


def flip_intervals(per_class: list[Manipulation], labels: np.ndarray, n_classes: int, names) -> dict:
    """95% intervals of each flip rate at ``alpha`` (SPEC §11): the codes of each class resampled with the
    run's resamples (:func:`corrkit.methods.bootstrap.resample_weights`), the sets held fixed."""
    from corrkit.methods.bootstrap import resample_weights, share_intervals

    weights = resample_weights(labels, n_classes)
    out: dict = {m.j: {} for m in per_class}
    out["all"] = {}
    for s in names:
        outcomes = [None] * len(weights)
        for m in per_class:
            outcomes[m.j] = m.flipped[s][-1]
        each, pooled = share_intervals(outcomes, weights)
        for m in per_class:
            out[m.j][s] = each[m.j]
        out["all"][s] = pooled
    return out


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower() or "class"
