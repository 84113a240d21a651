"""Voynov–Babenko learned directions (SPEC §8), torch.

Voynov & Babenko, "Unsupervised Discovery of Interpretable Directions in the GAN
Latent Space" (ICML 2020, arXiv 2002.03754), Section 3: a direction matrix ``A``
(``N x K``) and a reconstructor ``R`` are trained together so that, from the pair
``(G(z), G(z + eps·A e_k))``, ``R`` tells which direction ``k`` moved the image
(cross-entropy) and by how much (``|eps_hat - eps|``). Directions that ``R`` can
tell apart are ones that change the image in distinct ways; the paper's metric is
the reconstructor classification accuracy (RCA) on fresh samples, against the
same ``R`` trained on fixed random orthogonal (``random``) and coordinate
(``coordinate``) directions.

Seeded and resumable: every draw of a step comes from a seed of (seed, method,
step), and each of the three trainings writes a checkpoint atomically every
``checkpoint_every`` steps; a killed run restarted with the same settings ends
with the same parameters as an uninterrupted one (same thread count, same CPU).
"""

from __future__ import annotations

import importlib
import json
import math
import os
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from corrkit._core import io
from corrkit.errors import BundleError, CorrkitError
from corrkit.export.weights import load_into, load_state

KINDS = ("ortho", "proj", "linear")
METHODS = ("learned", "random", "coordinate")
# Per training; with 2 workers on this 2-core CPU the three take ~5 min (bf16, K = 16). The learned
# set is told apart within a few thousand steps while the reconstructors on fixed directions keep
# learning, so the RCA gap opens early and narrows: seed 0, gap 0.31 / 0.24 / 0.20 after 2.5k / 5k
# / 7.5k steps; at 4k, seeds 0 / 1 / 2 give RCA learned 0.71 / 0.70 / 0.70 against the best baseline
# 0.44 / 0.41 / 0.40 (gaps 0.27 / 0.30 / 0.30). More steps train better directions (--steps 10000:
# learned ~0.8, gap ~0.2).
DEFAULT_STEPS = 4_000
# K for proj/linear: with K = N = 100 no reconstructor learns within the CPU budget (RCA 0.13 for
# all three after 10k steps), K = 32 learns too slowly for it, K = 10 opens a wider gap early that
# closes faster and depends more on the random draw. docs/compare.md has the tables.
DEFAULT_K = 16
# Scale of the learned proj A's initial entries (``init_scale·N(0, 1)``; the authors' code uses
# 0.1, which linear keeps). proj normalises the columns, so the scale does not change A at step 0,
# only how far one Adam step of the fixed lr 1e-4 turns a column: about lr / init_scale radians.
# Smaller scales pull the learned set ahead sooner (seed 1, RCA at 2.5k / 5k / 7.5k steps: 0.38 /
# 0.61 / 0.69 at 0.1, 0.53 / 0.70 / 0.78 at 0.01, 0.63 / 0.73 / 0.80 at 0.003).
DEFAULT_INIT_SCALE = 0.003
AUTHORS_INIT_SCALE = 0.1  # linear's (columns of norm ~1 at N = 100) and every run's before the setting
MATCH_ATOL = 1e-3
# Settings a checkpoint must share with the run that resumes it (steps may grow).
_RESUME_KEYS = ("kind", "n_directions", "batch_size", "lr", "eps_max", "eps_min", "shift_weight", "seed", "bf16",
                "channels_last", "init_scale")


