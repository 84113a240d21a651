"""Attribute classifiers (``classifier_output: sigmoid``, SPEC §11).

Each of the classifier's ``A`` outputs is the logit of an independent attribute; corrkit applies
the sigmoid, ``p_a = σ(l_a)``. The APCR machinery sees ``2A`` concepts, one code set each:

- concept ``a`` (named after the attribute), ``Z_a^on``: codes with ``p_a >= tau``; its score is
  ``p_a``, so its APCR says how fast a direction *removes* the attribute;
- concept ``A + a`` (``not <name>``), ``Z_a^off``: codes with ``p_a <= 1 - tau``; its score is
  ``1 - p_a``, so its APCR says how fast a direction *adds* it.

So the fused graph ends in ``Concat(σ(l), 1 - σ(l))`` ``[B, 2A]`` and every command that reads
"class ``j``'s probability" reads concept ``j``'s score. Two things differ from softmax classes:
a code can be in several sets (it has several attributes), and a concept "flips" when its
score falls below 1/2 (the attribute turned off, or on), not when another column wins.
"""

from __future__ import annotations

import numpy as np

SIGMOID = "sigmoid"
FLIP_AT = 0.5  # a concept's score below this: the attribute's state changed


def concept_names(attributes: list[str]) -> list[str]:
    """``[a_0, ..., a_{A-1}, "not a_0", ...]``: the ``2A`` concepts of ``A`` attributes."""
    return [str(a) for a in attributes] + [f"not {a}" for a in attributes]


def is_attributes(bundle) -> bool:
    """Whether ``bundle`` scores attributes rather than softmax classes (``expand`` set its ``attributes``)."""
    return bool(getattr(bundle, "attributes", None))


def expand(bundle):
    """Turn a freshly built bundle whose classifier was declared ``sigmoid`` into its ``2A`` concepts, in place."""
    if bundle.classifier_output != SIGMOID:
        return bundle
    bundle.attributes = list(bundle.classes)
    bundle.classes = concept_names(bundle.attributes)
    bundle.n_classes = len(bundle.classes)
    return bundle


def flipped(scores: np.ndarray, j: int, attributes: bool) -> np.ndarray:
    """Whether each row of scores ``[..., C]`` has left concept ``j``: argmax elsewhere (softmax classes),
    or concept ``j``'s score below 1/2 (attributes). A row has reached concept ``j`` when it has not left it."""
    if attributes:
        return scores[..., j] < FLIP_AT
    return scores.argmax(-1) != j


def partner(j: int, n_concepts: int) -> int:
    """The opposite state of concept ``j`` (``a`` <-> ``not a``)."""
    half = n_concepts // 2
    return j + half if j < half else j - half


def sigmoid_head(nodes: list, inits: list, logits: str, out: str = "probs") -> int:
    """Append ``out = Concat(σ(logits), 1 - σ(logits))`` to a graph's ``nodes``/``inits``; returns 2 (columns per
    output of ``logits``)."""
    from onnx import helper, numpy_helper

    inits.append(numpy_helper.from_array(np.array(1.0, np.float32), "attributes/one"))
    nodes += [helper.make_node("Sigmoid", [logits], ["attributes/on"]),
              helper.make_node("Sub", ["attributes/one", "attributes/on"], ["attributes/off"]),
              helper.make_node("Concat", ["attributes/on", "attributes/off"], [out], axis=-1)]
    return 2


def check_scores(p: np.ndarray, tol: float) -> np.ndarray:
    """Rows that are not attribute scores: outside ``[0, 1]`` or an ``on``/``off`` pair not summing to 1."""
    half = p.shape[1] // 2
    return (p.min(axis=1) < -tol) | (p.max(axis=1) > 1 + tol) | (
        np.abs(p[:, :half] + p[:, half:] - 1).max(axis=1) > tol)


def settle_sigmoid(bundle, raw: np.ndarray) -> str:
    """Check a ``sigmoid`` declaration against the classifier's raw outputs ``[S, A]`` on prior samples, and turn
    the bundle into its ``2A`` concepts; returns ``"sigmoid"``.

    Outputs that all lie in ``[0, 1]`` are probabilities already (a sigmoid or softmax inside the model):
    a second sigmoid would squeeze every score into ``[0.5, 0.73]``, so that is refused.
    """
    from corrkit.errors import ModelOutputError

    if (raw >= 0).all() and (raw <= 1).all():
        raise ModelOutputError(f"the classifier outputs all lie in [0, 1] on {len(raw)} prior samples: they look like "
                               "probabilities already, but `sigmoid` declares attribute logits (corrkit applies the "
                               "sigmoid); export the logits, before the model's own sigmoid")
    bundle.classifier_output = SIGMOID
    expand(bundle)
    return SIGMOID
