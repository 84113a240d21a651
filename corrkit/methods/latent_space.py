"""Do classes occupy separate regions of the latent space? (paper Fig. 1; SPEC §6), torch-free.

Two views of the same question for a set of latent codes with class labels:
a t-SNE map coloured by class (the paper's picture), and a number, the
cross-validated accuracy of a linear probe (logistic regression) that predicts
the class from the code. The codes are either real test images inverted into
the latent space (``corrkit export invert``) or prior samples labelled by the
bundle's classifier (``argmax S(z)``); the second is the baseline of what the
generator itself does with its latent space.

scikit-learn (extra ``figures``) is imported inside the functions. The map is
drawn by :func:`corrkit.viz.plots.tsne_figure`, which ``corrkit latents`` hands in.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from corrkit._core import io
from corrkit._core.defaults import SEED
from corrkit.errors import CorrkitError, MissingExtraError

FOLDS = 5
MAX_FOLDS = 100
MAX_PRIOR = 100_000  # t-SNE of more points takes hours
MAX_SEED = 2**32 - 1  # scikit-learn's random_state takes no more


def _sklearn():
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise MissingExtraError("scikit-learn", "figures") from None


def check_codes(codes, labels) -> tuple[np.ndarray, np.ndarray]:
    """Validate codes float ``[M, N]`` and integer labels ``[M]``; returns float64 codes, int64 labels."""
    codes, labels = np.asarray(codes), np.asarray(labels)
    if codes.ndim != 2 or codes.shape[0] < 2:
        raise CorrkitError(f"codes have shape {list(codes.shape)}; expected [M, N] with M >= 2")
    if labels.shape != (codes.shape[0],):
        raise CorrkitError(f"labels have shape {list(labels.shape)}; expected [{codes.shape[0]}] (one per code)")
    if not np.issubdtype(codes.dtype, np.floating) or not np.isfinite(codes).all():
        raise CorrkitError("codes must be finite floating-point numbers")
    if not (np.issubdtype(labels.dtype, np.integer) or np.array_equal(labels, np.round(labels))):
        raise CorrkitError("labels must be whole class numbers")
    return codes.astype(np.float64), labels.astype(np.int64)


def probe_accuracy(codes, labels, *, folds: int = FOLDS, seed: int = SEED) -> dict:
    """Cross-validated accuracy of a linear probe predicting the class from the code.

    Parameters
    ----------
    codes : float [M, N]
    labels : int [M]
    folds : int
        Stratified folds (shuffled with ``seed``); lowered to the smallest class size when needed.

    Returns
    -------
    dict
        ``accuracy`` (mean over folds), ``std``, ``folds``, and ``chance`` (share of
        the most common class: what a probe that ignores the code reaches).
    """
    _sklearn()
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    codes, labels = check_codes(codes, labels)
    counts = np.bincount(labels - labels.min())
    counts = counts[counts > 0]
    if len(counts) < 2:
        raise CorrkitError("the probe needs codes of at least two classes")
    k = int(min(folds, counts.min()))
    if k < 2:
        raise CorrkitError(f"a class has only {counts.min()} code(s); the probe needs two per class at least")
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    scores = cross_val_score(probe, codes, labels, cv=StratifiedKFold(k, shuffle=True, random_state=seed))
    return {"accuracy": float(scores.mean()), "std": float(scores.std()), "folds": k,
            "chance": float(counts.max() / counts.sum()), "n": int(len(labels))}


def tsne(codes, *, seed: int = SEED, perplexity: float = 30.0) -> np.ndarray:
    """2-d t-SNE embedding of codes ``[M, N]`` (PCA initialisation, seeded): float ``[M, 2]``."""
    _sklearn()
    from sklearn.manifold import TSNE

    codes = np.asarray(codes, dtype=np.float64)
    perplexity = float(min(perplexity, max(2.0, (len(codes) - 1) / 3)))
    return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(codes)


def prior_codes(bundle, n: int, *, seed: int = SEED, engine=None) -> tuple[np.ndarray, np.ndarray]:
    """``n`` prior samples ``z ~ N(0, I)`` (seeded) and their classifier classes ``argmax S(z)``.

    An attribute classifier (SPEC §11) gives a code several attributes, not one class: refused.
    """
    from corrkit._core.attributes import is_attributes
    from corrkit._core.engine import Engine

    if is_attributes(bundle):
        raise CorrkitError("`corrkit latents` labels each prior code with its one class, but this classifier scores "
                           "independent attributes (--output sigmoid); compare with no prior samples (--n-prior 0)")

    engine = engine or Engine(bundle, device="cpu")
    z = engine.draw(np.random.default_rng(seed), int(n))
    return z, engine.probabilities(z).argmax(1).astype(np.int64)


def latent_space(codes, labels, bundle=None, *, out: str | Path | None = None, n_prior: int | None = None,
                 seed: int = SEED, folds: int = FOLDS, classes=None, what: str = "codes of real images",
                 draw=None, progress=None) -> dict:
    """t-SNE map and linear-probe accuracy of labelled codes and of classifier-labelled prior samples.

    Parameters
    ----------
    codes : float [M, N]; labels : int [M]
        E.g. ``codes.npy``/``labels.npy`` from ``corrkit export invert``.
    bundle : Bundle, path or None
        Its classifier labels the prior samples (``None``: the built-in bundle).
    out : folder, optional
        Receives ``latents.json`` and, with ``draw``, ``tsne.png``.
    n_prior : int, optional
        Prior samples (default: as many as codes); 0 skips them.
    what : str
        What the codes are, for the figure.
    draw : callable, optional
        ``draw(panels, classes, out=path)`` draws the t-SNE maps
        (:func:`corrkit.viz.plots.tsne_figure`, what ``corrkit latents`` passes); the
        maps are only computed when they are drawn.

    Returns
    -------
    dict
        ``codes`` and ``prior`` probe results (see :func:`probe_accuracy`), the
        probe on shuffled labels (``codes_shuffled_labels``, a control that must
        stay near chance), the class shares of the prior samples, and seconds.
    """
    from corrkit._core.bundle import as_bundle
    from corrkit._core.grid import check_whole

    check_whole(folds, "--folds", 2, MAX_FOLDS)
    check_whole(seed, "--seed", 0, MAX_SEED)
    if n_prior is not None:
        check_whole(n_prior, "--n-prior", 0, MAX_PRIOR)
    t0 = time.perf_counter()
    report = progress or (lambda *a: None)
    codes, labels = check_codes(codes, labels)
    bundle = as_bundle(bundle)
    if codes.shape[1] != bundle.latent_dim:
        raise CorrkitError(f"codes have {codes.shape[1]} dims, the bundle's latent space has {bundle.latent_dim}")
    classes = list(classes or bundle.classes)
    if labels.min() < 0 or labels.max() >= len(classes):
        raise CorrkitError(f"labels go from {labels.min()} to {labels.max()}; the bundle has {len(classes)} classes")
    n_prior = len(codes) if n_prior is None else int(n_prior)
    result = {"what": what, "n_codes": int(len(codes)), "classes": classes, "seed": int(seed), "folds": int(folds),
              "probe": "StandardScaler + LogisticRegression, stratified k-fold"}
    report("probe", 0, 4)
    result["codes"] = probe_accuracy(codes, labels, folds=folds, seed=seed)
    shuffled = np.random.default_rng(seed).permutation(labels)
    result["codes_shuffled_labels"] = probe_accuracy(codes, shuffled, folds=folds, seed=seed)
    drawn = out is not None and draw is not None
    panels = {}
    report("t-SNE", 1, 4)
    if drawn:
        panels[f"{what}, by label (linear probe {result['codes']['accuracy']:.2f})"] = (tsne(codes, seed=seed),
                                                                                         labels)
    if n_prior > 0:
        z, y = prior_codes(bundle, n_prior, seed=seed)
        result["prior"] = probe_accuracy(z, y, folds=folds, seed=seed)
        result["prior_class_shares"] = (np.bincount(y, minlength=len(classes)) / len(y)).round(4).tolist()
        report("t-SNE", 2, 4)
        if drawn:
            panels[f"prior samples, by classifier class (linear probe {result['prior']['accuracy']:.2f})"] = (
                tsne(z, seed=seed), y)
    report("figure", 3, 4)
    if drawn:
        draw(panels, classes, out=Path(out) / "tsne.png")
    result["seconds"] = round(time.perf_counter() - t0, 2)
    if out is not None:
        io.write_json(Path(out) / "latents.json", result)
    report("figure", 4, 4)
    return result
