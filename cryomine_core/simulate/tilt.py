"""Tilt-series forward model and reconstruction, in Fourier space (projection-slice theorem).

Geometry (that of :mod:`cryomine_core.fourier.wedge`): at zero tilt the beam runs along z, the
tilt axis is y, and the image taken at tilt ``theta`` is the projection of the specimen along
``b(theta) = cos(theta) z + sin(theta) x``. Its 2-D Fourier transform is the central plane of
the specimen's 3-D transform spanned by ``M(theta) x`` and ``M(theta) y`` with
``M(theta) = rotation_y(theta)`` (xyz, active, right-handed): the slice point ``(kx, ky)`` of the
image is the 3-D frequency ``M(theta) @ (kx, ky, 0)``. For a particle of pose ``(R, t)``
(``particle(x) = reference(R^T (x - t))``) that frequency is read from the reference's transform at
``R^T M(theta) (kx, ky, 0)`` and multiplied by the phase ``exp(-2 pi i k . t)``.

Layouts: slices are ``(..., H, W // 2 + 1)`` complex, torch's non-shifted ``rfft2`` layout of a yx
image; reconstructions are gridded in torch's non-shifted ``rfftn`` layout ``(..., D, H, W // 2 + 1)``
(indices wrap periodically). Structures to be sliced are kept as full, fftshifted 3-D transforms
(smooth, so trilinear sampling is accurate; see :func:`centred_fft`). Real-space boxes have their
centre at index ``N // 2``, which is the phase origin of every transform. Transforms are
unnormalised (``norm="backward"``): an extracted slice equals ``rfft2`` of the projected image
(sum along the beam, in voxel units), and white noise of standard deviation ``sigma`` per pixel
is ``rfft2`` of ``sigma * randn``.

Reconstruction: slices are gridded back into the 3-D transform with trilinear weights (each
slice point spreads over its 8 neighbouring Fourier voxels, the conjugate half folded onto
``kx >= 0``); the ``kx = 0`` plane is then made Hermitian. Direct Fourier inversion ('dfi')
divides by the accumulated weight clipped at 1 (a regularised division: voxels reached only
by a fraction of a slice, in the gaps between slices beyond the Crowther frequency or at the
wedge edges, are attenuated instead of amplified); weighted back-projection ('wbp') instead
multiplies by the analytic sampling density ``clip(rho * N * dtheta, 1 / n_tilts, 1)`` (rho the
distance from the tilt axis in cycles/voxel).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from cryomine_core.geometry.rotations import rotation_y

__all__ = [
    "tilt_angles",
    "tilt_matrices",
    "slice_frequencies",
    "centred_fft",
    "extract_slices",
    "transfer_function",
    "noise_slices",
    "SliceInserter",
    "insert_slices",
    "observed_region",
    "hermitian_planes",
    "reconstruction_filter",
    "finish_reconstruction",
]


def tilt_angles(tilt_min_deg: float, tilt_max_deg: float, tilt_step_deg: float) -> torch.Tensor:
    """``(T,)`` float64 tilt angles from ``tilt_min_deg`` to ``tilt_max_deg`` (inclusive) by the step."""
    n = int(math.floor((tilt_max_deg - tilt_min_deg) / tilt_step_deg + 1e-6)) + 1
    return tilt_min_deg + tilt_step_deg * torch.arange(n, dtype=torch.float64)


def tilt_matrices(angles_deg: torch.Tensor) -> torch.Tensor:
    """``(T, 3, 3)`` float32 slice matrices ``M(theta) = rotation_y(theta)`` (xyz)."""
    return rotation_y(torch.as_tensor(angles_deg, dtype=torch.float64)).to(torch.float32)


def slice_frequencies(image_shape: Sequence[int], device=None) -> torch.Tensor:
    """``(H, W // 2 + 1, 3)`` xyz frequencies ``(kx, ky, 0)`` (cycles/pixel) of the rfft2 layout."""
    h, w = (int(s) for s in image_shape)
    ky = torch.fft.fftfreq(h, device=device)
    kx = torch.fft.rfftfreq(w, device=device)
    yy, xx = torch.meshgrid(ky, kx, indexing="ij")
    return torch.stack([xx, yy, torch.zeros_like(xx)], dim=-1)


def _sinc2(n: int, device) -> torch.Tensor:
    x = (torch.arange(n, dtype=torch.float32, device=device) - n // 2) / n
    return torch.sinc(x) ** 2


def centred_fft(volume: torch.Tensor, pad_factor: int = 2, sinc_correct: bool = True) -> torch.Tensor:
    """Full 3-D transform of ``(D, H, W)`` volume(s) for slice extraction.

    The volume is zero-padded to ``pad_factor`` times its size (centre kept at ``n // 2``; the
    finer frequency sampling makes trilinear interpolation accurate), divided by the separable
    ``sinc^2`` of trilinear interpolation, ``ifftshift``-ed (centre to the origin), transformed
    with ``fftn`` and fftshifted (DC at index ``n // 2`` of each padded axis).

    Returns:
        ``(..., pD, pH, pW)`` complex tensor.
    """
    d, h, w = volume.shape[-3:]
    if pad_factor > 1:
        pads = []
        for n in (w, h, d):
            total = (pad_factor - 1) * n
            left = (pad_factor * n) // 2 - n // 2
            pads += [left, total - left]
        volume = F.pad(volume, pads)
    pd, ph, pw = volume.shape[-3:]
    if sinc_correct:
        dev = volume.device
        corr = _sinc2(pd, dev)[:, None, None] * _sinc2(ph, dev)[None, :, None] * _sinc2(pw, dev)[None, None, :]
        volume = volume / corr
    ft = torch.fft.fftn(torch.fft.ifftshift(volume, dim=(-3, -2, -1)), dim=(-3, -2, -1))
    return torch.fft.fftshift(ft, dim=(-3, -2, -1))


def extract_slices(volume_ft: torch.Tensor, rotations: torch.Tensor, image_shape: Sequence[int]) -> torch.Tensor:
    """Sample central slices of a transform from :func:`centred_fft`.

    Args:
        volume_ft: ``(pD, pH, pW)`` complex fftshifted transform of a (padded) volume.
        rotations: ``(..., 3, 3)`` matrices taking slice points ``(kx, ky, 0)`` to the frequency
            of the volume to read (e.g. ``R^T M(theta)``); frequencies are in cycles/voxel, so
            padding only refines the sampling.
        image_shape: ``(H, W)`` of the tilt images.

    Returns:
        ``(..., H, W // 2 + 1)`` complex slices, rfft2 layout (trilinear interpolation, zero
        outside the transform).
    """
    pd, ph, pw = volume_ft.shape[-3:]
    dev = volume_ft.device
    sizes = torch.tensor([pw, ph, pd], device=dev, dtype=torch.float32)
    centre = torch.div(sizes, 2, rounding_mode="floor")
    # grid_sample coordinates (align_corners=True): (q * n + n // 2) * 2 / (n - 1) - 1
    scale = 2.0 * sizes / (sizes - 1)
    offset = 2.0 * centre / (sizes - 1) - 1.0
    k2 = slice_frequencies(image_shape, dev).reshape(-1, 3)[:, :2]  # (P, 2): kz = 0 on the slice
    batch = rotations.shape[:-2]
    mats = rotations.to(dev, torch.float32)[..., :, :2] * scale[:, None]  # (..., 3, 2)
    grid = torch.einsum("...ij,pj->...pi", mats, k2) + offset  # (..., P, 3) in (x, y, z) order
    src = torch.view_as_real(volume_ft).permute(3, 0, 1, 2)[None]  # (1, 2, pD, pH, pW)
    out = F.grid_sample(src, grid.reshape(1, -1, 1, 1, 3), mode="bilinear", padding_mode="zeros",
                        align_corners=True)
    h, w = image_shape
    return torch.complex(out[0, 0, :, 0, 0], out[0, 1, :, 0, 0]).reshape(*batch, h, w // 2 + 1)


def transfer_function(image_shape: Sequence[int], voxel_size_angstrom: float, *, defocus_um: float = 5.0,
                      voltage_kv: float = 300.0, cs_mm: float = 2.0, amplitude_contrast: float = 0.07,
                      apply_ctf: bool = True, apply_mtf: bool = True, mtf_psf_sigma_px: float = 0.0,
                      device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """CTF and detector MTF on the slice layout, ``((H, W // 2 + 1), (H, W // 2 + 1))`` float32.

    Uses :func:`cryomine_core.fourier.ctf_2d` (``CTF(0) = -amplitude_contrast``: dense matter
    dark) and :func:`cryomine_core.fourier.mtf` (pixel aperture and optional Gaussian PSF);
    a disabled factor is all ones.
    """
    from cryomine_core.fourier import ctf_2d, mtf

    shape = tuple(int(s) for s in image_shape)
    ones = torch.ones((shape[0], shape[1] // 2 + 1), device=device)
    ctf = ones
    if apply_ctf:
        ctf = ctf_2d(shape, voxel_size_angstrom, defocus_um, voltage_kv=voltage_kv, cs_mm=cs_mm,
                     amplitude_contrast=amplitude_contrast, device=device)
    m = ones
    if apply_mtf:
        m = mtf(shape, psf_sigma_px=mtf_psf_sigma_px, device=device)
    return ctf.to(torch.float32), m.to(torch.float32)


def noise_slices(batch_shape: Sequence[int], image_shape: Sequence[int], generator: torch.Generator,
                 device=None) -> torch.Tensor:
    """Transforms of unit-variance white Gaussian noise images, ``(*batch, H, W // 2 + 1)``.

    Drawn on the CPU from ``generator`` (so a seed gives the same noise on every device), then
    moved to ``device``.
    """
    h, w = (int(s) for s in image_shape)
    noise = torch.randn((*batch_shape, h, w), generator=generator, dtype=torch.float32)
    return torch.fft.rfft2(noise.to(device))


def _gridding_targets(volume_shape: Sequence[int], image_shape: Sequence[int], matrices: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Trilinear gridding of slice points: ``(flat index (T, 8, P), weight (T, 8, P), flip (T, P))``.

    Targets are in the non-shifted rfft layout; z and y indices wrap, x indices beyond
    ``W // 2`` get weight 0. ``flip`` marks points folded from ``kx < 0`` (insert the conjugate).
    """
    d, h, w = (int(s) for s in volume_shape)
    wr = w // 2 + 1
    dev = matrices.device
    k2 = slice_frequencies(image_shape, dev).reshape(-1, 3)
    q = torch.einsum("tij,pj->tpi", matrices.to(torch.float32), k2)
    flip = q[..., 0] < 0
    q = torch.where(flip[..., None], -q, q)
    pos = q * torch.tensor([w, h, d], device=dev, dtype=q.dtype)
    base = torch.floor(pos)
    frac = pos - base
    base = base.long()
    indices, weights = [], []
    for dz in (0, 1):
        for dy in (0, 1):
            for dx in (0, 1):
                off = torch.tensor([dx, dy, dz], device=dev)
                corner = base + off
                wgt = torch.where(off.bool(), frac, 1.0 - frac).prod(-1)
                inside = (corner[..., 0] >= 0) & (corner[..., 0] < wr)
                cx = corner[..., 0].clamp(0, wr - 1)
                indices.append((torch.remainder(corner[..., 2], d) * h + torch.remainder(corner[..., 1], h)) * wr + cx)
                weights.append(torch.where(inside, wgt, torch.zeros_like(wgt)))
    return torch.stack(indices, 1), torch.stack(weights, 1), flip


class SliceInserter:
    """Precomputed gridding of a fixed tilt geometry as a sparse matrix (small boxes, many calls).

    Args:
        volume_shape: ``(D, H, W)`` of the reconstruction.
        tilt_mats: ``(T, 3, 3)`` slice matrices (:func:`tilt_matrices`).
        device: where the plan lives.

    Calling it with slices ``(C, T, H, W // 2 + 1)`` returns the gridded numerator
    ``(C, D, H, W // 2 + 1)``; :attr:`weights` is the ``(D, H, W // 2 + 1)`` accumulated weight.
    """

    def __init__(self, volume_shape: Sequence[int], tilt_mats: torch.Tensor, device=None):
        self.volume_shape = tuple(int(s) for s in volume_shape)
        d, h, w = self.volume_shape
        mats = tilt_mats.to(device)
        idx, wgt, flip = _gridding_targets(self.volume_shape, (h, w), mats)
        t, _, p = idx.shape
        cols = (torch.arange(t, device=mats.device)[:, None, None] * p
                + torch.arange(p, device=mats.device)[None, None, :]).expand_as(idx)
        n_vox = d * h * (w // 2 + 1)
        keep = wgt.reshape(-1) > 0
        matrix = torch.sparse_coo_tensor(torch.stack([idx.reshape(-1)[keep], cols.reshape(-1)[keep]]),
                                         wgt.reshape(-1)[keep], (n_vox, t * p), check_invariants=False).coalesce()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            self.matrix = matrix.to_sparse_csr()
        self.conj_sign = 1.0 - 2.0 * flip.reshape(-1).float()  # (T * P,): -1 where the conjugate goes in
        ones = torch.ones((t * p, 1), device=mats.device)
        self.weights = (self.matrix @ ones).reshape(d, h, w // 2 + 1)

    def __call__(self, slices: torch.Tensor) -> torch.Tensor:
        c = slices.shape[0]
        d, h, w = self.volume_shape
        xr = torch.view_as_real(slices.reshape(c, -1))  # (C, T * P, 2)
        dense = torch.cat([xr[..., 0], xr[..., 1] * self.conj_sign], dim=0).T.contiguous()  # (T * P, 2C)
        out = self.matrix @ dense  # (V, 2C)
        return torch.complex(out[:, :c], out[:, c:]).T.reshape(c, d, h, w // 2 + 1)


def insert_slices(slices: torch.Tensor, volume_shape: Sequence[int], tilt_mats: torch.Tensor,
                  numerator: torch.Tensor | None = None, weights: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Grid slices ``(C, T, H, W // 2 + 1)`` tilt by tilt (low memory; for tomograms).

    Accumulates into ``numerator`` ``(C, D, H, W // 2 + 1)`` complex and ``weights``
    ``(D, H, W // 2 + 1)`` (created when None) and returns both.
    """
    d, h, w = (int(s) for s in volume_shape)
    c, t = slices.shape[:2]
    dev = slices.device
    if numerator is None:
        numerator = torch.zeros((c, d, h, w // 2 + 1), dtype=torch.complex64, device=dev)
    if weights is None:
        weights = torch.zeros((d, h, w // 2 + 1), dtype=torch.float32, device=dev)
    num_flat = torch.view_as_real(numerator).reshape(c, -1, 2)
    w_flat = weights.reshape(-1)
    for i in range(t):
        idx, wgt, flip = _gridding_targets((d, h, w), (h, w), tilt_mats[i:i + 1].to(dev))
        vals = slices[:, i].reshape(c, -1)
        vals = torch.view_as_real(torch.where(flip[0][None], vals.conj(), vals))  # (C, P, 2)
        for k in range(8):
            num_flat.index_add_(1, idx[0, k], vals * wgt[0, k][None, :, None])
            w_flat.index_add_(0, idx[0, k], wgt[0, k])
    return numerator, weights


def hermitian_planes(num: torch.Tensor, width: int) -> torch.Tensor:
    """In place: add to each voxel of the ``kx = 0`` (and even-``W`` Nyquist) plane the conjugate of its
    Friedel mate ``(-kz, -ky)``, making those planes Hermitian. Works for weights (real) too."""
    d, h = num.shape[-3:-1]
    mz = torch.remainder(-torch.arange(d, device=num.device), d)
    my = torch.remainder(-torch.arange(h, device=num.device), h)
    for p in [0] + ([num.shape[-1] - 1] if width % 2 == 0 else []):
        plane = num[..., p]
        mate = plane[..., mz, :][..., my]
        num[..., p] = plane + (mate.conj() if num.is_complex() else mate)
    return num


def observed_region(volume_shape: Sequence[int], tilt_min_deg: float, tilt_max_deg: float, device=None
                    ) -> torch.Tensor:
    """:func:`cryomine_core.fourier.missing_wedge_mask`, rfft layout ``(D, H, W // 2 + 1)``."""
    from cryomine_core.fourier import missing_wedge_mask

    return missing_wedge_mask(tuple(volume_shape), tilt_min_deg, tilt_max_deg, tilt_axis="y", device=device)


def reconstruction_filter(weights: torch.Tensor, volume_shape: Sequence[int], method: str = "dfi",
                          tilt_step_deg: float = 2.0, n_tilts: int = 61, observed: torch.Tensor | None = None,
                          centre_shift: bool = True) -> torch.Tensor:
    """Per-voxel factor ``(D, H, W // 2 + 1)`` turning a (Hermitian-completed) numerator into the
    transform of the reconstruction; with ``centre_shift`` (and every axis even) it also moves the
    phase origin to the box centre (:func:`finish_reconstruction` expects that).

    ``method`` is ``'dfi'`` (divide by ``max(weight, 1)``, ``weights`` Hermitian-completed with
    :func:`hermitian_planes`) or ``'wbp'`` (multiply by the analytic sampling density; module
    docstring). ``observed`` (:func:`observed_region`) zeroes the Fourier voxels outside the tilt
    range: the trilinear gridding kernel spreads each slice over about one Fourier voxel, which at
    low frequency reaches several degrees into the missing wedge; no projection measured those
    voxels, so they are removed.
    """
    d, h, w = (int(s) for s in volume_shape)
    dev = weights.device
    if method == "dfi":
        factor = 1.0 / weights.clamp_min(1.0)
    elif method == "wbp":
        kz = torch.fft.fftfreq(d, device=dev)[:, None, None]
        kx = torch.fft.rfftfreq(w, device=dev)[None, None, :]
        rho = torch.sqrt(kz**2 + kx**2).expand(d, h, w // 2 + 1)
        factor = (rho * max(d, w) * math.radians(tilt_step_deg)).clamp(1.0 / n_tilts, 1.0)
        factor[..., 0] = factor[..., 0] / 2.0  # the kx = 0 plane was summed with its Friedel mates
        factor = torch.where(rho == 0, 1.0 / weights.clamp_min(1.0), factor)  # tilt axis: every slice
    else:
        raise ValueError(f"reconstruction method must be 'dfi' or 'wbp', got {method!r}")
    if observed is not None:
        factor = factor * observed
    if centre_shift and d % 2 == 0 and h % 2 == 0 and w % 2 == 0:  # real-space fftshift == (-1)^(iz+iy+ix)
        iz = torch.arange(d, device=dev)[:, None, None]
        iy = torch.arange(h, device=dev)[None, :, None]
        ix = torch.arange(w // 2 + 1, device=dev)[None, None, :]
        factor = factor * (1 - 2 * ((iz + iy + ix) % 2)).float()
    return factor


def finish_reconstruction(numerator: torch.Tensor, factor: torch.Tensor, volume_shape: Sequence[int]) -> torch.Tensor:
    """Real volumes ``(..., D, H, W)`` (centre at ``N // 2``) from a numerator and its
    :func:`reconstruction_filter`; the numerator's Hermitian planes are completed in place."""
    d, h, w = (int(s) for s in volume_shape)
    num = hermitian_planes(numerator, w)
    vol = torch.fft.irfftn(num * factor, s=(d, h, w), dim=(-3, -2, -1))
    if not (d % 2 == 0 and h % 2 == 0 and w % 2 == 0):
        vol = torch.fft.fftshift(vol, dim=(-3, -2, -1))
    return vol
