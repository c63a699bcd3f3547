"""Fourier filters with raised-cosine edges, and intensity normalisation.

Filters are real, radially symmetric transmission grids in rfft layout
``(..., D, H, W // 2 + 1)`` (non-shifted), built from the radial frequency ``|k|`` in
cycles/voxel. Resolutions are in Å and converted with ``f = voxel_size_angstrom / resolution``.
Edges are raised cosines of width ``falloff_fftfreq`` (cycles/voxel; Nyquist = 0.5) placed
*inside* the pass band, so nothing beyond a low-pass cutoff (or below a high-pass cutoff)
is transmitted at all.

The ``spatial_dims`` argument (3 by default, 2 for images) says how many trailing axes are
spatial; all leading axes are batch axes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from cryomine_core.fourier.grids import radial_frequency

__all__ = [
    "apply_filter",
    "bandpass",
    "bandpass_filter",
    "highpass",
    "highpass_filter",
    "lowpass",
    "lowpass_filter",
    "normalise",
]

DEFAULT_FALLOFF_FFTFREQ = 0.05


def lowpass_filter(
    shape: Sequence[int],
    cutoff_angstrom: float,
    voxel_size_angstrom: float,
    falloff_fftfreq: float = DEFAULT_FALLOFF_FFTFREQ,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Low-pass transmission, rfft layout: 1 up to ``fc - falloff``, cosine to 0 at ``fc``.

    ``fc = voxel_size_angstrom / cutoff_angstrom`` cycles/voxel; zero at and beyond ``fc``.
    The falloff is shortened to ``fc`` if the cutoff is very coarse. ``shape`` is the real
    space shape ``(D, H, W)`` or ``(H, W)``.
    """
    fc = _to_fftfreq(cutoff_angstrom, voxel_size_angstrom, "cutoff_angstrom")
    r = radial_frequency(shape, rfft=True, device=device)
    return _falling_edge(r, fc, falloff_fftfreq)


