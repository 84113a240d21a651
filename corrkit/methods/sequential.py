"""APCR by sequential intervention (Li et al., ICPR 2020, Eq. 1-3; SPEC §1-2).

The grid is streamed through the engine in batches and reduced by the Numba
kernels as it goes, so memory does not grow with the number of grid points. The
batches are grouped into shards whose float64 sums are folded in shard order
(:mod:`corrkit._core.shards`), in this process or on Ray actors (:mod:`corrkit._core.distributed`),
with the same bits either way. With ``out`` set, a checkpoint (the fold and the next
grid index, a shard boundary) is written atomically at the first shard boundary after
each ``checkpoint_seconds``; a killed run restarted with the same arguments continues
from it and ends bit-identical to an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from corrkit._core import defaults, io, runs, shards
from corrkit._core.bundle import Bundle, as_bundle
from corrkit._core.engine import Engine
from corrkit._core.execution import Execution
from corrkit._core.grid import (
    Grid, axis_directions, check_directions, check_grid_size, check_latents, check_seed, check_steps, read_npz,
)
from corrkit.errors import GridError
from corrkit.kernels import apcr as kern
from corrkit.kernels.ranking import threshold_mask, top_k
from corrkit._core.codesets import CodeSets, check_class_sets, class_sets, qualifies

CHECKPOINT = "checkpoint.npz"
RESULT_KEYS = ("apcr", "curves", "up", "down", "counts", "latents", "labels", "base", "directions", "classes")
# SPEC §11: kept since error bars landed; a run saved before them loads without (its intervals are missing).
PER_CODE_KEYS = ("contributions", "curves_sd")


@dataclass
class APCRResult:
    """Everything one sequential-intervention run measured.

    Attributes
    ----------
    apcr, up, down : float64 [K, C]
    curves : float64 [K, 2m+1, C, C]
        ``curves[i, k+m, j, l]``: mean ``S_l`` over ``Z_j`` after step ``k`` along direction ``i``.
    counts : int64 [C]
    latents : float32 [M, N]; labels : int64 [M]; base : float32 [M, C]
    directions : float32 [K, N]
    classes : list of str
    params : dict; provider : str; points : int; seconds : float
    contributions : float64 [K, M], optional
        Each code's own APCR (``apcr[:, j]`` is the mean over class ``j``'s codes), from which
        the bootstrap intervals come (SPEC §11); ``None`` for a run saved before them.
    curves_sd : float64 [K, 2m+1, C], optional
        Standard deviation over each class's codes of its own score along the curve.
    """

    apcr: np.ndarray
    curves: np.ndarray
    up: np.ndarray
    down: np.ndarray
    counts: np.ndarray
    latents: np.ndarray
    labels: np.ndarray
    base: np.ndarray
    directions: np.ndarray
    classes: list[str]
    params: dict = field(default_factory=dict)
    provider: str = ""
    points: int = 0
    seconds: float = 0.0
    bundle_card: dict = field(default_factory=dict)
    resumed_from: int = 0
    apcr_sha256: str | None = None  # of the saved apcr.npz, once saved or loaded
    contributions: np.ndarray | None = None
    curves_sd: np.ndarray | None = None
    _boot: dict | None = field(default=None, repr=False, compare=False)

    def intervals(self, top: int = defaults.TOP_K) -> dict[str, np.ndarray] | None:
        """SPEC §11 percentile bootstrap of every APCR value and each class's top-``top`` inclusion
        probabilities (:func:`corrkit.methods.bootstrap.bootstrap_apcr`; seeded, so a function of the
        run), or ``None`` when the run kept no per-code contributions."""
        from corrkit.methods.bootstrap import bootstrap_apcr

        if self.contributions is None:
            return None
        k = min(int(top), len(self.directions))
        if self._boot is None or self._boot["top"].shape[1] != k:
            self._boot = bootstrap_apcr(self.contributions, self.labels, len(self.classes), top=k,
                                        point=self.apcr)
        return self._boot

    @property
    def apcr_lo(self) -> np.ndarray | None:
        """The lower end of each APCR value's 95% interval ``[K, C]`` (``None``: no per-code contributions)."""
        b = self.intervals()
        return None if b is None else b["lo"]

    @property
    def apcr_hi(self) -> np.ndarray | None:
        """The upper end (``inf`` for a class with one code: one code cannot bound a mean)."""
        b = self.intervals()
        return None if b is None else b["hi"]

    def controlling_set(self, k: int = 10) -> np.ndarray:
        """``[C, k]``: the top-``k`` directions per class by APCR (``C_j^seq``)."""
        return top_k(self.apcr, k)

    def threshold_set(self, s: float = 1.0) -> list[list[int]]:
        """Directions with ``APCR >= mean + s*std`` per class."""
        mask = threshold_mask(self.apcr, s)
        return [np.flatnonzero(mask[:, j]).tolist() for j in range(mask.shape[1])]

    def summary(self, top: int = 10) -> dict:
        from corrkit import versions

        k = min(top, len(self.directions))
        return {
            "params": self.params,
            "bundle": {k: self.bundle_card.get(k) for k in ("path", "files", "models", "latent_dim", "classes",
                                                             "classifier_output", "generator_output_range",
                                                             "classifier_input_range", "inputs", "outputs", "style")
                       if k in self.bundle_card},
            "versions": versions(),
            "provider": self.provider,
            "points": int(self.points),
            "seconds": round(self.seconds, 3),
            "points_per_second": round(self.points / self.seconds, 1) if self.seconds > 0 else None,
            "resumed_from": int(self.resumed_from),
            "counts": self.counts.tolist(),
            "classes": list(self.classes),
            "top": runs.top_lists(self.apcr, self.counts, list(self.classes), k),
            **({"intervals": runs.interval_lists(self.intervals(k), list(self.classes))}
               if self.contributions is not None else {}),
            **({"apcr_sha256": self.apcr_sha256} if self.apcr_sha256 else {}),
        }

    def save(self, out: str | Path) -> None:
        """Write ``apcr.npz``, then ``summary.json`` holding its SHA-256 (the run's manifest, written last).

        A kill between the two replaces leaves a new ``apcr.npz`` beside an old
        ``summary.json`` whose hash no longer matches, so :meth:`load` refuses the
        pair instead of mixing two runs.
        """
        out = Path(out)
        self.apcr_sha256 = io.write_npz(
            out / "apcr.npz", apcr=self.apcr, curves=self.curves, up=self.up, down=self.down, counts=self.counts,
            latents=self.latents, labels=self.labels, base=self.base, directions=self.directions,
            classes=np.array(self.classes),
            **{k: getattr(self, k) for k in PER_CODE_KEYS if getattr(self, k) is not None})
        io.write_json(out / "summary.json", self.summary())

    @classmethod
    def load(cls, run_dir: str | Path) -> "APCRResult":
        from corrkit._core.grid import read_npz
        from corrkit._core.runs import check_apcr_run
        from corrkit.errors import CorrkitError

        run_dir = Path(run_dir)
        npz, summary = run_dir / "apcr.npz", run_dir / "summary.json"
        try:
            data = npz.read_bytes()
            s = json.loads(summary.read_text())
        except (OSError, ValueError, RecursionError) as exc:  # missing, unreadable, not UTF-8, not JSON
            first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
            raise CorrkitError(f"{run_dir} is not a finished `corrkit apcr` run ({first})") from None
        if not isinstance(s, dict) or "apcr_sha256" not in s:
            what = "no apcr_sha256" if isinstance(s, dict) else f"a JSON {type(s).__name__}, not an object"
            raise CorrkitError(f"{summary} is not a corrkit apcr summary ({what}); rerun `corrkit apcr`")
        if hashlib.sha256(data).hexdigest() != s["apcr_sha256"]:
            raise CorrkitError(f"{npz} does not match {summary} (the run was interrupted while saving, or a file "
                               "was changed); rerun the same `corrkit apcr` command to finish it")
        arrays = read_npz(npz, "run result", RESULT_KEYS + PER_CODE_KEYS, data=data,  # the bytes that were hashed
                          fix="rerun `corrkit apcr` with --out to make it again")
        check_apcr_run(arrays, s, run_dir)  # names, dtypes, shapes, labels, counts; summary types and numbers
        return cls(**{k: v for k, v in arrays.items() if k != "classes"},
                   classes=[str(c) for c in arrays["classes"]], params=s["params"], provider=s["provider"],
                   points=s["points"], seconds=float(s["seconds"]), bundle_card=s.get("bundle") or {},
                   apcr_sha256=s["apcr_sha256"])


