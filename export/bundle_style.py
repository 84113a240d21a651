"""Build the built-in style bundle from trained weights: pick, measure, export, describe (SPEC §12).

Model selection as :mod:`corrkit.export.bundle`: of the generators saved after each
epoch, the one with the lowest Fréchet distance to 10,000 *training* images in the
classifier's penultimate feature space is shipped; the reported metrics are then
measured against the test set, beside the DCGAN bundle's. The classifier is the
built-in bundle's, unchanged (same weights, same ONNX file).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from corrkit._core import io
from corrkit._core.bundle import BUILTIN
from corrkit._core.data import CLASSES, file_hashes, load_split
from corrkit._core.metrics import frechet_distance
from corrkit.export.bundle import N_EVAL, _features, _git_version, evaluate, select_generator
from corrkit.export.models import Classifier
from corrkit.export.style_models import FASHION, Generator, export_onnx as _export
from corrkit.export.train import classifier_accuracy, to_unit
from corrkit.export.weights import DIR, load_into

BUILTIN_STYLE = BUILTIN.parent / "bundle_style"
OUT = Path("build/bundle_style")  # `out=BUILTIN_STYLE` refreshes the shipped one


def _validate(g: Generator, mapping: Path, synthesis: Path) -> dict:
    """max |onnx - torch| of both networks at batches 1, 7 and 64 (seeded inputs)."""
    import onnxruntime as ort

    out = {}
    for name, path, fn, shape in (("mapping", mapping, g.mapping, (FASHION.z_dim,)),
                                  ("synthesis", synthesis, g.synthesis, (FASHION.n_layers, FASHION.w_dim))):
        s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        out[name] = {}
        for n in (1, 7, 64):
            x = np.random.default_rng(n).standard_normal((n, *shape)).astype(np.float32)
            with torch.no_grad():
                want = fn(torch.from_numpy(x)).numpy()
            out[name][f"batch_{n}"] = float(np.abs(s.run(None, {s.get_inputs()[0].name: x})[0] - want).max())
    return out


def build(work: str | Path, out: str | Path = OUT, data_dir=None) -> dict:
    """Select the generator, export mapping and synthesis, write the bundle (card, model card) into ``out``."""
    from corrkit._core.style_bundle import create_style_bundle

    work, out = Path(work), Path(out)
    q = load_into(Classifier(), DIR / "classifier.pt").eval()
    train, test = load_split("train", data_dir), load_split("test", data_dir)
    x_train = to_unit(train.images[np.random.default_rng(0).permutation(60000)[:N_EVAL]])
    x_test = to_unit(test.images)
    best, selection = select_generator(sorted(work.glob("style_gen_epoch*.pt")),
                                       lambda p: load_into(Generator(FASHION), p), q, x_train,
                                       f"in {work}; run `corrkit export train-style` first", targets=False)
    g = load_into(Generator(FASHION), work / f"{best}.pt").eval()
    metrics = evaluate(g, q, x_test)
    f_train, _ = _features(q, to_unit(train.images[:N_EVAL]))
    metrics["frechet_distance_floor"] = frechet_distance(f_train, _features(q, x_test)[0])
    metrics["frechet_distance_dcgan"] = json.loads((BUILTIN / "bundle.json").read_text())["metrics"]["frechet_distance"]
    metrics["classifier_test_accuracy"] = classifier_accuracy(q, x_test, torch.from_numpy(test.labels.astype(np.int64)))
    metrics["n_samples"], metrics["eval_seed"] = N_EVAL, 12345
    raw = work / "style_onnx"
    raw.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        mp = _export(g.mapping, (torch.randn(2, FASHION.z_dim),), raw / "mapping.onnx", ["z"], ["w"])
        sp = _export(g.synthesis, (torch.randn(2, FASHION.n_layers, FASHION.w_dim),), raw / "synthesis.onnx",
                     ["ws"], ["image"])
    val = _validate(g, mp, sp)
    grec = json.loads((work / "style_gan.json").read_text()) if (work / "style_gan.json").exists() else {}
    provenance = {
        "dataset": "Fashion-MNIST (Debian dataset-fashion-mnist)", "dataset_sha256": file_hashes(data_dir),
        "code_version": _git_version(), "torch": torch.__version__, "gan_training": grec,
        "generator_selected": best, "generator_selection": selection, "export_validation_max_abs_diff": val,
        "classifier": "the built-in DCGAN bundle's classifier.onnx, unchanged",
        "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    np.save(raw / "w_avg.npy", g.mapping.w_avg.numpy().astype(np.float32))
    b = create_style_bundle(mp, sp, BUILTIN / "classifier.onnx", out, classes=list(CLASSES),
                            classifier_output="logits", w_avg=raw / "w_avg.npy", force=True,
                            provenance=provenance, metrics=metrics)
    weights = out / "weights"
    weights.mkdir(exist_ok=True)
    shutil.copyfile(work / f"{best}.pt", weights / "style_generator.pt")
    card = json.loads((out / "bundle.json").read_text())
    card["name"] = "corrkit built-in Fashion-MNIST style-based generator"
    io.write_json(out / "bundle.json", card)
    (out / "MODEL_CARD.md").write_text(model_card(card))
    return {"bundle": str(b.path), **card}


def model_card(card: dict) -> str:
    m, p, st = card["metrics"], card["provenance"], card["style"]
    shares = ", ".join(f"{c} {s:.3f}" for c, s in zip(card["classes"], m["class_shares"]))
    t = p.get("gan_training", {})
    return f"""# Model card: {card['name']}

