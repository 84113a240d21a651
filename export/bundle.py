"""Build the built-in bundle from trained weights: pick, measure, export, describe.

Model selection (choice): of the generator checkpoints saved after each epoch,
the one with the lowest Fréchet distance to 10,000 *training* images in the
classifier's penultimate feature space is shipped; the reported metrics are then
measured against the test set.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

from corrkit._core import io
from corrkit._core.bundle import BUILTIN
from corrkit._core.onnx_files import sha256
from corrkit._core.data import CLASSES, file_hashes, load_split
from corrkit.export.models import Classifier, Generator
from corrkit.export.onnx_export import CLASSIFIER_CONFIG, GENERATOR_CONFIG, export
from corrkit.export.train import classifier_accuracy, to_unit
from corrkit._core.metrics import class_shares, frechet_distance
from corrkit.export.weights import DIR, load_into

OUT = Path("build/bundle")  # not the installed package: `out=BUILTIN` refreshes the shipped bundle
EVAL_SEED = 12345
N_EVAL = 10000


@torch.no_grad()
def _features(q: Classifier, x: torch.Tensor, batch: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    feats, probs = [], []
    for i in range(0, len(x), batch):
        f = q.penultimate(x[i:i + batch])
        feats.append(f.numpy()); probs.append(torch.softmax(q.fc2(f), 1).numpy())
    return np.concatenate(feats), np.concatenate(probs)


@torch.no_grad()
def _generate(g: Generator, n: int, seed: int, batch: int = 1000) -> torch.Tensor:
    z = torch.from_numpy(np.random.default_rng(seed).standard_normal((n, g.latent_dim)).astype(np.float32))
    return torch.cat([g(z[i:i + batch]) for i in range(0, n, batch)])


def evaluate(g: Generator, q: Classifier, reference: torch.Tensor, seed: int = EVAL_SEED) -> dict:
    """Class shares, mean confidence and Fréchet distance of ``g``'s samples against ``reference``."""
    g.eval(); q.eval()
    f_gen, p_gen = _features(q, _generate(g, N_EVAL, seed))
    f_ref, _ = _features(q, reference)
    return {
        "class_shares": class_shares(p_gen, 10).round(4).tolist(),
        "mean_confidence": float(p_gen.max(1).mean()),
        "frechet_distance": frechet_distance(f_gen, f_ref),
    }


def select_generator(candidates: list[Path], load, q: Classifier, x_train: torch.Tensor, hint: str,
                     targets: bool = True) -> tuple[str, dict]:
    """``(best checkpoint stem, selection record)``: the lowest Fréchet distance to ``x_train``.

    With ``targets``, only among those meeting the class-share and confidence targets (all when
    none does). ``load(path)`` builds the generator of a checkpoint.
    """
    if not candidates:
        raise FileNotFoundError(f"no generator checkpoints {hint}")
    selection = {}
    for path in candidates:
        m = evaluate(load(path).eval(), q, x_train)
        selection[path.stem] = {"frechet_to_train": round(m["frechet_distance"], 3),
                                "mean_confidence": round(m["mean_confidence"], 4)}
        if targets:
            selection[path.stem]["meets_targets"] = (min(m["class_shares"]) >= 0.04 and max(m["class_shares"]) <= 0.16
                                                     and m["mean_confidence"] >= 0.8)
        print(f"{path.stem}: FD(train) {m['frechet_distance']:.3f} conf {m['mean_confidence']:.3f} "
              f"shares {min(m['class_shares']):.3f}..{max(m['class_shares']):.3f}", flush=True)
    pool = [k for k, v in selection.items() if v.get("meets_targets")] or list(selection)
    return min(pool, key=lambda k: selection[k]["frechet_to_train"]), selection


def _git_version() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=True).stdout.strip()
    except Exception:
        return "unknown"


