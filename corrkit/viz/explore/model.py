"""The explorer's model work: direction sources, codes, edited images and probabilities (no web code).

One :class:`Explorer` holds a bundle, one :class:`~corrkit._core.engine.Engine` (the one
every command uses, CPU or CUDA) and, when given, an APCR run. Every request is answered
from the request alone (the code travels with it), so two browsers never share state; the
engine and the generator are called under one lock, since neither is assumed thread-safe.
Direction sources that take time to find (GANSpace, InterFaceGAN) are found on first use,
under their own lock, so finding one does not hold up the sliders of another page.

An edited code is ``z + sum_i v_i d_i`` over the sliders ``(i, v_i)``, with unit-norm
directions ``d_i`` and ``|v_i| <= range``: the same ``z + k * delta * d_i`` walk as an APCR
run's grid (SPEC §2) when one slider stands at ``k * delta``.
"""

from __future__ import annotations

import base64
import io
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from corrkit._core import defaults
from corrkit.errors import CorrkitError

RANGE = 3.0  # slider span, +-RANGE along a unit direction
STEP = 0.1  # slider step without a run (a run's own delta otherwise)
TOP = 8  # sliders shown
MAX_FRAMES = 13  # traversal strip frames at most
MAX_CODE_BYTES = 16 << 20  # an uploaded .npy larger than this is refused unread


