"""Contrast transfer function of a tilt image, and a detector MTF model.

Sign convention (pinned)
------------------------
``ctf_2d`` returns the *image-contrast* transfer function of a weak-phase object::

    CTF(k) = -sin(chi(k) + phi + w) * exp(-B |k|^2 / 4)
    chi(k) = pi * lambda * dz * |k|^2 - (pi / 2) * Cs * lambda^3 * |k|^4
    w      = arcsin(A)          (amplitude contrast A, i.e. atan(A / sqrt(1 - A^2)))

with ``dz > 0`` for underfocus, ``phi`` an extra (phase-plate) phase shift, ``|k|`` in 1/Å
and ``lambda`` the relativistic electron wavelength in Å. Hence

* ``CTF(0) = -A`` (e.g. -0.07), and the first lobe is negative for underfocus: multiplying the
  Fourier transform of a projected potential (dense = positive) by this CTF gives an image in
  which dense matter is *dark*, as in raw micrographs and tilt series;
* the first zero is the smallest ``|k| > 0`` with ``chi(k) + phi + w = pi``.

This is the cisTEM / Frealign sign. torch-ctf (wrapped here) uses the opposite global sign
(its CTF(0) = +A, RELION-like), so ``ctf_2d`` returns ``-torch_ctf.calculate_ctf_2d(...)``;
apart from the sign its phase formula is the one above (checked against its source, 0.6.0).
Use ``ctf ** 2`` or ``abs(ctf)`` where the sign does not matter (e.g. Wiener filtering).

Layout: ``(..., H, W // 2 + 1)`` for ``rfft=True`` (default) or ``(..., H, W)``, torch's
non-shifted layout; frequencies ``(ky, kx)`` of a yx image.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch_ctf import calculate_ctf_2d as _tc_calculate_ctf_2d
from torch_ctf import calculate_relativistic_electron_wavelength as _tc_wavelength_m

from cryomine_core.fourier.grids import fftfreq_grid

__all__ = ["ctf_2d", "electron_wavelength_angstrom", "mtf"]


def electron_wavelength_angstrom(voltage_kv: float | torch.Tensor = 300.0) -> torch.Tensor:
    """Relativistic electron wavelength in Å for an acceleration voltage in kV (300 kV: 0.0197 Å)."""
    volts = torch.as_tensor(voltage_kv, dtype=torch.float64) * 1e3
    return _tc_wavelength_m(volts) * 1e10


def ctf_2d(
    shape: Sequence[int],
    voxel_size_angstrom: float,
    defocus_um: float | torch.Tensor,
    voltage_kv: float | torch.Tensor = 300.0,
    cs_mm: float | torch.Tensor = 2.7,
    amplitude_contrast: float | torch.Tensor = 0.07,
    phase_shift_deg: float | torch.Tensor = 0.0,
    b_factor: float | torch.Tensor = 0.0,
    rfft: bool = True,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """2-D CTF of (a batch of) tilt images, without astigmatism.

    Parameters
    ----------
    shape
        Image shape ``(H, W)`` in pixels (yx).
    voxel_size_angstrom
        Pixel size in Å.
    defocus_um
        Defocus in µm, **positive = underfocus**. Float or tensor ``(...)``; one CTF is
        returned per element (e.g. one per tilt image).
    voltage_kv, cs_mm, amplitude_contrast, phase_shift_deg
        Acceleration voltage (kV), spherical aberration (mm), amplitude contrast fraction
        in [0, 1), extra phase shift (degrees). Floats or tensors broadcastable with
        ``defocus_um``.
    b_factor
        B-factor in Å^2 of the envelope ``exp(-b_factor * |k|^2 / 4)`` (``|k|`` in 1/Å);
        0 = no envelope. Float or tensor broadcastable with ``defocus_um``.
    rfft
        rfft layout ``(H, W // 2 + 1)`` (default) or full ``(H, W)``, non-shifted.
    device
        Device of the result; defaults to the device of ``defocus_um`` if a tensor.

    Returns
    -------
    torch.Tensor
        float32 ``(..., H, W // 2 + 1)`` CTF; ``CTF(0) = -amplitude_contrast`` when
        ``phase_shift_deg = 0`` (see the module docstring for the sign convention).
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 2:
        raise ValueError(f"shape must be an image shape (H, W), got {shape}.")
    if voxel_size_angstrom <= 0:
        raise ValueError(f"voxel_size_angstrom must be positive, got {voxel_size_angstrom}.")
    amp = torch.as_tensor(amplitude_contrast)
    if (amp < 0).any() or (amp >= 1).any():
        raise ValueError(f"amplitude_contrast must be a fraction in [0, 1), got {amplitude_contrast}.")
    if device is None:
        device = defocus_um.device if isinstance(defocus_um, torch.Tensor) else torch.device("cpu")
    defocus = torch.as_tensor(defocus_um, dtype=torch.float32, device=device)

    ctf = -_tc_calculate_ctf_2d(
        defocus=defocus,
        astigmatism=0.0,
        astigmatism_angle=0.0,
        voltage=voltage_kv,
        spherical_aberration=cs_mm,
        amplitude_contrast=amplitude_contrast,
        phase_shift=phase_shift_deg,
        pixel_size=float(voxel_size_angstrom),
        image_shape=shape,
        rfft=rfft,
        fftshift=False,
    )
    if not _is_zero(b_factor):
        k = fftfreq_grid(shape, rfft=rfft, device=device) / float(voxel_size_angstrom)
        k2 = (k**2).sum(-1)
        bfac = torch.as_tensor(b_factor, dtype=torch.float32, device=device)[..., None, None]
        ctf = ctf * torch.exp(-bfac * k2 / 4.0)
    return ctf.to(torch.float32)


def mtf(
    shape: Sequence[int],
    psf_sigma_px: float | torch.Tensor = 0.0,
    pixel_aperture: bool = True,
    rfft: bool = True,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Simple detector modulation transfer function (MTF) model, 1 at DC.

    ``MTF(ky, kx) = sinc(ky) * sinc(kx) * exp(-2 * pi^2 * psf_sigma_px^2 * |k|^2)`` with
    ``k`` in cycles/pixel and ``sinc(f) = sin(pi f) / (pi f)``:

    * the sinc factors are the square pixel aperture (integration over one pixel); they fall
      to ``2 / pi ~ 0.64`` at Nyquist on the axes and ``(2 / pi)^2`` at the corner;
    * the Gaussian factor is the transform of a Gaussian point-spread function of standard
      deviation ``psf_sigma_px`` pixels (charge/light spreading in the detector);
      0 disables it.

    Parameters
    ----------
    shape
        Image shape ``(H, W)`` (2-D) or volume shape ``(D, H, W)``; the aperture term uses
        every axis.
    psf_sigma_px
        Gaussian PSF width in pixels, float or tensor ``(...)`` for a batch.
    pixel_aperture
        Include the pixel-aperture sinc factors (default True).
    rfft
        rfft (default) or full fft layout, non-shifted.
    device
        Device of the result.

    Returns
    -------
    torch.Tensor
        float32 ``(..., *fft_shape)`` MTF in (0, 1].
    """
    k = fftfreq_grid(shape, rfft=rfft, device=device)
    sigma = torch.as_tensor(psf_sigma_px, dtype=torch.float32, device=k.device)
    if (sigma < 0).any():
        raise ValueError(f"psf_sigma_px must be >= 0, got {psf_sigma_px}.")
    out = torch.ones(k.shape[:-1], dtype=torch.float32, device=k.device)
    if pixel_aperture:
        out = torch.sinc(k).prod(-1)
    k2 = (k**2).sum(-1)
    sigma = sigma.reshape(*sigma.shape, *([1] * (k.ndim - 1)))
    return out * torch.exp(-2.0 * torch.pi**2 * sigma**2 * k2)


def _is_zero(value) -> bool:
    return not isinstance(value, torch.Tensor) and float(value) == 0.0
