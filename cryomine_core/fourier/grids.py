"""Discrete Fourier frequency grids.

All grids describe the sample frequencies of ``torch.fft.rfftn`` (``rfft=True``) or
``torch.fft.fftn`` (``rfft=False``) taken over the last ``len(shape)`` dimensions of a
real array, in torch's *non-shifted* layout (DC at index 0). For a volume of shape
``(D, H, W)`` the rfft layout has shape ``(D, H, W // 2 + 1)``.

Frequencies are in **cycles/voxel** (Nyquist = 0.5) unless a name says otherwise. Vector
grids list their components in **array-axis order**, i.e. ``(kz, ky, kx)`` for a zyx volume
and ``(ky, kx)`` for a yx image (this differs from the xyz order used for real-space
coordinates; it matches the teamtomo packages).

Shells: the FSC shell of a Fourier voxel is ``round(|k| * n)`` with ``n = min(shape)``, so
shells are ``1 / n`` cycles/voxel wide and shell ``n // 2`` is the last one that lies inside
the Nyquist sphere. There are ``n // 2 + 1`` shells (shell 0 holds the DC component only).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch_grid_utils import fftfreq_grid as _tgu_fftfreq_grid

__all__ = [
    "fft_shape",
    "fftfreq_grid",
    "radial_frequency",
    "n_shells",
    "shell_index",
    "shell_frequencies",
    "shell_sum",
]


def fft_shape(shape: Sequence[int], rfft: bool = True) -> tuple[int, ...]:
    """Shape of the (r)fft of a real array of ``shape``: ``(..., W // 2 + 1)`` if ``rfft``."""
    shape = tuple(int(s) for s in shape)
    if rfft:
        return (*shape[:-1], shape[-1] // 2 + 1)
    return shape


def fftfreq_grid(
    shape: Sequence[int],
    rfft: bool = True,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Vector grid of DFT sample frequencies.

    Parameters
    ----------
    shape
        Real-space shape, ``(H, W)`` or ``(D, H, W)``.
    rfft
        Frequencies of the half transform from ``rfftn`` (last axis ``W // 2 + 1`` long).
    device
        Device of the returned tensor.

    Returns
    -------
    torch.Tensor
        ``(*fft_shape(shape, rfft), ndim)`` float32 grid in cycles/voxel, components in
        array-axis order (``kz, ky, kx`` for a volume).
    """
    shape = _check_shape(shape)
    return _tgu_fftfreq_grid(image_shape=shape, rfft=rfft, fftshift=False, device=device)


def radial_frequency(
    shape: Sequence[int],
    rfft: bool = True,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Modulus ``|k|`` of the DFT sample frequencies, ``fft_shape(shape, rfft)``, cycles/voxel."""
    shape = _check_shape(shape)
    return _tgu_fftfreq_grid(image_shape=shape, rfft=rfft, fftshift=False, norm=True, device=device)


def n_shells(shape: Sequence[int]) -> int:
    """Number of FSC shells up to Nyquist for a box of ``shape``: ``min(shape) // 2 + 1``."""
    shape = _check_shape(shape)
    return min(shape) // 2 + 1


def shell_index(
    shape: Sequence[int],
    rfft: bool = True,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Integer FSC shell of every Fourier voxel.

    Shell ``s = round(|k| * min(shape))`` with ``|k|`` in cycles/voxel. Voxels beyond the
    last shell (the corners outside the Nyquist sphere) get the overflow index
    ``n_shells(shape)``, so ``torch.bincount``/``scatter_add`` with ``n_shells + 1`` bins
    works and the last bin can be dropped.

    Returns
    -------
    torch.Tensor
        ``fft_shape(shape, rfft)`` int64 tensor with values in ``[0, n_shells(shape)]``.
    """
    shape = _check_shape(shape)
    n = min(shape)
    shells = torch.round(radial_frequency(shape, rfft=rfft, device=device).double() * n).long()
    return shells.masked_fill(shells > n // 2, n // 2 + 1)


def shell_sum(values: torch.Tensor, shells: torch.Tensor, n: int) -> torch.Tensor:
    """Sum ``values (..., *S)`` per shell: ``shells`` is an int64 grid of shape ``S`` (e.g.
    :func:`shell_index`) with values in ``[0, n]``; returns float64 ``(..., n)``, the overflow bin
    ``n`` (corners beyond Nyquist) dropped."""
    flat = values.flatten(-shells.dim()).to(torch.float64)
    out = torch.zeros((*flat.shape[:-1], n + 1), dtype=torch.float64, device=flat.device)
    out.index_add_(-1, shells.reshape(-1).to(flat.device), flat)
    return out[..., :n]


def shell_frequencies(
    shape: Sequence[int],
    voxel_size_angstrom: float | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Centre frequency of every FSC shell, ``(n_shells,)``.

    In cycles/voxel (``s / min(shape)``) if ``voxel_size_angstrom`` is None, else in 1/Å
    (cycles/voxel divided by the voxel size). The matching resolution in Å is ``1 / f``.
    """
    shape = _check_shape(shape)
    n = min(shape)
    freqs = torch.arange(n // 2 + 1, dtype=torch.float32, device=device) / n
    if voxel_size_angstrom is not None:
        if voxel_size_angstrom <= 0:
            raise ValueError(f"voxel_size_angstrom must be positive, got {voxel_size_angstrom}.")
        freqs = freqs / float(voxel_size_angstrom)
    return freqs


def _check_shape(shape: Sequence[int]) -> tuple[int, ...]:
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (2, 3) or any(s < 1 for s in shape):
        raise ValueError(f"shape must be (H, W) or (D, H, W) with positive sizes, got {shape}.")
    return shape
