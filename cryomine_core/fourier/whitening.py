"""Spectral whitening: flatten each volume's rotationally averaged power spectrum.

Every Fourier coefficient is divided by the root-mean-square amplitude of its frequency shell
(:func:`~cryomine_core.fourier.grids.shell_index`), computed **per volume**, and the zero
frequency is removed. The result has a flat radial power spectrum whatever filter shaped the
input: the ramp of weighted back-projection or its absence in direct Fourier inversion, the CTF
envelope of another defocus, an MTF, a coloured noise. Phases are kept, so the structure (the
relative phases and the anisotropy within each shell, such as the missing wedge) is untouched.

Why a classifier may be given whitened subtomograms (``--normalise whiten``, an option): at SNR
<= 0.1 a subtomogram's power spectrum is mostly the noise spectrum of its acquisition and
reconstruction, so a network trained on one acquisition learns that spectrum too and transfers
badly to another. At high SNR whitening hurts: it gives the noise-only outer shells the weight of
the signal-rich inner ones (both measured in :mod:`cryomine_core.train.recipes`).
"""

from __future__ import annotations

import torch

from cryomine_core.fourier.grids import n_shells, shell_index, shell_sum

__all__ = ["whiten"]


def whiten(volume: torch.Tensor, spatial_dims: int = 3, eps: float = 1e-8) -> torch.Tensor:
    """Whitened copy of ``volume`` ``(..., D, H, W)`` (or ``(..., H, W)`` with ``spatial_dims=2``).

    Each coefficient of ``rfftn(volume)`` is divided by the RMS amplitude of its shell in the same
    volume (shells beyond Nyquist, in the corners, use the last shell's RMS); the mean (zero
    frequency) is set to zero. Shells with no power (below ``eps``) stay zero. Real output, same
    shape and dtype as the input (computed in float32 or wider).
    """
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    if volume.dim() < spatial_dims:
        raise ValueError(f"whiten: need at least {spatial_dims} dimensions, got shape {tuple(volume.shape)}")
    shape = tuple(volume.shape[-spatial_dims:])
    dims = tuple(range(-spatial_dims, 0))
    x = volume if volume.is_floating_point() and volume.element_size() >= 4 else volume.float()
    spectrum = torch.fft.rfftn(x, dim=dims)
    n = n_shells(shape)
    shells = shell_index(shape, rfft=True, device=volume.device).clamp_max(n - 1)  # corners join the last shell
    flat = shells.reshape(-1)
    counts = torch.bincount(flat, minlength=n).clamp_min(1).to(torch.float64)
    rms = (shell_sum(spectrum.abs().square(), shells, n) / counts).sqrt()
    scale = torch.where(rms > eps, 1.0 / rms.clamp_min(eps), torch.zeros_like(rms)).to(spectrum.real.dtype)
    spectrum = spectrum * scale[..., flat].reshape(spectrum.shape)
    spectrum[(...,) + (0,) * spatial_dims] = 0
    return torch.fft.irfftn(spectrum, s=shape, dim=dims).to(volume.dtype if volume.is_floating_point() else x.dtype)
