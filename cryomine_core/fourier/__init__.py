"""Fourier-space tools: frequency grids, missing wedge, CTF/MTF, FSC and filters.

Conventions: volumes are zyx ``(..., D, H, W)``, images yx ``(..., H, W)``; Fourier arrays
use torch's non-shifted layout, ``rfftn`` over the trailing spatial axes unless a function
says otherwise (``(..., D, H, W // 2 + 1)``); frequencies in cycles/voxel (Nyquist 0.5) or
1/Å where the name says so; angles in degrees; voxel sizes in Å. Frequency-vector grids list
components in array-axis order ``(kz, ky, kx)``. The tilt geometry is documented in
``cryomine_core.fourier.wedge`` and the CTF sign (``CTF(0) = -amplitude_contrast``) in
``cryomine_core.fourier.ctf``. All functions are device-agnostic and accept leading batch dims.
"""

from cryomine_core.fourier.ctf import ctf_2d, electron_wavelength_angstrom, mtf
from cryomine_core.fourier.filters import (
    apply_filter,
    bandpass,
    bandpass_filter,
    highpass,
    highpass_filter,
    lowpass,
    lowpass_filter,
    normalise,
)
from cryomine_core.fourier.fsc import FSC_THRESHOLD_GOLD_STANDARD, FSC_THRESHOLD_HALF, fsc, resolution_at
from cryomine_core.fourier.grids import (
    fft_shape,
    fftfreq_grid,
    n_shells,
    radial_frequency,
    shell_frequencies,
    shell_index,
)
from cryomine_core.fourier.wedge import (
    missing_wedge_mask,
    observed_fraction,
    tilt_series_weights,
    validate_tilt_range,
)

__all__ = [
    "FSC_THRESHOLD_GOLD_STANDARD",
    "FSC_THRESHOLD_HALF",
    "apply_filter",
    "bandpass",
    "bandpass_filter",
    "ctf_2d",
    "electron_wavelength_angstrom",
    "fft_shape",
    "fftfreq_grid",
    "fsc",
    "highpass",
    "highpass_filter",
    "lowpass",
    "lowpass_filter",
    "missing_wedge_mask",
    "mtf",
    "n_shells",
    "normalise",
    "observed_fraction",
    "radial_frequency",
    "resolution_at",
    "shell_frequencies",
    "shell_index",
    "tilt_series_weights",
    "validate_tilt_range",
]
