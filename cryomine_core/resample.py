"""Resampling volumes to another voxel size by Fourier cropping or zero-padding."""

from __future__ import annotations

import torch


def fourier_resize(volume: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """Resize the last three dims ``(..., D, H, W)`` to ``shape`` in Fourier space.

    Cropping the spectrum downsamples (an ideal low-pass at the new Nyquist, no aliasing);
    zero-padding upsamples. The mean value (DC) is preserved. For a box of ``n`` voxels at
    ``a`` Å/voxel, resizing to ``m`` voxels gives ``a * n / m`` Å/voxel.
    """
    in_shape = tuple(volume.shape[-3:])
    if tuple(shape) == in_shape:
        return volume.clone()
    f = torch.fft.fftshift(torch.fft.fftn(volume, dim=(-3, -2, -1)), dim=(-3, -2, -1))
    out = torch.zeros((*volume.shape[:-3], *shape), dtype=f.dtype, device=volume.device)
    src, dst = [], []
    for n_in, n_out in zip(in_shape, shape):
        n = min(n_in, n_out)
        c_in, c_out = n_in // 2, n_out // 2
        src.append(slice(c_in - n // 2, c_in - n // 2 + n))
        dst.append(slice(c_out - n // 2, c_out - n // 2 + n))
    out[(..., *dst)] = f[(..., *src)]
    out = torch.fft.ifftn(torch.fft.ifftshift(out, dim=(-3, -2, -1)), dim=(-3, -2, -1)).real
    scale = (shape[0] * shape[1] * shape[2]) / (in_shape[0] * in_shape[1] * in_shape[2])
    return (out * scale).to(volume.dtype)
