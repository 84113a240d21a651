"""The built-in attribute bundle: the built-in generator with a multi-label classifier (SPEC §11, issue 18).

Four attributes of a Fashion-MNIST image, each derived from its class label or its pixels
(**choice**: definitions a reader can check, not human annotations):

- ``footwear``: the class is Sandal, Sneaker or Ankle boot;
- ``upper body``: T-shirt/top, Pullover, Coat or Shirt;
- ``dark``: the mean intensity of the garment's pixels (those above 25 of 255) is below the
  training set's median, :data:`TONE_MEDIAN`: a darker garment, whatever its class;
- ``large``: the share of garment pixels is above the training median, :data:`AREA_MEDIAN`.

The classifier is the built-in CNN (:class:`corrkit.export.models.Classifier`) with four outputs,
each an attribute's logit, trained with binary cross-entropy (:func:`corrkit.export.train.train_classifier`,
seeded, resumable). The bundle's generator is the built-in DCGAN's ``generator.onnx``, unchanged,
and its card declares ``classifier_output: sigmoid``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from corrkit._core import io
from corrkit._core.bundle import BUILTIN
from corrkit._core.data import file_hashes, load_split

ATTRIBUTES = ("footwear", "upper body", "dark", "large")
FOOTWEAR, UPPER_BODY = (5, 7, 9), (0, 2, 4, 6)
INK = 25  # a pixel above this (of 255) belongs to the garment
# Medians over the 60,000 training images (np.median of the statistics below), fixed so targets are a function
# of the image alone.
AREA_MEDIAN = 0.4604591836734694
TONE_MEDIAN = 165.68281261432648
OUT = Path("build/bundle_attributes")  # `out=BUILTIN_ATTRIBUTES` refreshes the shipped one


def targets(split) -> np.ndarray:
    """Float 0/1 ``[n, 4]``: each image's attributes, in :data:`ATTRIBUTES` order."""
    x = split.images.astype(np.float32)
    ink = x > INK
    area = ink.mean(axis=(1, 2))
    tone = (x * ink).sum(axis=(1, 2)) / np.maximum(ink.sum(axis=(1, 2)), 1)
    return np.stack([np.isin(split.labels, FOOTWEAR), np.isin(split.labels, UPPER_BODY), tone < TONE_MEDIAN,
                     area > AREA_MEDIAN], axis=1).astype(np.float32)


def build(work: str | Path = "build/attributes", out: str | Path = OUT, data_dir=None, epochs: int = 4) -> dict:
    """Train the attribute classifier, export it to ONNX (validated against torch) and write the bundle."""
    from corrkit._core.bundle import create_bundle
    from corrkit.export.onnx_export import CLASSIFIER_CONFIG, export
    from corrkit.export.train import ClassifierSettings, train_classifier

    work, out = Path(work), Path(out)
    model, record = train_classifier(work, ClassifierSettings(epochs=epochs), data_dir, attributes=targets)
    onnx_path = work / "attributes.onnx"
    with torch.no_grad():
        validation = export(model.eval(), onnx_path, CLASSIFIER_CONFIG)
    test = targets(load_split("test", data_dir))
    provenance = {
        "dataset": "Fashion-MNIST (Debian dataset-fashion-mnist)", "dataset_sha256": file_hashes(data_dir),
        "torch": torch.__version__, "training": record, "export_validation_max_abs_diff": validation,
        "generator": "the built-in DCGAN bundle's generator.onnx, unchanged",
        "attributes": {"footwear": f"class in {FOOTWEAR}", "upper body": f"class in {UPPER_BODY}",
                       "dark": f"mean garment pixel (> {INK}) below {TONE_MEDIAN:.2f}",
                       "large": f"garment pixel share above {AREA_MEDIAN:.4f}"},
        "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    b = create_bundle(BUILTIN / "generator.onnx", onnx_path, out, classes=list(ATTRIBUTES),
                      classifier_output="sigmoid", force=True, provenance=provenance)
    card = json.loads((out / "bundle.json").read_text())
    card["name"] = "corrkit built-in Fashion-MNIST attribute bundle"
    card["metrics"] = {"test_accuracy": {a: round(float(v), 4) for a, v in zip(ATTRIBUTES, record["test_accuracy"])},
                       "test_prevalence": {a: round(float(v), 4) for a, v in zip(ATTRIBUTES, test.mean(0))}}
    io.write_json(out / "bundle.json", card)
    (out / "MODEL_CARD.md").write_text(model_card(card))
    return {"bundle": str(b.path), **card}


def model_card(card: dict) -> str:
    m, p = card["metrics"], card["provenance"]
    t = p["training"]
    rows = "\n".join(f"| {a} | {p['attributes'][a]} | {m['test_prevalence'][a]:.3f} | {m['test_accuracy'][a]:.4f} |"
                     for a in ATTRIBUTES)
    return f"""# Model card: {card['name']}

Generator: the built-in DCGAN bundle's `generator.onnx`, unchanged (see `corrkit/bundle/MODEL_CARD.md`).
Classifier: the built-in CNN with {len(ATTRIBUTES)} outputs, each the logit of an independent attribute
(`classifier_output: sigmoid`, SPEC §11), trained with binary cross-entropy by
`corrkit export attributes` (corrkit/export/attributes.py, corrkit/export/train.py) on Fashion-MNIST from
Debian's `dataset-fashion-mnist`. The attributes are derived from each image's class label or pixels, not
annotated by people:

| attribute | definition | share of test images | test accuracy (logit > 0) |
|---|---|---|---|
{rows}

## Data
{chr(10).join(f"- `{k}` sha256 `{v}`" for k, v in p['dataset_sha256'].items())}

## Training
- Settings: {json.dumps(t['settings'])}; {t['wall_seconds']:.0f} s, torch {p['torch']}.
- ONNX export validation, max |onnx - torch|: {json.dumps(p['export_validation_max_abs_diff'])}.

## Limits
- `dark` and `large` are thresholds of pixel statistics at the training medians: images near a
  median are labelled by a hair's breadth, so their scores are uncertain by construction.
"""

