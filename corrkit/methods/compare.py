"""One yardstick for every direction method (SPEC §9).

Each direction matrix (coordinate axes, a seeded random orthogonal set, SeFa, GANSpace,
InterFaceGAN, Voynov-Babenko, optimisation ``w*`` ...) goes through the same sequential
intervention on the same code sets, and is summarised the same way. The
comparison's figures are drawn from what it writes, by
:func:`corrkit.viz.figures.compare_figures`.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from corrkit._core import io
from corrkit._core.bundle import Bundle, as_bundle
from corrkit._core.defaults import COMPARE_SAMPLES_PER_CLASS, DELTA, SEED, STEPS, THRESHOLD
from corrkit._core.execution import Execution
from corrkit._core.grid import check_directions, check_grid_size, check_seed, check_steps, load_array
from corrkit._core.linalg import random_orthogonal
from corrkit.errors import GridError
from corrkit.methods.sequential import APCRResult, apcr


# A method name becomes a folder and a file name under ``out``: one plain path component.
METHOD_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,63}")


def check_method_name(name: str) -> str:
    """``name`` if it is a safe single path component (letters, digits, ``_ . + -``), else a :class:`GridError`."""
    if not isinstance(name, str) or not METHOD_NAME.fullmatch(name):
        raise GridError(f"method name {name!r} must be 1-64 letters, digits or _ . + - (it names a folder "
                        "under --out), with no path separators")
    return name


def selectivity(apcr_k: np.ndarray) -> np.ndarray:
    """Per direction: top-class APCR over second-class APCR, ``[K]`` (``inf`` when the second is 0)."""
    s = np.sort(np.nan_to_num(apcr_k, nan=0.0), axis=1)[:, ::-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(s[:, 1] > 0, s[:, 0] / s[:, 1], np.inf)


@dataclass(frozen=True)
class _Strongest:
    """Per class: whether it has codes, its strongest APCR and direction, their intervals (SPEC §11), and
    ``pooled`` ``[B]``, the mean strongest APCR over classes in each resample (``None`` without intervals)."""

    has: np.ndarray
    value: np.ndarray
    best: np.ndarray
    iv: list | None
    mean_iv: list | None
    pooled: np.ndarray | None

    @property
    def mean(self) -> float | None:
        return float(self.value[self.has].mean()) if self.has.any() else None


def _strongest(result: APCRResult, rows: slice | None = None) -> _Strongest:
    a = result.apcr if rows is None else result.apcr[rows]
    has = np.isfinite(a).any(axis=0)
    value = np.where(has, np.nan_to_num(a, nan=-np.inf).max(axis=0), np.nan)
    best = np.nan_to_num(a, nan=-1).argmax(axis=0)
    return _Strongest(has, value, best, *_strongest_intervals(result, rows, best, has))


def summarize(result: APCRResult, rows: slice | None = None, strongest: _Strongest | None = None) -> dict:
    """Strongest APCR per class, mean selectivity and the best direction per class for a (sub)set of rows.

    A class without codes has no APCR: its strongest value and best direction are
    ``None`` and it is left out of the means. ``strongest``: :func:`_strongest` of the same rows, when at hand.
    """
    a = result.apcr if rows is None else result.apcr[rows]
    sel = selectivity(a)
    st = strongest or _strongest(result, rows)
    return {
        "n_directions": int(a.shape[0]),
        "strongest_apcr": [float(np.round(v, 5)) if h else None for v, h in zip(st.value, st.has)],
        "mean_strongest_apcr": st.mean,
        **({"strongest_apcr_interval": st.iv, "mean_strongest_apcr_interval": st.mean_iv} if st.iv is not None
           else {}),
        "best_direction": [int(i) if h else None for i, h in zip(st.best, st.has)],
        "mean_selectivity": float(np.mean(sel[np.isfinite(sel)])) if np.isfinite(sel).any() else None,
        "median_selectivity": float(np.median(sel[np.isfinite(sel)])) if np.isfinite(sel).any() else None,
    }


def _strongest_intervals(result: APCRResult, rows, best: np.ndarray, has: np.ndarray):
    """SPEC §11: per class the 95% bootstrap interval of its strongest direction's APCR, of their mean over
    classes, and that mean in each resample (resample ``b`` of every class at once, the run's resamples);
    ``(None, None, None)`` for a run without per-code contributions. A class with one code gets ``[0, None]``
    and the mean none."""
    from corrkit.methods.bootstrap import mean_interval, percentiles, resample_weights

    if result.contributions is None:
        return None, None, None
    x = result.contributions if rows is None else result.contributions[rows]
    weights = resample_weights(result.labels, result.apcr.shape[1])
    iv, draws, whole = [], [], True
    for j, (w, h) in enumerate(zip(weights, has)):
        if not h:
            iv.append(None)
        elif w is None:
            iv.append([0.0, None])
            whole = False
        else:
            b = x[best[j], result.labels == j] @ w
            draws.append(b)
            iv.append([round(v, 5) for v in percentiles(b)])
    pooled = np.mean(draws, axis=0) if draws and whole else None  # [B]: the mean strongest APCR per resample
    mean = mean_interval(draws, [v for v in iv if v is not None], whole)
    return iv, (None if mean is None else [round(v, 5) for v in mean]), pooled


def paired_differences(runs: dict[str, APCRResult], strongest: dict[str, _Strongest] | None = None) -> dict | None:
    """SPEC §11 for the yardstick itself: each method's mean strongest APCR minus the strongest method's, with
    the 95% interval of that difference over the *same* resamples of the codes the methods share.

    Every method is run on the same class sets (same seed, same model), so resample ``b`` of the codes is one
    resample for all of them and the difference's interval is far tighter than two intervals side by side.
    ``None`` when the runs do not share their codes or keep no contributions. ``strongest``: each run's
    :func:`_strongest`, when the caller has them (compare does, from its table).
    """
    from corrkit.methods.bootstrap import percentiles

    first = next(iter(runs.values()), None)
    if first is None or any(r.contributions is None or not np.array_equal(r.labels, first.labels)
                            or not np.array_equal(r.latents, first.latents) for r in runs.values()):
        return None
    st = strongest or {name: _strongest(r) for name, r in runs.items()}
    pooled, point = {n: st[n].pooled for n in runs}, {n: st[n].mean for n in runs}
    if any(v is None for v in pooled.values()) or any(v is None for v in point.values()):
        return None
    top = max(point, key=point.get)
    return {"reference": top, "methods": {
        name: {"difference": round(point[name] - point[top], 5),
               "interval": [round(v, 5) for v in percentiles(pooled[name] - pooled[top])]}
        for name in runs if name != top}}


def load_directions(path: str | Path) -> tuple[np.ndarray, dict]:
    """Directions ``[K, N]`` and any extra real scalars (e.g. ``rca``) stored beside them in an ``.npz``.

    The directions are read as ``corrkit apcr --directions`` reads them. Other arrays
    are reported only when they are one finite real number; the rest (strings, complex
    numbers, vectors) are left out, with a warning naming the scalars left out.
    """
    import warnings

    from corrkit._core.grid import read_npz

    arr = load_array(path, "directions")
    extra, skipped = {}, []
    if str(path).endswith(".npz"):
        for k, v in read_npz(path, "directions").items():
            if k == "directions" or v.ndim != 0:
                continue
            if (np.issubdtype(v.dtype, np.integer) or np.issubdtype(v.dtype, np.floating)) and \
                    np.isfinite(v.astype(np.float64)):
                extra[k] = float(v)
            else:
                skipped.append(k)
        if skipped:
            warnings.warn(f"{path}: {', '.join(skipped)} left out of the table (not one finite real number)",
                          stacklevel=2)
    return arr, extra


def _ganspace(bundle, seed: int) -> np.ndarray:
    from corrkit.methods.ganspace import ganspace

    return ganspace(bundle, seed=seed).directions


def _interfacegan(bundle, seed: int, engine, ex) -> np.ndarray:
    from corrkit._core.style import w_view
    from corrkit.methods.interfacegan import interfacegan

    fit = w_view(bundle)  # in W+: the SVMs are fitted on w, their normals lifted to the layers
    return interfacegan(fit, seed=seed, engine=engine if fit is bundle else ex.engine(fit)).directions


def _first_rows(k: int, n: int, groups: int):
    """Rows of the first ``k`` of ``n`` directions in a grid of ``groups`` layer groups, group-major."""
    return slice(0, k) if groups == 1 else np.concatenate([np.arange(g * n, g * n + k) for g in range(groups)])


def shipped_directions(bundle: Bundle, n: int) -> dict[str, str | np.ndarray]:
    """Direction sets a bundle folder ships beside its models: ``vb`` (``vb_directions.npz``, Voynov–Babenko)
    and ``wstar`` (``optimized_weights.npz``, one optimised ``w*`` per class), those whose rows have the
    ``n`` entries of the bundle's space (the built-in bundle ships both, for Z)."""
    from corrkit._core.grid import load_array

    folder = Path(bundle.path) if getattr(bundle, "path", None) else None
    got: dict[str, str | np.ndarray] = {}
    if folder is None or not folder.is_dir():
        return got
    if (folder / "vb_directions.npz").is_file():
        got["vb"] = str(folder / "vb_directions.npz")
    if (folder / "optimized_weights.npz").is_file():
        got["wstar"] = load_array(folder / "optimized_weights.npz", "w*", "w").astype(np.float32)
    return {k: v for k, v in got.items()
            if (load_array(v, "directions") if isinstance(v, str) else v).shape[-1] == n}


def compare(bundle: Bundle | str | None = None, methods: dict[str, str | np.ndarray] | None = None, *,
            with_sefa: bool = True, sefa_top: int = 10, with_ganspace: bool = True, with_interfacegan: bool = True,
            with_shipped: bool = True,
            samples_per_class: int = COMPARE_SAMPLES_PER_CLASS,
            steps: int = STEPS, delta: float = DELTA, seed: int = SEED, out: str | Path | None = None,
            progress=None, execution: Execution | None = None) -> dict:
    """Score every direction set with the same APCR machinery; returns a JSON-ready dict.

    ``coordinate`` (axes) and ``random`` (seeded orthogonal) are always included;
    ``sefa`` is added from the generator when ``with_sefa`` and the bundle has one,
    and reported for all directions and for its top ``sefa_top``; ``ganspace`` likewise
    (:func:`corrkit.methods.ganspace.ganspace`, its defaults) and ``interfacegan`` (one SVM
    normal per class, :func:`corrkit.methods.interfacegan.interfacegan`, its defaults) when
    ``with_interfacegan``; with ``with_shipped`` the sets the bundle folder ships
    (:func:`shipped_directions`: ``vb``, ``wstar``) unless ``methods`` names them. Each method
    found here reports ``seconds``, the time it took to find its directions. With
    ``execution.executor == "ray"`` one pool of warm Ray workers serves every method
    (see :func:`corrkit.methods.sequential.apcr`). With ``out``: ``compare.json`` and
    one ``corrkit apcr`` run folder per direction set, ``out/<method>``.
    """
    from corrkit._core.codesets import check_class_sets

    from corrkit._core.style import direction_dim, space_directions
    from corrkit.methods.sefa import sefa_in_space

    ex = execution or Execution()
    check_seed(seed)
    check_steps(steps, delta)
    bundle = as_bundle(bundle)
    n = direction_dim(bundle)  # in W and W+ every set is of W, lifted to the space's layers
    check_class_sets(samples_per_class, THRESHOLD, bundle.n_classes, bundle.latent_dim)
    given: dict[str, tuple[np.ndarray, dict]] = {}
    for name in methods or {}:
        check_method_name(name)
    # SeFa and GANSpace of a StyleGAN-family generator live in W: not offered in Z
    in_z_of_style = bundle.style is not None and bundle.style.space.name == "z"
    found_here = ["coordinate", "random"] + ["sefa", "ganspace"] * (bundle.generator is not None
                                                                    and not in_z_of_style)
    found_here = [m for m in found_here if {"sefa": with_sefa, "ganspace": with_ganspace}.get(m, True)]
    found_here += ["interfacegan"] * with_interfacegan
    shipped = shipped_directions(bundle, n) if with_shipped and bundle.style is None else {}
    methods = {**{k: v for k, v in shipped.items() if k not in (methods or {})}, **(methods or {})}
    for name, src in methods.items():
        if name in found_here:
            raise GridError(f"method name {name!r} is taken; pick another")
        arr, extra = load_directions(src) if isinstance(src, (str, Path)) else (np.asarray(src), {})
        given[name] = (check_directions(arr, n), extra)
    # Every set's size before the first runs: a refused one must not follow replaced results.
    sizes = [bundle.n_classes if m == "interfacegan" else n for m in found_here] + [len(d) for d, _ in given.values()]
    per_layer = len(bundle.style.layer_groups()) if bundle.style is not None and bundle.style.space.by_layer else 1
    for k in sizes:
        check_grid_size(samples_per_class * bundle.n_classes, k * per_layer, steps, bundle.n_classes)
    ex.require_extras()
    engine = ex.engine(bundle)
    finders = {"coordinate": lambda: np.eye(n, dtype=np.float32), "random": lambda: random_orthogonal(n, seed),
               "sefa": lambda: sefa_in_space(bundle), "ganspace": lambda: _ganspace(bundle, seed),
               "interfacegan": lambda: _interfacegan(bundle, seed, engine, ex)}
    sets: dict[str, tuple[np.ndarray, dict]] = {}
    for name in found_here:  # each with the seconds it took to find its directions
        t = time.perf_counter()
        d = finders[name]()
        sets[name] = (d, {"seconds": round(time.perf_counter() - t, 3)})
    sets.update(given)
    pool = ex.pool(engine)
    report, table, runs, strongest = progress or (lambda *a: None), {}, {}, {}
    t0 = time.perf_counter()
    try:
        for name, (d, extra) in sets.items():
            d, normalize = space_directions(bundle, d)
            r = apcr(bundle, directions=d, normalize_directions=normalize, steps=steps, delta=delta,
                     samples_per_class=samples_per_class, seed=seed, execution=ex, engine=engine, pool=pool,
                     out=Path(out) / name if out is not None else None,
                     progress=lambda stage, done, total, nm=name: report(f"{nm} {stage}", done, total))
            runs[name], strongest[name] = r, _strongest(r)
            table[name] = {**summarize(r, strongest=strongest[name]), **extra, "apcr_seconds": round(r.seconds, 3)}
            if name == "sefa" and sefa_top * per_layer < len(d):
                rows = _first_rows(sefa_top, len(d) // per_layer, per_layer)
                table[f"sefa_top{sefa_top}"] = summarize(r, rows)
    finally:
        if pool is not None:
            pool.close()
    paired = paired_differences(runs, strongest)
    summary = {"classes": list(bundle.classes), "methods": table, **({"paired": paired} if paired else {}),
               "params": {"samples_per_class": samples_per_class, "steps": steps, "delta": delta, "seed": seed,
                          "executor": ex.executor, **(bundle.style.space.record() if bundle.style else {})},
               "seconds": round(time.perf_counter() - t0, 2)}
    if out is not None:
        io.write_json(Path(out) / "compare.json", summary)
    return summary
