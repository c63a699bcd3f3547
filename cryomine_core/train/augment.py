"""Data augmentation of subtomograms that respects the missing wedge.

A subtomogram of a single-axis tilt series (beam along z, tilt axis y, range
``[tilt_min, tilt_max]``; :mod:`cryomine_core.fourier.wedge`) misses the Fourier region outside the
observed double wedge. A rotation of the particle rotates its missing wedge too, so an arbitrarily
rotated training subtomogram shows the network a wedge no real subtomogram of the data set has.
Two kinds of transforms avoid that:

* **The wedge-preserving group** (exact, no interpolation). The proper rotations that map the
  observed region onto itself are the 180-degree rotations about the tilt axis y (any range) and,
  for a symmetric range ``-t..t``, also about x and about z: the group D2 = {1, Ry, Rx, Rz}. On the
  voxel grid they are index reversals of two axes about the box centre ``N // 2``, so the Fourier
  support of the particle -- its wedge mask -- is unchanged exactly. (A rotation about the beam
  axis z by any other angle turns the tilt axis within the xy plane: it does not keep the wedge.)
* **Any rotation with the wedge re-imposed** (``group='z'``: any angle about z; ``group='so3'``:
  uniform on SO(3)): the volume is rotated (trilinear), then multiplied in Fourier space by its
  own observed-region mask, so the result misses at least the original wedge (the union of the
  original and the rotated one): never information the real data lack.

Then small integer shifts (circular, exact), a random radial filter (``exp(b (k / k_Nyquist)^2)`` with
``b`` drawn from ``[-spectrum, spectrum]``: a random B-factor, blurring or sharpening, which stands
in for acquisitions that weight the frequencies differently -- another defocus, another
reconstruction filter), noise jitter (white noise of a random fraction of the volume's standard
deviation, restricted to the observed region), and the volume is normalised again (zero mean, unit
standard deviation) with a random contrast scale.

Everything acts on batches ``(B, 1, D, H, W)`` on any device and draws from one
:class:`torch.Generator` (CPU), so a training run is reproducible and resumable.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from cryomine_core.errors import CryomineError
from cryomine_core.fourier.filters import apply_filter
from cryomine_core.fourier.grids import radial_frequency
from cryomine_core.fourier.wedge import missing_wedge_mask
from cryomine_core.geometry.rotate import rotate_volume
from cryomine_core.geometry.rotations import rotation_z
from cryomine_core.geometry.so3 import random_rotations
from cryomine_core.tilt_range import RULE, invalid_tilt_ranges
from cryomine_core.train.data import normalise_volume

__all__ = ["AUGMENT_GROUPS", "AugmentConfig", "augment_batch", "group_transforms", "reverse_axes",
           "wedge_group"]

#: rotation groups of the augmentation: none, the exact wedge-preserving one, any angle about z, any rotation
AUGMENT_GROUPS = ("none", "wedge", "z", "so3")

# The wedge-preserving 180-degree rotations as pairs of reversed array axes (z=-3, y=-2, x=-1):
# Ry (about the tilt axis) reverses z and x; Rx reverses z and y; Rz reverses y and x.
_D2_ANY_RANGE = ((), (-3, -1))
_D2_SYMMETRIC = ((), (-3, -1), (-3, -2), (-2, -1))


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation settings.

    Attributes:
        group: ``'none'``, ``'wedge'`` (the exact wedge-preserving 180-degree rotations),
            ``'z'`` (any angle about the beam axis, then the wedge re-imposed, combined with the
            wedge group) or ``'so3'`` (uniform rotations, wedge re-imposed).
        max_shift: largest integer shift per axis in voxels (circular, exact).
        contrast: contrast scale drawn from ``[1 - contrast, 1 + contrast]``.
        noise: added noise standard deviation drawn from ``[0, noise]`` times the volume's own
            standard deviation (restricted to the observed Fourier region).
        spectrum: largest magnitude of the random radial filter's exponent (0: off).
        tilt_range: ``(tilt_min, tilt_max)`` degrees of the data set's wedge, used for the
            wedge group and for re-imposing the wedge (items may override it).
    """

    group: str = "wedge"
    max_shift: int = 1
    contrast: float = 0.1
    noise: float = 0.2
    spectrum: float = 0.0
    tilt_range: tuple[float, float] = (-60.0, 60.0)

    def validate(self) -> None:
        lo, hi = self.tilt_range
        checks = [
            (self.group in AUGMENT_GROUPS,
             f"augmentation group '{self.group}': use one of {', '.join(AUGMENT_GROUPS)}"),
            (self.max_shift >= 0, f"augmentation shift {self.max_shift}: give a value >= 0 voxels"),
            (0 <= self.contrast < 1, f"contrast jitter {self.contrast}: give a value in [0, 1)"),
            (self.noise >= 0, f"noise jitter {self.noise}: give a value >= 0"),
            (0 <= self.spectrum <= 5, f"spectrum jitter {self.spectrum}: give a value in [0, 5]"),
            (not invalid_tilt_ranges(lo, hi).size, f"tilt range ({lo:g}, {hi:g}): give {RULE}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise CryomineError(f"training setting {msg}.")

    @property
    def active(self) -> bool:
        return (self.group != "none" or self.max_shift > 0 or self.contrast > 0 or self.noise > 0
                or self.spectrum > 0)

    def as_dict(self) -> dict:
        return asdict(self)


def _symmetric(tilt_min: float, tilt_max: float, tol: float = 1e-3) -> bool:
    return abs(tilt_min + tilt_max) <= tol


def wedge_group(tilt_range: tuple[float, float] = (-60.0, 60.0)) -> tuple[tuple[int, ...], ...]:
    """The wedge-preserving rotations of a range, each as the array axes it reverses about ``N // 2``:
    4 elements (D2) for a symmetric range, 2 (identity, 180 degrees about y) otherwise."""
    return _D2_SYMMETRIC if _symmetric(*tilt_range) else _D2_ANY_RANGE


def reverse_axes(x: torch.Tensor, axes: tuple[int, ...]) -> torch.Tensor:
    """Reverse ``axes`` of ``x`` about index ``N // 2`` (``i -> -i mod N``): exact 180-degree rotations
    for pairs of axes, the box centre fixed for even and odd ``N`` alike."""
    if not axes:
        return x
    out = torch.flip(x, dims=axes)
    # flip maps i -> N-1-i; rolling by one more maps it to N-i = -i mod N
    return torch.roll(out, shifts=tuple(1 for _ in axes), dims=axes)


def group_transforms(x: torch.Tensor, tilt_range: tuple[float, float] = (-60.0, 60.0)) -> list[torch.Tensor]:
    """``x`` under every element of :func:`wedge_group` (for test-time augmentation)."""
    return [reverse_axes(x, axes) for axes in wedge_group(tilt_range)]


def _observed_masks(shape, tilt_ranges: torch.Tensor, device) -> torch.Tensor:
    """``(B, D, H, W // 2 + 1)`` observed-region masks, one computed per distinct range."""
    unique, inverse = torch.unique(tilt_ranges, dim=0, return_inverse=True)
    masks = torch.stack([missing_wedge_mask(shape, float(lo), float(hi), device=device) for lo, hi in unique.tolist()])
    return masks[inverse.to(device)]


def augment_batch(x: torch.Tensor, config: AugmentConfig, generator: torch.Generator,
                  tilt_ranges: torch.Tensor | None = None) -> torch.Tensor:
    """Augment a batch ``(B, 1, D, H, W)`` (see the module docstring); returns a new normalised batch.

    Args:
        x: subtomograms, any device.
        config: the settings.
        generator: CPU generator of every random draw.
        tilt_ranges: ``(B, 2)`` degrees per item, or None for ``config.tilt_range``.
    """
    if x.dim() != 5 or x.shape[1] != 1:
        raise ValueError(f"augment_batch needs (B, 1, D, H, W), got {tuple(x.shape)}")
    b = x.shape[0]
    shape = tuple(x.shape[-3:])
    dev = x.device
    if tilt_ranges is None:
        tilt_ranges = torch.tensor([config.tilt_range], dtype=torch.float32).expand(b, 2)
    tilt_ranges = torch.as_tensor(tilt_ranges, dtype=torch.float32).cpu()
    out = x.float()
    needs_mask = config.group in ("z", "so3") or config.noise > 0
    observed = _observed_masks(shape, tilt_ranges, dev)[:, None] if needs_mask else None  # (B, 1, D, H, W//2+1)

    if config.group != "none":
        # the exact wedge-preserving element (valid for each item's own range)
        pick = torch.randint(0, 4, (b,), generator=generator)
        rows = []
        for i in range(b):
            group = wedge_group(tuple(float(v) for v in tilt_ranges[i]))
            rows.append(reverse_axes(out[i], group[int(pick[i]) % len(group)]))
        out = torch.stack(rows)
    if config.group in ("z", "so3"):
        if config.group == "z":
            angles = torch.rand(b, generator=generator) * 360.0
            rot = rotation_z(angles.double()).float()
        else:
            rot = random_rotations(b, generator=generator)
        out = rotate_volume(out[:, 0], rot.to(dev)).unsqueeze(1)
        out = apply_filter(out, observed)
    if config.max_shift > 0:
        shifts = torch.randint(-config.max_shift, config.max_shift + 1, (b, 3), generator=generator)
        out = torch.stack([torch.roll(out[i], shifts=tuple(int(s) for s in shifts[i]), dims=(-3, -2, -1))
                           for i in range(b)])
    if config.spectrum > 0:
        b_factor = (2.0 * torch.rand(b, generator=generator) - 1.0) * config.spectrum
        k2 = radial_frequency(shape, device=dev) ** 2 / 0.25  # (k / k_Nyquist)^2
        out = apply_filter(out, torch.exp(b_factor.to(dev)[:, None, None, None, None] * k2))
    if config.noise > 0:
        level = torch.rand(b, generator=generator) * config.noise
        noise = torch.randn(out.shape, generator=generator).to(dev)
        noise = apply_filter(noise, observed)
        noise = noise / noise.std(dim=(-3, -2, -1), keepdim=True).clamp_min(1e-6)
        std = out.std(dim=(-3, -2, -1), keepdim=True)
        out = out + (level.to(dev)[:, None, None, None, None] * std) * noise
    out = normalise_volume(out, "zscore")
    if config.contrast > 0:
        scale = 1.0 + (2.0 * torch.rand(b, generator=generator) - 1.0) * config.contrast
        out = out * scale.to(dev)[:, None, None, None, None]
    return out