def grid_apcr(engine: Engine, latents: np.ndarray, labels: np.ndarray, directions: np.ndarray, steps: int,
              delta: float) -> dict[str, np.ndarray]:
    """SPEC §2 arrays for given codes in one go (no checkpoints): used for fidelity checks."""
    base = engine.probabilities(latents)
    grid = Grid(latents, directions, int(steps), float(delta))
    sums = shards.shard_sums(engine, shards.ShardTask(grid, base, labels), 0, grid.n_points)
    return kern.finalize(sums, base, labels, steps)


def fidelity(fast: Engine, reference: Engine, sets: CodeSets, directions: np.ndarray, steps: int, delta: float,
             threshold: float, codes_per_class: int = 2, k: int = 10) -> dict:
    """SPEC §10: a faster mode against fp32 on the same codes (the first few of each class set).

    Only codes that fp32 puts in the same set (top class and ``S_j >= threshold``) are
    compared: on any other code fp32's denominator ``S_j(z)`` may be near 0, and its
    ratio unbounded (SPEC §2), so the difference would measure the division, not the
    mode. How many of the mode's codes fp32 puts elsewhere is reported beside it
    (``reclassified``, per class), since that is a disagreement too. A class with no
    code left to compare has overlap ``None`` (not measured), never a made-up 1.0.

    Returns max |APCR difference| and the top-``k`` overlap per class.
    """
    multi = bool(getattr(fast, "attributes", False))
    agree = qualifies(reference.probabilities(sets.latents), sets.labels, threshold, multi)
    n_classes = sets.base.shape[1]
    keep = np.concatenate([np.flatnonzero((sets.labels == j) & agree)[:codes_per_class] for j in range(n_classes)])
    kk = min(k, len(directions))
    result = {"codes_per_class": codes_per_class, "codes_compared": int(len(keep)),
              "reclassified": [int(((sets.labels == j) & ~agree).sum()) for j in range(n_classes)]}
    if len(keep) == 0:
        return {**result, "max_abs_delta_apcr": None, f"top{kk}_overlap": [None] * n_classes,
                f"min_top{kk}_overlap": None}
    a = grid_apcr(fast, sets.latents[keep], sets.labels[keep], directions, steps, delta)["apcr"]
    b = grid_apcr(reference, sets.latents[keep], sets.labels[keep], directions, steps, delta)["apcr"]
    ta, tb = top_k(np.nan_to_num(a, nan=-1), kk), top_k(np.nan_to_num(b, nan=-1), kk)
    measured = set(sets.labels[keep].tolist())
    overlap = [round(len(set(ta[j]) & set(tb[j])) / kk, 3) if j in measured else None for j in range(n_classes)]
    return {**result, "max_abs_delta_apcr": float(np.nanmax(np.abs(a - b))), f"top{kk}_overlap": overlap,
            f"min_top{kk}_overlap": float(min(o for o in overlap if o is not None))}


