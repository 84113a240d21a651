"""Controlling sets by gradient optimisation on the torch modules (Li et al., ICPR 2020, Eq. 5-8; SPEC §3).

The same objective, code sets, mini-batches, ``xi`` draws and descent loop
(:func:`corrkit.methods.optimize.descend`) as the torch-free :func:`corrkit.methods.optimize.optimize`;
only the gradient differs: exact (autograd) here, estimated from antithetic
evaluations there. The class-conditional sets are
drawn on the bundle's ONNX engine with :func:`corrkit._core.codesets.class_sets`, so they
are the very codes ``corrkit apcr`` analyses, and the torch modules are checked
against the ONNX models on those codes before anything is optimised.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from corrkit.errors import BundleError
from corrkit.export import weights as _weights
from corrkit._core.execution import Execution
from corrkit.methods.objective import OptimizeSettings
from corrkit.methods.optimize import WEIGHTS_FILE, OptimizedWeights, code_sets, descend


class FusedTorch(torch.nn.Module):
    """``z [B, N] -> S(z) [B, C]``: generator, range map, classifier, softmax (logits classifiers)."""

    def __init__(self, generator: torch.nn.Module, classifier: torch.nn.Module, gen_range=(-1.0, 1.0),
                 cls_range=(-1.0, 1.0), logits: bool = True):
        super().__init__()
        self.generator, self.classifier, self.logits = generator.eval(), classifier.eval(), logits
        (lo_g, hi_g), (lo_q, hi_q) = gen_range, cls_range
        self.scale = (hi_q - lo_q) / (hi_g - lo_g)
        self.shift = lo_q - lo_g * self.scale

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = self.classifier(self.generator(z) * self.scale + self.shift)
        return torch.softmax(out, dim=1) if self.logits else out


def load_modules(bundle, weights: str | Path | None = None) -> torch.nn.Module:
    """``z -> S(z)`` as torch modules.

    The paper's Generator/Classifier from ``weights/{generator,classifier}.pt`` (state
    dicts) when ``weights`` is given or the bundle is the built-in one (its shipped
    weights); for any other bundle, its own ONNX models converted to torch and checked
    against onnxruntime (:mod:`corrkit.export.convert`; a fused model as one graph).
    """
    from corrkit.export import convert

    if weights is None and not convert.is_builtin(bundle):
        if bundle.generator is None:
            return convert.torch_fused(bundle)
        return FusedTorch(convert.torch_generator(bundle), convert.torch_classifier(bundle),
                          bundle.generator_output_range, bundle.classifier_input_range,
                          bundle.classifier_output == "logits")
    g, q = _weights.load_modules(weights, bundle.latent_dim, bundle.n_classes,
                                 hint="give --weights DIR holding generator.pt and classifier.pt")
    return FusedTorch(g, q, bundle.generator_output_range, bundle.classifier_input_range,
                      bundle.classifier_output == "logits")


def check_matches(model: FusedTorch, latents: np.ndarray, probs: np.ndarray) -> float:
    """Max ``|S_torch - S_onnx|`` on the given codes (:func:`corrkit.export.weights.check_matches`)."""
    with torch.no_grad():
        got = model(torch.from_numpy(np.ascontiguousarray(latents))).numpy()
    return _weights.check_matches(got, probs, "probabilities S(z)", "give --weights DIR with the "
                                  "generator.pt/classifier.pt this bundle was exported from, or no --weights to "
                                  "convert the bundle's own ONNX models")


def loss_and_grad(model: torch.nn.Module, z: np.ndarray, s0: np.ndarray, j: int, scale: np.ndarray,
                  v: np.ndarray, lam: float) -> tuple[np.ndarray, float]:
    """The SPEC §3 loss (mean over codes) at ``v`` and its autograd gradient ``dL/dv``.

    Parameters
    ----------
    model : callable float32 [R, N] -> probabilities [R, C] (torch)
    z : float32 [B, N]; s0 : float [B] (``S_j(z)``); scale : float32 [B, N] (see
        :func:`corrkit.methods.optimize.intervention_scale`); v : float [N]

    Returns
    -------
    grad : float64 [N]; loss : float
    """
    vt = torch.tensor(np.asarray(v, np.float64), dtype=torch.float64, requires_grad=True)
    w = torch.tanh(vt)
    zt, at = torch.from_numpy(np.ascontiguousarray(z)), torch.from_numpy(np.ascontiguousarray(scale))
    shift = at * w.float()
    s = model(torch.cat([zt + shift, zt - shift]))[:, j].double()
    b = len(z)
    base = torch.from_numpy(np.asarray(s0, np.float64))
    data = -torch.maximum((s[:b] - base).abs(), (s[b:] - base).abs())
    loss = data.mean() + lam * torch.linalg.vector_norm(w)
    loss.backward()
    return vt.grad.numpy().copy(), float(loss.detach())


def optimize_gradient(bundle=None, settings: OptimizeSettings | None = None, *, weights: str | Path | None = None,
                      model: torch.nn.Module | None = None, engine=None, classes: list[int] | None = None,
                      progress=None, **overrides) -> OptimizedWeights:
    """Gradient ``w*`` for every class (SPEC §3), plain gradient descent on ``v``.

    Parameters
    ----------
    bundle : Bundle, path or None
        Where the code sets are drawn (``None``: the built-in bundle).
    settings : OptimizeSettings, optional; ``overrides`` replace single fields.
    weights : path, optional
        Folder with the paper's torch state dicts (default: the built-in bundle's for the
        built-in bundle, the bundle's ONNX models converted to torch for any other).
    model : torch module, optional
        ``z -> S(z)`` to use instead of loading ``weights`` (still checked against the bundle).

    Returns
    -------
    OptimizedWeights
    """
    from corrkit._core.bundle import as_bundle

    settings = OptimizeSettings(**{**asdict(settings or OptimizeSettings()), **overrides, "method": "gradient"}).check()
    bundle = as_bundle(bundle)
    t0 = time.perf_counter()
    report = progress or (lambda *a: None)
    sets, engine = code_sets(bundle, settings, engine, Execution(device="cpu"),
                             lambda d, t: report("codes", d, t))
    model = model if model is not None else load_modules(bundle, weights)
    max_diff = check_matches(model, sets.latents[:64], sets.base[:64])

    def make_grad(j: int):
        return lambda z, s0, scale, v, codes: loss_and_grad(model, z, s0, j, scale, v, settings.lam)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a few dozen codes per step: more threads mostly add synchronisation
    try:
        w, w_last, losses, took = descend(sets, settings, bundle.n_classes, bundle.latent_dim, make_grad, classes,
                                          report)
    finally:
        torch.set_num_threads(threads)
    meta = dict(settings.to_dict(), device="cpu", provider="torch " + torch.__version__,
                torch_vs_onnx_max_abs_diff=max_diff, class_seconds=took)
    return OptimizedWeights(w=w, loss=losses, classes=list(bundle.classes), counts=sets.counts, settings=meta,
                            seconds=time.perf_counter() - t0, w_last=w_last)


def optimize_bundle(bundle=None, out: str | Path | None = None, **kwargs) -> tuple[OptimizedWeights, Path]:
    """:func:`optimize_gradient` and store ``w*`` as ``optimized_weights.npz`` in the bundle folder (or ``out``)."""
    from corrkit._core.bundle import as_bundle

    bundle = as_bundle(bundle)
    if out is None:
        if bundle.path is None:
            raise BundleError("a fused model has no bundle folder to store optimized_weights.npz in; give --out")
        out = Path(bundle.path) / WEIGHTS_FILE
    result = optimize_gradient(bundle, **kwargs)
    result.save(out)
    return result, Path(out)
