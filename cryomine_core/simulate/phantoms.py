"""Procedural asymmetric phantoms: offline stand-ins for macromolecular density maps.

``phantom_volume(seed, ...)`` builds a density from a handful of anisotropic Gaussian blobs and
one tube joining two of them, all drawn from ``numpy.random.default_rng(seed)``. Shapes are
defined in Å, so the same seed rendered at another voxel size is the same object; different
seeds give clearly different (and, almost surely, asymmetric: no rotation maps one onto itself)
shapes. They are used by the unit tests, the offline demos and whenever no real structure is at
hand (``phantom:<seed>`` specs in :func:`cryomine_core.simulate.structures.load_structure`).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["phantom_volume", "phantom_radius_angstrom"]

# Base radius of phantom 0 in Å; seeds vary it by up to +-25 %.
_BASE_RADIUS_ANGSTROM = 100.0


def phantom_radius_angstrom(seed: int, radius_angstrom: float | None = None) -> float:
    """Outer radius (Å) of the blob centres' sphere of phantom ``seed`` (before blob widths)."""
    if radius_angstrom is not None:
        return float(radius_angstrom)
    rng = np.random.default_rng([int(seed), 7])
    return float(_BASE_RADIUS_ANGSTROM * rng.uniform(0.75, 1.25))


def _blob_parameters(seed: int, radius: float) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """(centre xyz Å, inverse covariance 3x3 in 1/Å², weight) of each blob of the phantom."""
    rng = np.random.default_rng([int(seed), 11])
    n_blobs = int(rng.integers(4, 8))
    blobs = []
    for _ in range(n_blobs):
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        centre = direction * radius * rng.uniform(0.1, 0.6)
        sigmas = radius * rng.uniform(0.10, 0.26, size=3)
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        inv_cov = q @ np.diag(1.0 / sigmas**2) @ q.T
        blobs.append((centre, inv_cov, float(rng.uniform(0.6, 1.0))))
    # A tube (a chain of small round blobs) between the first two blobs breaks any accidental
    # near-symmetry of the blob cloud.
    a, b = blobs[0][0], blobs[1][0]
    tube_sigma = 0.08 * radius
    for t in np.linspace(0.0, 1.0, 8):
        blobs.append((a + t * (b - a), np.eye(3) / tube_sigma**2, 0.5))
    return blobs


def phantom_volume(
    seed: int,
    box: int,
    voxel_size_angstrom: float,
    radius_angstrom: float | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Render phantom ``seed`` in a cubic box.

    Args:
        seed: non-negative integer naming the phantom (``phantom:<seed>``).
        box: edge of the cubic box in voxels; the phantom's centre of mass is not forced to
            the box centre here (see :func:`~cryomine_core.simulate.structures.load_structure`).
        voxel_size_angstrom: Å per voxel.
        radius_angstrom: radius of the sphere holding the blob centres (default: a size in
            75-125 Å drawn from the seed).
        device: device of the result.

    Returns:
        ``(box, box, box)`` float32 density (zyx), >= 0, maximum 1, blob cloud centred on the
        box centre ``box // 2``.
    """
    if seed < 0:
        raise ValueError(f"phantom seed must be >= 0, got {seed}")
    radius = phantom_radius_angstrom(seed, radius_angstrom)
    axis = (torch.arange(box, dtype=torch.float32, device=device) - box // 2) * float(voxel_size_angstrom)
    zz, yy, xx = torch.meshgrid(axis, axis, axis, indexing="ij")
    xyz = torch.stack([xx, yy, zz], dim=-1)  # (D, H, W, 3) in Å
    density = torch.zeros((box, box, box), dtype=torch.float32, device=device)
    for centre, inv_cov, weight in _blob_parameters(seed, radius):
        d = xyz - torch.as_tensor(centre, dtype=torch.float32, device=device)
        m = torch.as_tensor(inv_cov, dtype=torch.float32, device=device)
        density += weight * torch.exp(-0.5 * torch.einsum("...i,ij,...j->...", d, m, d))
    return density / density.max().clamp_min(1e-12)
