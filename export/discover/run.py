"""A discovery run (SPEC §8): the learned, random and coordinate trainings and their result files."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import nn

from corrkit.export.discover.generator import image_channels, load_generator, prepare_generator
from corrkit.export.discover.pool import train_in_processes
from corrkit.export.discover.result import DiscoverResult
from corrkit.export.discover.settings import METHODS, DiscoverSettings
from corrkit.export.discover.train import stderr_log, train_method


def discover(G: nn.Module, latent_dim: int, settings: DiscoverSettings | None = None,
             out: str | Path | None = None, *, log=stderr_log, progress=None) -> DiscoverResult:
    """Learned directions and the RCA of learned, random and coordinate directions (SPEC §8).

    Parameters
    ----------
    G : torch module ``z float32 [B, N] -> image [B, C, H, W]`` (grey or colour, any size)
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
    image_channels(G, latent_dim)
    out = Path(out) if out is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    ckpt = {m: out / f"checkpoint_{m}.pt" if out is not None else None for m in METHODS}
    if min(s.workers, len(METHODS)) > 1:
        trained = train_in_processes(given, latent_dim, s, ckpt, progress)
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


def discover_bundle(bundle=None, settings: DiscoverSettings | None = None, out: str | Path | None = None, *,
                    torch_generator: str | None = None, generator_weights: str | Path | None = None,
                    log=stderr_log, progress=None) -> DiscoverResult:
    """:func:`discover` on a bundle's generator (default: the built-in bundle); see :func:`load_generator`."""
    from corrkit._core.bundle import as_bundle

    bundle = as_bundle(bundle)
    G = load_generator(bundle, torch_generator, generator_weights)
    return discover(G, bundle.latent_dim, settings, out, log=log, progress=progress)