@dataclass
class DiscoverSettings:
    """Hyper-parameters of SPEC §8 (defaults: the paper's; ``proj`` with ``K = 16``, see ``DEFAULT_K``)."""

    kind: str = "proj"
    n_directions: int | None = None  # K; None: DEFAULT_K for proj/linear, N for ortho (which needs K = N)
    steps: int = DEFAULT_STEPS  # per training (learned, random, coordinate)
    batch_size: int = 32
    lr: float = 1e-4
    eps_max: float = 6.0
    eps_min: float = 0.5
    shift_weight: float = 0.25
    init_scale: float = DEFAULT_INIT_SCALE  # proj A's initial entries: init_scale·N(0, 1), see DEFAULT_INIT_SCALE
    seed: int = 0
    eval_samples: int = 2000
    eval_batch: int = 250
    checkpoint_every: int = 250
    log_every: int = 250
    bf16: bool = True  # autocast of G and R; ~2-3x faster on CPUs with AVX-512 BF16 / AMX
    channels_last: bool = True
    threads: int = 2  # torch threads in all: split between the workers
    # Trainings run at once, each in its own process **(choice)**: on a small CPU three
    # batch-32 trainings side by side use the cores better than one training with
    # several threads (two workers on 2 cores: learned on one, random then coordinate on
    # the other). 1: one after the other in this process.
    workers: int = 2

    def __post_init__(self):
        if self.kind not in KINDS:
            raise CorrkitError(f"direction type {self.kind!r} is not one of {', '.join(KINDS)}")
        for name in ("steps", "batch_size", "eval_samples", "eval_batch", "checkpoint_every", "log_every",
                     "threads", "workers"):
            if int(getattr(self, name)) < 1:
                raise CorrkitError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.batch_size < 2:
            raise CorrkitError("batch_size must be at least 2 (the reconstructor uses batch norm)")
        if not self.init_scale > 0:
            raise CorrkitError(f"init_scale must be positive, got {self.init_scale}")
        if not 0 <= self.eps_min < self.eps_max:
            raise CorrkitError(f"need 0 <= eps_min < eps_max, got {self.eps_min}, {self.eps_max}")
        if self.n_directions is not None and self.n_directions < 2:
            raise CorrkitError(f"need at least 2 directions, got {self.n_directions}")

    def n_k(self, latent_dim: int) -> int:
        if self.n_directions is None:
            return latent_dim if self.kind == "ortho" else min(DEFAULT_K, latent_dim)
        k = int(self.n_directions)
        if self.kind == "ortho" and k != latent_dim:
            raise CorrkitError(f"--type ortho learns K = N = {latent_dim} directions; use proj or linear for K = {k}")
        if k > latent_dim and self.kind != "linear":
            raise CorrkitError(f"K = {k} directions exceed the latent size {latent_dim}")
        return k


# --- the two networks ---------------------------------------------------------------------------------------------


class DirectionMatrix(nn.Module):
    """``A`` of shape ``[N, K]``; ``forward(k, eps)`` gives the latent shifts ``eps·A e_k`` ``[B, N]``.

    Kinds (Voynov & Babenko, Section 3): ``ortho`` ``A = exp(S - Sᵀ)`` (orthogonal,
    ``K = N``), ``proj`` columns of a free matrix scaled to unit norm, ``linear`` a
    free matrix, ``fixed`` a constant matrix (the random and coordinate baselines).
    """

    def __init__(self, n: int, k: int, kind: str, *, generator: torch.Generator | None = None,
                 matrix: torch.Tensor | np.ndarray | None = None, init_scale: float = DEFAULT_INIT_SCALE):
        super().__init__()
        self.n, self.k, self.kind = n, k, kind
        if kind == "ortho":
            if k != n:
                raise CorrkitError(f"ortho directions need K = N, got K = {k}, N = {n}")
            # the authors' initialisation: a well-mixed random rotation
            self.log_half = nn.Parameter(torch.randn(n, n, generator=generator))
        elif kind in ("proj", "linear"):
            # linear's column norm is the shift size, so it keeps the authors' scale; proj normalises
            # its columns, so its scale only sets how fast they turn (DEFAULT_INIT_SCALE)
            scale = init_scale if kind == "proj" else AUTHORS_INIT_SCALE
            self.weight = nn.Parameter(scale * torch.randn(n, k, generator=generator))
        elif kind == "fixed":
            m = torch.as_tensor(np.asarray(matrix, np.float32))
            if tuple(m.shape) != (n, k):
                raise CorrkitError(f"fixed direction matrix must be [{n}, {k}], got {list(m.shape)}")
            self.register_buffer("fixed", m.clone())
        else:
            raise CorrkitError(f"direction type {kind!r} is not one of {', '.join(KINDS + ('fixed',))}")

    def matrix(self) -> torch.Tensor:
        """``A`` float32 ``[N, K]``."""
        if self.kind == "ortho":
            # float64 keeps AᵀA = I to ~1e-7 even for a large skew generator
            s = self.log_half.double()
            return torch.linalg.matrix_exp(s - s.T).float()
        if self.kind == "proj":
            return self.weight / self.weight.norm(dim=0, keepdim=True).clamp_min(1e-12)
        if self.kind == "linear":
            return self.weight
        return self.fixed

    def forward(self, k: torch.Tensor, eps: torch.Tensor, a: torch.Tensor | None = None) -> torch.Tensor:
        a = self.matrix() if a is None else a
        return eps[:, None] * a[:, k].T

    def directions(self) -> np.ndarray:
        """Rows = columns of ``A`` scaled to unit norm: float32 ``[K, N]``."""
        with torch.no_grad():
            a = self.matrix().double()
            a = a / a.norm(dim=0, keepdim=True).clamp_min(1e-12)
        return a.T.float().numpy().copy()


