"""Wedge-compensated averaging in Fourier space.

Each aligned particle contributes its transform, brought into the reference frame, only where
it was observed; every Fourier voxel of the average is the sum of the contributions divided by
the number of particles that observed it (the coverage)::

    Avg(u) = sum_n W_n(R_n u) P_n(R_n u) exp(+2 pi i (R_n u) . t_n) / max(sum_n W_n(R_n u), guard)

(``P_n(k) = exp(-2 pi i k . t_n) Ref(R_n^T k)`` for a particle of pose ``(R_n, t_n)``). The guard
(a fraction of the number of particles, at least 1) keeps rarely observed voxels from being
amplified: below it they are attenuated instead. Particle transforms are interpolated in their
padded centred transforms at the rotated rfft grid of the box, so one pass needs no real-space
rotation. Symmetry ``C<n>``/``D<n>`` adds every particle once per group element.
"""

from __future__ import annotations

import math

import torch

from cryomine_core.align.particle_source import ParticleSource, as_source
from cryomine_core.align.spectra import PaddedSpectrum
from cryomine_core.errors import CryomineError
from cryomine_core.fourier.wedge import wedge_at
from cryomine_core.geometry import symmetry_rotations

__all__ = ["FourierAverager", "rfft_grid_points", "average_particles"]


def rfft_grid_points(box: int, device=None) -> torch.Tensor:
    """Frequencies ``(N, N, N // 2 + 1, 3)`` (xyz, cycles/voxel) of the non-shifted rfft grid of a cubic box."""
    kz = torch.fft.fftfreq(box, device=device)
    ky = torch.fft.fftfreq(box, device=device)
    kx = torch.fft.rfftfreq(box, device=device)
    zz, yy, xx = torch.meshgrid(kz, ky, kx, indexing="ij")
    return torch.stack([xx, yy, zz], dim=-1).float()


