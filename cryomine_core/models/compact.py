"""Compact3D: CryoMine's own small classifier with batch normalisation and global average pooling.

Not from the papers. Three stages of two 3x3x3 convolutions (16, 32, 64 channels; BatchNorm,
ReLU) separated by max-pooling, one more 3x3x3 convolution (128), global average pooling, dropout
and one linear layer: ~0.4 M parameters whatever the box (no layer depends on the box size), so
the same weights accept any box of at least 4^3 voxels. ``width`` scales the channels.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cryomine_core.models.common import SubtomogramNet, conv3, initialise, scaled


def _cbr(cin: int, cout: int) -> list[nn.Module]:
    return [conv3(cin, cout), nn.BatchNorm3d(cout), nn.ReLU(inplace=True)]


class Compact3D(SubtomogramNet):
    """Small fully convolutional classifier with global average pooling."""

    arch = "compact3d"
    min_box = 4

    def __init__(self, n_classes: int, box: int | Sequence[int] = 40, width: float = 1.0, dropout: float = 0.3,
                 init: str = "he"):
        super().__init__(n_classes, box, width=float(width), init=init, dropout=float(dropout))
        c1, c2, c3, c4 = (scaled(c, width) for c in (16, 32, 64, 128))
        self.features = nn.Sequential(
            *_cbr(1, c1), *_cbr(c1, c1), nn.MaxPool3d(2),
            *_cbr(c1, c2), *_cbr(c2, c2), nn.MaxPool3d(2),
            *_cbr(c2, c3), *_cbr(c3, c3),
            *_cbr(c3, c4),
            nn.AdaptiveAvgPool3d(1), nn.Flatten(),
        )
        if min(self.box) < self.min_box:
            raise ValueError(f"{self.arch}: box {self.box} is too small (each edge must be at least {self.min_box})")
        self.feature_shape = (c4,)
        self.classifier = nn.Sequential(nn.Dropout(dropout) if dropout > 0 else nn.Identity(), nn.Linear(c4, n_classes))

        initialise(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.classifier(self.features(x))
