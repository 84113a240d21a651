"""The paper's networks (SPEC §0), as PyTorch modules.

The generator is the DCGAN of Li et al. (ICPR 2020); the classifier the small CNN
they interpret. Both take and give images in [-1, 1].
"""

from __future__ import annotations

import torch
from torch import nn

LATENT_DIM = 100  # N of the paper's DCGAN


class Generator(nn.Module):
    """z [B, latent_dim] -> image [B, 1, 28, 28] in [-1, 1]."""

    def __init__(self, latent_dim: int = LATENT_DIM):
        super().__init__()
        self.latent_dim = latent_dim
        self.l1 = nn.Linear(latent_dim, 128 * 7 * 7)
        self.conv_blocks = nn.Sequential(
            nn.BatchNorm2d(128),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(128, 128, 3, stride=1, padding=1),
            nn.BatchNorm2d(128, 0.8),
            nn.LeakyReLU(0.2),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(128, 64, 3, stride=1, padding=1),
            nn.BatchNorm2d(64, 0.8),
            nn.LeakyReLU(0.2),
            nn.Conv2d(64, 1, 3, stride=1, padding=1),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.l1(z).view(z.shape[0], 128, 7, 7)
        return self.conv_blocks(x)


class Discriminator(nn.Module):
    """The DCGAN critic used only for training (not exported)."""

    def __init__(self):
        super().__init__()

        def block(cin: int, cout: int, bn: bool = True) -> list[nn.Module]:
            layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, 2, 1), nn.LeakyReLU(0.2), nn.Dropout2d(0.25)]
            if bn:
                layers.append(nn.BatchNorm2d(cout, 0.8))
            return layers

        self.model = nn.Sequential(*block(1, 16, bn=False), *block(16, 32), *block(32, 64), *block(64, 128))
        self.adv = nn.Linear(128 * 2 * 2, 1)  # logits; BCEWithLogits in training

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.adv(self.model(img).flatten(1))


class Classifier(nn.Module):
    """image [B, 1, 28, 28] in [-1, 1] -> logits [B, 10]."""

    def __init__(self, n_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.dropout = nn.Dropout(0.25)
        self.fc1 = nn.Linear(64 * 7 * 7, 128)
        self.fc2 = nn.Linear(128, n_classes)

    def penultimate(self, x: torch.Tensor) -> torch.Tensor:
        """128-d features used for the Frechet distance."""
        return torch.relu(self.fc1(self.dropout(self.features(x).flatten(1))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.penultimate(x))
