"""One yardstick for every direction method (SPEC §9).

Each direction matrix (coordinate axes, a seeded random orthogonal set, SeFa,
Voynov-Babenko, optimisation ``w*`` ...) goes through the same sequential
intervention on the same code sets, and is summarised the same way.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np

from corrkit._core import io
from corrkit._core.bundle import Bundle, load_bundle
from corrkit._core.engine import Engine
from corrkit.errors import GridError
from corrkit._core.grid import check_directions, load_array
from corrkit.methods.sequential import APCRResult, apcr


# A method name becomes a folder and a file name under ``out``: one plain path component.
METHOD_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,63}")


def check_method_name(name: str) -> str:
    """``name`` if it is a safe single path component (letters, digits, ``_ . + -``), else a :class:`GridError`."""
    if not isinstance(name, str) or not METHOD_NAME.fullmatch(name):
        raise GridError(f"method name {name!r} must be 1-64 letters, digits or _ . + - (it names a folder "
                        "under --out), with no path separators")
    return name


def random_orthogonal(n: int, seed: int = 0) -> np.ndarray:
    """``[n, n]`` float32 random orthogonal rows (QR of a seeded Gaussian, signs fixed by R's diagonal)."""
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, n)))
    return (q * np.sign(np.diag(r))).T.astype(np.float32)


def selectivity(apcr_k: np.ndarray) -> np.ndarray:
    """Per direction: top-class APCR over second-class APCR, ``[K]`` (``inf`` when the second is 0)."""
    s = np.sort(np.nan_to_num(apcr_k, nan=0.0), axis=1)[:, ::-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(s[:, 1] > 0, s[:, 0] / s[:, 1], np.inf)


def summarize(result: APCRResult, rows: slice | None = None) -> dict:
    """Strongest APCR per class, mean selectivity and the best direction per class for a (sub)set of rows."""
    a = result.apcr if rows is None else result.apcr[rows]
    sel = selectivity(a)
    return {
        "n_directions": int(a.shape[0]),
        "strongest_apcr": np.nanmax(a, axis=0).round(5).tolist(),
        "mean_strongest_apcr": float(np.nanmean(np.nanmax(a, axis=0))),
        "best_direction": np.nanargmax(np.nan_to_num(a, nan=-1), axis=0).tolist(),
        "mean_selectivity": float(np.mean(sel[np.isfinite(sel)])) if np.isfinite(sel).any() else None,
        "median_selectivity": float(np.median(sel[np.isfinite(sel)])) if np.isfinite(sel).any() else None,
    }


def load_directions(path: str | Path) -> tuple[np.ndarray, dict]:
    """Directions ``[K, N]`` and any extra scalars (e.g. ``rca``) stored beside them in an ``.npz``."""
    arr = load_array(path, "directions")
    extra = {}
    if str(path).endswith(".npz"):
        with np.load(path, allow_pickle=False) as d:
            extra = {k: float(d[k]) for k in d.files if d[k].ndim == 0 and k != "directions"}
    return arr, extra


def compare(bundle: Bundle | str | None = None, methods: dict[str, str | np.ndarray] | None = None, *,
            with_sefa: bool = True, sefa_top: int = 10, samples_per_class: int = 16, steps: int = 3,
            delta: float = 1.0, seed: int = 0, device: str = "auto", out: str | Path | None = None,
            progress=None, executor: str = "local", ray_address: str | None = None,
            workers: int | None = None) -> dict:
    """Score every direction set with the same APCR machinery; returns a JSON-ready dict.

    ``coordinate`` (axes) and ``random`` (seeded orthogonal) are always included;
    ``sefa`` is added from the generator when ``with_sefa`` and the bundle has one,
    and reported for all directions and for its top ``sefa_top``. With
    ``executor="ray"`` one pool of warm Ray workers serves every method
    (see :func:`corrkit.methods.sequential.apcr`).
    """
    if not isinstance(bundle, Bundle):
        bundle = load_bundle(bundle)
    n = bundle.latent_dim
    sets: dict[str, tuple[np.ndarray, dict]] = {
        "coordinate": (np.eye(n, dtype=np.float32), {}),
        "random": (random_orthogonal(n, seed), {}),
    }
    if with_sefa and bundle.generator is not None:
        from corrkit.methods.sefa import sefa

        s = sefa(bundle)
        sets["sefa"] = (s.directions, {})
    for name in methods or {}:
        check_method_name(name)
    for name, src in (methods or {}).items():
        if name in sets:
            raise GridError(f"method name {name!r} is taken; pick another")
        arr, extra = load_directions(src) if isinstance(src, (str, Path)) else (np.asarray(src), {})
        sets[name] = (check_directions(arr, n), extra)
    if executor not in ("local", "ray"):
        raise GridError(f"executor must be 'local' or 'ray', not {executor!r}")
    if executor == "ray":
        from corrkit._core.distributed import RayPool, import_ray

        import_ray()
    engine = Engine(bundle, device="cpu" if executor == "ray" and device == "cuda" else device)
    pool = RayPool(engine, address=ray_address, device=device, workers=workers) if executor == "ray" else None
    report, results, table = progress or (lambda *a: None), {}, {}
    t0 = time.perf_counter()
    try:
        for name, (d, extra) in sets.items():
            r = apcr(bundle, directions=d, steps=steps, delta=delta, samples_per_class=samples_per_class, seed=seed,
                     engine=engine, executor=pool or "local", out=Path(out) / name if out is not None else None,
                     progress=lambda stage, done, total, nm=name: report(f"{nm} {stage}", done, total))
            results[name] = r
            table[name] = {**summarize(r), **extra}
            if name == "sefa" and sefa_top < len(d):
                table[f"sefa_top{sefa_top}"] = summarize(r, slice(0, sefa_top))
    finally:
        if pool is not None:
            pool.close()
    summary = {"classes": list(bundle.classes), "methods": table,
               "params": {"samples_per_class": samples_per_class, "steps": steps, "delta": delta, "seed": seed,
                          "executor": executor},
               "seconds": round(time.perf_counter() - t0, 2)}
    if out is not None:
        _write(out, summary, bundle, results)
    return summary


def _write(out, summary: dict, bundle: Bundle, results: dict[str, APCRResult]) -> None:
    out = Path(out)
    io.write_json(out / "compare.json", summary)
    from corrkit.errors import MissingExtraError

    try:
        from corrkit.viz import figures
    except ImportError:
        return
    try:
        strongest = {k: v["strongest_apcr"] for k, v in summary["methods"].items()}
        figures.method_comparison(strongest, summary["classes"], out=out / "compare.png")
        for name, r in results.items():
            figures.traversal_overview(bundle, r, out=out / f"traversal_{name}.png")
    except (ImportError, MissingExtraError):  # matplotlib is the `figures` extra
        pass
