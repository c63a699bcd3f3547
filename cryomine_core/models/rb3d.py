"""RB3D (Che et al. 2018): one convolution and pooling, then four residual blocks, then FC layers.

Published layer list at 40^3 (3x3x3 convolutions, stride 1, 'same' padding):
conv 32 + ReLU, maxpool 2, then 4 residual blocks, FC 1024, dropout 0.5, FC 1024, dropout 0.5,
FC classes. A block has two paths:

- shortcut: conv 16 3x3x3 (ReLU);
- branch: conv 16 1x1x1 (ReLU), conv 32 3x3x3 (ReLU), conv 16 1x1x1 (linear), dropout;

and the two 16-channel outputs are merged by channel concatenation (32 channels) followed by a
ReLU. There is no pooling after the blocks, so at 40^3 the first FC layer sees 32 x 20^3 = 256,000
features (262 M weights; ~263 M parameters in all), which is what the anchor gives. The rate of
the branch dropout is not published; we use 0.2.

Other boxes: only the first FC input size changes (32 * prod(floor(edge / 2))); it grows with the
cube of the box, so RB3D is impractical above ~40^3. ``width`` scales channels and FC units.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from cryomine_core.models.common import SubtomogramNet, conv3, fc_head, initialise, pooled, scaled


class ResidualBlock3D(nn.Module):
    """The RB3D block: a 3x3x3 shortcut and a 1-3-1 bottleneck branch, concatenated, ReLU."""

    def __init__(self, cin: int, c_half: int, c_mid: int, dropout: float):
        super().__init__()
        self.shortcut = nn.Sequential(conv3(cin, c_half), nn.ReLU(inplace=True))
        self.branch = nn.Sequential(
            conv3(cin, c_half, kernel=1), nn.ReLU(inplace=True),
            conv3(c_half, c_mid), nn.ReLU(inplace=True),
            conv3(c_mid, c_half, kernel=1),
            nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
        )
        self.out_channels = 2 * c_half

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(torch.cat([self.shortcut(x), self.branch(x)], dim=1))


class RB3D(SubtomogramNet):
    """RB3D, Che et al. 2018."""

    arch = "rb3d"
    min_box = 2

    def __init__(self, n_classes: int, box: int | Sequence[int] = 40, width: float = 1.0, dropout: float = 0.5,
                 block_dropout: float = 0.2, n_blocks: int = 4,
                 init: str = "glorot"):
        super().__init__(n_classes, box, width=float(width), init=init, dropout=float(dropout),
                         block_dropout=float(block_dropout), n_blocks=int(n_blocks))
        c32, c16 = scaled(32, width), scaled(16, width)
        layers: list[nn.Module] = [conv3(1, c32), nn.ReLU(inplace=True), nn.MaxPool3d(2)]
        cin = c32
        for _ in range(int(n_blocks)):
            block = ResidualBlock3D(cin, c16, c32, block_dropout)
            layers.append(block)
            cin = block.out_channels
        self.features = nn.Sequential(*layers)
        self.feature_shape = (cin, *(pooled(b, 1) for b in self.box))
        if min(self.feature_shape[1:]) < 1:
            raise ValueError(f"{self.arch}: box {self.box} is too small (one pooling of 2 needs an edge of at least 2)")
        n_flat = math.prod(self.feature_shape)
        h = scaled(1024, width)
        self.classifier = fc_head(n_flat, [h, h], n_classes, dropout)

        initialise(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.classifier(self.features(x))
