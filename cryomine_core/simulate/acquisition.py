"""Acquisition settings and the tilt-series forward model of one box shape.

:class:`AcquisitionParams` holds the microscope and tilt-scheme settings (defaults: Che et al.
2018: +-60 degrees by 2 degrees, 300 kV, Cs 2 mm, 5 um underfocus, amplitude contrast 0.07).
:class:`TiltModel` precomputes everything that depends only on them and on the box: tilt
matrices, CTF and MTF on the slice layout, the observed Fourier region and the gridding plan,
and turns structure transforms into tilt-image transforms (:meth:`TiltModel.particle_slices`)
and tilt-image transforms into reconstructions (:meth:`TiltModel.reconstruct`).

Image formation (per tilt image, in Fourier space): ``MTF * (CTF * P + sigma * n)`` with ``P``
the projection of the specimen and ``n`` white Gaussian noise of unit variance per pixel:
shot noise arises after the objective lens (CTF) and is blurred by the detector (MTF) like the
signal. No CTF correction is applied, as in raw tomograms (dense matter appears dark).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from cryomine_core.errors import CryomineError
from cryomine_core.simulate import tilt

__all__ = ["AcquisitionParams", "TiltModel"]

# Boxes with at most this many voxels use the precomputed sparse gridding plan.
_SPARSE_PLAN_MAX_VOXELS = 160**3


@dataclass(frozen=True)
class AcquisitionParams:
    """Tilt scheme and microscope (angles in degrees, voltage kV, Cs mm, defocus um underfocus)."""

    tilt_min_deg: float = -60.0
    tilt_max_deg: float = 60.0
    tilt_step_deg: float = 2.0
    voltage_kv: float = 300.0
    cs_mm: float = 2.0
    defocus_um: float = 5.0
    amplitude_contrast: float = 0.07
    apply_ctf: bool = True
    apply_mtf: bool = True
    mtf_psf_sigma_px: float = 0.0
    reconstruction: str = "dfi"

    def validate(self) -> None:
        """Raise CryomineError naming the bad setting and the fix."""
        lo, hi = self.tilt_min_deg, self.tilt_max_deg
        if not (-90.0 <= lo < 0.0 < hi <= 90.0):
            raise CryomineError(f"tilt range ({lo:g}, {hi:g}) is invalid: give --tilt-range MIN MAX with "
                                "-90 <= MIN < 0 < MAX <= 90 degrees (each limit within (0, 90] in magnitude, "
                                "the series spanning 0), e.g. --tilt-range -60 60.")
        if not (0.0 < self.tilt_step_deg <= hi - lo):
            raise CryomineError(f"tilt step {self.tilt_step_deg:g} degrees is invalid: give --tilt-step in "
                                f"(0, {hi - lo:g}], e.g. 2.")
        if self.reconstruction not in ("dfi", "wbp"):
            raise CryomineError(f"reconstruction '{self.reconstruction}' is unknown; use dfi (direct Fourier "
                                "inversion) or wbp (weighted back-projection).")
        if not self.voltage_kv > 0 or self.cs_mm < 0 or not 0 <= self.amplitude_contrast < 1:
            raise CryomineError(f"microscope settings out of range (voltage {self.voltage_kv} kV > 0, Cs "
                                f"{self.cs_mm} mm >= 0, amplitude contrast {self.amplitude_contrast} in [0, 1)).")
        if self.mtf_psf_sigma_px < 0:
            raise CryomineError(f"MTF PSF sigma {self.mtf_psf_sigma_px} must be >= 0 pixels.")

    def angles(self) -> torch.Tensor:
        """``(T,)`` tilt angles in degrees."""
        return tilt.tilt_angles(self.tilt_min_deg, self.tilt_max_deg, self.tilt_step_deg)

    def as_dict(self) -> dict:
        return asdict(self)


class TiltModel:
    """Forward model and reconstruction for volumes of one shape.

    Args:
        params: acquisition settings (validated here).
        volume_shape: ``(D, H, W)`` of the reconstructed volume (tilt images are ``(H, W)``).
        voxel_size_angstrom: Å per voxel (CTF frequencies).
        device: compute device.
    """

    def __init__(self, params: AcquisitionParams, volume_shape, voxel_size_angstrom: float, device=None):
        params.validate()
        self.params = params
        self.volume_shape = tuple(int(s) for s in volume_shape)
        self.image_shape = self.volume_shape[1:]
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.voxel_size = float(voxel_size_angstrom)
        self.angles = params.angles()
        self.matrices = tilt.tilt_matrices(self.angles).to(self.device)
        self.n_tilts = int(self.angles.numel())
        ctf, mtf = tilt.transfer_function(
            self.image_shape, voxel_size_angstrom, defocus_um=params.defocus_um, voltage_kv=params.voltage_kv,
            cs_mm=params.cs_mm, amplitude_contrast=params.amplitude_contrast, apply_ctf=params.apply_ctf,
            apply_mtf=params.apply_mtf, mtf_psf_sigma_px=params.mtf_psf_sigma_px, device=self.device)
        self.ctf, self.mtf = ctf, mtf
        self.observed = tilt.observed_region(self.volume_shape, params.tilt_min_deg, params.tilt_max_deg, self.device)
        k2 = tilt.slice_frequencies(self.image_shape, self.device).reshape(-1, 3)
        self._k3 = torch.einsum("tij,pj->tpi", self.matrices, k2)  # (T, P, 3) specimen-frame frequencies
        self._inserter = None
        self.weights = None
        self._filter = None
        if math.prod(self.volume_shape) <= _SPARSE_PLAN_MAX_VOXELS:
            self._inserter = tilt.SliceInserter(self.volume_shape, self.matrices, self.device)
            self._set_weights(self._inserter.weights)

    def _set_weights(self, weights: torch.Tensor) -> None:
        self.weights = tilt.hermitian_planes(weights.clone(), self.volume_shape[2])
        p = self.params
        self._filter = tilt.reconstruction_filter(self.weights, self.volume_shape, p.reconstruction,
                                                  p.tilt_step_deg, self.n_tilts, self.observed)
        self._plain_filter = tilt.reconstruction_filter(self.weights, self.volume_shape, p.reconstruction,
                                                        p.tilt_step_deg, self.n_tilts, self.observed,
                                                        centre_shift=False)

    def particle_slices(self, volume_ft: torch.Tensor, rotations: torch.Tensor | None = None,
                        shifts: torch.Tensor | None = None) -> torch.Tensor:
        """Tilt-image transforms ``(B, T, H, W // 2 + 1)`` of posed copies of one structure, CTF and MTF applied.

        Args:
            volume_ft: :func:`.tilt.centred_fft` of the reference (any padding).
            rotations: ``(B, 3, 3)`` canonical rotations (None: one unrotated copy).
            shifts: ``(B, 3)`` xyz shifts in voxels (None: no shift).
        """
        if rotations is None:
            rotations = torch.eye(3, device=self.device)[None]
        rotations = rotations.to(self.device, torch.float32)
        mats = rotations.transpose(-1, -2)[:, None] @ self.matrices[None]  # (B, T, 3, 3): R^T M(theta)
        slices = tilt.extract_slices(volume_ft, mats, self.image_shape)
        if shifts is not None:
            t = shifts.to(self.device, torch.float32)
            phase = -2.0 * math.pi * torch.einsum("tpi,bi->btp", self._k3, t)
            slices = slices * torch.polar(torch.ones_like(phase), phase).reshape(slices.shape)
        return slices * (self.ctf * self.mtf)

    def noise_slices(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """MTF-blurred unit white-noise image transforms ``(batch, T, H, W // 2 + 1)``."""
        n = tilt.noise_slices((batch, self.n_tilts), self.image_shape, generator, self.device)
        return n * self.mtf

    def reconstruct(self, slices: torch.Tensor) -> torch.Tensor:
        """Reconstruct ``(C, T, H, W // 2 + 1)`` tilt-image transforms into ``(C, D, H, W)`` volumes."""
        if self._inserter is not None:
            num = self._inserter(slices)
        else:  # large volume: grid tilt by tilt; the weights come with the first call
            num, weights = tilt.insert_slices(slices, self.volume_shape, self.matrices)
            if self._filter is None:
                self._set_weights(weights)
        return tilt.finish_reconstruction(num, self._filter, self.volume_shape)

    def signal_transfer(self) -> torch.Tensor:
        """3-D transfer ``(D, H, W // 2 + 1)`` (rfft layout) of "project, apply CTF and MTF, reconstruct".

        A slice point ``(kx', ky)`` of the image at tilt ``theta`` lands on the 3-D frequency ``k``
        with ``|k| = |(kx', ky)|`` and ``|kx'| = sqrt(kx^2 + kz^2)``, so the isotropic CTF is
        ``CTF(|k|)`` and the separable MTF is ``MTF_1d(sqrt(kx^2 + kz^2)) * MTF_1d(ky)``; gridding a
        smooth transform and normalising returns it times ``weight * filter``. The product is the
        exact linear equivalent of the tilt-series path for the noise-free signal, without the
        interpolation error of slicing an unpadded transform (used for large volumes). Needs the
        weights (available after the first :meth:`reconstruct` for large volumes).
        """
        if self.weights is None:
            raise RuntimeError("signal_transfer needs the gridding weights; call reconstruct() once first")
        d, h, w = self.volume_shape
        dev = self.device
        kz = torch.fft.fftfreq(d, device=dev)[:, None, None]
        ky = torch.fft.fftfreq(h, device=dev)[None, :, None]
        kx = torch.fft.rfftfreq(w, device=dev)[None, None, :]
        rho = torch.sqrt(kx**2 + kz**2)
        k = torch.sqrt(rho**2 + ky**2)
        ctf_line, mtf_line, line_freq = self._lines()
        out = torch.ones((d, h, w // 2 + 1), device=dev)
        if self.params.apply_ctf:
            out = out * _interp(k, line_freq, ctf_line)
        if self.params.apply_mtf:
            out = out * _interp(rho.clamp(max=0.5), line_freq, mtf_line) * _interp(ky.abs(), line_freq, mtf_line)
        return out * self.weights * self._plain_filter

    def _lines(self, n: int = 4096) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """CTF and MTF along one axis, sampled to 1 cycle/voxel (frequencies in cycles/voxel)."""
        from cryomine_core.fourier import ctf_2d, mtf

        p = self.params
        # a line of 2n pixels of half the voxel size reaches 1 cycle/voxel at its Nyquist frequency
        ctf = ctf_2d((1, 2 * n), self.voxel_size / 2, p.defocus_um, voltage_kv=p.voltage_kv, cs_mm=p.cs_mm,
                     amplitude_contrast=p.amplitude_contrast, device=self.device)[0]
        freq = torch.linspace(0.0, 1.0, n + 1, device=self.device)
        m = mtf((1, 2 * n), psf_sigma_px=p.mtf_psf_sigma_px, device=self.device)[0]  # cycles/pixel to 0.5
        m = torch.cat([m[::2], torch.zeros(n // 2, device=self.device)])  # resample onto ``freq`` (0.5 -> 1: 0)
        return ctf, m, freq

    @property
    def sampling_weights(self) -> torch.Tensor:
        """Accumulated gridding weight ``(D, H, W // 2 + 1)``, torch's rfft layout, Hermitian-completed
        (None for a large volume until its first reconstruction)."""
        return self.weights


def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Linear interpolation of ``fp`` sampled at the uniform grid ``xp`` (from 0), clamped at the ends."""
    step = float(xp[1] - xp[0])
    pos = (x / step).clamp(0, xp.numel() - 1)
    lo = pos.floor().long().clamp(max=xp.numel() - 2)
    frac = pos - lo
    return fp[lo] * (1 - frac) + fp[lo + 1] * frac
