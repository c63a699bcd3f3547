"""Rotation-invariant features: spherical-harmonic power per radial shell.

A volume ``f`` is sampled on ``n_shells`` concentric spheres about the box centre (voxel
``N // 2``; trilinear interpolation, each shell averaged over three radii across its thickness).
On each sphere the coefficients ``a_lm`` of ``f`` in spherical harmonics are computed by
quadrature (Gauss-Legendre in cos(polar angle) x uniform azimuth), and the power per degree,
``P_l(r) = sum_m |a_lm(r)|^2`` for ``l = 0..l_max``, is the feature: a rotation of the volume
about the centre mixes the ``a_lm`` of one ``l`` by a unitary matrix and leaves ``P_l`` unchanged
(up to interpolation error). Features are returned as ``sqrt(P_l)`` (same units as the data),
shape ``(B, n_shells * (l_max + 1))`` per source. With ``cross_shells`` the invariants between
shells are added: per degree, the cosine between two shells' coefficient vectors (a rotation
applies the same unitary matrix to both, so their inner product is unchanged), in the spirit of
the SOAP power spectrum of atomistic machine learning (Bartok, Kondor & Csanyi 2013).

``source='fourier'`` applies the same to the amplitude of the centred 3-D Fourier transform,
which is also invariant to translations (the particles' random shifts); ``'both'`` concatenates
the two. Everything is batched torch and runs on the volumes' device.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

try:  # scipy >= 1.15: sph_harm_y(degree, order, polar, azimuth); sph_harm was removed in 1.17
    from scipy.special import sph_harm_y as _sph_harm_y
except ImportError:  # older scipy (Scipion pins <= 1.10): sph_harm(order, degree, azimuth, polar)
    from scipy.special import sph_harm as _sph_harm

    def _sph_harm_y(degree, order, polar, azimuth):
        return _sph_harm(order, degree, azimuth, polar)

SOURCES = ("real", "fourier", "both")


@lru_cache(maxsize=16)
def _quadrature(l_max: int, n_polar: int, n_azimuth: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Unit directions (P, 3) xyz, and the weighted real/imaginary SH matrices (P, K) for m >= 0,
    with the degree of each column (K,)."""
    x, w = np.polynomial.legendre.leggauss(n_polar)  # x = cos(polar)
    polar = np.arccos(x)
    azimuth = 2 * np.pi * np.arange(n_azimuth) / n_azimuth
    pol, azi = np.meshgrid(polar, azimuth, indexing="ij")
    weights = (w[:, None] * np.full(n_azimuth, 2 * np.pi / n_azimuth)[None, :]).ravel()
    pol, azi = pol.ravel(), azi.ravel()
    dirs = np.stack([np.sin(pol) * np.cos(azi), np.sin(pol) * np.sin(azi), np.cos(pol)], axis=-1)
    cols, degrees = [], []
    for lv in range(l_max + 1):
        for m in range(lv + 1):
            cols.append(np.conj(_sph_harm_y(lv, m, pol, azi)) * weights)
            degrees.append(lv)
    y = np.stack(cols, axis=-1)
    return dirs, y.real.copy(), y.imag.copy(), np.asarray(degrees)


def shell_radii(box: int, n_shells: int, r_max: float | None = None) -> np.ndarray:
    """Centres of ``n_shells`` equal-width shells from the centre to ``r_max`` (default ``box/2 - 1``)."""
    r_max = float(box / 2 - 1 if r_max is None else r_max)
    return (np.arange(n_shells) + 0.5) * r_max / n_shells


