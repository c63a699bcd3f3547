"""Constrained correlation: similarity over the jointly observed region of Fourier space.

A subtomogram is only observed inside its tilt range; the missing wedge holds no information
(zeros, or noise after filtering). Correlating whole volumes rewards wedge-to-wedge overlap, so
particles align by their wedges rather than their content. The constrained correlation
(Förster et al. 2008; Xu, Beck & Alber 2012) sums only over Fourier voxels observed in *both*
volumes, with the mean (DC) removed::

    CC(a, b) = Re sum_k w(k) A(k) conj(B(k)) / sqrt( sum_k w(k) |A(k)|^2 * sum_k w(k) |B(k)|^2 )

with ``w = M_a * M_b * filter`` (``M`` the observed-region masks, ``filter`` an optional band-pass,
``k != 0``). It is 1 for a volume with itself, lies in [-1, 1], and ignores anything either
volume holds inside its missing wedge. This module is the direct, whole-grid form (used to score
given poses and in tests); :mod:`.search` evaluates the same quantity for many rotations and
shifts at once.
"""

from __future__ import annotations

import torch

from cryomine_core.fourier import missing_wedge_mask

__all__ = ["constrained_correlation", "wedge_masks", "soft_sphere_mask"]


def wedge_masks(box: int, tilt_ranges: torch.Tensor, device=None) -> torch.Tensor:
    """Observed-region masks ``(..., N, N, N // 2 + 1)`` (rfft layout) for tilt ranges ``(..., 2)`` in degrees."""
    tr = torch.as_tensor(tilt_ranges, dtype=torch.float32, device=device)
    return missing_wedge_mask((box, box, box), tr[..., 0], tr[..., 1], device=device)


def constrained_correlation(
    a: torch.Tensor,
    b: torch.Tensor,
    observed_a: torch.Tensor | None = None,
    observed_b: torch.Tensor | None = None,
    fourier_filter: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Constrained correlation of real volumes ``a``, ``b`` ``(..., D, H, W)`` (batch dims broadcast).

    Args:
        a, b: volumes (zyx).
        observed_a, observed_b: observed-region masks in rfft layout ``(..., D, H, W // 2 + 1)``
            (e.g. :func:`wedge_masks`); None means fully observed.
        fourier_filter: optional band-pass weights, rfft layout (e.g. ``fourier.bandpass_filter``).
        mask: optional real-space mask ``(D, H, W)`` applied to both volumes first.

    Returns:
        ``(...)`` float32 correlations in [-1, 1]; 0 where either volume has no power in the
        joint region.
    """
    if a.shape[-3:] != b.shape[-3:]:
        raise ValueError(f"volume shapes differ: {tuple(a.shape[-3:])} vs {tuple(b.shape[-3:])}")
    if mask is not None:
        a, b = a * mask, b * mask
    dims = (-3, -2, -1)
    fa, fb = torch.fft.rfftn(a.float(), dim=dims), torch.fft.rfftn(b.float(), dim=dims)
    w = a.new_ones(fa.shape[-3:], dtype=torch.float32)
    w[..., 1:] = 2.0  # rfft half: every kx > 0 voxel stands for itself and its Friedel partner
    if a.shape[-1] % 2 == 0:
        w[..., -1] = 1.0
    w[0, 0, 0] = 0.0  # no DC: zero-mean correlation
    for extra in (observed_a, observed_b, fourier_filter):
        if extra is not None:
            w = w * extra.to(device=fa.device, dtype=torch.float32)
    num = (w * (fa * fb.conj()).real).sum(dims)
    pa = (w * fa.abs().square()).sum(dims)
    pb = (w * fb.abs().square()).sum(dims)
    den = torch.sqrt(pa * pb)
    return torch.where(den > 0, num / den.clamp_min(1e-30), torch.zeros_like(num)).float()


def soft_sphere_mask(box: int, radius_voxels: float | None = None, edge_voxels: float = 3.0, device=None
                     ) -> torch.Tensor:
    """Spherical mask ``(N, N, N)`` centred at ``N // 2``: 1 inside ``radius``, raised-cosine edge to 0.

    The default radius leaves the edge inside the box: ``N / 2 - edge - 1``.
    """
    n = int(box)
    if radius_voxels is None:
        radius_voxels = n / 2 - edge_voxels - 1
    ax = torch.arange(n, dtype=torch.float32, device=device) - n // 2
    zz, yy, xx = torch.meshgrid(ax, ax, ax, indexing="ij")
    r = torch.sqrt(xx**2 + yy**2 + zz**2)
    if edge_voxels <= 0:
        return (r <= radius_voxels).float()
    x = ((r - radius_voxels) / edge_voxels).clamp(0.0, 1.0)
    return 0.5 * (1.0 + torch.cos(torch.pi * x))