def highpass_filter(
    shape: Sequence[int],
    cutoff_angstrom: float,
    voxel_size_angstrom: float,
    falloff_fftfreq: float = DEFAULT_FALLOFF_FFTFREQ,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """High-pass transmission, rfft layout: 0 up to ``fc`` (DC included), cosine to 1 at ``fc + falloff``.

    ``fc = voxel_size_angstrom / cutoff_angstrom`` cycles/voxel: features coarser than
    ``cutoff_angstrom`` are removed.
    """
    fc = _to_fftfreq(cutoff_angstrom, voxel_size_angstrom, "cutoff_angstrom")
    _check_falloff(falloff_fftfreq)
    r = radial_frequency(shape, rfft=True, device=device)
    if falloff_fftfreq == 0:
        return (r > fc).to(torch.float32)
    x = ((r - fc) / falloff_fftfreq).clamp(0.0, 1.0)
    return 0.5 * (1.0 - torch.cos(torch.pi * x))


def bandpass_filter(
    shape: Sequence[int],
    low_resolution_angstrom: float,
    high_resolution_angstrom: float,
    voxel_size_angstrom: float,
    falloff_fftfreq: float = DEFAULT_FALLOFF_FFTFREQ,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Band-pass transmission keeping features between ``high_resolution_angstrom`` and ``low_resolution_angstrom``.

    Product of ``highpass_filter(low_resolution_angstrom)`` and
    ``lowpass_filter(high_resolution_angstrom)``; requires ``low > high`` (in Å).
    """
    if not low_resolution_angstrom > high_resolution_angstrom:
        raise ValueError(
            "low_resolution_angstrom must be larger (coarser) than high_resolution_angstrom, got "
            f"{low_resolution_angstrom} and {high_resolution_angstrom}."
        )
    return highpass_filter(
        shape, low_resolution_angstrom, voxel_size_angstrom, falloff_fftfreq, device
    ) * lowpass_filter(shape, high_resolution_angstrom, voxel_size_angstrom, falloff_fftfreq, device)


def apply_filter(volume: torch.Tensor, rfft_filter: torch.Tensor, spatial_dims: int = 3) -> torch.Tensor:
    """Multiply the rfft of ``volume`` (last ``spatial_dims`` axes) by ``rfft_filter`` and transform back."""
    dims = tuple(range(-spatial_dims, 0))
    shape = _spatial_shape(volume, spatial_dims)
    if not volume.is_floating_point():
        volume = volume.to(torch.float32)
    spectrum = torch.fft.rfftn(volume, dim=dims) * rfft_filter.to(volume.device)
    return torch.fft.irfftn(spectrum, s=shape, dim=dims).to(volume.dtype)


def lowpass(
    volume: torch.Tensor,
    cutoff_angstrom: float,
    voxel_size_angstrom: float,
    falloff_fftfreq: float = DEFAULT_FALLOFF_FFTFREQ,
    spatial_dims: int = 3,
) -> torch.Tensor:
    """Low-pass filter ``volume (..., D, H, W)`` to ``cutoff_angstrom`` (see ``lowpass_filter``)."""
    filt = lowpass_filter(
        _spatial_shape(volume, spatial_dims), cutoff_angstrom, voxel_size_angstrom, falloff_fftfreq, volume.device
    )
    return apply_filter(volume, filt, spatial_dims)


def highpass(
    volume: torch.Tensor,
    cutoff_angstrom: float,
    voxel_size_angstrom: float,
    falloff_fftfreq: float = DEFAULT_FALLOFF_FFTFREQ,
    spatial_dims: int = 3,
) -> torch.Tensor:
    """High-pass filter ``volume``, removing features coarser than ``cutoff_angstrom`` (and the mean)."""
    filt = highpass_filter(
        _spatial_shape(volume, spatial_dims), cutoff_angstrom, voxel_size_angstrom, falloff_fftfreq, volume.device
    )
    return apply_filter(volume, filt, spatial_dims)


def bandpass(
    volume: torch.Tensor,
    low_resolution_angstrom: float,
    high_resolution_angstrom: float,
    voxel_size_angstrom: float,
    falloff_fftfreq: float = DEFAULT_FALLOFF_FFTFREQ,
    spatial_dims: int = 3,
) -> torch.Tensor:
    """Band-pass filter ``volume`` between ``low_resolution_angstrom`` and ``high_resolution_angstrom`` (Å)."""
    filt = bandpass_filter(
        _spatial_shape(volume, spatial_dims),
        low_resolution_angstrom,
        high_resolution_angstrom,
        voxel_size_angstrom,
        falloff_fftfreq,
        volume.device,
    )
    return apply_filter(volume, filt, spatial_dims)


def normalise(
    volume: torch.Tensor,
    mask: torch.Tensor | None = None,
    spatial_dims: int = 3,
    eps: float = 1e-8,
) -> torch.Tensor:
    """Shift and scale ``volume`` to zero mean and unit standard deviation inside ``mask``.

    Statistics are taken over the last ``spatial_dims`` axes (per batch element), weighted by
    ``mask`` (values in [0, 1], broadcastable; None = whole volume); the whole volume is then
    transformed. A constant volume becomes all zeros (std is clamped at ``eps``).
    """
    dims = tuple(range(-spatial_dims, 0))
    vol = volume if volume.is_floating_point() else volume.to(torch.float32)
    weight = torch.ones_like(vol) if mask is None else torch.broadcast_to(mask.to(vol), vol.shape)
    total = weight.sum(dim=dims, keepdim=True)
    if (total <= 0).any():
        raise ValueError("mask is empty (sums to zero) for at least one volume; cannot normalise.")
    mean = (vol * weight).sum(dim=dims, keepdim=True) / total
    var = ((vol - mean).square() * weight).sum(dim=dims, keepdim=True) / total
    return (vol - mean) / var.sqrt().clamp_min(eps)


def _falling_edge(r: torch.Tensor, fc: float, falloff: float) -> torch.Tensor:
    _check_falloff(falloff)
    width = min(falloff, fc)
    if width == 0:
        return (r < fc).to(torch.float32)
    x = ((r - (fc - width)) / width).clamp(0.0, 1.0)
    return 0.5 * (1.0 + torch.cos(torch.pi * x))


def _to_fftfreq(resolution_angstrom: float, voxel_size_angstrom: float, name: str) -> float:
    if voxel_size_angstrom <= 0:
        raise ValueError(f"voxel_size_angstrom must be positive, got {voxel_size_angstrom}.")
    if resolution_angstrom <= 0:
        raise ValueError(f"{name} must be a positive resolution in Å, got {resolution_angstrom}.")
    return float(voxel_size_angstrom) / float(resolution_angstrom)


def _check_falloff(falloff: float) -> None:
    if falloff < 0:
        raise ValueError(f"falloff_fftfreq must be >= 0 (cycles/voxel), got {falloff}.")


def _spatial_shape(volume: torch.Tensor, spatial_dims: int) -> tuple[int, ...]:
    if spatial_dims not in (2, 3) or volume.ndim < spatial_dims:
        raise ValueError(
            f"need spatial_dims in (2, 3) and a tensor with that many axes, got "
            f"spatial_dims={spatial_dims} and shape {tuple(volume.shape)}."
        )
    return tuple(volume.shape[-spatial_dims:])
