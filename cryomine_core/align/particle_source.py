"""Where alignment reads its particles from: a tensor in memory, or the files of a particle table.

Refinement and multi-reference alignment touch the particle set through three operations only,
so a set of 10^5-10^7 subtomograms never has to be held whole:

- :meth:`ParticleSource.chunks` yields ``(rows, volumes)`` a chunk at a time (a process's share
  under ``torchrun``, see :mod:`cryomine_core.distributed`); memory depends on the chunk size and
  the box, not on the number of particles;
- :meth:`ParticleSource.take` reads a few given rows (the seed particle and the subset of the
  reference-free start, the sample of the contrast check);
- :meth:`ParticleSource.digest` is the checkpoint's fingerprint of the data, computed chunk by
  chunk the same way for both kinds, so a run in memory and a run from files resume each other.

:class:`InMemoryParticles` wraps a ``(B, N, N, N)`` tensor (the Python API, the tests);
:class:`ParticleFiles` reads z-scored volumes from MRC files or stacks (``k@stack.mrcs``) with
:func:`cryomine_core.subtomograms.load_subtomograms`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from cryomine_core import distributed
from cryomine_core.io.mrc import read_mrc_header
from cryomine_core.memory import release_free_memory
from cryomine_core.subtomograms import load_subtomograms

__all__ = ["ParticleSource", "InMemoryParticles", "ParticleFiles", "as_source"]


class ParticleSource:
    """``n`` particles of box ``box`` on ``device``, read by chunks or by rows (see the module docstring)."""

    n: int
    box: int
    device: torch.device

    def take(self, rows: Sequence[int] | np.ndarray | torch.Tensor) -> torch.Tensor:
        """Volumes ``(len(rows), N, N, N)`` of the given 0-based rows, in that order."""
        raise NotImplementedError

    def chunks(self, size: int, rows: np.ndarray | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(rows (C,) long, volumes (C, N, N, N))`` of ``size`` particles at a time.

        Args:
            size: particles per chunk (>= 1).
            rows: the sorted 0-based rows to visit (default all), e.g. :func:`distributed.share`.
        """
        rows = np.arange(self.n) if rows is None else np.asarray(rows, dtype=np.int64)
        for start in range(0, rows.size, size):
            block = rows[start:start + size]
            yield torch.as_tensor(block, dtype=torch.long, device=self.device), self.take(block)
            release_free_memory()  # the chunk is done with: keep the heap from growing (cryomine_core.memory)

    def digest(self, size: int = 256) -> list[float]:
        """A cheap fingerprint of the data: the float64 sum and sum of squares over all voxels, the sum
        of every particle's first z section, the absolute sum of the last particle. Under ``torchrun``
        each process reads its share and the sums are added, so every process gets the same list."""
        acc = torch.zeros(3, dtype=torch.float64, device=self.device)
        for _, vols in self.chunks(size, distributed.share(self.n)):
            x = vols.to(torch.float64)
            acc += torch.stack([x.sum(), (x * x).sum(), x[:, 0].sum()])
        distributed.sum_(acc)
        last = self.take([self.n - 1]).to(torch.float64).abs().sum()
        return [float(v) for v in acc.cpu()] + [float(last)]


class InMemoryParticles(ParticleSource):
    """Particles held as one tensor ``(B, N, N, N)`` (already normalised)."""

    def __init__(self, volumes: torch.Tensor):
        if volumes.ndim != 4:
            raise ValueError(f"particles must be (B, N, N, N), got shape {tuple(volumes.shape)}")
        self.volumes = volumes
        self.n, self.box, self.device = int(volumes.shape[0]), int(volumes.shape[-1]), volumes.device

    def take(self, rows) -> torch.Tensor:
        return self.volumes[torch.as_tensor(np.asarray(rows, dtype=np.int64), device=self.device)]


class ParticleFiles(ParticleSource):
    """Particles read from disk when needed: one path per row (an MRC file or ``k@stack.mrcs``), z-scored
    and checked by :func:`load_subtomograms` (unreadable, non-finite or constant volumes are refused
    with their row named)."""

    def __init__(self, paths: Sequence[str], box: int | None = None, device=None):
        """``box``: the edge of every volume (checked by the caller); None reads it from the first header."""
        self.paths = list(paths)
        if not self.paths:
            raise ValueError("no particles: the list of files is empty")
        self.n = len(self.paths)
        self.box = int(box) if box is not None else int(read_mrc_header(self.paths[0]).shape[-1])
        self.device = torch.device(device) if device is not None else torch.device("cpu")

    def take(self, rows) -> torch.Tensor:
        rows = [int(r) for r in np.asarray(rows, dtype=np.int64)]
        return load_subtomograms([self.paths[r] for r in rows], rows=rows, device=self.device)


def as_source(particles: torch.Tensor | ParticleSource) -> ParticleSource:
    """``particles`` as a :class:`ParticleSource` (a tensor ``(B, N, N, N)`` is wrapped in memory)."""
    return particles if isinstance(particles, ParticleSource) else InMemoryParticles(particles)
