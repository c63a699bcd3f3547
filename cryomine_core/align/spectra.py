"""Fourier-space sampling for alignment: frequency points, centred padded transforms, interpolation.

The alignment engine works on lists of Fourier samples rather than on whole grids: a set of
frequency points ``k`` (``(K, 3)``, **xyz** order, cycles/voxel of the particle box ``N``), the
transforms of particles and references evaluated at ``k`` or at rotated copies ``R k``; the
missing wedge at those points is :func:`cryomine_core.fourier.wedge.wedge_at` (the one wedge geometry).

Transforms are taken about the box centre (index ``N // 2``, the geometry convention), so a
real-space shift ``t`` (xyz voxels) multiplies the transform by ``exp(-2 pi i k . t)`` and a
rotation ``R`` of the volume maps ``F(k)`` to ``F(R^T k)``. Arbitrary points are interpolated
trilinearly in a zero-padded (``pad`` times oversampled) centred transform, which keeps the
interpolation error small for a particle filling less than ``1 / pad`` of its box.

Conventions: volumes ``(..., D, H, W)`` zyx, cubic boxes; all functions are device-agnostic and
accept leading batch dimensions where the docstring says so.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    "PaddedSpectrum",
    "centred_rfft",
    "half_sphere_points",
    "padded_spectrum",
    "shift_phase",
]


def centred_rfft(volumes: torch.Tensor) -> torch.Tensor:
    """rfft of volumes about their box centre: ``(..., N, N, N)`` -> ``(..., N, N, N // 2 + 1)``."""
    return torch.fft.rfftn(torch.fft.ifftshift(volumes, dim=(-3, -2, -1)), dim=(-3, -2, -1))


def half_sphere_points(box: int, f_max: float, f_min: float = 0.0, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer-grid frequencies of a cubic box in half of Fourier space, ``f_min < |k| <= f_max``.

    One point of every Friedel pair ``(k, -k)`` is kept (``kx > 0``, or ``kx = 0, ky > 0``, or
    ``kx = ky = 0, kz > 0``); its weight 2 counts the partner, so a sum over the points equals the
    sum over the full sphere. DC is never included (correlations are taken with zero mean).

    Args:
        box: box edge ``N`` in voxels.
        f_max, f_min: radii in cycles/voxel (Nyquist 0.5).

    Returns:
        ``(k (K, 3) float32 xyz cycles/voxel, weight (K,) float32)``.
    """
    n = int(box)
    idx = torch.arange(-(n // 2), (n + 1) // 2, device=device)
    kz, ky, kx = torch.meshgrid(idx, idx, idx, indexing="ij")
    half = (kx > 0) | ((kx == 0) & (ky > 0)) | ((kx == 0) & (ky == 0) & (kz > 0))
    r = torch.sqrt((kx**2 + ky**2 + kz**2).float()) / n
    keep = half & (r <= f_max + 1e-6) & (r > f_min + 1e-6)
    # Nyquist samples of an even box (index -N/2) have no distinct Friedel partner on the grid.
    nyq = ((kx == -(n // 2)) | (ky == -(n // 2)) | (kz == -(n // 2))) if n % 2 == 0 else torch.zeros_like(keep)
    keep = keep & ~nyq
    k = torch.stack([kx[keep], ky[keep], kz[keep]], dim=-1).float() / n
    weight = torch.full((k.shape[0],), 2.0, device=device)
    return k, weight


def grid_lookup(rfft_volumes: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Values of non-shifted rfft volumes ``(..., N, N, N//2+1)`` at integer-grid points ``k (K, 3)`` xyz with kx >= 0.

    Returns ``(..., K)`` complex.
    """
    n = rfft_volumes.shape[-3]
    ijk = torch.round(k * n).long()
    ix, iy, iz = ijk[:, 0], ijk[:, 1] % n, ijk[:, 2] % n
    return rfft_volumes[..., iz, iy, ix]


def shift_phase(k: torch.Tensor, shifts: torch.Tensor, sign: float = 1.0) -> torch.Tensor:
    """``exp(sign * 2 pi i k . t)`` for points ``k (..., K, 3)`` and shifts ``t (..., S, 3)`` -> ``(..., S, K)``."""
    arg = (2.0 * math.pi * sign) * (shifts @ k.transpose(-1, -2))
    return torch.polar(torch.ones_like(arg), arg)


class PaddedSpectrum:
    """Centred, zero-padded full transforms of a batch of volumes, for interpolation at any frequency.

    Args:
        volumes: ``(B, N, N, N)`` real volumes (cubic).
        pad: oversampling factor (2 is accurate for particles filling half the box; 1 is cheap).
    """

    def __init__(self, volumes: torch.Tensor, pad: int = 2):
        if volumes.ndim != 4:
            raise ValueError(f"PaddedSpectrum needs (B, N, N, N) volumes, got {tuple(volumes.shape)}")
        b, n = volumes.shape[0], volumes.shape[-1]
        p = int(pad) * n
        self.box, self.size = n, p
        # Place the box centre N//2 at the padded centre P//2, then transform about that centre.
        lo = p // 2 - n // 2
        big = volumes.new_zeros((b, p, p, p))
        big[:, lo:lo + n, lo:lo + n, lo:lo + n] = volumes
        ft = torch.fft.fftshift(torch.fft.fftn(torch.fft.ifftshift(big, dim=(-3, -2, -1)), dim=(-3, -2, -1)),
                                dim=(-3, -2, -1))
        self.data = torch.view_as_real(ft).permute(0, 4, 1, 2, 3).contiguous()  # (B, 2, P, P, P)

    def sample(self, k: torch.Tensor) -> torch.Tensor:
        """Interpolate at frequencies ``k`` ``(B, ..., 3)`` (or ``(K, 3)`` shared by the batch), xyz cycles/voxel.

        Returns ``(B, ...)`` complex64 (0 outside the padded grid).
        """
        b = self.data.shape[0]
        if k.ndim == 2:
            k = k.expand(b, *k.shape)
        if k.shape[0] != b:
            raise ValueError(f"sample: {k.shape[0]} point sets for {b} volumes")
        mid = k.shape[1:-1]
        pos = self.size // 2 + k.reshape(b, 1, 1, -1, 3) * self.size  # padded-array index, xyz
        grid = (2.0 * pos / (self.size - 1) - 1.0).to(self.data.dtype)
        out = F.grid_sample(self.data, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        out = out[:, :, 0, 0, :]  # (B, 2, Q)
        return torch.complex(out[:, 0], out[:, 1]).reshape(b, *mid)


def padded_spectrum(volumes: torch.Tensor, pad: int = 2) -> PaddedSpectrum:
    """Shortcut for :class:`PaddedSpectrum`."""
    return PaddedSpectrum(volumes, pad)
