"""A pair exported with ``torch.onnx.export``'s defaults, as a user writes it, through the commands."""

from __future__ import annotations

import numpy as np
import pytest

from tests import naive
from tests import user_models as um
from tests.test_user_models import TINY, invoke

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
