"""A small 3-D U-Net for voxel segmentation of tomograms (binary or multi-class).

Input ``(B, 1, Z, Y, X)`` (a normalised tomogram or a patch of one), output ``(B, C, Z, Y, X)``
logits, where class 0 is background and ``C`` counts it (a binary segmenter has ``C = 2``).

Design choices that matter downstream:

- **Any size in, same size out.** The input is zero-padded at the high end of each axis to a
  multiple of ``2 ** depth`` (the pooling factor) and the output is cropped back, so a volume of
  any shape gives logits of the same shape.
- **Tiles equal the whole volume.** Only batch normalisation is used (in evaluation mode it is a
  fixed per-channel affine map), never instance/group normalisation, whose statistics would
  depend on the extent of the input. The output at a voxel therefore depends only on the input
  within :attr:`UNet3D.receptive_radius` voxels, on the position of the voxel in the pooling
  grid, and on where the volume edges are. :mod:`.tiling` uses this to make tiled inference
  equal whole-volume inference.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from cryomine_core.models.common import initialise

__all__ = ["UNet3D", "build_unet"]


def _block(cin: int, cout: int, n_convs: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(n_convs):
        layers += [nn.Conv3d(cin if i == 0 else cout, cout, 3, padding=1, bias=False), nn.BatchNorm3d(cout),
                   nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class UNet3D(nn.Module):
    """U-Net with ``depth`` poolings; level ``k`` has ``base * 2**k`` channels.

    Args:
        n_classes: output classes including background (>= 2).
        base: channels of the full-resolution level.
        depth: number of 2x poolings (the input is padded to a multiple of ``2**depth``).
        convs: 3x3x3 convolutions per level and per path.
    """

    arch = "unet3d"

    def __init__(self, n_classes: int, base: int = 16, depth: int = 2, convs: int = 2):
        super().__init__()
        if int(n_classes) < 2:
            raise ValueError(f"unet3d: need at least 2 classes (background + one), got {n_classes}")
        if depth < 1 or base < 1 or convs < 1:
            raise ValueError(f"unet3d: depth, base and convs must be >= 1 (got {depth}, {base}, {convs})")
        self.n_classes, self.base, self.depth, self.convs = int(n_classes), int(base), int(depth), int(convs)
        self.build_args = {"n_classes": self.n_classes, "base": self.base, "depth": self.depth, "convs": self.convs}
        ch = [base * 2**k for k in range(depth + 1)]
        self.down = nn.ModuleList([_block(1 if k == 0 else ch[k - 1], ch[k], convs) for k in range(depth)])
        self.bottom = _block(ch[depth - 1], ch[depth], convs)
        self.up = nn.ModuleList([nn.ConvTranspose3d(ch[k + 1], ch[k], 2, stride=2) for k in range(depth)])
        self.dec = nn.ModuleList([_block(2 * ch[k], ch[k], convs) for k in range(depth)])
        self.head = nn.Conv3d(ch[0], self.n_classes, 1)
        initialise(self, "he")
        nn.init.xavier_uniform_(self.head.weight)

    @property
    def multiple(self) -> int:
        """Edge multiple of the pooling grid (``2 ** depth``)."""
        return 2**self.depth

    @property
    def receptive_radius(self) -> int:
        """Upper bound (voxels) on how far from a voxel the input can change its output.

        Each 3x3x3 convolution at level ``k`` adds ``2**k``; each pooling/upsampling pair at level
        ``k`` adds at most ``2**(k+1) - 1`` (the extent of one coarse cell).
        """
        r = 0
        for k in range(self.depth):
            r += 2 * self.convs * 2**k + (2 ** (k + 1) - 1) * 2
        return r + self.convs * 2**self.depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5 or x.shape[1] != 1:
            raise ValueError(f"unet3d: expected input (B, 1, Z, Y, X), got {tuple(x.shape)}")
        shape = x.shape[-3:]
        m = self.multiple
        pad = [(-s) % m for s in shape]
        if any(pad):
            x = F.pad(x, (0, pad[2], 0, pad[1], 0, pad[0]))
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = F.max_pool3d(x, 2)
        x = self.bottom(x)
        for k in reversed(range(self.depth)):
            x = self.up[k](x)
            x = self.dec[k](torch.cat([skips[k], x], dim=1))
        x = self.head(x)
        return x[..., : shape[0], : shape[1], : shape[2]]


def build_unet(n_classes: int, **kwargs) -> UNet3D:
    """Build a :class:`UNet3D` from saved build arguments (``n_classes`` given separately)."""
    kwargs = {k: v for k, v in kwargs.items() if k in ("base", "depth", "convs")}
    return UNet3D(int(n_classes), **kwargs)
