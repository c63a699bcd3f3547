"""Hybrid3D: compact3d's convolutions beside a learned branch on rotation-invariant features.

Not from the papers. A subtomogram's class does not change when the particle turns, but a
convolutional network has to learn that from examples, and a few hundred labelled subtomograms
per class show it too few orientations (the learning curve: compact3d 0.62-0.74 against RIF-SVM's
0.70-0.83 from 25-150 per class). Hybrid3D builds the invariance in for one branch:

* **convolutional branch**: compact3d's layers (:class:`~cryomine_core.models.compact.Compact3D`)
  up to its global average pooling;
* **invariant branch**: the spherical-harmonic invariants of the input
  (:func:`~cryomine_core.features.rotation_invariant_features`: power per shell and degree of the
  density and of its Fourier amplitude, and, with ``cross_shells``, the cosine between every two
  shells per degree), computed in the forward pass (no parameters; the same for a turned
  particle up to interpolation), standardised by a batch normalisation without affine terms (its
  statistics recomputed from the training set after each epoch by the training loop), then one
  hidden layer;
* the two feature vectors are concatenated (the penultimate layer: subdivision's features) and
  one linear layer gives the logits.

The invariant features follow the input's own normalisation (the training recipe's z-score or
whitening), so the model file's normalisation applies to both branches.

Measured (CPU, ``subtomo`` recipe, width 0.5, z-score, seed 0). On the recipe's design set (1bxn
1f4a 1u6g 2cg9 3cf3 3d2f, 16 Å, 24^3, SNR 0.1, +-60; test set of another acquisition): 0.767 at 50
per class against compact3d's 0.667 and RIF-SVM's 0.77 (0.797 on the cross-shell invariants);
0.813 at 150 (RIF-SVM 0.82, 0.87 on the cross-shell invariants). On the learning curve's held-out
complexes (``benchmarks/classification.py --learning-curve --small --models hybrid3d``): 0.63-0.80,
0.88-1.03 times RIF-SVM; above it in 1 of 12 cells. Not the default: it was not compared with
compact3d under the same normalisation on the held-out set, and it trains about 1.3 times slower.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cryomine_core.features import rotation_invariant_features
from cryomine_core.models.common import SubtomogramNet, initialise, scaled
from cryomine_core.models.compact import Compact3D


def invariant_size(n_shells: int, l_max: int, cross_shells: bool) -> int:
    """Length of the invariant vector of both sources (density and Fourier amplitude)."""
    per_source = n_shells * (l_max + 1)
    if cross_shells:
        per_source += (l_max + 1) * n_shells * (n_shells - 1) // 2
    return 2 * per_source


class Hybrid3D(SubtomogramNet):
    """compact3d features + a hidden layer on spherical-harmonic invariants, one linear output.

    Args:
        n_classes, box: as every network.
        width: channel multiplier of the convolutional branch (compact3d's).
        dropout: before the output layer and after the invariant hidden layer.
        n_shells: radial shells of the invariants (default: ``min(12, box // 2 - 1)``).
        l_max: highest spherical-harmonic degree (8).
        cross_shells: add the between-shell cosines (True).
        hidden: units of the invariant branch's hidden layer (before ``width``; 128).
    """

    arch = "hybrid3d"
    min_box = 8

    def __init__(self, n_classes: int, box: int | Sequence[int] = 40, width: float = 1.0, dropout: float = 0.3,
                 init: str = "he", n_shells: int | None = None, l_max: int = 8, cross_shells: bool = True,
                 hidden: int = 128):
        edge = min(box) if isinstance(box, Sequence) else int(box)
        n_shells = int(n_shells) if n_shells else max(2, min(12, edge // 2 - 1))
        super().__init__(n_classes, box, width=float(width), init=init, dropout=float(dropout), n_shells=n_shells,
                         l_max=int(l_max), cross_shells=bool(cross_shells), hidden=int(hidden))
        if min(self.box) < self.min_box:
            raise ValueError(f"{self.arch}: box {self.box} is too small (each edge must be at least {self.min_box})")
        self.n_shells, self.l_max, self.cross_shells = n_shells, int(l_max), bool(cross_shells)
        trunk = Compact3D(n_classes, self.box, width=width, dropout=0.0, init=init)
        self.features = trunk.features
        n_inv = invariant_size(n_shells, self.l_max, self.cross_shells)
        n_hidden = scaled(hidden, width)
        self.invariant = nn.Sequential(
            nn.BatchNorm1d(n_inv, affine=False), nn.Linear(n_inv, n_hidden), nn.ReLU(inplace=True),
            nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
        )
        n_cnn = trunk.feature_shape[0]
        self.feature_shape = (n_cnn + n_hidden,)
        self.classifier = nn.Sequential(nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
                                        nn.Linear(n_cnn + n_hidden, n_classes))
        initialise(self, init)

    def invariants(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, F)`` spherical-harmonic invariants of ``x`` ``(B, 1, Z, Y, X)`` (no gradient: no parameters)."""
        with torch.no_grad():
            return rotation_invariant_features(x[:, 0].float(), l_max=self.l_max, n_shells=self.n_shells,
                                               source="both", normalise=False,
                                               cross_shells=self.cross_shells).to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        joint = torch.cat([self.features(x), self.invariant(self.invariants(x))], dim=1)
        return self.classifier(joint)
