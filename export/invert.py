"""Latent codes of real images by optimisation (SPEC §6, for the paper's Fig. 1), in torch.

For a test image ``x`` (in [-1, 1]) the code is

    z* = argmin_z  ||G(z) - x||²  +  beta · ||z||²          (sums over pixels and latent dims)

found with Adam from ``restarts`` starting points; the restart with the lowest
objective is kept. To spend the steps where they help **(choice)**, every
restart runs ``explore_steps`` and only the best one goes on to ``steps``.
Starting points **(choice)**: a seeded pool of prior samples
is generated once, and restart ``r`` of image ``x`` starts from the ``r``-th
nearest pool image (pixel space) that no other image starts from, which
reaches a given error in far fewer steps than a random start (mean squared
error 0.051 against 0.085 after the default 80 steps, on 400 test images);
``pool=0`` gives seeded ``N(0, I)`` starts instead.

Adam works element-wise and the generator runs in eval mode (BatchNorm uses its
running statistics), so optimising a batch of codes together is the same as
optimising each alone: images and restarts are batched. The learning rate
follows a cosine decay to a tenth of its start over the ``steps``.

Cost of the defaults (2,000 images, 3 restarts x 15 steps, then 65 more for the
best, bf16): 110 generator forward+backward passes per image, 540 s of CPU
time on 2 AMD EPYC cores (AVX-512 BF16), i.e. about 4.5 min on two idle cores
(measured 21 min wall while the two cores ran about eight other jobs). The mean
squared error reached is about 0.052 (from 0.127 at the best start).
"""

from __future__ import annotations

import io as _bytes_io
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from corrkit._core import io
from corrkit.errors import CorrkitError
from corrkit.export import weights as _weights
from corrkit.export.models import Generator


