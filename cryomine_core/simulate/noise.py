"""Signal-to-noise ratio: definition, calibration and independent measurement.

Definition (Che et al. 2018, Förster et al. 2008): the SNR of a simulated subtomogram (or
tomogram) is the variance of its noise-free reconstruction divided by the variance of the
reconstruction of the noise alone, both taken over the whole box *after* reconstruction (so
the missing wedge, CTF and MTF act on both). Reconstruction is linear, so a tilt-image noise
level ``sigma`` (standard deviation per pixel, in the units of the projections: density
summed along the beam) gives ``SNR = var(signal) / (sigma^2 * var(unit-noise reconstruction))``.

Calibration: :func:`noise_sigma` inverts that relation. With ``scope='dataset'`` (default) one
``sigma`` serves the whole data set, as one electron dose serves a whole session: the signal
variance is the mean over classes (empty class excluded), so the SNR of a large complex is
above the nominal value and that of a small one below, and the noise level carries no class
information. ``scope='particle'`` instead sets each particle's own sigma to hit the SNR exactly.

Measurement (:func:`snr_from_pairs`): two reconstructions of the same particle with independent
noise, ``a = s + n1`` and ``b = s + n2``, have correlation ``cc = var(s) / (var(s) + var(n))``,
hence ``SNR = cc / (1 - cc)``; pooled over particles, ``sum cov(a, b) / sum (var_ab - cov(a, b))``
with ``var_ab = (var(a) + var(b)) / 2``. It uses neither the noise-free signal nor ``sigma``, so
it checks the calibration independently.
"""

from __future__ import annotations

import torch

__all__ = ["noise_sigma", "snr_from_pairs", "variance"]


def variance(volumes: torch.Tensor) -> torch.Tensor:
    """Per-volume variance over the last three axes, ``(...,)`` (population variance)."""
    return volumes.flatten(-3).var(dim=-1, unbiased=False)


def noise_sigma(signal_variance: torch.Tensor | float, unit_noise_variance: float, snr: float) -> torch.Tensor:
    """Tilt-image noise standard deviation giving ``snr`` (module docstring)."""
    s = torch.as_tensor(signal_variance, dtype=torch.float64)
    return torch.sqrt(s / (float(snr) * float(unit_noise_variance)))


def snr_from_pairs(a: torch.Tensor, b: torch.Tensor) -> tuple[float, torch.Tensor]:
    """Pooled and per-pair SNR of reconstructions ``(n, D, H, W)`` sharing signal, not noise.

    Returns:
        ``(pooled_snr, per_pair_snr (n,))``.
    """
    a = a.flatten(1).double()
    b = b.flatten(1).double()
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    cov = (a * b).mean(1)
    var = 0.5 * ((a * a).mean(1) + (b * b).mean(1))
    per = cov / (var - cov).clamp_min(1e-30)
    pooled = float(cov.sum() / (var - cov).sum().clamp_min(1e-30))
    return pooled, per.float()
