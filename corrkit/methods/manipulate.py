"""Concept manipulation through a controlling set (Li et al., ICPR 2020, Figure 5; SPEC §5).

For class ``j`` and a set ``C`` of latent dims, ``z' = z + alpha * sum_{i in C} s_i e_i``
with ``s_i`` the sign that lowers ``S_j`` (from the APCR run's ``up``/``down``). The
paper's claim: the top-ranked set changes the concept, the bottom-ranked set barely
does. Measured on the codes of ``Z_j``: the mean drop of ``S_j`` and the flip rate
(share whose argmax leaves ``j``), for the top-``k``, bottom-``k`` and a seeded
random-``k`` set at the same ``alpha``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from corrkit.errors import CorrkitError, MissingExtraError

SETS = ("top", "bottom", "random")


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


def choose_sets(apcr: np.ndarray, j: int, k: int, seed: int = 0) -> dict[str, np.ndarray]:
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
    """

    j: int
    sets: dict
    signs: dict
    alphas: np.ndarray
    s_j: dict
    flipped: dict
    base: np.ndarray

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

    def overall(self) -> dict:
        """Flip rate and drop over the codes of every manipulated class, per set, at ``alpha``."""
        out = {"flip_rate": {}, "drop": {}}
        for name in SETS:
            flips = np.concatenate([m.flipped[name][-1] for m in self.per_class])
            drops = np.concatenate([m.base - m.s_j[name][-1] for m in self.per_class])
            out["flip_rate"][name], out["drop"][name] = float(flips.mean()), float(drops.mean())
        return out

    def to_json(self) -> dict:
        def one(m: Manipulation) -> dict:
            return {"class": self.classes[m.j], "index": m.j, "n": len(m.base),
                    "flip_rate": {s: m.flip_rate(s) for s in SETS}, "drop": {s: m.drop(s) for s in SETS},
                    "sets": {s: m.sets[s].tolist() for s in SETS}, "signs": {s: m.signs[s].tolist() for s in SETS},
                    "flip_rate_by_alpha": {s: m.flipped[s].mean(axis=1).tolist() for s in SETS}}

        head = {"alpha": self.alpha, "alphas": self.alphas.tolist(), "top_k": self.top_k}
        if len(self.per_class) == 1:
            return {**head, **one(self.per_class[0]), "images": self.images}
        return {**head, **self.overall(), "per_class": [one(m) for m in self.per_class], "images": self.images}


def load_run(run, bundle, progress=None):
    """An APCR run: given, loaded from a folder, or computed with ``corrkit apcr``'s defaults."""
    from corrkit.methods.sequential import APCRResult, apcr

    if run is None:
        return apcr(bundle, progress=progress)
    run = run if isinstance(run, APCRResult) else APCRResult.load(run)
    n = run.latents.shape[1]
    if run.apcr.shape[0] != n or not np.array_equal(run.directions, np.eye(n, dtype=run.directions.dtype)):
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


