"""How a method runs, kept apart from what it computes: device, batch size, threads, executor, shards, checkpoints.

Every method takes one :class:`Execution` (default: this process, the best device),
so its signature shows the method's own parameters. The options are checked in
one place before any work; a bad one is a :class:`~corrkit.errors.GridError` that
names the option as the CLI spells it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from corrkit._core import defaults
from corrkit._core.grid import check_whole
from corrkit.errors import GridError

DEVICES = ("auto", "cpu", "cuda")
MODES = ("fp32", "int8", "bf16", "ov-fp32", "bf16-delta")
OPENVINO_MODES = ("bf16", "ov-fp32", "bf16-delta")
EXECUTORS = ("local", "ray")
# Rows per inference call: far above what any memory budget picks (engine.default_batch_size caps at 16,384),
# low enough that a typo such as 10**12 is refused instead of allocating.
MAX_BATCH_SIZE = 1 << 20
MAX_THREADS = 4096
MAX_WORKERS = 100_000


MAX_SHARD_POINTS = 1 << 40


def _whole(value, name: str, lo: int, hi: int) -> None:
    check_whole(value, name, lo, hi)


@dataclass(frozen=True)
class Execution:
    """Where and how a method's model evaluations run; none of it changes what is computed, except as noted.

    Attributes
    ----------
    device : {"auto", "cpu", "cuda"}
    batch_size : int, optional
        Rows per inference call (default: from the memory budget). With ``shard_points``
        part of a result's definition: float64 sums are accumulated per batch and shard.
    threads : int, optional
        onnxruntime threads of this process, or of each Ray worker (default 1 there); on CPU
        from 2 up they are shared out between two onnxruntime sessions that each run
        half of every batch (:mod:`corrkit._core.lanes`: the same rows, faster).
    mode : {"fp32", "int8", "bf16", "ov-fp32", "bf16-delta"}
        ``fp32`` is the reference; ``int8`` (onnxruntime QDQ convolutions) and ``bf16``
        (the generator's convolutions in OpenVINO bf16, on CPUs with AVX-512 BF16 or AMX,
        then the classifier in onnxruntime fp32; extra ``openvino``)
        are faster and report their fidelity against fp32 on every run (SPEC §10).
    executor : {"local", "ray"}
        This process, or Ray actors (extra ``ray``), which give the same bits.
    ray_address : str, optional
        With ``executor="ray"``: ``None`` (the Ray instance already joined, else a new
        local one), ``"local"`` or a cluster address.
    workers : int, optional
        Ray actors (default: one per GPU, else one per CPU).
    shard_points : int, optional
        Grid points per shard, rounded up to whole batches (default 16 batches).
    checkpoint_seconds : float
        Seconds between checkpoints of a resumable run (0: after every shard).
    verbose : bool
        Let Ray's own log lines through to the terminal (``--verbose``); by default they
        are kept out, and a failure to start or join Ray is one error.
    """

    device: str = "auto"
    batch_size: int | None = None
    threads: int | None = None
    mode: str = "fp32"
    executor: str = "local"
    ray_address: str | None = None
    workers: int | None = None
    shard_points: int | None = None
    checkpoint_seconds: float = defaults.CHECKPOINT_SECONDS
    verbose: bool = False

    def __post_init__(self):
        if self.device not in DEVICES:
            raise GridError(f"--device must be one of {', '.join(DEVICES)} (got {self.device!r})")
        if self.mode not in MODES:
            raise GridError(f"--mode must be one of {', '.join(MODES)} (got {self.mode!r})")
        if self.executor not in EXECUTORS:
            raise GridError(f"executor must be 'local' or 'ray' (got {self.executor!r})")
        if self.batch_size is not None:
            _whole(self.batch_size, "--batch-size", 1, MAX_BATCH_SIZE)
        if self.threads is not None:
            _whole(self.threads, "--threads", 1, MAX_THREADS)
        if self.workers is not None:
            _whole(self.workers, "--workers", 1, MAX_WORKERS)
        if self.shard_points is not None:
            _whole(self.shard_points, "--shard-points", 1, MAX_SHARD_POINTS)
        c = self.checkpoint_seconds
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not math.isfinite(c) or c < 0:
            raise GridError(f"--checkpoint-every must be a finite number of seconds >= 0 (got {c!r})")
        if self.executor == "local" and (self.ray_address is not None or self.workers is not None):
            raise GridError("--workers and a Ray address need --ray")
        if self.executor == "ray" and self.mode in OPENVINO_MODES:
            # Ray's workers run the driver's onnxruntime graph: they would compute fp32 and call it this mode
            raise GridError(f"--mode {self.mode} runs on OpenVINO in this process; with --ray use --mode fp32 or int8")

    def engine(self, bundle):
        """The :class:`~corrkit._core.engine.Engine` of this process for ``bundle``.

        With Ray and ``device="cuda"`` the driver's own engine (code sets, rewrites) runs
        on the CPU: the GPUs belong to the workers.
        """
        from corrkit._core.engine import Engine

        device = "cpu" if self.executor == "ray" and self.device == "cuda" else self.device
        return Engine(bundle, device=device, batch_size=self.batch_size, mode=self.mode,
                      threads=self.threads if self.executor == "local" else None)

    def pool(self, engine):
        """A warm :class:`~corrkit._core.distributed.RayPool` over ``engine``'s graph, or ``None`` when local."""
        if self.executor != "ray":
            return None
        from corrkit._core.distributed import RayPool

        return RayPool(engine, address=self.ray_address, device=self.device, batch_size=self.batch_size,
                       threads=self.threads, workers=self.workers, verbose=self.verbose)

    def require_extras(self) -> None:
        """Fail before any work when the executor's extra is missing."""
        if self.executor == "ray":
            from corrkit._core.distributed import import_ray

            import_ray()
        if self.mode in ("bf16", "bf16-delta"):
            from corrkit._core.openvino import check_available

            check_available()
        if self.mode == "ov-fp32":
            from corrkit._core.openvino import _openvino

            _openvino()

    def to_dict(self) -> dict:
        return asdict(self)
