"""Training of the paper's classifier and DCGAN generator on Fashion-MNIST (SPEC §0).

Seeded and resumable: every epoch writes a checkpoint atomically; a killed run
restarted with the same arguments continues from the last finished epoch and
ends with the same weights (data order and noise come from per-epoch seeds).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from corrkit._core.data import load_split
from corrkit.errors import BundleError
from corrkit.export.models import Classifier, Discriminator, Generator
from corrkit.export.weights import load_state, save_state


@dataclass
class ClassifierSettings:
    epochs: int = 12
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0
    hflip: bool = True


@dataclass
class GANSettings:
    epochs: int = 22
    batch_size: int = 64
    lr: float = 2e-4
    beta1: float = 0.5
    seed: int = 0
    bf16: bool = True  # autocast; AVX-512 BF16 / AMX make it ~3x faster on CPU


def to_unit(images: np.ndarray) -> torch.Tensor:
    """uint8 [n, 28, 28] -> float32 [n, 1, 28, 28] in [-1, 1]."""
    return torch.from_numpy(images.astype(np.float32) / 127.5 - 1.0).unsqueeze(1)


def _resume_state(ckpt: Path) -> dict | None:
    """A training checkpoint read without unpickling; a damaged or foreign one is set aside (``.invalid``)."""
    if not ckpt.exists():
        return None
    try:
        return load_state(ckpt)
    except BundleError as exc:
        os.replace(ckpt, ckpt.with_name(ckpt.name + ".invalid"))
        _log(f"warning: {exc}; set aside as {ckpt.name}.invalid, training from the start")
        return None


def resume_gan(ckpt: Path, G: nn.Module, D: nn.Module, oG, oD, what: str) -> tuple[int, float]:
    """``(epochs done, training seconds)`` of a GAN checkpoint loaded into the four; ``(0, 0.0)`` without one."""
    st = _resume_state(ckpt)
    if st is None:
        return 0, 0.0
    G.load_state_dict(st["G"]); D.load_state_dict(st["D"])
    oG.load_state_dict(st["oG"]); oD.load_state_dict(st["oD"])
    _log(f"{what}: resuming after epoch {st['epoch']}")
    return st["epoch"], st["wall"]


def save_gan(ckpt: Path, G: nn.Module, D: nn.Module, oG, oD, epochs: int, wall: float) -> None:
    """The checkpoint :func:`resume_gan` reads, written atomically."""
    save_state({"G": G.state_dict(), "D": D.state_dict(), "oG": oG.state_dict(), "oD": oD.state_dict(),
                "epoch": epochs, "wall": wall}, ckpt)


def _log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


@torch.no_grad()
def classifier_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> float:
    model.eval()
    hits = 0
    for i in range(0, len(x), batch):
        hits += (model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum().item()
    return hits / len(x)


@torch.no_grad()
def attribute_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> list[float]:
    """Per attribute, the share of images whose ``logit > 0`` agrees with the 0/1 target ``y [n, A]``."""
    model.eval()
    hits = torch.zeros(y.shape[1])
    for i in range(0, len(x), batch):
        hits += ((model(x[i:i + batch]) > 0).float() == y[i:i + batch]).float().sum(0)
    return (hits / len(x)).tolist()


def train_classifier(work: Path, s: ClassifierSettings, data_dir=None, *, attributes=None) -> tuple[Classifier, dict]:
    """Train the small CNN; returns the model and its record (settings, accuracy, time).

    ``attributes``: a function of a data split giving float 0/1 targets ``[n, A]``; the CNN then
    has ``A`` outputs, each an independent attribute's logit, trained with binary cross-entropy
    (the ``classifier_output: sigmoid`` setting, SPEC §11), and the record holds per-attribute accuracy.
    """
    work.mkdir(parents=True, exist_ok=True)
    ckpt = work / ("classifier.ckpt" if attributes is None else "attributes.ckpt")
    train, test = load_split("train", data_dir), load_split("test", data_dir)
    if attributes is None:
        ytr, yte = (torch.from_numpy(d.labels.astype(np.int64)) for d in (train, test))
        loss_fn, accuracy, width = nn.CrossEntropyLoss(), classifier_accuracy, 10
    else:
        ytr, yte = (torch.from_numpy(np.asarray(attributes(d), np.float32)) for d in (train, test))
        loss_fn, accuracy, width = nn.BCEWithLogitsLoss(), attribute_accuracy, ytr.shape[1]
    xtr, xte = to_unit(train.images), to_unit(test.images)
    torch.manual_seed(s.seed)
    model = Classifier(width)
    opt = torch.optim.Adam(model.parameters(), lr=s.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=s.epochs)
    start, wall = 0, 0.0
    state = _resume_state(ckpt)
    if state is not None:
        model.load_state_dict(state["model"]); opt.load_state_dict(state["opt"]); sched.load_state_dict(state["sched"])
        start, wall = state["epoch"], state["wall"]
        _log(f"classifier: resuming after epoch {start}")
    for epoch in range(start, s.epochs):
        t0 = time.time()
        rng = np.random.default_rng([s.seed, epoch])
        torch.manual_seed(s.seed * 1000 + epoch)
        order = torch.from_numpy(rng.permutation(len(xtr)))
        flips = torch.from_numpy(rng.random(len(xtr)) < 0.5)
        model.train()
        for i in range(0, len(xtr), s.batch_size):
            idx = order[i:i + s.batch_size]
            xb = xtr[idx]
            if s.hflip:
                f = flips[idx]
                xb = torch.where(f[:, None, None, None], xb.flip(3), xb)
            loss = loss_fn(model(xb), ytr[idx])
            opt.zero_grad(); loss.backward(); opt.step()
        sched.step()
        wall += time.time() - t0
        acc = accuracy(model, xte, yte)
        _log(f"classifier epoch {epoch + 1}/{s.epochs} loss {loss.item():.3f} test acc {acc}")
        save_state({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                     "epoch": epoch + 1, "wall": wall}, ckpt)
    model.eval()
    record = {"settings": asdict(s), "test_accuracy": accuracy(model, xte, yte), "wall_seconds": wall}
    return model, record


def train_gan(work: Path, s: GANSettings, data_dir=None) -> tuple[Generator, dict]:
    """Train the DCGAN; keeps the generator of every epoch in ``work/gen_epochNN.pt``."""
    work.mkdir(parents=True, exist_ok=True)
    ckpt = work / "gan.ckpt"
    xtr = to_unit(load_split("train", data_dir).images).contiguous(memory_format=torch.channels_last)
    torch.manual_seed(s.seed)
    G = Generator().to(memory_format=torch.channels_last)
    D = Discriminator().to(memory_format=torch.channels_last)
    oG = torch.optim.Adam(G.parameters(), lr=s.lr, betas=(s.beta1, 0.999))
    oD = torch.optim.Adam(D.parameters(), lr=s.lr, betas=(s.beta1, 0.999))
    start, wall = resume_gan(ckpt, G, D, oG, oD, "gan")
    bce = nn.BCEWithLogitsLoss()
    for epoch in range(start, s.epochs):
        t0 = time.time()
        G.train(); D.train()
        order = torch.from_numpy(np.random.default_rng([s.seed, epoch]).permutation(len(xtr)))
        torch.manual_seed(s.seed * 1000 + epoch)
        n_batches = len(xtr) // s.batch_size
        for b in range(n_batches):
            real = xtr[order[b * s.batch_size:(b + 1) * s.batch_size]]
            ones, zeros = torch.ones(len(real), 1), torch.zeros(len(real), 1)
            z = torch.randn(len(real), G.latent_dim)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=s.bf16):
                fake = G(z)
                g_loss = bce(D(fake).float(), ones)
            oG.zero_grad(); g_loss.backward(); oG.step()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=s.bf16):
                d_loss = 0.5 * (bce(D(real).float(), ones) + bce(D(fake.detach()).float(), zeros))
            oD.zero_grad(); d_loss.backward(); oD.step()
            if b % 200 == 0:
                _log(f"gan epoch {epoch + 1} batch {b}/{n_batches} d {d_loss.item():.3f} g {g_loss.item():.3f}")
        wall += time.time() - t0
        save_state(G.state_dict(), work / f"gen_epoch{epoch + 1:02d}.pt")
        save_gan(ckpt, G, D, oG, oD, epoch + 1, wall)
        _log(f"gan epoch {epoch + 1}/{s.epochs} done, {time.time() - t0:.0f}s")
    G.eval()
    return G, {"settings": asdict(s), "wall_seconds": wall}


def main(work: str = "build/train", gan_epochs: int = 22, cls_epochs: int = 12, threads: int = 2,
         data_dir=None) -> None:
    torch.set_num_threads(threads)
    w = Path(work)
    model, rec = train_classifier(w, ClassifierSettings(epochs=cls_epochs), data_dir)
    save_state(model.state_dict(), w / "classifier.pt")
    (w / "classifier.json").write_text(json.dumps(rec, indent=2))
    G, grec = train_gan(w, GANSettings(epochs=gan_epochs), data_dir)
    (w / "gan.json").write_text(json.dumps(grec, indent=2))
    _log("training finished")


if __name__ == "__main__":
    import sys
    main(*sys.argv[1:2])