@dataclass
class InversionSettings:
    """Optimisation settings (see the module docstring for the timing of the defaults)."""

    steps: int = 80
    explore_steps: int = 15
    restarts: int = 3
    lr: float = 0.05
    beta: float = 0.01
    pool: int = 4096
    batch_size: int = 500
    seed: int = 0
    bf16: bool = True  # autocast of the optimisation steps; ~3x faster on CPUs with AVX-512 BF16 / AMX

    def check(self) -> "InversionSettings":
        for name in ("steps", "explore_steps", "restarts", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise CorrkitError(f"--{name.replace('_', '-')} must be >= 1 (got {getattr(self, name)})")
        if self.explore_steps > self.steps:
            raise CorrkitError(f"--explore-steps ({self.explore_steps}) cannot exceed --steps ({self.steps})")
        if self.pool < 0:
            raise CorrkitError(f"--pool must be 0 (random starts) or a pool size (got {self.pool})")
        if not (self.lr > 0 and self.beta >= 0):
            raise CorrkitError("--lr must be > 0 and --beta >= 0")
        return self


def load_generator(weights: str | Path | None = None) -> Generator:
    """The torch generator (eval mode, frozen) from a ``state_dict`` file (default: the built-in weights)."""
    return _weights.load_generator(weights, hint="pass --weights (a state_dict of corrkit.export.models.Generator)")


def select_images(n_per_class: int, seed: int = 0, data_dir=None, n_classes: int = 10):
    """``n_per_class`` test images of each class, drawn with a seeded permutation.

    Returns images float32 ``[M, 1, 28, 28]`` in [-1, 1], labels int64 ``[M]`` and
    test-set indices int64 ``[M]``, grouped by class.
    """
    from corrkit._core.data import load_split

    test = load_split("test", data_dir)
    order = np.random.default_rng(seed).permutation(len(test.labels))
    idx = []
    for j in range(n_classes):
        mine = order[test.labels[order] == j][:n_per_class]
        if len(mine) < n_per_class:
            raise CorrkitError(f"class {j} has only {len(mine)} test images; lower --n-per-class")
        idx.append(np.sort(mine))
    idx = np.concatenate(idx).astype(np.int64)
    x = test.images[idx].astype(np.float32) / 127.5 - 1.0
    return x[:, None], test.labels[idx].astype(np.int64), idx


def pool_size(s: InversionSettings, m: int) -> int:
    """Prior samples in the pool for ``m`` images: at least twice the starts needed, so none is shared."""
    return max(s.pool, 2 * s.restarts * m) if s.pool > 0 else 0


@torch.no_grad()
def starts(g: Generator, x: np.ndarray, s: InversionSettings) -> tuple[np.ndarray, np.ndarray]:
    """Starting codes float32 ``[restarts, M, N]`` and their pool rows int64 ``[restarts, M]`` (-1: random).

    With a pool, restart ``r`` of each image starts from its ``r``-th nearest pool
    image **that no other image starts from**: images are served in a seeded
    random order, each taking its nearest unused candidates. Shared starts would
    leave similar images with near-identical codes, which says more about the
    initialisation than about the latent space (and leaks between the folds of
    the linear probe).
    """
    rng = np.random.default_rng(s.seed)
    m = len(x)
    if s.pool == 0:
        return (rng.standard_normal((s.restarts, m, g.latent_dim)).astype(np.float32),
                np.full((s.restarts, m), -1, np.int64))
    size = pool_size(s, m)
    pool = rng.standard_normal((size, g.latent_dim)).astype(np.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=s.bf16):  # only ranks candidates
        imgs = torch.cat([g(torch.from_numpy(pool[i:i + 1024])).float() for i in range(0, size, 1024)])
    imgs = imgs.flatten(1).numpy()
    flat = x.reshape(m, -1)
    d2 = (imgs ** 2).sum(1)[None, :] - 2.0 * flat @ imgs.T  # + |x|^2, the same for every candidate of x
    shortlist = min(size, 8 * s.restarts)
    near = np.argpartition(d2, shortlist - 1, axis=1)[:, :shortlist]
    rows = np.full((s.restarts, m), -1, np.int64)
    used = np.zeros(size, bool)
    for i in rng.permutation(m):
        cand = near[i][np.argsort(d2[i, near[i]], kind="stable")]
        free = cand[~used[cand]]
        if len(free) < s.restarts:  # the shortlist is used up: look at every candidate
            cand = np.argsort(d2[i], kind="stable")
            free = cand[~used[cand]]
        rows[:, i] = free[: s.restarts]
        used[free[: s.restarts]] = True
    return np.ascontiguousarray(pool[rows]), rows


def _objective(g: Generator, z: torch.Tensor, x: torch.Tensor, beta: float, bf16: bool = False):
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        image = g(z)
    err = ((image.float() - x) ** 2).flatten(1)
    return err.sum(1) + beta * (z ** 2).sum(1), err.mean(1)


class _Adam:
    """Adam on a batch of codes, written out so that the state of chosen rows can be kept.

    Element-wise, so every code moves as if it were optimised alone. Learning
    rate: cosine decay from ``lr`` to ``lr / 10`` over ``total`` steps.
    """

    def __init__(self, z: torch.Tensor, lr: float, total: int, b1: float = 0.9, b2: float = 0.999,
                 eps: float = 1e-8):
        self.z, self.lr, self.total, self.b1, self.b2, self.eps = z, lr, total, b1, b2, eps
        self.m, self.v, self.t = torch.zeros_like(z), torch.zeros_like(z), 0

    @torch.no_grad()
    def step(self, grad: torch.Tensor) -> None:
        self.t += 1
        lr = self.lr * (0.55 + 0.45 * np.cos(np.pi * (self.t - 1) / max(1, self.total - 1)))
        self.m.mul_(self.b1).add_(grad, alpha=1 - self.b1)
        self.v.mul_(self.b2).addcmul_(grad, grad, value=1 - self.b2)
        m_hat = self.m / (1 - self.b1 ** self.t)
        v_hat = self.v / (1 - self.b2 ** self.t)
        self.z -= lr * m_hat / (v_hat.sqrt() + self.eps)

    def keep(self, rows: torch.Tensor) -> None:
        """Go on with the codes ``rows`` only (and their moments)."""
        self.z, self.m, self.v = self.z[rows].clone(), self.m[rows].clone(), self.v[rows].clone()


def _run(g, opt: _Adam, x: torch.Tensor, beta: float, steps: int, bf16: bool, tick) -> None:
    for _ in range(steps):
        z = opt.z.requires_grad_(True)
        obj, _ = _objective(g, z, x, beta, bf16)
        (grad,) = torch.autograd.grad(obj.sum(), z)  # codes are independent: d(sum)/dz_i = d(obj_i)/dz_i
        opt.z = z.detach()
        opt.step(grad)
        tick(len(x))


def invert_images(g: Generator, x: np.ndarray, s: InversionSettings, z0: np.ndarray | None = None,
                  progress=None) -> dict[str, np.ndarray]:
    """Codes of images ``x`` float32 ``[M, C, H, W]`` in the generator's output range.

    Two phases over all images **(choice)**: every restart runs
    ``explore_steps``; then only the restart with the lowest objective goes on,
    with its Adam state, to ``steps`` in all. Each phase fills batches of
    ``batch_size`` codes (small batches cost several times more per code on CPU).
    With ``s.bf16`` the steps run under bf16 autocast; the choice of restart and
    the reported errors use fp32.

    Returns
    -------
    dict of ndarray
        ``codes`` float32 [M, N]; ``recon_error`` float32 [M] (mean squared pixel
        error of ``G(z*)``, in the generator's output units); ``start_error`` float32 [M] (the
        same for the best starting point); ``restart`` int64 [M] (which restart won).
    """
    s.check()
    z0 = starts(g, x, s)[0] if z0 is None else np.asarray(z0, np.float32)
    r, m, n = z0.shape
    x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    done, total = [0], m * (r * s.explore_steps + s.steps - s.explore_steps)

    def tick(k: int) -> None:
        done[0] += k
        if progress:
            progress("invert", done[0], total)

    # Phase 1: all restarts of `per` images at a time; keep each image's best restart and its Adam state.
    kept = {k: torch.empty((m, n)) for k in ("z", "m", "v")}
    start_err, best_all, t = np.empty(m, np.float32), np.empty(m, np.int64), 0
    per = max(1, s.batch_size // r)
    for b0 in range(0, m, per):
        b1 = min(b0 + per, m)
        b, xb = b1 - b0, x[b0:b1].repeat(r, *([1] * (x.ndim - 1)))
        opt = _Adam(torch.from_numpy(np.ascontiguousarray(z0[:, b0:b1].reshape(-1, n))).clone(), s.lr, s.steps)
        with torch.no_grad():
            _, err0 = _objective(g, opt.z, xb, s.beta)
        _run(g, opt, xb, s.beta, s.explore_steps, s.bf16, tick)
        with torch.no_grad():
            obj, _ = _objective(g, opt.z, xb, s.beta)
        best = obj.view(r, b).argmin(0)
        opt.keep(best * b + torch.arange(b))
        kept["z"][b0:b1], kept["m"][b0:b1], kept["v"][b0:b1], t = opt.z, opt.m, opt.v, opt.t
        start_err[b0:b1] = err0.view(r, b).min(0).values.numpy()
        best_all[b0:b1] = best.numpy()
    # Phase 2: the kept codes, `batch_size` images at a time, on to `steps`.
    codes, recon = np.empty((m, n), np.float32), np.empty(m, np.float32)
    for b0 in range(0, m, s.batch_size):
        b1 = min(b0 + s.batch_size, m)
        opt = _Adam(kept["z"][b0:b1].clone(), s.lr, s.steps)
        opt.m, opt.v, opt.t = kept["m"][b0:b1].clone(), kept["v"][b0:b1].clone(), t
        _run(g, opt, x[b0:b1], s.beta, s.steps - s.explore_steps, s.bf16, tick)
        with torch.no_grad():
            _, err = _objective(g, opt.z, x[b0:b1], s.beta)
        codes[b0:b1], recon[b0:b1] = opt.z.numpy(), err.numpy()
    return {"codes": codes, "recon_error": recon, "start_error": start_err, "restart": best_all}


def _save_npy(path: Path, a: np.ndarray) -> None:
    buf = _bytes_io.BytesIO()
    np.save(buf, a)
    io.write_bytes(path, buf.getvalue())


def _recon_figure(g, x: np.ndarray, labels: np.ndarray | None, codes: np.ndarray, classes, path: Path,
                  value_range=(-1.0, 1.0), per_class: int = 4) -> bool:
    """Real images next to their reconstructions, one row per class, or one row without labels (skipped
    without matplotlib). ``x`` float ``[M, C, H, W]`` in ``value_range``; grey or colour."""
    from corrkit.errors import MissingExtraError
    from corrkit.export import _plot

    groups = ([(name, np.flatnonzero(labels == j)[:per_class]) for j, name in enumerate(classes)]
              if labels is not None else [("images", np.arange(min(len(x), per_class)))])
    rows, names = [], []
    for name, k in groups:
        if len(k) == 0:
            continue
        with torch.no_grad():
            rec = g(torch.from_numpy(codes[k])).float().numpy()
        pairs = np.stack([x[k], rec], 1).reshape(-1, *rec.shape[1:])
        rows.append(pairs.transpose(0, 2, 3, 1)); names.append(name)  # [2k, H, W, C]
    width = max(len(r) for r in rows)
    lo, hi = map(float, value_range)
    grid = np.full((len(rows), width, *rows[0].shape[1:]), lo, np.float32)
    for a, r in enumerate(rows):
        grid[a, : len(r)] = r
    title = "Real images and the generator's image of their inverted codes"
    try:  # inches: the row labels, 0.62 a cell, room for the title
        fig = _plot.figure(max(0.6 + 0.075 * max(map(len, names)) + 0.62 * width, 0.4 + 0.09 * len(title)),
                           0.9 + 0.62 * len(rows))
    except MissingExtraError:
        return False
    h, w, c = grid.shape[2:]
    pad = max(1, h // 14)
    canvas = np.stack([_plot.mosaic(grid[..., i], lo, hi, pad) for i in range(c)], -1)  # per channel: colour too
    ax = fig.add_subplot()
    ax.imshow(canvas[..., 0] if c == 1 else canvas[..., :3], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks(pad + np.arange(width) * (w + pad) + w / 2 - 0.5, ["real", "G(z*)"] * (width // 2))
    ax.set_yticks(pad + np.arange(len(rows)) * (h + pad) + h / 2 - 0.5, names)
    ax.xaxis.tick_top()
    ax.tick_params(length=0, labelsize=8)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_title(title, fontsize=10)
    _plot.png(fig, path)
    return True


def check_images(images, labels, shape: tuple[int, ...], value_range, n_classes: int):
    """``images`` float32 ``[M, *shape]`` within ``value_range`` and ``labels`` int64 ``[M]`` in ``[0, C)`` (or None).

    One :class:`CorrkitError` line for anything else (a user's ``--images``/``--labels`` files).
    """
    x = np.asarray(images)
    want = "[n, " + ", ".join(map(str, shape)) + "]"
    if x.ndim != 1 + len(shape) or tuple(x.shape[1:]) != tuple(shape) or len(x) < 1:
        raise CorrkitError(f"--images must be {want} (the generator's images), got {list(x.shape)}")
    if not np.issubdtype(x.dtype, np.floating) or not np.isfinite(x).all():
        raise CorrkitError(f"--images must hold finite floats (got {x.dtype}"
                           f"{'' if not np.issubdtype(x.dtype, np.floating) else ' with NaN or inf'})")
    lo, hi = map(float, value_range)
    slack = 1e-3 * (hi - lo)
    if x.min() < lo - slack or x.max() > hi + slack:
        raise CorrkitError(f"--images span [{x.min():.4g}, {x.max():.4g}], outside the generator's output range "
                           f"[{lo:g}, {hi:g}]; scale them to that range")
    x = np.ascontiguousarray(np.clip(x, lo, hi), dtype=np.float32)
    if labels is None:
        return x, None
    y = np.asarray(labels)
    if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
        raise CorrkitError(f"--labels must be integers [{len(x)}] (one per image), got {y.dtype} {list(y.shape)}")
    if len(y) and (y.min() < 0 or y.max() >= n_classes):
        raise CorrkitError(f"--labels must be class indices in 0..{n_classes - 1}, got {y.min()}..{y.max()}")
    return x, y.astype(np.int64)


def bundle_generator(bundle, weights: str | Path | None = None):
    """The torch generator to invert with, and where it came from.

    ``weights``: the paper's Generator with that state dict; else the built-in bundle's
    shipped one; else the bundle's ``generator.onnx`` converted to torch.
    """
    from corrkit.export import convert

    if weights is not None or convert.is_builtin(bundle):
        return load_generator(weights), str(Path(weights) if weights else _weights.DIR / "generator.pt")
    return convert.torch_generator(bundle), f"converted from {bundle.generator}"


def invert(bundle=None, *, n_per_class: int = 200, settings: InversionSettings | None = None,
           weights: str | Path | None = None, data_dir=None, out: str | Path | None = None,
           images: np.ndarray | None = None, labels: np.ndarray | None = None, progress=None) -> dict:
    """Invert images into the bundle's latent space: ``images``, or ``n_per_class`` Fashion-MNIST test images.

    Parameters
    ----------
    images : float ``[M, C, H, W]`` in the generator's output range, optional
        The images to invert (a user bundle's; needed for any bundle but the built-in
        one, whose default is ``n_per_class`` Fashion-MNIST test images per class).
    labels : int ``[M]`` in ``[0, C)``, optional; the classes of ``images``
    weights : the paper's Generator state dict (default: the built-in bundle's shipped
        one, or for another bundle its ``generator.onnx`` converted to torch)

    With ``out`` set, writes ``codes.npy`` (float32 [M, N]), ``labels.npy``
    (int64 [M], when known), ``recon_error.npy`` (float32 [M]), ``indices.npy``
    (Fashion-MNIST test-set rows), ``invert.json`` (settings and summary) and
    ``recon.png``, each atomically. Returns the summary dict.
    """
    from corrkit._core.bundle import as_bundle
    from corrkit.export import convert

    s = (settings or InversionSettings()).check()
    if n_per_class < 1:
        raise CorrkitError(f"--n-per-class must be >= 1 (got {n_per_class})")
    bundle = as_bundle(bundle)
    if images is None and not convert.is_builtin(bundle):
        raise CorrkitError("give the images to invert (--images FILE.npy, [n, C, H, W] in the generator's output "
                           "range); only the built-in bundle has its test images (Fashion-MNIST)")
    if images is None and labels is not None:
        raise CorrkitError("--labels goes with --images")
    g, source = bundle_generator(bundle, weights)
    diff = _weights.check_generator(g, bundle)
    idx = None
    if images is None:
        x, labels, idx = select_images(n_per_class, s.seed, data_dir, bundle.n_classes)
    else:
        with torch.no_grad():
            shape = tuple(g(torch.zeros(1, bundle.latent_dim)).shape[1:])
        if len(shape) != 3:
            raise CorrkitError("inversion needs a generator of images [B, C, H, W]; this one gives "
                               f"[B, {', '.join(map(str, shape))}]")
        x, labels = check_images(images, labels, shape, bundle.generator_output_range, bundle.n_classes)
    t0 = time.perf_counter()
    res = invert_images(g, x, s, progress=progress)
    seconds = time.perf_counter() - t0
    err = res["recon_error"]
    summary = {
        "settings": asdict(s), "n_images": int(len(x)),
        "images": "fashion-mnist test set" if idx is not None else "given",
        **({"n_per_class": int(n_per_class)} if idx is not None else {}),
        "objective": "sum (G(z) - x)^2 + beta * sum z^2; recon_error = mean squared pixel error in the "
                     f"generator's units {list(map(float, bundle.generator_output_range))}",
        "recon_error_mean": float(err.mean()), "recon_error_median": float(np.median(err)),
        "start_error_mean": float(res["start_error"].mean()),
        "recon_error_per_class": {c: float(err[labels == j].mean()) for j, c in enumerate(bundle.classes)
                                  if labels is not None and np.any(labels == j)},
        "restart_wins": np.bincount(res["restart"], minlength=s.restarts).tolist(),
        "code_norm_mean": float(np.linalg.norm(res["codes"], axis=1).mean()),
        "seconds": round(seconds, 2), "torch_threads": torch.get_num_threads(),
        "weights": source,
        "generator_sha256": bundle.hashes().get("generator"),
        "torch_vs_onnx_max_abs_diff": diff, "bundle": str(bundle.path or ""), "classes": list(bundle.classes),
    }
    if out is not None:
        out = Path(out)
        for name, a in (("codes", res["codes"]), ("labels", labels), ("recon_error", err), ("indices", idx)):
            if a is not None:
                _save_npy(out / f"{name}.npy", a)
        summary["figure"] = _recon_figure(g, x, labels, res["codes"], bundle.classes, out / "recon.png",
                                          bundle.generator_output_range)
        io.write_bytes(out / "invert.json", (json.dumps(summary, indent=2) + "\n").encode())
    return summary