class RequestError(CorrkitError):
    """A bad request: its message is shown on the page, ``status`` is the HTTP 4xx code."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class Source:
    """A set of unit directions ``[K, N]`` and how to order them for a class."""

    name: str
    label: str
    find: object  # () -> float32 [K, N], called once on first use
    per_class: bool = False  # row j belongs to class j (InterFaceGAN normals, w*)
    ranked: bool = False  # ordered per class by the run's APCR
    labels: list[str] | None = None
    _directions: np.ndarray | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def directions(self) -> np.ndarray:
        with self._lock:
            if self._directions is None:
                d = np.asarray(self.find(), dtype=np.float64)
                norms = np.linalg.norm(d, axis=1, keepdims=True)
                self._directions = (d / np.where(norms > 0, norms, 1.0)).astype(np.float32)
            return self._directions


def _unit_rows(path: Path, key: str | None = None) -> np.ndarray:
    from corrkit._core.grid import load_array

    return load_array(path, "directions", key).astype(np.float32)


class Explorer:
    """What one ``corrkit explore`` serves.

    Parameters
    ----------
    bundle : Bundle
        Needs a generator (the pictures); grey or colour, any size.
    run : APCRResult, optional
        Its directions ranked by APCR per class, its ``delta`` as the slider step, its class-set codes.
    run_dir : path, optional
        Where ``run`` was loaded from (APCR intervals are read from it when present).
    device : {"auto", "cpu", "cuda"}
    """

    def __init__(self, bundle, run=None, run_dir=None, device: str = "auto", top: int = TOP):
        from corrkit._core.engine import Engine

        if bundle.generator is None:
            raise CorrkitError("the explorer draws images, so it needs the generator: give a bundle folder or "
                               "--generator and --classifier, not a fused model")
        self.bundle, self.run, self.top = bundle, run, int(top)
        if run is not None and run.directions.shape[1] != bundle.latent_dim:
            raise CorrkitError(f"the run's directions have {run.directions.shape[1]} values, the model takes "
                               f"{bundle.latent_dim}; point at the run's own model")
        self.engine = Engine(bundle, device=device)
        self.lock = threading.Lock()
        self.step = float(run.params.get("delta", defaults.DELTA)) if run is not None else STEP
        self.range = RANGE
        self.intervals = _intervals(run, run_dir)
        self.sources = self._sources()

    # -- what the page lists -------------------------------------------------------------------------------------

    def _sources(self) -> dict[str, Source]:
        b, n, out = self.bundle, self.bundle.latent_dim, {}
        if self.run is not None:
            out["apcr"] = Source("apcr", "the run's APCR ranking", lambda: self.run.directions, ranked=True)
        folder = Path(b.path) if b.path is not None else None
        if folder is None and b.generator is not None and (Path(b.generator).parent / "bundle.json").is_file():
            folder = Path(b.generator).parent  # a run's recorded models: their bundle folder's shipped directions
        style_z = b.style is not None and b.style.space.name == "z"  # SeFa/GANSpace of a StyleGAN live in W
        if not style_z:
            out["sefa"] = Source("sefa", "SeFa", lambda: _sefa(b))
        if folder is not None and (folder / "vb_directions.npz").is_file():
            out["vb"] = Source("vb", "Voynov–Babenko (shipped)", lambda: _unit_rows(folder / "vb_directions.npz"))
        if folder is not None and (folder / "optimized_weights.npz").is_file():
            out["wstar"] = Source("wstar", "w* (optimised, one per class)",
                                  lambda: _unit_rows(folder / "optimized_weights.npz", "w"), per_class=True)
        if not style_z:
            out["ganspace"] = Source("ganspace", "GANSpace (found on first use)", lambda: _ganspace(b))
        out["interfacegan"] = Source("interfacegan", "InterFaceGAN (found on first use)",
                                     lambda: self._interfacegan(), per_class=True)
        out["axes"] = Source("axes", "latent axes", lambda: np.eye(n, dtype=np.float32))
        return out

    def _interfacegan(self) -> np.ndarray:
        from corrkit._core.style import space_directions, w_view
        from corrkit.methods.interfacegan import interfacegan

        fit = w_view(self.bundle)  # in W+: fitted on w, lifted to the space's layers
        with self.lock:  # it runs the engine
            d = interfacegan(fit, engine=self.engine if fit is self.bundle else None).directions
        return space_directions(self.bundle, d)[0]

    def info(self) -> dict:
        b = self.bundle
        shape = list(b.image_shape) if b.image_shape else None
        counts = np.bincount(np.asarray(self.run.labels), minlength=b.n_classes).tolist() if self.run else None
        return {"classes": list(b.classes), "latent_dim": b.latent_dim, "image_shape": shape,
                "sources": [{"name": s.name, "label": s.label, "per_class": s.per_class, "ranked": s.ranked}
                            for s in self.sources.values()],
                "default_source": next(iter(self.sources)), "range": self.range, "step": self.step, "top": self.top,
                "run": self.run is not None, "class_set_codes": counts, "device": self.engine.device,
                "provider": self.engine.provider, "bundle": str(b.path or b.generator)}

    def class_index(self, value) -> int:
        from corrkit.methods.manipulate import class_index

        try:
            return class_index(value, list(self.bundle.classes))
        except CorrkitError as exc:
            raise RequestError(str(exc), 404) from None

    def source(self, name) -> Source:
        if name not in self.sources:
            raise RequestError(f"unknown direction source {name!r}; this model offers: {', '.join(self.sources)}",
                               404)
        return self.sources[name]

    def directions(self, source: str, cls) -> list[dict]:
        """The ``top`` sliders of ``source`` for class ``cls``: index, label, and the run's APCR, interval,
        ``up`` and ``down`` where it ranks them."""
        src, j = self.source(source), self.class_index(cls)
        d = src.directions()
        if src.ranked:
            order = np.argsort(-np.nan_to_num(self.run.apcr[:, j], nan=-np.inf), kind="stable")
        elif src.per_class and len(d) == self.bundle.n_classes:
            order = np.array([j] + [i for i in range(len(d)) if i != j])
        else:
            order = np.arange(len(d))
        rows = []
        names = list(self.bundle.classes)
        for i in order[: self.top]:
            i = int(i)
            own = {"wstar": "w*"}.get(src.name, src.name)
            row = {"index": i, "label": f"{own}({names[i]})" if src.per_class and len(d) == len(names) else
                   f"{'direction' if src.ranked else src.name} {i}"}
            if src.ranked:
                for key, arr in (("apcr", self.run.apcr), ("up", self.run.up), ("down", self.run.down),
                                 ("apcr_lo", self.intervals[0]), ("apcr_hi", self.intervals[1])):
                    if arr is not None and np.isfinite(arr[i, j]):
                        row[key] = float(arr[i, j])
            rows.append(row)
        return rows

    # -- codes ---------------------------------------------------------------------------------------------------

    def prior_code(self, seed) -> np.ndarray:
        """``z ~ N(0, I)`` from ``numpy.random.default_rng(seed)``, float32 ``[N]`` (the prior of every command)."""
        from corrkit._core.grid import check_seed

        try:
            seed = int(seed)
            check_seed(seed)
        except (TypeError, ValueError, CorrkitError) as exc:
            raise RequestError(f"seed must be a whole number >= 0 ({exc})") from None
        return self.bundle.draw(np.random.default_rng(seed), 1)[0]

    def set_code(self, cls, index) -> np.ndarray:
        """Code ``index`` of class ``cls``'s set in the run."""
        if self.run is None:
            raise RequestError("no run was given, so there are no class-set codes; start with RUN_DIR")
        j = self.class_index(cls)
        codes = self.run.latents[np.asarray(self.run.labels) == j]
        try:
            i = int(index)
        except (TypeError, ValueError):
            raise RequestError(f"code index must be a whole number, got {index!r}") from None
        if not 0 <= i < len(codes):
            raise RequestError(f"class {self.bundle.classes[j]!r} has {len(codes)} codes in the run; "
                               f"index {i} is out of range", 404 if len(codes) == 0 else 400)
        return np.ascontiguousarray(codes[i], dtype=np.float32)

    def uploaded_code(self, data: bytes) -> np.ndarray:
        """A code from the bytes of a ``.npy`` file: ``[N]`` or ``[1, N]``, real and finite."""
        from corrkit._core.grid import _read_npy

        if len(data) > MAX_CODE_BYTES:
            raise RequestError(f"the code file is {len(data):,} bytes; a code is at most {MAX_CODE_BYTES:,}", 413)
        try:
            arr = _read_npy(io.BytesIO(data), len(data))
        except Exception as exc:
            first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
            raise RequestError(f"the code file is not a NumPy .npy file ({first}); write it with numpy.save") \
                from None
        if arr.dtype.kind not in "fiu":
            raise RequestError(f"the code file holds {arr.dtype} values; a code is real numbers (float32)", 422)
        return self.check_code(arr)

    def check_code(self, z) -> np.ndarray:
        try:
            arr = np.asarray(z, dtype=np.float64)
        except (TypeError, ValueError):
            raise RequestError("the code must be a list of numbers") from None
        n = self.bundle.latent_dim
        if arr.ndim == 2 and arr.shape[0] == 1:
            arr = arr[0]
        if arr.ndim != 1 or arr.shape[0] != n:
            raise RequestError(f"the code has shape {list(arr.shape)}; this model takes {n} latent values ([{n}] or "
                               f"[1, {n}])", 422)
        if not np.isfinite(arr).all() or np.abs(arr).max(initial=0) > 1e6:
            raise RequestError("the code holds NaN, infinite or huge (> 1e6) values", 422)
        return arr.astype(np.float32)

    # -- pictures and probabilities ------------------------------------------------------------------------------

    def edited(self, z, source: str, sliders) -> np.ndarray:
        """``z + sum_i v_i d_i`` float32 ``[N]`` for sliders ``[{"index": i, "value": v_i}, ...]``."""
        z = self.check_code(z)
        d = self.source(source).directions()
        if not isinstance(sliders, list) or len(sliders) > len(d):
            raise RequestError(f"sliders must be a list of at most {len(d)} {{index, value}} objects")
        out, seen = z.astype(np.float64), set()
        for s in sliders:
            i, v = _slider(s, len(d), self.range)
            if i in seen:
                raise RequestError(f"direction {i} is given twice")
            seen.add(i)
            out += v * d[i].astype(np.float64)
        return out.astype(np.float32)

    def _images_and_probs(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from corrkit._core.engine import generate

        z = np.ascontiguousarray(z, dtype=np.float32)
        with self.lock:
            return generate(self.bundle, z), self.engine.probabilities(z)

    def render(self, z, source: str, sliders) -> dict:
        """The edited code's image (base64 uint8 pixels ``[H, W, C]``) and all class probabilities."""
        ze = self.edited(z, source, sliders)
        images, probs = self._images_and_probs(ze[None, :])
        return {**_pixels(images[0]), "probs": probs[0].astype(float).tolist(), "edited": ze.astype(float).tolist()}

    def strip(self, z, source: str, sliders, cls, index) -> dict:
        """Direction ``index`` walked over ``[-range, range]`` from the edited code without its own slider."""
        src, j = self.source(source), self.class_index(cls)
        d = src.directions()
        i, _ = _slider({"index": index, "value": 0}, len(d), self.range)
        others = [s for s in sliders if isinstance(s, dict) and s.get("index") != i] \
            if isinstance(sliders, list) else sliders
        base = self.edited(z, source, others)
        ks = self.frames()
        walk = (base[None, :].astype(np.float64) + ks[:, None] * d[i][None, :].astype(np.float64)).astype(np.float32)
        images, probs = self._images_and_probs(walk)
        return {"ks": ks.astype(float).tolist(), "own": probs[:, j].astype(float).tolist(), "class": j,
                "index": i, "frames": [_pixels(im) for im in images], "images": images}

    def frames(self) -> np.ndarray:
        """The strip's offsets: the slider's own steps over ``[-range, range]``, at most ``MAX_FRAMES``."""
        n = int(round(2 * self.range / self.step)) + 1
        if n <= MAX_FRAMES:
            return (np.arange(n) - (n - 1) / 2) * self.step
        return np.linspace(-self.range, self.range, MAX_FRAMES)

    def export(self, z, source: str, sliders, cls, index) -> bytes:
        """A zip of ``code.npy`` (the code), ``edited.npy`` (the edited code) and ``strip.png`` (the walk)."""
        import zipfile

        from corrkit.viz.images import image_grid

        zc = self.check_code(z)
        ze = self.edited(z, source, sliders)
        s = self.strip(z, source, sliders, cls, index)
        name = self.bundle.classes[s["class"]]
        png = image_grid(s["images"][None], col_labels=[f"{k:+.2g}" for k in s["ks"]],
                         row_labels=[f"{source} {s['index']}"], cell_text=np.asarray(s["own"])[None],
                         title=f"{source} direction {s['index']}, S({name}) under each frame")
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("code.npy", _npy(zc))
            zf.writestr("edited.npy", _npy(ze))
            zf.writestr("strip.png", png)
        return buf.getvalue()


def is_run(path) -> bool:
    """Whether ``path`` is a `corrkit apcr --out` folder (rather than a bundle)."""
    p = Path(path)
    return p.is_dir() and (p / "apcr.npz").is_file() and (p / "summary.json").is_file()


def _slider(s, k: int, span: float) -> tuple[int, float]:
    if not isinstance(s, dict) or "index" not in s or "value" not in s:
        raise RequestError("each slider is an object {index, value}")
    i, v = s["index"], s["value"]
    if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < k:
        raise RequestError(f"slider index {i!r} is not a direction of this source (0..{k - 1})")
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) or abs(v) > span + 1e-9:
        raise RequestError(f"slider value {v!r} is out of range: sliders go from {-span:g} to {span:g}")
    return i, float(v)


