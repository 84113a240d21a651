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

The package: :mod:`.settings` (torch-free), :mod:`.modules` (``A``, ``R``, the
loss, the seeded draws), :mod:`.generator` (the bundle's generator, frozen and
folded), :mod:`.train` (one checkpointed training and its RCA), :mod:`.pool` (the
trainings in worker processes), :mod:`.result` (result files) and :mod:`.run`
(:func:`discover`, :func:`discover_bundle`). The settings are imported here and
everything else on first use, so that the CLI reads :class:`DiscoverSettings`
without importing torch.
"""

from __future__ import annotations

import importlib

from corrkit.export.discover.settings import (AUTHORS_INIT_SCALE, DEFAULT_INIT_SCALE, DEFAULT_K, DEFAULT_STEPS, KINDS,
                                              METHODS, DiscoverSettings)

_WHERE = {
    "DirectionMatrix": "modules", "Reconstructor": "modules", "vb_loss": "modules", "sample_batch": "modules",
    "reconstruction_loss": "modules",
    "load_generator": "generator", "prepare_generator": "generator",
    "Trained": "train", "rca": "train", "train_method": "train",
    "DiscoverResult": "result", "rca_figure": "result",
    "discover": "run", "discover_bundle": "run",
}

__all__ = ["AUTHORS_INIT_SCALE", "DEFAULT_INIT_SCALE", "DEFAULT_K", "DEFAULT_STEPS", "KINDS", "METHODS",
           "DiscoverSettings", *_WHERE]


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
