"""DSRF3D (Xu et al. 2017) and DSRF3D-v2 (Che et al. 2018): stacks of small 3x3x3 convolutions.

Layer lists at the published 40^3 input (all convolutions 3x3x3, stride 1, 'same' padding, ReLU):

- DSRF3D (v1): [conv 32, conv 32, maxpool 2] [conv 64, conv 64, maxpool 2], FC 512, FC 512,
  FC classes. Dropout 0.5 after each hidden FC layer (Xu et al. 2017 train with dropout; the
  anchor layer list does not give the rate, 0.5 is our choice). 40^3 -> 10^3 x 64 = 64,000
  features, ~33.2 M parameters (23 classes).
- DSRF3D-v2: [conv 32 x2, maxpool 2] [conv 64 x2, maxpool 2] [conv 128 x2, maxpool 2], FC 1024,
  dropout 0.7, FC 1024, dropout 0.7, FC classes. 40^3 -> 5^3 x 128 = 16,000 features,
  ~18.3 M parameters (23 classes).

Other boxes: the layers are unchanged; only the input size of the first FC layer follows the
box (``channels * prod(floor(edge / 2^pools))``). ``width`` scales every channel and FC count
(1.0 = published; smaller values give the narrow variants used by tests and the CPU benchmark).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from cryomine_core.models.common import SubtomogramNet, conv3, fc_head, initialise, pooled, scaled


def _conv_stage(cin: int, cout: int, n_convs: int) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for i in range(n_convs):
        layers += [conv3(cin if i == 0 else cout, cout), nn.ReLU(inplace=True)]
    layers.append(nn.MaxPool3d(2))
    return layers


class _Dsrf(SubtomogramNet):
    stages: tuple[int, ...] = ()
    hidden: tuple[int, ...] = ()
    default_dropout: float = 0.5

    def __init__(self, n_classes: int, box: int | Sequence[int] = 40, width: float = 1.0,
                 dropout: float | None = None,
                 init: str = "glorot"):
        dropout = self.default_dropout if dropout is None else float(dropout)
        super().__init__(n_classes, box, width=float(width), init=init, dropout=dropout)
        chans = [scaled(c, width) for c in self.stages]
        layers: list[nn.Module] = []
        cin = 1
        for c in chans:
            layers += _conv_stage(cin, c, 2)
            cin = c
        self.features = nn.Sequential(*layers)
        n_pool = len(chans)
        self.feature_shape = (chans[-1], *(pooled(b, n_pool) for b in self.box))
        if min(self.feature_shape[1:]) < 1:
            raise ValueError(f"{self.arch}: box {self.box} is too small ({n_pool} poolings of 2 need an edge of at "
                             f"least {2 ** n_pool})")
        n_flat = math.prod(self.feature_shape)
        self.classifier = fc_head(n_flat, [scaled(h, width) for h in self.hidden], n_classes, dropout)

        initialise(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.classifier(self.features(x))


class DSRF3D(_Dsrf):
    """DSRF3D (v1), Xu et al. 2017."""

    arch = "dsrf3d"
    min_box = 4
    stages = (32, 64)
    hidden = (512, 512)
    default_dropout = 0.5


class DSRF3Dv2(_Dsrf):
    """DSRF3D-v2, Che et al. 2018."""

    arch = "dsrf3d-v2"
    min_box = 8
    stages = (32, 64, 128)
    hidden = (1024, 1024)
    default_dropout = 0.7
