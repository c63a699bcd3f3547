"""Building blocks shared by the classification networks.

Every network here takes ``(B, 1, Z, Y, X)`` volumes and returns ``(B, n_classes)`` logits (the
softmax of the papers is applied by the loss / at prediction time). Networks remember how they
were built (:attr:`SubtomogramNet.build_args`) so a saved model can be rebuilt from a plain dict.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

Box = tuple[int, int, int]


def as_box(box: int | Sequence[int]) -> Box:
    """``40`` or ``(40, 40, 40)`` -> ``(40, 40, 40)`` (z, y, x)."""
    if isinstance(box, (int,)) or (hasattr(box, "__int__") and not hasattr(box, "__len__")):
        b = int(box)
        return (b, b, b)
    dims = tuple(int(b) for b in box)
    if len(dims) != 3:
        raise ValueError(f"box must be an int or three ints (z, y, x), got {box!r}")
    return dims  # type: ignore[return-value]


def scaled(channels: int, width: float) -> int:
    """Channel count ``channels`` scaled by the width multiplier (at least 1)."""
    return max(1, int(round(channels * float(width))))


def conv3(cin: int, cout: int, kernel: int = 3) -> nn.Conv3d:
    """3-D convolution, stride 1, 'same' padding (odd kernels)."""
    return nn.Conv3d(cin, cout, kernel_size=kernel, stride=1, padding=kernel // 2)


def pooled(size: int, times: int) -> int:
    """Edge after ``times`` max-poolings of 2 with floor rounding (Keras 'valid' pooling)."""
    for _ in range(times):
        size //= 2
    return size


class SubtomogramNet(nn.Module):
    """Base class: records the architecture name and the arguments it was built with."""

    arch: str = ""
    #: smallest box edge the layer list accepts (each axis)
    min_box: int = 1

    def __init__(self, n_classes: int, box: int | Sequence[int], **build_args):
        super().__init__()
        if int(n_classes) < 2:
            raise ValueError(f"{self.arch}: need at least 2 classes, got {n_classes}")
        self.n_classes = int(n_classes)
        self.box = as_box(box)
        self.build_args = {"n_classes": self.n_classes, "box": list(self.box), **build_args}

    def check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 5 or x.shape[1] != 1:
            raise ValueError(f"{self.arch}: expected input (B, 1, Z, Y, X), got {tuple(x.shape)}")
        if tuple(x.shape[-3:]) != self.box:
            raise ValueError(f"{self.arch}: built for box {self.box}, got volumes of {tuple(x.shape[-3:])}")


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (works for models built on the ``meta`` device)."""
    return int(sum(p.numel() for p in model.parameters()))


def fc_head(n_in: int, hidden: Sequence[int], n_classes: int, dropout: float) -> nn.Sequential:
    """Fully connected layers ``n_in -> hidden... -> n_classes`` with ReLU and dropout after each hidden one."""
    layers: list[nn.Module] = [nn.Flatten()]
    prev = n_in
    for h in hidden:
        layers += [nn.Linear(prev, h), nn.ReLU(inplace=True)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        prev = h
    layers.append(nn.Linear(prev, n_classes))
    return nn.Sequential(*layers)


INIT_SCHEMES = ("he", "glorot", "torch")


def initialise(module: nn.Module, scheme: str = "he") -> None:
    """Initialise convolution and linear weights: ``'glorot'`` (Glorot uniform, zero bias: the Keras
    default the papers trained with, and the default of the four paper networks here: with He
    initialisation DSRF3D, DSRF3D-v2 and CB3D diverged at the paper's lr 0.005 on 40^3 data),
    ``'he'`` (Kaiming normal for ReLU, zero bias, Glorot output layer: the default of compact3d,
    which has batch normalisation) or ``'torch'`` (PyTorch's defaults, unchanged)."""
    if scheme == "torch":
        return
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"unknown init '{scheme}'; use one of {INIT_SCHEMES}")
    for m in module.modules():
        if isinstance(m, (nn.Conv3d, nn.Linear)):
            if scheme == "he":
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            else:
                nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    if scheme == "he":
        # the output layer gets Glorot weights: ReLU gain there only inflates the initial logits
        last = [m for m in module.modules() if isinstance(m, nn.Linear)]
        if last:
            nn.init.xavier_uniform_(last[-1].weight)
