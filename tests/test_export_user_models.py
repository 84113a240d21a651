"""A pair exported with ``torch.onnx.export``'s defaults, as a user writes it, through the commands."""

from __future__ import annotations

import numpy as np
import pytest

from tests import naive
from tests import user_models as um
from corrkit.cli.main import app
from tests.test_user_models import TINY, invoke, runner

torch = pytest.importorskip("torch")


def test_torch_default_export_runs_every_command(tmp_path):
    from torch import nn

    torch.manual_seed(0)

    class G(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.up = nn.Linear(um.N, 4 * 8 * 8), nn.ConvTranspose2d(4, 1, 4, 2, 1)

        def forward(self, z):
            return torch.tanh(self.up(torch.relu(self.fc(z).view(z.shape[0], 4, 8, 8))))

    class Q(nn.Module):
        def __init__(self):
            super().__init__()
            self.c, self.fc = nn.Conv2d(1, 4, 3, 2, 1), nn.Linear(4 * 8 * 8, um.C)

        def forward(self, x):
            return self.fc(torch.relu(self.c(x)).flatten(1))

    g, q = G().eval(), Q().eval()
    torch.onnx.export(g, (torch.randn(4, um.N),), str(tmp_path / "G.onnx"))  # the defaults, as a user writes it
    torch.onnx.export(q, (torch.randn(4, 1, 16, 16),), str(tmp_path / "Q.onnx"))
    assert (tmp_path / "G.onnx.data").is_file()
    invoke("bundle", "create", "--generator", tmp_path / "G.onnx", "--classifier", tmp_path / "Q.onnx",
           "--out", tmp_path / "b")
    invoke("apcr", tmp_path / "b", *TINY, "--out", tmp_path / "run")
    d = np.load(tmp_path / "run" / "apcr.npz")

    def torch_probs(z):
        with torch.no_grad():
            return torch.softmax(q(g(torch.from_numpy(np.asarray(z, np.float32)))), 1).double().numpy()

    want = naive.apcr_from_grid(naive.grid_probs(torch_probs, d["latents"], d["directions"], 1, 1.0), d["labels"],
                                um.C, 1)
    np.testing.assert_allclose(d["apcr"], want["apcr"], rtol=1e-4, atol=1e-6)
    invoke("figures", tmp_path / "run", "--out", tmp_path / "figs")
    invoke("sefa", tmp_path / "b", "--json")


USER_PACKAGE = """
import torch
from torch import nn


class Generator(nn.Module):  # DCGAN-style: z [B, N, 1, 1] -> RGB 8x8 in [0, 1]
    def __init__(self):
        super().__init__()
        self.up = nn.ConvTranspose2d(16, 8, 4, 1, 0)
        self.out = nn.ConvTranspose2d(8, 3, 4, 2, 1)

    def forward(self, z):
        return torch.sigmoid(self.out(torch.relu(self.up(z))))


class Classifier(nn.Module):  # ends in its own softmax: probabilities
    def __init__(self):
        super().__init__()
        self.c, self.fc = nn.Conv2d(3, 4, 3, 2, 1), nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        return torch.softmax(self.fc(torch.relu(self.c(x)).flatten(1)), 1)
"""


def test_from_torch_modules_to_a_validated_bundle(tmp_path, monkeypatch):
    import json
    import sys

    (tmp_path / "mymodels.py").write_text(USER_PACKAGE)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("mymodels", None)
    import mymodels

    torch.manual_seed(0)
    g, q = mymodels.Generator(), mymodels.Classifier()
    torch.save(g.state_dict(), tmp_path / "g.pt")
    torch.save(q.state_dict(), tmp_path / "q.pt")
    card = json.loads(invoke("export", "model", "--generator", "mymodels:Generator", "--classifier",
                             "mymodels:Classifier", "--generator-weights", tmp_path / "g.pt", "--classifier-weights",
                             tmp_path / "q.pt", "--latent-shape", "16,1,1", "--generator-range", "0,1",
                             "--classes", "x,y,w", "--out", tmp_path / "b", "--json"))
    assert card["latent_dim"] == 16 and card["classifier_output"] == "probabilities"  # read from the outputs
    assert card["image_shape"] == [3, 8, 8] and (tmp_path / "b" / "MODEL_CARD.md").is_file()
    invoke("apcr", tmp_path / "b", *TINY, "--out", tmp_path / "run")
    d = np.load(tmp_path / "run" / "apcr.npz")

    def torch_probs(z):
        with torch.no_grad():  # [0, 1] images mapped to the classifier's [-1, 1], as declared
            x = g(torch.from_numpy(np.asarray(z, np.float32)).reshape(len(z), 16, 1, 1)) * 2 - 1
            return q(x).double().numpy()

    want = naive.apcr_from_grid(naive.grid_probs(torch_probs, d["latents"], d["directions"], 1, 1.0), d["labels"],
                                um.C, 1)
    np.testing.assert_allclose(d["apcr"], want["apcr"], rtol=1e-4, atol=1e-6)
    # refused without --force: the folder is there
    r = runner.invoke(app, ["export", "model", "--generator", "mymodels:Generator", "--classifier",
                            "mymodels:Classifier", "--latent-shape", "16,1,1", "--out", str(tmp_path / "b")])
    assert r.exit_code == 1 and "already exists" in r.output