class FourierAverager:
    """Accumulates wedge-weighted particle transforms for ``n_classes`` averages.

    Args:
        box: edge ``N`` of the cubic box.
        n_classes: number of separate averages (e.g. 2 half sets, or K classes).
        symmetry: point group applied while accumulating.
        device: device of the accumulators.

    The sums are kept in double precision (each batch's contribution is summed in single): the
    order in which batches (or the partial sums of several processes) are added then changes the
    single-precision averages only in the rarest last bit: a run split over 2 processes gave the
    one-process averages in the tests and in the scale benchmark.
    """

    def __init__(self, box: int, n_classes: int = 1, symmetry: str = "C1", device=None):
        self.box, self.n_classes = int(box), int(n_classes)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        shape = (self.n_classes, self.box, self.box, self.box // 2 + 1)
        self.numerator = torch.zeros(shape, dtype=torch.complex128, device=self.device)
        self.weight = torch.zeros(shape, dtype=torch.float64, device=self.device)
        self.count = torch.zeros(self.n_classes, dtype=torch.int64)
        self.group = symmetry_rotations(symmetry, device=self.device)
        u = rfft_grid_points(self.box, self.device)
        # only the Nyquist sphere: its rotated copies stay inside every particle's sampled cube
        self._u = u.reshape(-1, 3)
        self._keep = (u.norm(dim=-1) < 0.5 - 1e-6).reshape(-1).float()

    def add(self, spectrum: PaddedSpectrum, rotations: torch.Tensor, shifts: torch.Tensor, tilt_ranges: torch.Tensor,
            classes: torch.Tensor | None = None, include: torch.Tensor | None = None) -> None:
        """Add a batch of ``B`` particles with poses.

        Args:
            spectrum: padded transforms of the ``B`` particles.
            rotations: ``(B, 3, 3)``; shifts ``(B, 3)`` xyz voxels; tilt_ranges ``(B, 2)`` degrees.
            classes: ``(B,)`` 0-based average index of each particle (default all 0).
            include: ``(B,)`` bool, particles to use (e.g. not failed); default all.
        """
        b = rotations.shape[0]
        dev = self.device
        classes = torch.zeros(b, dtype=torch.long, device=dev) if classes is None else classes.to(dev).long()
        include = torch.ones(b, dtype=torch.bool, device=dev) if include is None else include.to(dev).bool()
        if b == 0 or not bool(include.any()):
            return
        u = self._u
        rot = rotations.to(dev, torch.float32)
        t = shifts.to(dev, torch.float32)
        tilt = tilt_ranges.to(dev, torch.float32)
        for s in self.group:
            pose = rot @ s  # equivalent pose of a symmetric reference
            k = u[None] @ pose.transpose(-1, -2)  # (B, U, 3): rows of R u
            values = spectrum.sample(k)  # (B, U)
            wedge = wedge_at(k, tilt[:, 0], tilt[:, 1]) * self._keep
            phase = torch.polar(torch.ones(1, device=dev), 2.0 * math.pi * (k @ t[:, :, None])[..., 0])
            contrib = wedge * values * phase
            for c in torch.unique(classes[include]).tolist():
                sel = include & (classes == c)
                self.numerator[c] += contrib[sel].sum(0).reshape(self.numerator.shape[1:])
                self.weight[c] += wedge[sel].sum(0).reshape(self.weight.shape[1:])
        for c in torch.unique(classes[include]).tolist():
            self.count[c] += int((include & (classes == c)).sum())

    def guard(self, c: int, guard_fraction: float) -> float:
        """Smallest denominator for average ``c``: ``max(1, guard_fraction * n_contributions)``."""
        return max(1.0, guard_fraction * float(self.count[c]) * self.group.shape[0])

    def volumes(self, guard_fraction: float = 0.1, classes=None) -> torch.Tensor:
        """Averages ``(C, N, N, N)`` float32 (real, centred at ``N // 2``); zero for classes without particles."""
        classes = range(self.n_classes) if classes is None else classes
        out = []
        for c in classes:
            num = self.numerator[c].to(torch.complex64)
            den = self.weight[c].float().clamp_min(self.guard(c, guard_fraction))
            ft = num / den
            vol = torch.fft.fftshift(torch.fft.irfftn(ft, s=(self.box,) * 3), dim=(-3, -2, -1))
            out.append(vol if self.count[c] > 0 else torch.zeros_like(vol))
        return torch.stack(out)

    def coverage(self, guard_fraction: float = 0.1) -> torch.Tensor:
        """Coverage ``(C, N, N, N // 2 + 1)`` float32 in [0, 1]: observation count relative to the guard."""
        out = []
        for c in range(self.n_classes):
            out.append((self.weight[c].float() / self.guard(c, guard_fraction)).clamp(0.0, 1.0))
        return torch.stack(out)

    def merged(self, classes, guard_fraction: float = 0.1) -> torch.Tensor:
        """One average ``(N, N, N)`` float32 of several accumulators together (e.g. both half sets)."""
        num = sum(self.numerator[c] for c in classes).to(torch.complex64)
        w = sum(self.weight[c] for c in classes).float()
        n = sum(int(self.count[c]) for c in classes)
        den = w.clamp_min(max(1.0, guard_fraction * n * self.group.shape[0]))
        return torch.fft.fftshift(torch.fft.irfftn(num / den, s=(self.box,) * 3), dim=(-3, -2, -1))


def average_particles(particles: torch.Tensor | ParticleSource, rotations: torch.Tensor, shifts: torch.Tensor,
                      tilt_ranges: torch.Tensor, classes: torch.Tensor | None = None, n_classes: int = 1,
                      symmetry: str = "C1", include: torch.Tensor | None = None, guard_fraction: float = 0.1,
                      batch_size: int = 32, pad: int = 2) -> tuple[torch.Tensor, FourierAverager]:
    """Wedge-compensated averages of posed particles ``(B, N, N, N)`` (a tensor, or a
    :class:`~cryomine_core.align.particle_source.ParticleSource` read ``batch_size`` at a time).

    Returns ``(volumes (n_classes, N, N, N), averager)``; the averager holds the coverage.

    Raises:
        CryomineError: no particle to average.
    """
    if isinstance(particles, torch.Tensor) and (particles.ndim != 4 or particles.shape[0] == 0):
        raise CryomineError("no particles to average: the set is empty.")  # a ParticleFiles is never empty
    source = as_source(particles)
    if include is not None and not bool(include.any()):
        raise CryomineError("no particles to average: every particle is flagged as failed.")
    avg = FourierAverager(source.box, n_classes, symmetry, source.device)
    for rows, vols in source.chunks(batch_size):
        spec = PaddedSpectrum(vols, pad=pad)
        avg.add(spec, rotations[rows], shifts[rows], tilt_ranges[rows],
                None if classes is None else classes[rows], None if include is None else include[rows])
    return avg.volumes(guard_fraction), avg
