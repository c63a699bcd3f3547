"""Fourier shell correlation (FSC) and resolution estimates.

Shells follow ``cryomine_core.fourier.grids``: shell ``s`` collects the Fourier voxels with
``round(|k| * n) == s`` (``n = min(D, H, W)``, ``|k|`` in cycles/voxel), ``n // 2 + 1`` shells
from DC to Nyquist, centre frequency ``s / n`` cycles/voxel (``shell_frequencies``).

The sums run over the rfft half spectrum with each voxel counted as often as it appears in
the full spectrum (twice, except for the ``kx = 0`` and, for even ``W``, the ``kx`` Nyquist
planes), so the result equals the FSC over the full ``fftn`` spectrum.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from cryomine_core.fourier.grids import n_shells, shell_frequencies, shell_index, shell_sum

__all__ = [
    "FSC_THRESHOLD_GOLD_STANDARD",
    "FSC_THRESHOLD_HALF",
    "fsc",
    "resolution_at",
    "shell_frequencies",
]

FSC_THRESHOLD_GOLD_STANDARD = 0.143
"""Threshold for FSC between independent half maps (Rosenthal & Henderson 2003)."""

FSC_THRESHOLD_HALF = 0.5
"""The older 0.5 criterion (e.g. map vs. reference, or a conservative half-map estimate)."""


def fsc(
    a: torch.Tensor,
    b: torch.Tensor,
    mask: torch.Tensor | None = None,
    fourier_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Fourier shell correlation between two (batches of) real volumes.

    ``FSC(s) = Re(sum F_a conj(F_b)) / sqrt(sum |F_a|^2 * sum |F_b|^2)`` over the voxels of
    shell ``s``.

    Parameters
    ----------
    a, b
        Real volumes ``(..., D, H, W)`` (zyx); batch dims must broadcast.
    mask
        Optional real-space mask, broadcastable to ``(..., D, H, W)``, multiplied into both
        volumes before the transform (a soft-edged mask avoids spurious correlation).
    fourier_mask
        Optional weights in rfft layout, broadcastable to ``(..., D, H, W // 2 + 1)``
        (e.g. the product of two missing-wedge masks, to correlate only the jointly observed
        region). Each Fourier voxel's contribution is multiplied by it.

    Returns
    -------
    torch.Tensor
        float32 ``(..., n_shells)`` with ``n_shells = min(D, H, W) // 2 + 1``; frequencies
        from ``shell_frequencies((D, H, W), voxel_size_angstrom)``. A shell with no power in
        either map has FSC 0.
    """
    if a.ndim < 3 or b.ndim < 3:
        raise ValueError(f"fsc needs volumes (..., D, H, W), got shapes {tuple(a.shape)} and {tuple(b.shape)}.")
    if a.shape[-3:] != b.shape[-3:]:
        raise ValueError(f"volume shapes differ: {tuple(a.shape[-3:])} vs {tuple(b.shape[-3:])}.")
    shape = tuple(a.shape[-3:])
    if mask is not None:
        a = a * mask
        b = b * mask
    dims = (-3, -2, -1)
    fa = torch.fft.rfftn(a, dim=dims)
    fb = torch.fft.rfftn(b, dim=dims)

    weight = _rfft_multiplicity(shape, device=fa.device)
    if fourier_mask is not None:
        weight = weight * fourier_mask.to(device=fa.device, dtype=weight.dtype)

    cross = (fa * fb.conj()).real * weight
    power_a = fa.abs().square() * weight
    power_b = fb.abs().square() * weight

    n = n_shells(shape)
    idx = shell_index(shape, rfft=True, device=fa.device)
    cross_s = shell_sum(cross, idx, n)
    pa_s = shell_sum(power_a, idx, n)
    pb_s = shell_sum(power_b, idx, n)
    denom = torch.sqrt(pa_s * pb_s)
    out = torch.where(denom > 0, cross_s / denom.clamp_min(torch.finfo(denom.dtype).tiny), 0.0)
    return out.to(torch.float32)


def resolution_at(
    fsc_curve: torch.Tensor | Sequence[float],
    threshold: float = FSC_THRESHOLD_GOLD_STANDARD,
    voxel_size_angstrom: float = 1.0,
    frequencies: torch.Tensor | Sequence[float] | None = None,
) -> torch.Tensor:
    """Resolution (Å) where an FSC curve first drops below ``threshold``.

    The curve is scanned from shell 1 outwards (the DC shell 0 is treated as 1, since it
    carries no resolution information); the crossing is placed by linear interpolation
    between the last shell at or above the threshold and the first shell below it, and
    converted to Å as ``voxel_size_angstrom / f``.

    **If the curve never drops below the threshold, the Nyquist resolution is returned**
    (``voxel_size_angstrom / frequencies[-1]``, i.e. ``2 * voxel_size_angstrom`` for an even
    box): the data support at least that resolution, but the true value is unknown. NaN
    values never count as a crossing.

    Parameters
    ----------
    fsc_curve
        ``(..., n_shells)`` FSC values, e.g. from ``fsc``.
    threshold
        FSC threshold in (0, 1): ``FSC_THRESHOLD_GOLD_STANDARD`` (0.143) or
        ``FSC_THRESHOLD_HALF`` (0.5).
    voxel_size_angstrom
        Voxel size in Å.
    frequencies
        ``(n_shells,)`` shell frequencies in cycles/voxel. Default ``s / (2 * (n_shells - 1))``,
        right for ``fsc`` on an even box; for an odd box pass ``shell_frequencies(shape)``.

    Returns
    -------
    torch.Tensor
        float32 ``(...)`` resolution in Å (0-dim for a single curve).
    """
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must lie in (0, 1), got {threshold}.")
    if voxel_size_angstrom <= 0:
        raise ValueError(f"voxel_size_angstrom must be positive, got {voxel_size_angstrom}.")
    curve = torch.as_tensor(fsc_curve).to(torch.float64)
    n = curve.shape[-1] if curve.ndim else 0
    if n < 2:
        raise ValueError(f"fsc_curve needs at least 2 shells along its last axis, got shape {tuple(curve.shape)}.")
    if frequencies is None:
        freqs = torch.arange(n, dtype=torch.float64, device=curve.device) / (2.0 * (n - 1))
    else:
        freqs = torch.as_tensor(frequencies, dtype=torch.float64).to(curve.device)
        if freqs.shape != (n,):
            raise ValueError(f"frequencies must have shape ({n},), got {tuple(freqs.shape)}.")

    below = curve[..., 1:] < threshold
    crossed = below.any(dim=-1)
    first = below.to(torch.int64).argmax(dim=-1) + 1  # first shell below the threshold
    prev = first - 1
    y1 = torch.gather(curve, -1, first[..., None])[..., 0]
    y0 = torch.gather(curve, -1, prev[..., None])[..., 0]
    y0 = torch.where(prev == 0, torch.ones_like(y0), y0)
    f0, f1 = freqs[prev], freqs[first]
    t = (y0 - threshold) / (y0 - y1)
    f_cross = f0 + t * (f1 - f0)
    f_cross = torch.where(crossed, f_cross, freqs[-1].expand_as(f_cross))
    return (voxel_size_angstrom / f_cross).to(torch.float32)


def _rfft_multiplicity(shape: tuple[int, int, int], device) -> torch.Tensor:
    """How many times each rfft voxel appears in the full spectrum (1 or 2), ``(W // 2 + 1,)``."""
    w = shape[-1]
    mult = torch.full((w // 2 + 1,), 2.0, dtype=torch.float64, device=device)
    mult[0] = 1.0
    if w % 2 == 0:
        mult[-1] = 1.0
    return mult
