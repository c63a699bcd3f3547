"""CB3D (Che et al. 2018): a C3D-like network (Tran et al. 2015) for 40^3 subtomograms.

Published layer list (3x3x3 convolutions, stride 1, 'same' padding, ReLU):
conv 64, maxpool (1, 2, 2) [z kept, y and x halved]; conv 128, maxpool 2; conv 256 x2, maxpool 2;
conv 512 x2, maxpool 2; conv 512 x2, zero-pad (0, 1, 1) [one voxel on both sides of y and x],
maxpool 2; FC 4096, dropout 0.5, FC 4096, dropout 0.5, FC classes. At 40^3 the volume goes
40x40x40 -> 40x20x20 -> 20x10x10 -> 10x5x5 -> 5x2x2 -> pad 5x4x4 -> 2x2x2, i.e. 512 x 8 = 4,096
features into the first FC layer, ~61 M parameters.

Other boxes: the layers are unchanged and the first FC input follows the box (it is 512 x 2^3
for every box from 32 to 47); the smallest box is 16. ``width`` scales channels and FC units.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from cryomine_core.models.common import SubtomogramNet, conv3, fc_head, initialise, scaled


def _cb3d_feature_shape(box: tuple[int, int, int]) -> tuple[int, int, int]:
    z, y, x = box
    y, x = y // 2, x // 2            # pool (1, 2, 2)
    for _ in range(3):               # three pools of 2
        z, y, x = z // 2, y // 2, x // 2
    y, x = y + 2, x + 2              # zero-pad (0, 1, 1) on both sides
    return z // 2, y // 2, x // 2    # last pool of 2


class CB3D(SubtomogramNet):
    """CB3D, Che et al. 2018."""

    arch = "cb3d"
    min_box = 16

    def __init__(self, n_classes: int, box: int | Sequence[int] = 40, width: float = 1.0, dropout: float = 0.5,
                 init: str = "glorot"):
        super().__init__(n_classes, box, width=float(width), init=init, dropout=float(dropout))
        c64, c128, c256, c512 = (scaled(c, width) for c in (64, 128, 256, 512))
        relu = nn.ReLU
        self.features = nn.Sequential(
            conv3(1, c64), relu(inplace=True), nn.MaxPool3d((1, 2, 2)),
            conv3(c64, c128), relu(inplace=True), nn.MaxPool3d(2),
            conv3(c128, c256), relu(inplace=True), conv3(c256, c256), relu(inplace=True), nn.MaxPool3d(2),
            conv3(c256, c512), relu(inplace=True), conv3(c512, c512), relu(inplace=True), nn.MaxPool3d(2),
            conv3(c512, c512), relu(inplace=True), conv3(c512, c512), relu(inplace=True),
            nn.ConstantPad3d((1, 1, 1, 1, 0, 0), 0.0), nn.MaxPool3d(2),
        )
        spatial = _cb3d_feature_shape(self.box)
        if min(spatial) < 1:
            raise ValueError(f"{self.arch}: box {self.box} is too small (each edge must be at least {self.min_box})")
        self.feature_shape = (c512, *spatial)
        n_flat = math.prod(self.feature_shape)
        h = scaled(4096, width)
        self.classifier = fc_head(n_flat, [h, h], n_classes, dropout)

        initialise(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.classifier(self.features(x))
