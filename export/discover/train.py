"""One training of SPEC §8 (``learned``, ``random`` or ``coordinate`` directions), checkpointed, and its RCA.

Resumable: the training writes a checkpoint atomically every
``checkpoint_every`` steps, and every draw comes from a seed of (seed, method,
step), so a killed training restarted with the same settings ends with the same
parameters as an uninterrupted one (same thread count, same CPU).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from corrkit._core.linalg import random_orthogonal
from corrkit.errors import CorrkitError
from corrkit.export.discover.generator import image_shape, prepare_generator
from corrkit.export.discover.modules import (DirectionMatrix, Reconstructor, image_pair, reconstruction_loss,
                                             reconstructor, sample_batch, seed_of, step_generator)
from corrkit.export.discover.settings import AUTHORS_INIT_SCALE, METHODS, RESUME_KEYS, DiscoverSettings
from corrkit.export.weights import load_state, save_state


@torch.no_grad()
def rca(G, A: DirectionMatrix, R, latent_dim: int, k: int, s: DiscoverSettings) -> tuple[float, float]:
    """Reconstructor classification accuracy on ``s.eval_samples`` fresh pairs, and the mean ``|eps_hat - eps|``.

    The pairs come from a seed of their own (the same for every method), never one
    used in training.
    """
    if hasattr(R, "eval"):
        R.eval()
    gen = torch.Generator().manual_seed(seed_of(s.seed, 9_999, 1))
    a = A.matrix()
    hits, err, done = 0, 0.0, 0
    while done < s.eval_samples:
        b = min(s.eval_batch, s.eval_samples - done)
        z, idx, eps = sample_batch(gen, b, latent_dim, k, s.eps_max, s.eps_min)
        x1, x2 = image_pair(G, z, A(idx, eps, a), False, s)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=s.bf16):
            logits, eps_hat = R(x1, x2)
        hits += int((logits.float().argmax(1) == idx).sum())
        err += float((eps_hat.float() - eps).abs().sum())
        done += b
    return hits / done, err / done


def stderr_log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, file=sys.stderr, flush=True)


def _initial(method: str, n: int, k: int, shape: tuple[int, int, int],
             s: DiscoverSettings) -> tuple[DirectionMatrix, Reconstructor]:
    gen = torch.Generator().manual_seed(seed_of(s.seed, METHODS.index(method), 10**9))
    if method == "learned":
        A = DirectionMatrix(n, k, s.kind, generator=gen, init_scale=s.init_scale)
    elif method == "random":
        A = DirectionMatrix(n, k, "fixed", matrix=random_orthogonal(n, s.seed).T[:, :k])
    elif method == "coordinate":
        A = DirectionMatrix(n, k, "fixed", matrix=np.eye(n, dtype=np.float32)[:, :k])
    else:
        raise CorrkitError(f"method {method!r} is not one of {', '.join(METHODS)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed_of(s.seed, METHODS.index(method), 10**9 + 1))
        R = reconstructor(k, shape)
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
                 log=stderr_log, progress=None) -> Trained:
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
    A, R = _initial(method, latent_dim, k, image_shape(G, latent_dim), s)
    learn = method == "learned"
    params = list(R.parameters()) + (list(A.parameters()) if learn else [])
    opt = torch.optim.Adam(params, lr=s.lr, fused=True)  # one kernel per step, not ~10 ops per tensor
    key = {name: getattr(s, name) for name in RESUME_KEYS}
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
            save_state({"A": A.state_dict(), "R": R.state_dict(), "opt": opt.state_dict(), "step": step,
                         "wall": wall, "cpu": cpu, "history": history, "settings": key, "method": method,
                         **(extra or {})}, checkpoint)

    run, count, cpu_log = np.zeros(4), 0, cpu
    t_log = time.perf_counter()
    for step in range(start, s.steps):
        t0, c0 = time.perf_counter(), time.process_time()
        R.train()
        z, idx, eps = sample_batch(step_generator(s.seed, method, step), s.batch_size, latent_dim, k, s.eps_max,
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