def _pixels(image: np.ndarray) -> dict:
    """An image in [0, 1] (``[H, W]`` or ``[H, W, C]``) as base64 uint8 ``[H, W, C]`` for the page's canvas."""
    a = image[..., None] if image.ndim == 2 else image
    u8 = np.ascontiguousarray(np.round(np.clip(a, 0.0, 1.0) * 255).astype(np.uint8))
    return {"pixels": base64.b64encode(u8.tobytes()).decode("ascii"), "height": int(u8.shape[0]),
            "width": int(u8.shape[1]), "channels": int(u8.shape[2])}


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def _sefa(bundle) -> np.ndarray:
    """SeFa in the bundle's space: a StyleGAN's on the style layers the space moves, lifted in W+."""
    from corrkit._core.style import space_directions
    from corrkit.methods.sefa import sefa_in_space

    return space_directions(bundle, sefa_in_space(bundle))[0]


def _ganspace(bundle) -> np.ndarray:
    from corrkit._core.style import space_directions
    from corrkit.methods.ganspace import ganspace

    return space_directions(bundle, ganspace(bundle).directions)[0]


def _intervals(run, run_dir) -> tuple[np.ndarray | None, np.ndarray | None]:
    """APCR interval ``(lo, hi)`` ``[K, C]`` of a run, when it has them (``apcr_lo``/``apcr_hi`` attributes, or
    ``lo``/``hi`` in ``bootstrap.npz`` beside it); ``(None, None)`` otherwise."""
    if run is None:
        return None, None
    lo, hi = getattr(run, "apcr_lo", None), getattr(run, "apcr_hi", None)
    path = Path(run_dir) / "bootstrap.npz" if run_dir is not None else None
    if lo is None and path is not None and path.is_file():
        from corrkit._core.grid import read_npz

        try:
            arrays = read_npz(path, "bootstrap intervals")
            lo, hi = arrays.get("lo"), arrays.get("hi")
        except CorrkitError:
            lo = hi = None
    shape = np.shape(run.apcr)
    if lo is None or hi is None or np.shape(lo) != shape or np.shape(hi) != shape:
        return None, None
    return np.asarray(lo, np.float64), np.asarray(hi, np.float64)