def _shell_power(volumes: torch.Tensor, l_max: int, n_shells: int, n_polar: int, n_azimuth: int,
                 cross: bool = False) -> torch.Tensor:
    b, d, h, w = volumes.shape
    dev, dt = volumes.device, torch.float32
    dirs, y_re, y_im, degrees = _quadrature(l_max, n_polar, n_azimuth)
    radii = shell_radii(min(d, h, w), n_shells)
    dr = radii[0]  # half a shell's width
    sub = np.concatenate([radii - 2 * dr / 3, radii, radii + 2 * dr / 3])  # 3 radii per shell
    pts = sub[:, None, None] * dirs[None, :, :]  # (3S, P, 3) xyz offsets in voxels
    centre = np.array([w // 2, h // 2, d // 2], dtype=np.float64)
    size = np.array([w, h, d], dtype=np.float64)
    grid = 2.0 * (pts + centre) / (size - 1) - 1.0
    grid_t = torch.as_tensor(grid, dtype=dt, device=dev).reshape(1, 1, 3 * n_shells, -1, 3).expand(b, -1, -1, -1, -1)
    samples = F.grid_sample(volumes.to(dt).unsqueeze(1), grid_t, mode="bilinear", padding_mode="zeros",
                            align_corners=True)  # (B, 1, 1, 3S, P)
    samples = samples.reshape(b, 3, n_shells, -1).mean(dim=1)  # average across the shell: (B, S, P)
    re = samples @ torch.as_tensor(y_re, dtype=dt, device=dev)
    im = samples @ torch.as_tensor(y_im, dtype=dt, device=dev)
    m_weight = torch.as_tensor([1.0 if _m0 else 2.0 for _m0 in _m_is_zero(l_max)], dtype=dt, device=dev)
    deg = torch.as_tensor(degrees, device=dev)
    if not cross:
        power_lm = (re * re + im * im) * m_weight  # (B, S, K)
        power = torch.zeros((b, n_shells, l_max + 1), dtype=dt, device=dev)
        power.index_add_(2, deg, power_lm)
        return power.clamp_min(0).sqrt().reshape(b, -1)
    # Gram matrix of the shells per degree: G_l(i, j) = sum_m a_lm(r_i) conj(a_lm(r_j)) (real for a real
    # volume, m < 0 folded into the weight 2 of m > 0); the rotation acts on the a_lm of degree l by
    # the same unitary matrix on every shell, so G_l is invariant.
    gram_lm = (re.unsqueeze(2) * re.unsqueeze(1) + im.unsqueeze(2) * im.unsqueeze(1)) * m_weight  # (B, S, S, K)
    gram = torch.zeros((b, n_shells, n_shells, l_max + 1), dtype=dt, device=dev)
    gram.index_add_(3, deg, gram_lm)
    diag = torch.diagonal(gram, dim1=1, dim2=2).clamp_min(0)  # (B, l_max + 1, S)
    norm = diag.sqrt()
    i, j = torch.triu_indices(n_shells, n_shells, offset=1, device=dev)
    # a degree with (next to) no power on a shell has no direction to compare (the odd degrees of
    # the centrosymmetric Fourier amplitude are zero): the floor, a thousandth of the shells' total
    # power, sends such cosines to 0 instead of amplifying rounding errors to +-1
    total = diag.sum(dim=1).sqrt()  # (B, S)
    floor = 1e-3 * total[:, i] * total[:, j] + 1e-12
    cosine = gram.permute(0, 3, 1, 2)[:, :, i, j] / (norm[:, :, i] * norm[:, :, j] + floor.unsqueeze(1))
    return torch.cat([norm.transpose(1, 2).reshape(b, -1), cosine.clamp(-1, 1).reshape(b, -1)], dim=1)


@lru_cache(maxsize=16)
def _m_is_zero(l_max: int) -> tuple[bool, ...]:
    return tuple(m == 0 for lv in range(l_max + 1) for m in range(lv + 1))


def fourier_amplitude(volumes: torch.Tensor) -> torch.Tensor:
    """``|FFT|`` of each volume with the origin moved to voxel ``N // 2`` (the box centre)."""
    ft = torch.fft.fftn(volumes.to(torch.float32), dim=(-3, -2, -1))
    return torch.fft.fftshift(ft, dim=(-3, -2, -1)).abs()


def rotation_invariant_features(volumes, *, l_max: int = 8, n_shells: int = 14, source: str = "both",
                                n_polar: int | None = None, n_azimuth: int | None = None, normalise: bool = True,
                                cross_shells: bool = False, batch_size: int = 256) -> torch.Tensor:
    """Spherical-harmonic power per shell of ``volumes`` ``(B, Z, Y, X)`` (or one ``(Z, Y, X)``).

    Args:
        l_max: highest degree (default 8).
        n_shells: radial shells between the centre and ``box / 2 - 1`` (default 14).
        source: ``'real'`` (density), ``'fourier'`` (Fourier amplitude; translation invariant) or
            ``'both'``.
        n_polar, n_azimuth: quadrature nodes per sphere (default: about the voxel density of
            the outer shell, at least ``2 (l_max + 1)`` and ``4 (l_max + 1)``).
        normalise: z-score each volume first (as the networks see it).
        cross_shells: also the invariants between shells: for every degree and every pair of
            shells ``i < j`` the cosine ``G_l(i, j) / sqrt(G_l(i, i) G_l(j, j))`` of the shells'
            degree-``l`` coefficients, ``G_l(i, j) = sum_m a_lm(r_i) conj(a_lm(r_j))`` (how the
            pattern of one shell lines up with another's; the power alone loses that).
        batch_size: volumes per batch.

    Returns:
        ``(B, F)`` float32 features (``F = n_shells * (l_max + 1)`` per source, plus
        ``(l_max + 1) * n_shells * (n_shells - 1) / 2`` with ``cross_shells``; ``'both'`` doubles it).
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    vols = torch.as_tensor(np.asarray(volumes, dtype=np.float32) if not torch.is_tensor(volumes) else volumes)
    single = vols.dim() == 3
    if single:
        vols = vols.unsqueeze(0)
    if vols.dim() != 4:
        raise ValueError(f"volumes must be (B, Z, Y, X), got {tuple(vols.shape)}")
    edge = min(vols.shape[-3:])
    n_polar = n_polar or max(2 * (l_max + 1), int(math.ceil(math.pi * edge / 2)))
    n_azimuth = n_azimuth or max(4 * (l_max + 1), 2 * n_polar)
    out = []
    for start in range(0, vols.shape[0], batch_size):
        v = vols[start:start + batch_size].to(torch.float32)
        if normalise:
            v = (v - v.mean(dim=(-3, -2, -1), keepdim=True)) / v.std(dim=(-3, -2, -1), keepdim=True).clamp_min(1e-6)
        parts = []
        if source in ("real", "both"):
            parts.append(_shell_power(v, l_max, n_shells, n_polar, n_azimuth, cross_shells))
        if source in ("fourier", "both"):
            amp = fourier_amplitude(v) / math.sqrt(v[0].numel())
            parts.append(_shell_power(amp, l_max, n_shells, n_polar, n_azimuth, cross_shells))
        out.append(torch.cat(parts, dim=1))
    feats = torch.cat(out)
    return feats[0] if single else feats