def _fingerprint(bundle: Bundle, params: dict, directions: np.ndarray, latents: np.ndarray | None) -> str:
    h = hashlib.sha256(json.dumps({"files": bundle.hashes(), "params": params}, sort_keys=True).encode())
    h.update(directions.tobytes())
    if latents is not None:
        h.update(latents.tobytes())
    return h.hexdigest()


def _digest(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over every array's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _write_checkpoint(path: Path, **arrays) -> None:
    io.write_npz(path, digest=np.array(_digest(arrays)), **arrays)


def _load_checkpoint(path: Path, fingerprint: str, n_dirs: int, steps: int, n_classes: int, latent_dim: int,
                     shard_points: int):
    """The checkpoint's arrays when it belongs to this run and is sound; ``None`` to start over.

    A checkpoint of another run (other fingerprint) is left to be overwritten. One
    of this run that is damaged or inconsistent (content hash, shapes, an index
    outside the grid or off a shard boundary) is renamed to ``checkpoint.npz.invalid``
    with a warning, so that the run starts over instead of failing, or finishing with
    wrong sums, on every rerun.
    """
    if not path.is_file():
        return None
    try:
        ck = read_npz(path, "checkpoint", data=path.read_bytes())  # pickles and lying headers refused
        if str(ck.get("fingerprint")) != fingerprint:
            return None
        problem = _checkpoint_problem(ck, n_dirs, steps, n_classes, latent_dim, shard_points)
    except (OSError, ValueError, GridError) as exc:
        problem = f"unreadable ({exc})"
    if problem is None:
        return ck
    import warnings

    aside = path.with_name(path.name + ".invalid")
    try:
        os.replace(path, aside)
    except OSError:
        aside = path
    warnings.warn(f"checkpoint {path} is invalid ({problem}); set aside as {aside.name}, starting the run over",
                  stacklevel=3)
    return None


def _checkpoint_problem(ck: dict, n_dirs: int, steps: int, n_classes: int, latent_dim: int,
                        shard_points: int) -> str | None:
    """What is wrong with a checkpoint of this run, or ``None``."""
    if "digest" not in ck or str(ck["digest"]) != _digest({k: v for k, v in ck.items() if k != "digest"}):
        return "content hash does not match"
    for key in ("latents", "labels", "base", "counts", "p_next", "seconds", "draws", *shards.SUM_KEYS):
        if key not in ck:
            return f"{key} missing"
    m = len(ck["labels"])
    shapes = {k: v.shape for k, v in kern.new_sums(n_dirs, steps, n_classes, m).items()}
    want = {**shapes, "latents": (m, latent_dim), "labels": (m,), "base": (m, n_classes), "counts": (n_classes,),
            "p_next": (), "seconds": (), "draws": ()}
    for key, shape in want.items():
        if ck[key].shape != shape:
            return f"{key} has shape {ck[key].shape}, expected {shape}"
    if not all(np.issubdtype(ck[k].dtype, np.integer) for k in ("labels", "counts", "p_next", "draws")):
        return "integer arrays of another type"
    total = m * n_dirs * 2 * steps  # Grid.n_points: k = 0 is the base, not a grid point
    p_next = int(ck["p_next"])
    if not (0 <= p_next < total) or p_next % shard_points:
        return f"next grid index {p_next} is not a shard boundary inside the grid of {total} points"
    if m and (ck["labels"].min() < 0 or ck["labels"].max() >= n_classes):
        return "labels outside the classes"
    if np.bincount(ck["labels"], minlength=n_classes).tolist() != ck["counts"].tolist() or int(ck["draws"]) < m:
        return "counts do not match the labels"
    if not (np.isfinite(float(ck["seconds"])) and float(ck["seconds"]) >= 0):
        return "elapsed seconds not a finite number >= 0"
    if not all(np.isfinite(ck[k]).all() for k in ("latents", "base", *shapes)):
        return "non-finite values"
    return None


def apcr(bundle: Bundle | str | None = None, *, directions: np.ndarray | None = None,
         steps: int = defaults.STEPS, delta: float = defaults.DELTA,
         samples_per_class: int = defaults.SAMPLES_PER_CLASS, threshold: float = defaults.THRESHOLD,
         seed: int = defaults.SEED, latents: np.ndarray | None = None, normalize_directions: bool = True,
         out: str | Path | None = None, progress=None, execution: Execution | None = None,
         engine: Engine | None = None, pool=None) -> APCRResult:
    """Rank directions by how much they move each class (SPEC §2).

    Parameters
    ----------
    bundle : Bundle, path or None
        ``None`` is the built-in Fashion-MNIST bundle.
    directions : float [K, N], optional
        Rows are directions (unit-normed unless ``normalize_directions=False``);
        default: the ``N`` latent axes.
    steps, delta : int, float
        ``m`` and the step length: ``z + k * delta * d_i`` for ``k in -m..m``.
    samples_per_class, threshold, seed, latents :
        Class-conditional code sets (SPEC §1).
    out : path, optional
        Folder for ``apcr.npz``, ``summary.json`` and the resumable checkpoint.
    progress : callable(stage: str, done: int, total: int), optional
        Stages ``codes``, then ``grid`` (points, local) or ``shards`` (Ray).
    execution : Execution, optional
        Device, batch size, threads, mode, executor, shards, checkpoints
        (:class:`corrkit._core.execution.Execution`). Both executors fold the same
        shards in the same order (:mod:`corrkit._core.shards`), so with the same batch
        and shard size they give the same bits. ``mode="int8"`` also measures its
        fidelity against fp32 on the first codes of each class (``params["fidelity"]``).
    engine, pool : optional
        A warm :class:`Engine` and :class:`corrkit._core.distributed.RayPool` to reuse
        across runs on one model (as :func:`corrkit.methods.compare.compare` does).

    Returns
    -------
    APCRResult
    """
    ex = execution or Execution()
    check_steps(steps, delta)
    check_seed(seed)
    ex.require_extras()
    bundle = as_bundle(bundle)
    n = bundle.latent_dim
    directions = axis_directions(n) if directions is None else check_directions(directions, n, normalize_directions)
    if latents is not None:
        latents = check_latents(latents, n)
    check_class_sets(samples_per_class, threshold, bundle.n_classes, n, user_latents=latents is not None)
    n_codes = samples_per_class * bundle.n_classes
    check_grid_size(n_codes if latents is None else min(n_codes, len(latents)), len(directions), steps,
                    bundle.n_classes)
    params = {"steps": int(steps), "delta": float(delta), "samples_per_class": int(samples_per_class),
              "threshold": float(threshold), "seed": int(seed), "n_directions": len(directions),
              "user_latents": latents is not None, "normalize_directions": bool(normalize_directions),
              "mode": engine.mode if engine is not None else ex.mode}
    own_pool, startup = None, 0.0
    try:
        engine = engine or ex.engine(bundle)
        if pool is None and ex.executor == "ray":
            t_pool = time.perf_counter()
            pool = own_pool = ex.pool(engine)
            startup = time.perf_counter() - t_pool  # Ray start and actor launch count towards the run
        params["device"], batch = (engine.device, engine.batch_size) if pool is None else (pool.device,
                                                                                          pool.batch_size)
        params["rewrites"] = dict(engine.rewrites)
        params["batch_size"] = batch
        params["shard_points"] = shards.shard_size(batch, ex.shard_points)
        return _run(bundle, engine, pool, params, directions, latents, out, ex, progress, startup)
    finally:
        if own_pool is not None:
            own_pool.close()


def _run(bundle, engine, pool, params, directions, latents, out, ex: Execution, progress, startup):
    steps, delta = params["steps"], params["delta"]
    fingerprint = _fingerprint(bundle, params, directions, latents)
    # how the batch size was chosen: said in the run, not part of its definition (a resumed run reads it cached)
    params["batch_size_source"] = getattr(engine, "batch_source", "given") if pool is None else "given"
    ck_path = Path(out) / CHECKPOINT if out is not None else None
    ck = _load_checkpoint(ck_path, fingerprint, len(directions), steps, bundle.n_classes, bundle.latent_dim,
                          params["shard_points"]) if ck_path else None
    t0 = time.perf_counter()
    report = progress or (lambda *a: None)
    if ck is not None:
        sets = CodeSets(ck["latents"], ck["labels"], ck["base"], ck["counts"], int(ck["draws"]))
        sums = {k: ck[k].copy() for k in shards.SUM_KEYS}
        p_next, elapsed = int(ck["p_next"]), float(ck["seconds"])
    else:
        sets = class_sets(engine, bundle.n_classes, params["samples_per_class"], params["threshold"],
                          params["seed"], latents, progress=lambda d, t: report("codes", d, t))
        sums = kern.new_sums(len(directions), steps, bundle.n_classes, len(sets.labels))
        p_next, elapsed = 0, 0.0
    resumed_from = p_next
    grid = Grid(sets.latents, directions, int(steps), float(delta))
    total = grid.n_points
    task = shards.ShardTask(grid, sets.base, sets.labels)
    cuts = shards.plan(total, params["shard_points"])
    first = p_next // params["shard_points"]  # checkpoints sit on shard boundaries
    if pool is None:
        stream = shards.run_local(engine, task, cuts, first, progress=lambda p: report("grid", p, total))
    else:
        stream = pool.run(task, cuts, first, progress=lambda d, t: report("shards", d, t))
    last_ck = time.perf_counter()
    for s, part in stream:
        shards.fold(sums, part)
        p_next = cuts[s][1]
        if ck_path is not None and (time.perf_counter() - last_ck >= ex.checkpoint_seconds) and p_next < total:
            _write_checkpoint(ck_path, fingerprint=np.array(fingerprint), p_next=np.array(p_next),
                              seconds=np.array(elapsed + time.perf_counter() - t0), latents=sets.latents,
                              labels=sets.labels, base=sets.base, counts=sets.counts, draws=np.array(sets.draws),
                              **sums)
            last_ck = time.perf_counter()
    fin = kern.finalize(sums, sets.base, sets.labels, steps)
    seconds = elapsed + time.perf_counter() - t0 + startup
    params["executor"] = {"name": "local", "shards": len(cuts)} if pool is None else {
        **pool.describe(), "shards": len(cuts), "startup_seconds": round(startup, 3)}
    if engine.mode != "fp32":
        reference = Engine(bundle, device=engine.device, batch_size=engine.plain_batch, threads=ex.threads)
        t1 = time.perf_counter()
        params["fidelity"] = fidelity(engine, reference, sets, directions, steps, delta, params["threshold"])
        params["fidelity"]["seconds"] = round(time.perf_counter() - t1, 2)
    result = APCRResult(
        apcr=fin["apcr"], curves=fin["curves"], up=fin["up"], down=fin["down"], counts=sets.counts,
        contributions=fin["contributions"], curves_sd=fin["curves_sd"],
        latents=sets.latents, labels=sets.labels, base=sets.base, directions=directions,
        classes=list(bundle.classes), params=params, provider=engine.provider if pool is None else pool.provider,
        points=total + sets.draws, seconds=seconds, bundle_card=bundle.card(),
        resumed_from=resumed_from,
    )
    if out is not None:
        result.save(out)
        ck_path.unlink(missing_ok=True)
    return result