def build(work: str | Path, out: str | Path = OUT, data_dir=None) -> dict:
    """Select the generator, export both models, write ``bundle.json`` and ``MODEL_CARD.md`` into ``out``.

    The state dicts of the two models go with them: into :data:`corrkit.export.weights.DIR`
    when ``out`` is the built-in bundle (the two are shipped as a pair), else into ``out/weights``.
    """
    work, out = Path(work), Path(out)
    q = load_into(Classifier(), work / "classifier.pt").eval()
    train, test = load_split("train", data_dir), load_split("test", data_dir)
    x_train = to_unit(train.images[np.random.default_rng(0).permutation(60000)[:N_EVAL]])
    x_test = to_unit(test.images)
    best, selection = select_generator(sorted(work.glob("gen_epoch*.pt")), lambda p: load_into(Generator(), p), q,
                                       x_train, f"in {work}; run `corrkit export train` first")
    g = load_into(Generator(), work / f"{best}.pt").eval()
    metrics = evaluate(g, q, x_test)
    f_train, _ = _features(q, to_unit(train.images[:N_EVAL]))
    f_test, _ = _features(q, x_test)
    metrics["frechet_distance_floor"] = frechet_distance(f_train, f_test)
    metrics["classifier_test_accuracy"] = classifier_accuracy(q, x_test, torch.from_numpy(test.labels.astype(np.int64)))
    metrics["n_samples"] = N_EVAL
    metrics["eval_seed"] = EVAL_SEED
    out.mkdir(parents=True, exist_ok=True)
    val = {"generator": export(g, out / "generator.onnx", GENERATOR_CONFIG),
           "classifier": export(q, out / "classifier.onnx", CLASSIFIER_CONFIG)}
    weights = DIR if out.resolve() == BUILTIN.resolve() else out / "weights"
    weights.mkdir(exist_ok=True)
    shutil.copyfile(work / f"{best}.pt", weights / "generator.pt")
    shutil.copyfile(work / "classifier.pt", weights / "classifier.pt")
    crec = json.loads((work / "classifier.json").read_text())
    grec = json.loads((work / "gan.json").read_text()) if (work / "gan.json").exists() else {}
    card = {
        "format": 1,
        "name": "corrkit built-in Fashion-MNIST DCGAN",
        "latent_dim": g.latent_dim,
        "latent_distribution": "normal",
        "classes": list(CLASSES),
        "image_shape": [1, 28, 28],
        "generator_output_range": [-1.0, 1.0],
        "classifier_input_range": [-1.0, 1.0],
        "classifier_output": "logits",
        "provenance": {
            "dataset": "Fashion-MNIST (Debian dataset-fashion-mnist)",
            "dataset_sha256": file_hashes(data_dir),
            "code_version": _git_version(),
            "torch": torch.__version__,
            "classifier_training": crec,
            "gan_training": grec,
            "generator_selected": best,
            "generator_selection": selection,
            "export_validation_max_abs_diff": val,
            "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
        "metrics": metrics,
        "onnx_sha256": {"generator": sha256(out / "generator.onnx"), "classifier": sha256(out / "classifier.onnx")},
    }
    io.write_json(out / "bundle.json", card)
    (out / "MODEL_CARD.md").write_text(model_card(card))
    return card


def model_card(card: dict) -> str:
    m, p = card["metrics"], card["provenance"]
    shares = ", ".join(f"{c} {s:.3f}" for c, s in zip(card["classes"], m["class_shares"]))
    return f"""# Model card: {card['name']}

Generator: the DCGAN of Li et al. (ICPR 2020) as in SPEC §0, latent N(0, I_{card['latent_dim']}), output
[1, 28, 28] in [-1, 1]. Classifier: the small CNN of SPEC §0 on images in [-1, 1], emitting logits.
Both were trained by `corrkit export train` (corrkit/export/train.py) on Fashion-MNIST from
Debian's `dataset-fashion-mnist` and exported by `corrkit export bundle`.

## Data
{chr(10).join(f"- `{k}` sha256 `{v}`" for k, v in p['dataset_sha256'].items())}

## Training
- Classifier: {json.dumps(p['classifier_training']['settings'])}; {p['classifier_training']['wall_seconds']:.0f} s.
- GAN: {json.dumps(p['gan_training'].get('settings', {}))}; {p['gan_training'].get('wall_seconds', 0):.0f} s.
- Generator shipped: `{p['generator_selected']}`, the epoch with the lowest Fréchet distance to
  10,000 training images (model selection never looks at the test set).
- Code version `{p['code_version']}`, torch {p['torch']}.

## Metrics (test set; {m['n_samples']} prior samples, seed {m['eval_seed']})
- Classifier test accuracy: **{m['classifier_test_accuracy']:.4f}** (10,000 images).
- Mean top-class probability of generated samples: **{m['mean_confidence']:.4f}**.
- Class shares of generated samples: {shares}.
- Fréchet distance (classifier's 128-d penultimate features), generated vs test:
  **{m['frechet_distance']:.3f}**; floor (10,000 training vs test images): {m['frechet_distance_floor']:.3f}.
- ONNX export validation, max |onnx - torch|: {json.dumps(p['export_validation_max_abs_diff'])}.

## Other files in the bundle
- `optimized_weights.npz`: the controlling-set weights `w*` per class from `corrkit export optimize`
  (gradient, SPEC §3) on this generator and classifier; its settings are stored inside.
- `vb_directions.npz`: 16 Voynov–Babenko directions from `corrkit export discover` with its
  defaults (seed 0, SPEC §8); the file holds its settings and the RCA of the learned, random and
  coordinate reconstructors (docs/compare.md).
"""
