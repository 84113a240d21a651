"""Settings of the Voynov–Babenko discovery (SPEC §8), without torch.

Kept apart from the training so that ``corrkit export discover --help`` takes
its defaults from :class:`DiscoverSettings` itself without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from corrkit.errors import CorrkitError

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
# Settings a checkpoint must share with the run that resumes it (steps may grow).
RESUME_KEYS = ("kind", "n_directions", "batch_size", "lr", "eps_max", "eps_min", "shift_weight", "seed", "bf16",
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
