"""The intervention grid's shards on a Ray cluster (extra ``ray``).

A :class:`RayPool` holds a few Ray actors, each with one warm onnxruntime session
(:class:`ShardWorker`): one GPU per actor (``num_gpus=1``) when the cluster has
GPUs, else ``threads`` CPUs per actor. The driver feeds them shards
(:mod:`corrkit._core.shards`) with ``ray.wait``, a couple in flight per actor, buffers
results that arrive out of order and yields them in ascending shard order, so the
fold and hence the result do not depend on which worker finished first. A shard
whose worker died (killed, out of memory, node lost) goes to a fresh actor.

Why an actor pool and not Ray Data ``map_batches`` with an actor class: both keep
sessions warm, but here the unit of work is a range of grid indices whose result
is a small array of sums that must be folded in a fixed order; a pool gives that
order, per-shard retries and back-pressure directly, without a dataset
materialising the grid or reordering its output. Ray is imported only here and
only when a pool is made: ``import corrkit`` never imports it.
"""

from __future__ import annotations

import heapq
import os
import uuid
from contextlib import contextmanager
from typing import Callable, Iterator

import numpy as np

from corrkit.errors import BundleError, CorrkitError, MissingExtraError
from corrkit._core.shards import ShardTask, shard_sums


def import_ray():
    """The ``ray`` module, or :class:`MissingExtraError` naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise MissingExtraError("ray", "ray") from None
    return ray


CONNECT_SECONDS = 10.0  # the most a --ray address may take to show it is a Ray cluster
# An HTTP/2 client's connection preface and an empty SETTINGS frame (RFC 9113 §3.4): both Ray's GCS
# (HOST:PORT) and its client server (ray://HOST:PORT) are gRPC servers, whose first frame back is SETTINGS.
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
_SETTINGS = 4


def check_reachable(address: str | None, timeout: float | None = None) -> None:
    """Fail within ``timeout`` seconds (default :data:`CONNECT_SECONDS`) on a ``HOST:PORT`` or ``ray://HOST:PORT``
    that is not a Ray cluster.

    Ray itself retries for minutes both where nobody listens and where something else
    does (a web server, a database); so the address must accept a connection and answer
    the HTTP/2 preface with a SETTINGS frame, as every gRPC server does, within ``timeout``.
    """
    import socket
    import time

    if address in (None, "local", "auto"):
        return
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    host = host.strip("[]")  # [IPv6]:port
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise CorrkitError(f"--ray {address!r} is not a Ray address: use local, auto, HOST:PORT or ray://HOST:PORT")
    hint = "start one there with `ray start --head`, or use --ray local"
    timeout = CONNECT_SECONDS if timeout is None else timeout
    deadline = time.monotonic() + timeout
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as sock:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            sock.sendall(_H2_PREFACE)
            head = b""
            while len(head) < 9:
                sock.settimeout(max(0.1, deadline - time.monotonic()))
                chunk = sock.recv(9 - len(head))
                if not chunk:
                    break
                head += chunk
    except socket.timeout:
        raise CorrkitError(f"the Ray cluster at {address!r} did not answer within {timeout:g} s; {hint}") from None
    except OSError as exc:
        raise CorrkitError(f"cannot reach the Ray cluster at {address!r} ({exc}); {hint}") from None
    if len(head) < 9 or head[3] != _SETTINGS:
        raise CorrkitError(f"{address!r} answers, but not as a Ray cluster (no gRPC server there); check the "
                           f"address and port, or {hint}")


@contextmanager
def quiet_ray(quiet: bool = True):
    """Keep Ray's log lines (its C++ core writes to file descriptor 2) off the terminal while Ray starts or stops.

    ``RAY_BACKEND_LOG_LEVEL`` also reaches the processes Ray starts meanwhile. The
    lines go to a temporary file, dropped afterwards; with ``quiet=False`` (``--verbose``)
    nothing changes.
    """
    import sys
    import tempfile

    if not quiet:
        yield
        return
    env_before = os.environ.get("RAY_BACKEND_LOG_LEVEL")
    os.environ["RAY_BACKEND_LOG_LEVEL"] = "error" if env_before is None else env_before
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
    finally:
        os.close(saved)
        if env_before is None:
            os.environ.pop("RAY_BACKEND_LOG_LEVEL", None)


class ShardWorker:
    """Body of one Ray actor: one :class:`corrkit._core.engine.Engine`, built once, serving shards.

    Parameters
    ----------
    model : bytes
        The driver's final graph (``Engine.model``, rewrites and quantisation applied),
        so every worker runs the same graph as the driver.
    device : {"cpu", "cuda"}
    batch_size : int
        The driver's batch size: probabilities can depend on batch composition in
        the last bits, so every worker cuts shards into the same batches.
    threads : int
        onnxruntime intra-op threads (and Numba threads) of this actor.
    check_probabilities, attributes : bool
        Check the rows, as the driver's engine does (probabilities, or attribute score pairs).
    """

    def __init__(self, model: bytes, device: str, batch_size: int, threads: int, check_probabilities: bool,
                 attributes: bool = False):
        import numba
        import onnx

        from corrkit._core.engine import Engine

        numba.set_num_threads(max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS)))
        self.engine = Engine(
            onnx.load_model_from_string(model),
            device=device,
            batch_size=batch_size,
            threads=threads,
            rewrite=False,
            check_probabilities=check_probabilities,
            attributes=attributes,
        )

    def info(self) -> dict:
        import socket

        return {"provider": self.engine.provider, "pid": os.getpid(), "host": socket.gethostname()}

    def run_shard(self, task: ShardTask, p0: int, p1: int) -> dict[str, np.ndarray]:
        # Arrays from the object store are read-only; writable copies keep one Numba signature.
        task = ShardTask(task.grid, np.require(task.base, requirements="W"), np.require(task.labels, requirements="W"))
        return shard_sums(self.engine, task, p0, p1)


class RayPool:
    """Warm :class:`ShardWorker` actors on a Ray cluster; reusable across runs on the same model.

    Parameters
    ----------
    engine : Engine
        The driver's engine; its final graph and probability check are shipped to the workers.
    address : str, optional
        ``None``: the Ray instance this process already joined, else ``ray.init()``
        (``RAY_ADDRESS`` if set, otherwise a new local instance sized to the machine);
        ``"local"``: a new local instance; anything else (``"auto"``, ``"HOST:6379"``,
        ``"ray://HOST:10001"``): that cluster.
    device : {"auto", "cpu", "cuda"}
        Of the workers: ``auto`` is ``cuda`` when the cluster has GPUs.
    batch_size : int, optional
        Rows per session call on every worker (default: from the worker device's memory budget).
    threads : int, optional
        onnxruntime and Numba threads per actor, which reserves as many Ray CPUs (default 1;
        a GPU actor uses them for grid points and the kernel).
    workers : int, optional
        Actors (default: the cluster's GPUs, or its CPUs // threads).
    in_flight : int
        Shards queued per actor, so an actor never waits for the driver.
    max_attempts : int
        Workers a shard may die on before the run gives up.
    verbose : bool
        Show Ray's own log lines, and stream the workers' logs to this process (``--verbose``).
    """

    def __init__(
        self,
        engine,
        *,
        address: str | None = None,
        device: str = "auto",
        batch_size: int | None = None,
        threads: int | None = None,
        workers: int | None = None,
        in_flight: int = 2,
        max_attempts: int = 3,
        verbose: bool = False,
    ):
        from corrkit._core.engine import default_batch_size

        ray = self._ray = import_ray()
        self._started = not ray.is_initialized()
        self._verbose = bool(verbose)
        if self._started:
            check_reachable(address)
            new_local = address == "local" or (address is None and not os.environ.get("RAY_ADDRESS"))
            kw = {"include_dashboard": False} if new_local else {}
            try:
                with quiet_ray(not verbose):
                    ray.init(address=address, log_to_driver=verbose, logging_level="INFO" if verbose else "ERROR",
                             **kw)
            except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
                raise CorrkitError(
                    f"cannot reach the Ray cluster at {address!r}: {str(exc).strip().splitlines()[0][:300]}; "
                    "start one with `ray start --head`, or use --ray local"
                    + ("" if verbose else " (--verbose shows Ray's own log)")
                ) from None
        self.address = address or "local"
        resources = ray.cluster_resources()
        gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 1))
        if device == "cuda" and gpus < 1:
            self.close()
            raise BundleError("--device cuda: the Ray cluster has no GPUs; use --device cpu or auto")
        self.device = "cuda" if device == "cuda" or (device == "auto" and gpus >= 1) else "cpu"
        self.threads = int(threads or 1)
        self.n_workers = int(workers or (gpus if self.device == "cuda" else max(1, cpus // self.threads)))
        self.batch_size = int(batch_size or default_batch_size(engine.model, self.device))
        self.in_flight, self.max_attempts = int(in_flight), int(max_attempts)
        # A GPU actor still needs CPU for grid points and the Numba kernel: ``threads`` CPUs each.
        opts = {"num_gpus": 1, "num_cpus": self.threads} if self.device == "cuda" else {"num_cpus": self.threads}
        self._actor = ray.remote(max_restarts=0, **opts)(ShardWorker)
        self._model = ray.put(engine.model.SerializeToString())
        self._check = bool(engine.check_probabilities)
        self._attributes = bool(engine.attributes)
        self.run_id, self._spawned = uuid.uuid4().hex[:8], 0
        self.workers = [self._spawn() for _ in range(self.n_workers)]
        self.retried_shards = self.replaced_workers = 0

    def _spawn(self):
        # Named, so a dashboard (or a test) can find and kill a worker: corrkit-<run>-<n>.
        name = f"corrkit-{self.run_id}-{self._spawned}"
        self._spawned += 1
        return self._actor.options(name=name).remote(
            self._model, self.device, self.batch_size, self.threads, self._check, self._attributes
        )

    @property
    def provider(self) -> str:
        """The workers' onnxruntime provider (asked of the first live one)."""
        for actor in self.workers:
            try:
                return self._ray.get(actor.info.remote())["provider"]
            except self._ray.exceptions.RayActorError:
                continue
        return ""

    def describe(self) -> dict:
        return {
            "name": "ray",
            "address": self.address,
            "workers": self.n_workers,
            "device": self.device,
            "threads_per_worker": self.threads,
            "retried_shards": self.retried_shards,
            "replaced_workers": self.replaced_workers,
        }

    def run(
        self,
        task: ShardTask,
        shards: list[tuple[int, int]],
        first: int = 0,
        progress: Callable[[int, int], None] | None = None,
    ) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """Yield ``(shard index, sums)`` for shards ``first ..`` in ascending order, computed by the actors.

        ``progress(done, total)`` counts finished shards (in any order).
        """
        ray = self._ray
        self.retried_shards = self.replaced_workers = 0
        task_ref = ray.put(task)
        todo = list(range(first, len(shards)))  # a heap: retried shards go first
        window = 2 * self.in_flight * self.n_workers  # results buffered ahead of the fold stay bounded
        flying: dict = {}  # ObjectRef -> (shard, slot, actor)
        load = [0] * self.n_workers
        ready: dict[int, dict] = {}
        attempts: dict[int, int] = {}
        nxt, done = first, first

        def submit():
            while todo and todo[0] < nxt + window:
                slot = min(range(self.n_workers), key=load.__getitem__)
                if load[slot] >= self.in_flight:
                    return
                s = heapq.heappop(todo)
                actor = self.workers[slot]
                flying[actor.run_shard.remote(task_ref, *shards[s])] = (s, slot, actor)
                load[slot] += 1

        submit()
        while nxt < len(shards):
            (ref,), _ = ray.wait(list(flying), num_returns=1)
            s, slot, actor = flying.pop(ref)
            current = self.workers[slot] is actor
            if current:
                load[slot] -= 1
            try:
                ready[s] = ray.get(ref)
            except ray.exceptions.RayActorError as exc:  # the worker died: its shards go to a fresh one
                attempts[s] = attempts.get(s, 0) + 1
                if attempts[s] >= self.max_attempts:
                    raise CorrkitError(
                        f"shard {s} (grid points {shards[s][0]}..{shards[s][1] - 1}) was lost with "
                        f"{attempts[s]} workers; last: {str(exc).splitlines()[0][:300]}"
                    ) from None
                if current:
                    self.workers[slot], load[slot] = self._spawn(), 0
                    self.replaced_workers += 1
                    ray.kill(actor, no_restart=True)
                heapq.heappush(todo, s)
                self.retried_shards += 1
            except ray.exceptions.RayTaskError as exc:  # the shard itself failed: a CorrkitError is the user's
                if isinstance(exc.cause, CorrkitError):
                    raise exc.cause from None
                raise
            else:
                done += 1
                if progress is not None:
                    progress(done, len(shards))
            while nxt in ready:
                yield nxt, ready.pop(nxt)
                nxt += 1
            submit()

    def close(self) -> None:
        """Kill the actors, and shut Ray down if this pool started it."""
        for actor in getattr(self, "workers", []):
            self._ray.kill(actor, no_restart=True)
        self.workers = []
        if self._started and self._ray.is_initialized():
            with quiet_ray(not getattr(self, "_verbose", False)):
                self._ray.shutdown()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