def manipulate(bundle=None, *, run=None, classes: list[int] | None = None, top_k: int = 10, alpha: float = 0.2,
               steps: int = 4, seed: int = 0, out: str | Path | None = None, image_rows: int = 4,
               device: str = "auto", engine=None, progress=None) -> ManipulationResult:
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
        Folder for ``manipulate.json`` and one PNG grid per class (rows = codes,
        columns = alpha steps, one block per set).

    Returns
    -------
    ManipulationResult
    """
    from corrkit._core.bundle import Bundle, load_bundle
    from corrkit._core.engine import Engine

    if not (np.isfinite(alpha) and alpha > 0) or steps < 1:
        raise CorrkitError(f"--alpha must be > 0 and --steps >= 1 (got {alpha}, {steps})")
    if not isinstance(bundle, Bundle):
        bundle = load_bundle(bundle)
    engine = engine or Engine(bundle, device=device)
    run = load_run(run, bundle, progress)
    signs = lowering_signs(run.up, run.down)
    alphas = alpha * np.arange(1, steps + 1, dtype=np.float64) / steps
    todo = list(range(bundle.n_classes)) if classes is None else list(classes)
    per_class = []
    for done, j in enumerate(todo):
        rows = np.flatnonzero(run.labels == j)
        if len(rows) == 0:
            continue
        z = run.latents[rows]
        sets = choose_sets(run.apcr, j, top_k, seed)
        pts = np.concatenate([shifted(z, sets[s], signs[sets[s], j], alphas) for s in SETS])  # [3A, M, N]
        p = engine.probabilities(pts.reshape(-1, z.shape[1])).reshape(len(SETS), len(alphas), len(z), -1)
        per_class.append(Manipulation(
            j=j, sets=sets, signs={s: signs[sets[s], j] for s in SETS}, alphas=alphas,
            s_j={s: p[a, :, :, j].astype(np.float64) for a, s in enumerate(SETS)},
            flipped={s: p[a].argmax(-1) != j for a, s in enumerate(SETS)},
            base=run.base[rows, j].astype(np.float64)))
        if progress:
            progress("manipulate", done + 1, len(todo))
    if not per_class:
        raise CorrkitError("none of the chosen classes has codes in the run; lower the APCR run's --threshold")
    result = ManipulationResult(classes=list(bundle.classes), alpha=float(alpha), alphas=alphas, top_k=top_k,
                                per_class=per_class)
    if out is not None:
        from corrkit._core import io

        out = Path(out)
        if bundle.generator is not None:
            for m in per_class:
                z = run.latents[run.labels == m.j][:image_rows]
                blocks = [(s, shifted(z, m.sets[s], m.signs[s], np.concatenate([[0.0], alphas]))) for s in SETS]
                path = out / f"manipulate_{m.j:02d}_{slug(bundle.classes[m.j])}.png"
                title = f"{bundle.classes[m.j]}: lowering its probability through {top_k} dims"
                image_grid(bundle, blocks, path, title, np.concatenate([[0.0], alphas]))
                result.images.append(str(path))
        io.write_json(out / "manipulate.json", result.to_json())
    return result


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower() or "class"


def generate(bundle, z: np.ndarray) -> np.ndarray:
    """Generator images for codes ``z [B, N]`` scaled to [0, 1]: ``[B, H, W]`` (grey) or ``[B, H, W, 3]``."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(bundle.generator), providers=["CPUExecutionProvider"])
    img = sess.run(None, {sess.get_inputs()[0].name: np.ascontiguousarray(z, np.float32)})[0]
    lo, hi = bundle.generator_output_range
    img = np.clip((img - lo) / (hi - lo), 0.0, 1.0)
    if img.ndim == 4:  # [B, channels, H, W]: grey as [B, H, W], colour as [B, H, W, channels]
        img = img[:, 0] if img.shape[1] == 1 else img.transpose(0, 2, 3, 1)
    return img


def image_grid(bundle, blocks: list[tuple[str, np.ndarray]], path: Path, title: str, alphas) -> None:
    """Save blocks of codes ``[A, R, N]`` as one PNG: rows = codes, columns = alpha steps."""
    try:
        import matplotlib
    except ImportError:
        raise MissingExtraError("matplotlib", "figures") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_cols = blocks[0][1].shape[0]
    n_rows = sum(b.shape[1] for _, b in blocks)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.1 * n_cols + 1.2, 1.1 * n_rows + 0.6), squeeze=False)
    r0 = 0
    for name, z in blocks:
        a_count, rows, n = z.shape
        imgs = generate(bundle, z.transpose(1, 0, 2).reshape(-1, n))
        imgs = imgs.reshape(rows, a_count, *imgs.shape[1:])
        for r in range(rows):
            for a in range(a_count):
                ax = axes[r0 + r, a]
                ax.imshow(imgs[r, a], cmap="gray", vmin=0, vmax=1)
                ax.set_xticks([]); ax.set_yticks([])
                if r0 + r == 0:
                    ax.set_title(f"α={alphas[a]:.3g}", fontsize=8)
            axes[r0 + r, 0].set_ylabel(name if r == 0 else "", fontsize=8)
        r0 += rows
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    tmp.replace(path)


def manipulation_table(result: ManipulationResult) -> None:
    """Flip rate and drop of ``S_j`` per class and set, at ``alpha``."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"Lowering S_j through {result.top_k} dims, alpha = {result.alpha:g}: flip rate (mean drop)")
    for col in ("class", "n", *SETS):
        t.add_column(col, justify="left" if col == "class" else "right")
    for m in result.per_class:
        t.add_row(result.classes[m.j], str(len(m.base)), *[f"{m.flip_rate(s):.2f} ({m.drop(s):.2f})" for s in SETS])
    if len(result.per_class) > 1:
        o = result.overall()
        t.add_row("all", str(sum(len(m.base) for m in result.per_class)),
                  *[f"{o['flip_rate'][s]:.2f} ({o['drop'][s]:.2f})" for s in SETS])
    Console().print(t)