Generator: a StyleGAN2-architecture mapping + synthesis pair (`corrkit/export/style_models.py`,
`FASHION`): mapping z ~ N(0, I_{st['z_dim']}) -> w ({st['w_dim']}-d, 4 equalised-lr layers, pixel norm);
synthesis ws [B, {st['n_layers']}, {st['w_dim']}] -> [1, 28, 28] in [-1, 1] from a learned 7x7 constant,
modulated and demodulated 3x3 convolutions at 7, 14 and 28 px, toRGB skips, fixed noise buffers
(the generator is a function of ws), a tanh at the end. `w_avg.npy`: the mean w of 4,096 seeded
prior samples, for `--truncation`. Classifier: the built-in DCGAN bundle's, unchanged.
Trained by `corrkit export train-style` (corrkit/export/train_style.py) on Fashion-MNIST from
Debian's `dataset-fashion-mnist`, exported by `corrkit export bundle-style`.

## Data
{chr(10).join(f"- `{k}` sha256 `{v}`" for k, v in p['dataset_sha256'].items())}

## Training
- Settings: {json.dumps(t.get('settings', {}))}; {t.get('wall_seconds', 0):.0f} s of training,
  {t.get('epochs_run', '?')} epochs.
- Generator shipped: `{p['generator_selected']}`, the epoch with the lowest Fréchet distance to
  10,000 training images (model selection never looks at the test set).
- Code version `{p['code_version']}`, torch {p['torch']}.

## Metrics (test set; {m['n_samples']} prior samples, seed {m['eval_seed']})
- Classifier test accuracy: **{m['classifier_test_accuracy']:.4f}** (the built-in classifier, unchanged).
- Mean top-class probability of generated samples: **{m['mean_confidence']:.4f}**.
- Class shares of generated samples: {shares}.
- Fréchet distance (classifier's 128-d penultimate features), generated vs test:
  **{m['frechet_distance']:.3f}**; the DCGAN bundle's: {m['frechet_distance_dcgan']:.3f}; floor (10,000
  training vs test images): {m['frechet_distance_floor']:.3f}.
- ONNX export validation, max |onnx - torch|: {json.dumps(p['export_validation_max_abs_diff'])}.
"""
