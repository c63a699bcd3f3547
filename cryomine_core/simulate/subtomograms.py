"""Simulated subtomograms with ground truth (the protocol of Che et al. 2018, in Fourier space).

Each particle is a structure at a uniformly random rotation and a random shift (uniform in
``[-max_shift, max_shift]`` voxels per axis), imaged as a tilt series (central slices of the
structure's 3-D transform at the composed particle and tilt orientations, CTF and MTF, white
noise) and reconstructed by direct Fourier inversion (or weighted back-projection) in a cubic
box; see :mod:`.tilt`, :mod:`.acquisition` and, for the SNR, :mod:`.noise`. An optional
``empty`` class holds noise only. Everything is batched over particles and runs on the device
given; random numbers come from CPU generators seeded from ``seed``, so a seed gives the same
data set (same batch size) on any machine up to floating-point rounding.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from cryomine_core.errors import CryomineError
from cryomine_core.geometry import random_rotations
from cryomine_core.simulate import noise as snr_tools
from cryomine_core.simulate.acquisition import AcquisitionParams, TiltModel
from cryomine_core.simulate.structures import Structure, check_fits
from cryomine_core.simulate.tilt import centred_fft

__all__ = ["EMPTY", "SubtomogramSimulator", "SubtomogramBatch", "validate_request"]

log = logging.getLogger("cryomine")

EMPTY = -1  # class index of the background-only class


@dataclass
class SubtomogramBatch:
    """A batch of simulated particles.

    Attributes:
        volumes: ``(B, N, N, N)`` noisy reconstructions (CPU float32).
        classes: ``(B,)`` class indices (0-based into the simulator's structures; ``EMPTY`` = -1).
        rotations: ``(B, 3, 3)`` canonical rotations (identity for empty particles).
        shifts: ``(B, 3)`` xyz shifts in voxels (0 for empty particles).
        sigma: ``(B,)`` tilt-image noise standard deviation used per particle.
    """

    volumes: torch.Tensor
    classes: torch.Tensor
    rotations: torch.Tensor
    shifts: torch.Tensor
    sigma: torch.Tensor


def validate_request(snr: float, n_per_class: int, box: int, voxel_size: float, max_shift: float,
                     specs: Sequence[str], include_empty: bool, params: AcquisitionParams) -> None:
    """Check simulation settings before any work; raise CryomineError naming the item and the fix."""
    if not specs:
        raise CryomineError("the class list is empty: give at least one structure with --structures "
                            "(e.g. --structures phantom:0 phantom:1, a map, a PDB/mmCIF file or a fetched name).")
    if not (isinstance(snr, (int, float)) and np.isfinite(snr) and snr > 0):
        raise CryomineError(f"SNR {snr} is invalid: give --snr > 0 (e.g. 0.1, 0.05, 0.03, 0.01; use a very large "
                            "value for nearly noise-free data).")
    if int(n_per_class) < 1:
        raise CryomineError(f"--n-per-class {n_per_class} is invalid: give at least 1 particle per class.")
    if int(box) < 8:
        raise CryomineError(f"--box {box} is too small: give a box of at least 8 voxels (default 40).")
    if not voxel_size > 0:
        raise CryomineError(f"--voxel-size {voxel_size} is invalid: give a positive voxel size in Å (default 9.2).")
    if not max_shift >= 0:
        raise CryomineError(f"--max-shift {max_shift} is invalid: give a shift >= 0 voxels.")
    params.validate()


class SubtomogramSimulator:
    """Simulate posed particles of a few structures in a cubic box.

    Args:
        structures: the classes (loaded at the box's voxel size; see
            :func:`~cryomine_core.simulate.structures.load_structure`).
        box: box edge in voxels.
        params: acquisition settings.
        device: compute device.
        max_shift: largest shift per axis (voxels) that :meth:`random_poses` draws; checked
            against each structure's size.
        pad_factor: oversampling of the structures' transforms for slice extraction.
    """

    def __init__(self, structures: Sequence[Structure], box: int, params: AcquisitionParams | None = None,
                 device=None, max_shift: float = 0.0, pad_factor: int = 2):
        params = params or AcquisitionParams()
        if not structures:
            raise CryomineError("the class list is empty: give at least one structure.")
        voxel_sizes = {round(s.voxel_size, 6) for s in structures}
        if len(voxel_sizes) != 1:
            raise CryomineError(f"structures have different voxel sizes {sorted(voxel_sizes)}; load them at one size.")
        for s in structures:
            check_fits(s, box, max_shift)
        self.structures = list(structures)
        self.box = int(box)
        self.voxel_size = float(structures[0].voxel_size)
        self.max_shift = float(max_shift)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.model = TiltModel(params, (box, box, box), self.voxel_size, self.device)
        self.params = self.model.params
        from cryomine_core.simulate.structures import fit_box

        self.references = [fit_box(s.volume, box) for s in structures]
        self._ffts = [centred_fft(r.to(self.device), pad_factor=pad_factor) for r in self.references]
        self._unit_noise_variance: float | None = None

    # -- building blocks -------------------------------------------------------------------
    def random_poses(self, classes: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Uniform rotations and uniform shifts (identity / zero for empty particles), CPU."""
        n = int(classes.numel())
        rot = random_rotations(n, generator=generator)
        shift = (2.0 * torch.rand((n, 3), generator=generator) - 1.0) * self.max_shift
        empty = classes == EMPTY
        rot[empty] = torch.eye(3)
        shift[empty] = 0.0
        return rot, shift

    def signal_slices(self, classes: torch.Tensor, rotations: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
        """Noise-free tilt-image transforms ``(B, T, H, W // 2 + 1)`` (zeros for empty particles)."""
        b = int(classes.numel())
        out = torch.zeros((b, self.model.n_tilts, self.box, self.box // 2 + 1), dtype=torch.complex64,
                          device=self.device)
        for c in torch.unique(classes).tolist():
            if c == EMPTY:
                continue
            sel = (classes == c).nonzero().flatten()
            out[sel.to(self.device)] = self.model.particle_slices(self._ffts[c], rotations[sel], shifts[sel])
        return out

    def unit_noise_variance(self, generator: torch.Generator | None = None, n: int = 16) -> float:
        """Variance of the reconstruction of unit white noise (depends only on the geometry)."""
        if self._unit_noise_variance is None:
            gen = generator or torch.Generator().manual_seed(12345)
            rec = self.model.reconstruct(self.model.noise_slices(n, gen))
            self._unit_noise_variance = float(snr_tools.variance(rec).mean())
        return self._unit_noise_variance

    def class_signal_variance(self, generator: torch.Generator, n: int = 16) -> torch.Tensor:
        """Mean reconstructed signal variance of each class over ``n`` random poses, ``(C,)``."""
        out = []
        for c in range(len(self.structures)):
            classes = torch.full((n,), c)
            rot, shift = self.random_poses(classes, generator)
            rec = self.model.reconstruct(self.signal_slices(classes, rot, shift))
            out.append(snr_tools.variance(rec).mean())
        return torch.stack(out).cpu()

    def dataset_sigma(self, snr: float, generator: torch.Generator, n: int = 64) -> float:
        """Tilt-image noise sigma giving ``snr`` on average over the classes (:mod:`.noise`)."""
        signal = float(self.class_signal_variance(generator, n).mean())
        return float(snr_tools.noise_sigma(signal, self.unit_noise_variance(generator, n), snr))

    # -- simulation ------------------------------------------------------------------------
    def simulate(self, classes: torch.Tensor, rotations: torch.Tensor, shifts: torch.Tensor, generator: torch.Generator,
                 snr: float, sigma: float | None = None, scope: str = "dataset", clean: bool = False
                 ) -> SubtomogramBatch | tuple[SubtomogramBatch, torch.Tensor]:
        """Simulate one batch.

        Args:
            classes, rotations, shifts: ``(B,)``, ``(B, 3, 3)``, ``(B, 3)`` particle classes and poses.
            generator: CPU generator for the noise.
            snr: requested SNR.
            sigma: dataset-level noise sigma (:meth:`dataset_sigma`; required for ``scope='dataset'``
                and for empty particles).
            scope: ``'dataset'`` or ``'particle'`` (see :mod:`.noise`).
            clean: also return the noise-free reconstructions.
        """
        b = int(classes.numel())
        slices = torch.cat([self.signal_slices(classes, rotations, shifts), self.model.noise_slices(b, generator)])
        rec = self.model.reconstruct(slices)
        signal, unit = rec[:b], rec[b:]
        if scope == "particle":
            var_n = self.unit_noise_variance()
            sig = snr_tools.noise_sigma(snr_tools.variance(signal).cpu(), var_n, snr).float()
            if sigma is not None:
                sig = torch.where(classes == EMPTY, torch.tensor(float(sigma)), sig)
        elif scope == "dataset":
            if sigma is None:
                raise ValueError("scope='dataset' needs the dataset sigma (SubtomogramSimulator.dataset_sigma)")
            sig = torch.full((b,), float(sigma))
        else:
            raise CryomineError(f"SNR scope '{scope}' is unknown; use dataset or particle.")
        volumes = signal + sig.to(self.device)[:, None, None, None] * unit
        batch = SubtomogramBatch(volumes.cpu(), classes, rotations, shifts, sig)
        return (batch, signal.cpu()) if clean else batch

    def measure_snr(self, classes: torch.Tensor, generator: torch.Generator, snr: float,
                    sigma: float | None, scope: str = "dataset") -> tuple[float, torch.Tensor]:
        """Realised SNR of fresh particles from two independent noise draws each (:mod:`.noise`)."""
        rot, shift = self.random_poses(classes, generator)
        other = torch.Generator().manual_seed(int(torch.randint(2**62, (1,), generator=generator)))
        first = self.simulate(classes, rot, shift, generator, snr, sigma, scope)
        second = self.simulate(classes, rot, shift, other, snr, sigma, scope)
        return snr_tools.snr_from_pairs(first.volumes, second.volumes)

    def batches(self, classes: torch.Tensor, generator: torch.Generator, snr: float, sigma: float | None,
                batch_size: int = 64, scope: str = "dataset") -> Iterator[SubtomogramBatch]:
        """Simulate the particles of ``classes`` (in order) batch by batch."""
        for start in range(0, int(classes.numel()), batch_size):
            cls = classes[start:start + batch_size]
            rot, shift = self.random_poses(cls, generator)
            yield self.simulate(cls, rot, shift, generator, snr, sigma, scope)