class Reconstructor(nn.Module):
    """LeNet on the channel-stacked pair ``(x1, x2)`` ``[B, 2C, H, W]`` -> logits ``[B, K]``, ``eps_hat`` ``[B]``.

    The authors' ``LeNetShiftPredictor`` (width 2); the first convolution is padded
    so that 28x28 images (the paper's MNIST ones are 32x32) reach a 1x1 map; any
    ``H, W >= 28`` works (features are averaged over space).
    """

    def __init__(self, k: int, channels: int = 1, width: int = 2):
        super().__init__()
        self.convnet = nn.Sequential(
            nn.Conv2d(2 * channels, 3 * width, 5, padding=2), nn.BatchNorm2d(3 * width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(3 * width, 8 * width, 5), nn.BatchNorm2d(8 * width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8 * width, 60 * width, 5), nn.BatchNorm2d(60 * width), nn.ReLU(),
        )

        def head(out: int) -> nn.Sequential:
            return nn.Sequential(nn.Linear(60 * width, 42 * width), nn.BatchNorm1d(42 * width), nn.ReLU(),
                                 nn.Linear(42 * width, out))

        self.fc_logits, self.fc_shift = head(k), head(1)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.convnet(torch.cat([x1, x2], dim=1)).mean(dim=(-1, -2))
        return self.fc_logits(features), self.fc_shift(features)[:, 0]


# --- one step -----------------------------------------------------------------------------------------------------


def vb_loss(logits: torch.Tensor, eps_hat: torch.Tensor, k: torch.Tensor, eps: torch.Tensor,
            shift_weight: float = 0.25) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``CE(logits, k) + shift_weight·mean|eps_hat - eps|`` (SPEC §8); returns (total, ce, shift term)."""
    ce = F.cross_entropy(logits.float(), k)
    shift = (eps_hat.float() - eps).abs().mean()
    return ce + shift_weight * shift, ce, shift


def sample_batch(gen: torch.Generator, b: int, n: int, k: int, eps_max: float = 6.0,
                 eps_min: float = 0.5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``z ~ N(0, I)`` ``[b, n]``, ``k ~ U{0..K-1}`` ``[b]``, ``eps = eps_max·U[-1, 1]`` ``[b]``.

    Shifts smaller than ``eps_min`` in magnitude are pushed out to ``±eps_min``, as in
    the authors' code, so every pair differs visibly.
    """
    z = torch.randn(b, n, generator=gen)
    idx = torch.randint(0, k, (b,), generator=gen)
    eps = eps_max * (2 * torch.rand(b, generator=gen) - 1)
    eps = torch.where(eps.abs() < eps_min, torch.where(eps < 0, -eps_min, eps_min), eps)
    return z, idx, eps


def _seed(*parts) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


def _step_gen(seed: int, method: str, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(_seed(seed, METHODS.index(method), step))


def _pair(G, z, shift, learn, s: DiscoverSettings):
    """``G(z)`` and ``G(z + shift)``; only the second carries gradients, and only when ``A`` is learned."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=s.bf16):
        if learn:
            with torch.no_grad():
                x1 = G(z)
            return x1, G(z + shift)
        with torch.no_grad():  # fixed A: one batch of 2B is cheaper than two of B
            return G(torch.cat([z, z + shift])).chunk(2)


def reconstruction_loss(G, A: DirectionMatrix, R, z, k, eps, s: DiscoverSettings, learn: bool = True):
    """The SPEC §8 loss of one batch: images of ``z`` and ``z + eps·A e_k``, ``R``'s guesses, ``vb_loss``.

    Returns (total, ce, shift term, accuracy of the batch).
    """
    shift = A(k, eps)
    x1, x2 = _pair(G, z, shift, learn, s)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=s.bf16):
        logits, eps_hat = R(x1, x2)
    total, ce, sh = vb_loss(logits, eps_hat, k, eps, s.shift_weight)
    acc = (logits.argmax(1) == k).float().mean()
    return total, ce, sh, acc


@torch.no_grad()
def rca(G, A: DirectionMatrix, R, latent_dim: int, k: int, s: DiscoverSettings) -> tuple[float, float]:
    """Reconstructor classification accuracy on ``s.eval_samples`` fresh pairs, and the mean ``|eps_hat - eps|``.

    The pairs come from a seed of their own (the same for every method), never one
    used in training.
    """
    if hasattr(R, "eval"):
        R.eval()
    gen = torch.Generator().manual_seed(_seed(s.seed, 9_999, 1))
    a = A.matrix()
    hits, err, done = 0, 0.0, 0
    while done < s.eval_samples:
        b = min(s.eval_batch, s.eval_samples - done)
        z, idx, eps = sample_batch(gen, b, latent_dim, k, s.eps_max, s.eps_min)
        x1, x2 = _pair(G, z, A(idx, eps, a), False, s)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=s.bf16):
            logits, eps_hat = R(x1, x2)
        hits += int((logits.float().argmax(1) == idx).sum())
        err += float((eps_hat.float() - eps).abs().sum())
        done += b
    return hits / done, err / done


# --- one training -------------------------------------------------------------------------------------------------


def _log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, file=sys.stderr, flush=True)


def _save_atomic(obj, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _initial(method: str, n: int, k: int, channels: int,
             s: DiscoverSettings) -> tuple[DirectionMatrix, Reconstructor]:
    from corrkit.methods.compare import random_orthogonal

    gen = torch.Generator().manual_seed(_seed(s.seed, METHODS.index(method), 10**9))
    if method == "learned":
        A = DirectionMatrix(n, k, s.kind, generator=gen, init_scale=s.init_scale)
    elif method == "random":
        A = DirectionMatrix(n, k, "fixed", matrix=random_orthogonal(n, s.seed).T[:, :k])
    elif method == "coordinate":
        A = DirectionMatrix(n, k, "fixed", matrix=np.eye(n, dtype=np.float32)[:, :k])
    else:
        raise CorrkitError(f"method {method!r} is not one of {', '.join(METHODS)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_seed(s.seed, METHODS.index(method), 10**9 + 1))
        R = Reconstructor(k, channels)
    if s.channels_last:
        R = R.to(memory_format=torch.channels_last)
    return A, R


@dataclass
class Trained:
    """One finished training: the direction matrix, the reconstructor and its record."""

    A: DirectionMatrix
    R: Reconstructor
    method: str
    rca: float
    eps_mae: float
    seconds: float
    steps: int
    history: list = field(default_factory=list)
    cpu_seconds: float = 0.0  # process CPU time, all threads: ~threads x seconds on an idle machine

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds if self.seconds > 0 else float("nan")


def train_method(G, latent_dim: int, s: DiscoverSettings, method: str, checkpoint: str | Path | None = None, *,
                 log=_log, progress=None) -> Trained:
    """Train ``R`` (and ``A`` for ``learned``) for ``s.steps`` steps; resumes from ``checkpoint`` when it exists.

    Parameters
    ----------
    G : torch module ``z [B, N] -> image [B, C, H, W]``, frozen (eval mode, no grads)
    latent_dim : N
    method : ``learned`` (``A`` of ``s.kind``), ``random`` or ``coordinate`` (fixed ``A``)
    checkpoint : file written every ``s.checkpoint_every`` steps and at the end
    progress : optional ``update(stage, done, total)``
    """
    k = s.n_k(latent_dim)
    G = prepare_generator(G, s)
    A, R = _initial(method, latent_dim, k, _image_channels(G, latent_dim), s)
    learn = method == "learned"
    params = list(R.parameters()) + (list(A.parameters()) if learn else [])
    opt = torch.optim.Adam(params, lr=s.lr, fused=True)  # one kernel per step, not ~10 ops per tensor
    key = {name: getattr(s, name) for name in _RESUME_KEYS}
    key["n_directions"] = s.n_k(latent_dim)  # the K in use, whether given or the default
    start, wall, cpu, history, done = 0, 0.0, 0.0, [], None
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    if checkpoint is not None and checkpoint.exists():
        st = load_state(checkpoint)
        written = dict(st["settings"])
        if written.get("n_directions") is None:  # checkpoints before K was recorded resolved
            written["n_directions"] = DiscoverSettings(kind=written["kind"]).n_k(latent_dim)
        written.setdefault("init_scale", AUTHORS_INIT_SCALE)  # checkpoints from before the setting
        if written != key or st["method"] != method:
            raise CorrkitError(f"{checkpoint} was written with other settings ({st['settings']}); "
                               "give another --out folder or delete it to start afresh")
        if st["step"] > s.steps:
            raise CorrkitError(f"{checkpoint} is already past step {s.steps} (at {st['step']}); "
                               "give --steps at least that, or another --out folder")
        A.load_state_dict(st["A"]); R.load_state_dict(st["R"]); opt.load_state_dict(st["opt"])
        start, wall, cpu, history = st["step"], st["wall"], st["cpu"], st["history"]
        done = (st["rca"], st["eps_mae"]) if start == s.steps and "rca" in st else None
        if start < s.steps:
            log(f"{method}: resuming after step {start}")

    def save(step: int, extra: dict | None = None) -> None:
        if checkpoint is not None:
            _save_atomic({"A": A.state_dict(), "R": R.state_dict(), "opt": opt.state_dict(), "step": step,
                          "wall": wall, "cpu": cpu, "history": history, "settings": key, "method": method,
                          **(extra or {})}, checkpoint)

    run, count, cpu_log = np.zeros(4), 0, cpu
    t_log = time.perf_counter()
    for step in range(start, s.steps):
        t0, c0 = time.perf_counter(), time.process_time()
        R.train()
        z, idx, eps = sample_batch(_step_gen(s.seed, method, step), s.batch_size, latent_dim, k, s.eps_max,
                                   s.eps_min)
        total, ce, sh, acc = reconstruction_loss(G, A, R, z, idx, eps, s, learn)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        wall += time.perf_counter() - t0
        cpu += time.process_time() - c0
        run += [float(v.detach()) for v in (total, ce, sh, acc)]
        count += 1
        if (step + 1) % s.log_every == 0 or step + 1 == s.steps:
            m = run / count
            rate = count / max(time.perf_counter() - t_log, 1e-9)
            history.append([step + 1, *np.round(m, 5).tolist()])
            log(f"{method} step {step + 1}/{s.steps} loss {m[0]:.3f} ce {m[1]:.3f} |eps| {m[2]:.3f} "
                f"acc {m[3]:.3f} ({rate:.2f} steps/s, {1000 * (cpu - cpu_log) / count:.0f} cpu-ms/step)")
            run[:], count, cpu_log, t_log = 0, 0, cpu, time.perf_counter()
        if (step + 1) % s.checkpoint_every == 0 and step + 1 < s.steps:
            save(step + 1)
        if progress is not None:
            progress(method, step + 1, s.steps)
    if done is None:
        acc, mae = rca(G, A, R, latent_dim, k, s)
        save(s.steps, {"rca": acc, "eps_mae": mae})
        log(f"{method}: RCA {acc:.4f} on {s.eval_samples} fresh pairs, mean |eps_hat - eps| {mae:.3f}")
    else:
        acc, mae = done
    return Trained(A, R, method, acc, mae, wall, s.steps, history, cpu)


# --- the three trainings and their files --------------------------------------------------------------------------


@dataclass
class DiscoverResult:
    """Voynov–Babenko directions and the RCA of the three trainings.

    Attributes
    ----------
    directions : ndarray, float32, shape [K, N]
        Columns of the learned ``A``, unit norm, as rows (``A``'s column order).
    rca, rca_random, rca_coordinate : float
        Reconstructor classification accuracy of the learned, random orthogonal and
        coordinate directions on the same fresh pairs (chance is ``1 / K``).
    eps_mae : dict
        Per method, the mean ``|eps_hat - eps|`` on those pairs.
    settings : DiscoverSettings
    seconds, cpu_seconds : dict
        Per method, training wall seconds (without evaluation) and process CPU seconds
        (all threads; on a busy machine ``cpu_seconds / threads`` estimates the idle wall time).
    history : dict
        Per method, rows ``[step, loss, ce, |eps| term, batch accuracy]`` (means between logs).
    """

    directions: np.ndarray
    rca: float
    rca_random: float
    rca_coordinate: float
    eps_mae: dict
    settings: DiscoverSettings
    seconds: dict
    history: dict
    cpu_seconds: dict = field(default_factory=dict)
    elapsed: float = 0.0  # wall seconds of the whole run (trainings side by side with workers > 1)

    def summary(self) -> dict:
        k = len(self.directions)
        sps = {m: round(self.settings.steps / t, 3) if t > 0 else None for m, t in self.seconds.items()}
        return {"rca": self.rca, "rca_random": self.rca_random, "rca_coordinate": self.rca_coordinate,
                "chance": 1 / k, "gap_over_best_baseline": self.rca - max(self.rca_random, self.rca_coordinate),
                "eps_mae": self.eps_mae, "n_directions": k, "latent_dim": int(self.directions.shape[1]),
                "seconds": {m: round(t, 1) for m, t in self.seconds.items()}, "steps_per_second": sps,
                "cpu_seconds": {m: round(t, 1) for m, t in self.cpu_seconds.items()},
                "elapsed_seconds": round(self.elapsed, 1),
                "settings": asdict(self.settings)}

    def save(self, out: str | Path) -> dict[str, Path]:
        """``directions.npz``, ``discover.json`` and ``rca.png`` (when matplotlib is there), each atomically."""
        out = Path(out)
        files = {"npz": out / "directions.npz", "json": out / "discover.json"}
        # settings go in as a 1-d string so that `corrkit compare` shows only the 0-d RCA scalars
        io.write_npz(files["npz"], directions=self.directions, rca=np.float64(self.rca),
                     rca_random=np.float64(self.rca_random), rca_coordinate=np.float64(self.rca_coordinate),
                     settings=np.array([json.dumps(asdict(self.settings))]))
        io.write_json(files["json"], {**self.summary(), "history": self.history})
        try:
            rca_figure(self, out / "rca.png")
            files["png"] = out / "rca.png"
        except ImportError:
            pass
        return files


def rca_figure(result: DiscoverResult, out: str | Path | None = None) -> bytes:
    """The three RCAs (SPEC §8) as bars with the chance level, and beside them each training's batch
    accuracy over the steps (from ``history``: where the learned set pulls ahead, and how fast the
    baselines follow). PNG bytes, written to ``out`` if given."""
    import io as _bytes_io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = [f"learned ({result.settings.kind})", "random orthogonal", "coordinate"]
    colors = ["#4c72b0", "#dd8452", "#55a868"]
    values = [result.rca, result.rca_random, result.rca_coordinate]
    chance = 1 / len(result.directions)
    curves = [np.asarray(result.history.get(m) or [], float).reshape(-1, 5) for m in METHODS]
    fig = Figure(figsize=(9.0, 3.6), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax, ax2 = fig.subplots(1, 2, width_ratios=[1, 1.3])
    bars = ax.bar(names, values, color=colors)
    for b, v in zip(bars, values):
        ax.text(b.get_x() + b.get_width() / 2, v + 0.01, f"{v:.3f}", ha="center", va="bottom", fontsize=9)
    ax.axhline(chance, color="grey", ls="--", lw=1, label="chance 1/K")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("reconstructor classification accuracy")
    ax.tick_params(axis="x", labelsize=8)
    ax.set_title(f"RCA on fresh pairs, K = {len(result.directions)}, {result.settings.steps} steps each", fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    for name, color, h in zip(names, colors, curves):
        if len(h):
            ax2.plot(h[:, 0], h[:, 4], color=color, lw=1.2, label=name)
    ax2.axhline(chance, color="grey", ls="--", lw=1)
    ax2.set_ylim(0, 1.05)
    ax2.set_xlabel("training step")
    ax2.set_ylabel("batch accuracy (mean between logs)")
    ax2.set_title("training", fontsize=10)
    ax2.legend(fontsize=8, loc="lower right")
    buf = _bytes_io.BytesIO()
    fig.savefig(buf, format="png", facecolor="white")
    data = buf.getvalue()
    if out is not None:
        io.write_bytes(out, data)
    return data


def _image_channels(G: nn.Module, latent_dim: int) -> int:
    with torch.no_grad():
        probe = G(torch.zeros(2, latent_dim))
    if probe.ndim != 4 or min(probe.shape[-2:]) < 28:
        raise BundleError(f"the reconstructor needs images [B, C, H, W] with H, W >= 28; G gives {list(probe.shape)}")
    return int(probe.shape[1])


def prepare_generator(G: nn.Module, s: DiscoverSettings) -> nn.Module:
    """``G`` frozen: eval mode, no parameter gradients, batch norms folded into convolutions, channels-last.

    Folding (``torch.fx``) is exact up to rounding and removes the batch norms that
    dominate a bf16 step on CPU; a generator that cannot be traced, or whose folded
    copy differs, is used as it is.
    """
    G = G.eval()
    for p in G.parameters():
        p.requires_grad_(False)
    if not getattr(G, "_bn_folded", False):
        G = _fold_batch_norms(G)
    return G.to(memory_format=torch.channels_last) if s.channels_last else G


def _fold_batch_norms(G: nn.Module) -> nn.Module:
    try:
        with warnings.catch_warnings():  # the module imports deprecated torch.jit helpers
            warnings.simplefilter("ignore", DeprecationWarning)
            from torch.fx.experimental.optimization import fuse

        folded = fuse(G)
        n = getattr(G, "latent_dim", None) or next(m for m in G.modules() if isinstance(m, nn.Linear)).in_features
        z = torch.randn(4, n, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            ok = torch.allclose(folded(z), G(z), atol=1e-4)
    except Exception:  # any module torch.fx cannot trace
        return G
    if not ok:
        return G
    for p in folded.parameters():
        p.requires_grad_(False)
    folded._bn_folded = True
    return folded.eval()


def discover(G: nn.Module, latent_dim: int, settings: DiscoverSettings | None = None,
             out: str | Path | None = None, *, log=_log, progress=None) -> DiscoverResult:
    """Learned directions and the RCA of learned, random and coordinate directions (SPEC §8).

    Parameters
    ----------
    G : torch module ``z float32 [B, N] -> image [B, C, H, W]`` (H, W >= 28)
    latent_dim : N
    settings : DiscoverSettings (default: the paper's)
    out : folder for the checkpoints and the result files; ``None`` keeps nothing
        (no resuming)

    Returns
    -------
    DiscoverResult
    """
    s = settings or DiscoverSettings()
    torch.set_num_threads(s.threads)
    given = G  # workers get this one: the prepared module is an fx graph, which does not pickle
    G = prepare_generator(G, s)
    s.n_k(latent_dim)
    _image_channels(G, latent_dim)
    out = Path(out) if out is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    ckpt = {m: out / f"checkpoint_{m}.pt" if out is not None else None for m in METHODS}
    if min(s.workers, len(METHODS)) > 1:
        trained = _train_in_processes(given, latent_dim, s, ckpt, progress)
    else:
        trained = {m: train_method(G, latent_dim, s, m, ckpt[m], log=log, progress=progress) for m in METHODS}
    result = DiscoverResult(
        directions=trained["learned"].A.directions(), rca=trained["learned"].rca,
        rca_random=trained["random"].rca, rca_coordinate=trained["coordinate"].rca,
        eps_mae={m: t.eps_mae for m, t in trained.items()}, settings=s,
        seconds={m: t.seconds for m, t in trained.items()}, history={m: t.history for m, t in trained.items()},
        cpu_seconds={m: t.cpu_seconds for m, t in trained.items()}, elapsed=time.perf_counter() - t0)
    if out is not None:
        result.save(out)
    return result


_PROGRESS = None  # in a worker process: the queue its trainings report progress to


def _worker_init(queue, threads: int) -> None:
    """Start of a worker process: its torch threads, its progress queue, and Ctrl-C left to the parent.

    The parent stops the workers on Ctrl-C (their checkpoints are written atomically), so a
    terminal's interrupt does not print a traceback per worker.
    """
    import signal

    global _PROGRESS
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)
    _PROGRESS = queue


def _train_one(G, latent_dim: int, s: DiscoverSettings, method: str, checkpoint):
    """:func:`train_method` in a worker process; progress goes back through the worker's queue."""

    def progress(stage, done, total):
        if done % 10 == 0 or done == total:
            try:
                _PROGRESS.put((stage, done, total))
            except (OSError, ValueError):  # the parent has gone; training goes on to its checkpoint
                pass

    return train_method(G, latent_dim, s, method, checkpoint, progress=progress if _PROGRESS is not None else None)


def _train_in_processes(G, latent_dim: int, s: DiscoverSettings, checkpoints: dict, progress=None) -> dict:
    """The three trainings in ``s.workers`` spawned processes of ``s.threads // s.workers`` threads each.

    ``learned`` (the slowest) is submitted first. Each process logs to stderr and writes
    its own checkpoint, so a killed run resumes as a sequential one would; results are
    those of a sequential run with the same threads per training.
    """
    import multiprocessing as mp
    import queue as _queue
    from concurrent.futures import ProcessPoolExecutor, wait

    ctx = mp.get_context("spawn")  # not fork: the parent's OpenMP threads do not survive a fork
    workers = min(s.workers, len(METHODS))
    reports = ctx.Queue() if progress is not None else None
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init,
                               initargs=(reports, max(1, s.threads // workers)))
    try:
        futures = {pool.submit(_train_one, G, latent_dim, s, m, checkpoints[m]): m for m in METHODS}
        pending = set(futures)
        while pending:
            _, pending = wait(pending, timeout=0.5)
            while reports is not None:
                try:
                    progress(*reports.get_nowait())
                except _queue.Empty:
                    break
        return {futures[f]: f.result() for f in futures}
    except BaseException:  # Ctrl-C or a failed training: stop the others (checkpoints are atomic)
        for proc in list(getattr(pool, "_processes", {}).values()):
            proc.terminate()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# --- the generator of a bundle ------------------------------------------------------------------------------------


def load_generator(bundle, torch_generator: str | None = None, generator_weights: str | Path | None = None):
    """The bundle's generator as a torch module.

    The built-in bundle's ships (``corrkit/export/weights/generator.pt``, the
    paper's DCGAN). For another bundle give ``torch_generator`` as
    ``"package.module:factory"`` (a callable returning the ``nn.Module``; a class
    works) and, unless the factory loads its own weights, ``generator_weights``, a
    ``state_dict`` file. When the bundle has an ONNX generator, the torch module is
    checked against it on seeded codes.
    """
    from corrkit._core.bundle import BUILTIN

    from corrkit.export.optimize import WEIGHTS

    builtin = bundle.path is not None and Path(bundle.path).resolve() == BUILTIN.resolve()
    if torch_generator is None:
        if not builtin:
            raise BundleError("only the built-in bundle's torch generator ships; for this bundle give "
                              "--torch-generator package.module:factory and --generator-weights state_dict.pt")
        from corrkit.export.models import Generator

        G = Generator(bundle.latent_dim)
        generator_weights = generator_weights or WEIGHTS / "generator.pt"
    else:
        mod, _, name = torch_generator.partition(":")
        if not mod or not name:
            raise BundleError(f"--torch-generator must be 'package.module:factory', got {torch_generator!r}")
        try:
            G = getattr(importlib.import_module(mod), name)()
        except (ImportError, AttributeError) as exc:
            raise BundleError(f"cannot build the generator from {torch_generator!r}: {exc}") from None
        if not isinstance(G, nn.Module):
            raise BundleError(f"{torch_generator} returned {type(G).__name__}, not a torch nn.Module")
    if generator_weights is not None:
        path = Path(generator_weights)
        if not path.is_file():
            raise BundleError(f"{path} does not exist; give --generator-weights with the generator's state_dict")
        try:
            load_into(G, path)
        except RuntimeError as exc:
            raise BundleError(f"{path} does not fit the generator ({str(exc).splitlines()[0]})") from None
    G.eval()
    if bundle.generator is not None:
        check_generator(G, bundle)
    return G


def check_generator(G: nn.Module, bundle, n: int = 8, atol: float = MATCH_ATOL) -> float:
    """Max ``|G_torch(z) - G_onnx(z)|`` on ``n`` seeded codes; a :class:`BundleError` above ``atol``."""
    from corrkit.viz.figures import generate

    z = np.random.default_rng(0).standard_normal((n, bundle.latent_dim)).astype(np.float32)
    with torch.no_grad():
        got = G(torch.from_numpy(z)).float().numpy()
    want = generate(bundle, z)
    got = got[:, 0] if got.ndim == 4 else got
    diff = float(np.max(np.abs(got - want))) if got.shape == want.shape else math.inf
    if not np.isfinite(diff) or diff > atol:
        raise BundleError(f"the torch generator disagrees with the bundle's generator.onnx (max |dx| = {diff:.3g}); "
                          "give the weights this bundle was exported from")
    return diff


def discover_bundle(bundle=None, settings: DiscoverSettings | None = None, out: str | Path | None = None, *,
                    torch_generator: str | None = None, generator_weights: str | Path | None = None,
                    log=_log, progress=None) -> DiscoverResult:
    """:func:`discover` on a bundle's generator (default: the built-in bundle); see :func:`load_generator`."""
    from corrkit._core.bundle import Bundle, load_bundle

    if not isinstance(bundle, Bundle):
        bundle = load_bundle(bundle)
    G = load_generator(bundle, torch_generator, generator_weights)
    return discover(G, bundle.latent_dim, settings, out, log=log, progress=progress)
