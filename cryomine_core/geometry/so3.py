"""Sampling and measuring SO(3): random and gridded rotations, distances, point-group symmetry.

All rotations are canonical (``(..., 3, 3)``, active, acting on xyz column vectors); angles are in
degrees.
"""

from __future__ import annotations

import math
import re

import torch

from ._tensor import as_float_tensor, check_last_dims
from .quaternions import quaternion_to_matrix, rotation_vector_to_matrix
from .rotations import rotation_x, rotation_z

__all__ = [
    "random_rotations",
    "so3_grid",
    "so3_grid_size",
    "local_rotations",
    "rotation_angle_deg",
    "symmetry_rotations",
    "symmetric_rotation_error",
]

# so3_grid: n = ceil((_GRID_CONSTANT_DEG / step)^3) super-Fibonacci rotations. Measured: the
# covering radius of an n-point super-Fibonacci set is about 220 deg / n^(1/3), so the largest
# angle from any rotation to the grid is about 0.88 * step and the mean is about 0.5 * step.
_GRID_CONSTANT_DEG = 250.0
# Super-Fibonacci constants (Alexa, CVPR 2022): sqrt(2) and the real root of psi^4 = psi + 4.
_SF_PHI = math.sqrt(2.0)
_SF_PSI = 1.533751168755204288118041


def random_rotations(
    n: int,
    generator: torch.Generator | int | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Rotations drawn independently from the uniform (Haar) distribution on SO(3).

    Normalised 4D Gaussian vectors are uniform on the unit quaternion sphere, hence Haar on SO(3).

    Args:
        n: number of rotations.
        generator: a ``torch.Generator``, an integer seed, or None (global RNG).
        dtype: floating dtype of the result.
        device: device of the result (default: the generator's device, else CPU).

    Returns:
        ``(n, 3, 3)``.
    """
    if isinstance(generator, int):
        generator = torch.Generator(device=device or "cpu").manual_seed(generator)
    sample_device = generator.device if generator is not None else device
    q = torch.randn(n, 4, generator=generator, dtype=torch.float64, device=sample_device)
    return quaternion_to_matrix(q).to(dtype=dtype, device=device if device is not None else q.device)


def so3_grid_size(step_deg: float) -> int:
    """Number of rotations :func:`so3_grid` returns for ``step_deg``: ``ceil((250 / step)^3)``."""
    if step_deg <= 0:
        raise ValueError(f"step_deg must be positive, got {step_deg}")
    return max(1, math.ceil((_GRID_CONSTANT_DEG / step_deg) ** 3 - 1e-9))


def so3_grid(
    step_deg: float,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Deterministic near-uniform grid over SO(3) with about ``step_deg`` angular spacing.

    A super-Fibonacci spiral on the unit quaternion sphere (Alexa 2022) with
    ``n = ceil((250 / step_deg)^3)`` points (15625 for 10 deg, 37038 for 7.5 deg, 1954 for
    20 deg). Any rotation is within about ``0.9 * step_deg`` of a grid rotation (0.5 * step on
    average); no symmetry is used.

    Returns:
        ``(n, 3, 3)``.
    """
    n = so3_grid_size(step_deg)
    s = torch.arange(n, dtype=torch.float64, device=device) + 0.5
    r = torch.sqrt(s / n)
    big_r = torch.sqrt(1.0 - s / n)
    alpha = 2.0 * math.pi * s / _SF_PHI
    beta = 2.0 * math.pi * s / _SF_PSI
    q = torch.stack([r * torch.sin(alpha), r * torch.cos(alpha), big_r * torch.sin(beta), big_r * torch.cos(beta)], -1)
    return quaternion_to_matrix(q).to(dtype)


def local_rotations(center, max_angle_deg: float, step_deg: float) -> torch.Tensor:
    """Rotations within ``max_angle_deg`` of ``center`` on a regular grid of spacing ``step_deg``.

    Rotation vectors ``v`` on a cubic lattice of spacing ``step_deg`` (in radians) with
    ``|v| <= max_angle_deg`` give ``exp(v) @ center`` (a perturbation about the particle-frame
    axes); ``angle(center, exp(v) @ center) = |v|``. Results are sorted by that angle, so
    ``center`` itself comes first. About ``4.19 * (max_angle / step)^3`` rotations; any rotation
    within ``max_angle`` is at most about ``0.87 * step`` from one of them.

    Args:
        center: ``(..., 3, 3)`` canonical rotation.
        max_angle_deg: radius of the neighbourhood.
        step_deg: lattice spacing.

    Returns:
        ``(..., m, 3, 3)``.
    """
    c = as_float_tensor(center)
    check_last_dims(c, (3, 3), "center")
    if step_deg <= 0 or max_angle_deg < 0:
        raise ValueError("step_deg must be > 0 and max_angle_deg >= 0")
    k = int(math.floor(max_angle_deg / step_deg + 1e-9))
    ticks = torch.arange(-k, k + 1, dtype=torch.float64, device=c.device) * step_deg
    lattice = torch.cartesian_prod(ticks, ticks, ticks).reshape(-1, 3)
    norms = torch.linalg.vector_norm(lattice, dim=-1)
    keep = norms <= max_angle_deg + 1e-9 * max(1.0, max_angle_deg)
    lattice, norms = lattice[keep], norms[keep]
    order = torch.argsort(norms, stable=True)
    deltas = rotation_vector_to_matrix(torch.deg2rad(lattice[order])).to(c.dtype)
    return deltas @ c[..., None, :, :]


def rotation_angle_deg(rotation_1, rotation_2=None) -> torch.Tensor:
    """Geodesic distance on SO(3): the angle of ``R1^T R2`` in degrees, in [0, 180].

    Computed as ``2 atan2(|R1 - R2|_F / sqrt(8), sqrt(1 + tr(R1^T R2)) / 2)``, accurate near both
    0 and 180 degrees.

    Args:
        rotation_1: ``(..., 3, 3)``.
        rotation_2: ``(..., 3, 3)`` (broadcast), or None for the identity.

    Returns:
        ``(...)`` angles in degrees.
    """
    r1 = as_float_tensor(rotation_1)
    check_last_dims(r1, (3, 3), "rotation_1")
    if rotation_2 is None:
        r2 = torch.eye(3, dtype=r1.dtype, device=r1.device)
    else:
        r2 = as_float_tensor(rotation_2, dtype=r1.dtype, device=r1.device)
        check_last_dims(r2, (3, 3), "rotation_2")
    half_sin = torch.linalg.matrix_norm(r1 - r2) / math.sqrt(8.0)
    trace = (r1 * r2).sum(dim=(-1, -2))  # tr(R1^T R2)
    half_cos = torch.sqrt(torch.clamp(1.0 + trace, min=0.0)) / 2.0
    return torch.rad2deg(2.0 * torch.atan2(half_sin, half_cos))


def symmetry_rotations(
    symmetry: str,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Rotations of a cyclic or dihedral point group, in the reference frame.

    ``'Cn'``: rotations by ``360 k / n`` about z (k = 0..n-1). ``'Dn'``: ``Cn`` plus the same
    rotations composed with a 2-fold about x (the RELION convention: n-fold along z, a 2-fold
    along x). ``C1`` is the identity. A reference with symmetry ``G`` satisfies
    ``reference(S^T x) = reference(x)`` for ``S`` in ``G``, so poses ``R`` and ``R @ S`` are
    equivalent.

    Args:
        symmetry: ``'C<n>'`` or ``'D<n>'`` (case-insensitive), n >= 1.

    Returns:
        ``(order, 3, 3)``, identity first (order n for Cn, 2n for Dn).
    """
    match = re.fullmatch(r"\s*([CcDd])(\d+)\s*", symmetry)
    if match is None or int(match.group(2)) < 1:
        raise ValueError(f"unsupported symmetry {symmetry!r}: expected C<n> or D<n> with n >= 1")
    n = int(match.group(2))
    angles = torch.arange(n, dtype=torch.float64) * (360.0 / n)
    group = rotation_z(angles)
    if match.group(1).upper() == "D":
        flip = rotation_x(torch.tensor(180.0, dtype=torch.float64))
        group = torch.cat([group, group @ flip], dim=0)
    return group.to(dtype=dtype, device=device)


def symmetric_rotation_error(rotation_estimate, rotation_true, symmetry: str = "C1") -> torch.Tensor:
    """Smallest angle (degrees) between ``R_est`` and any equivalent ``R_true @ S``, S in the group.

    Args:
        rotation_estimate: ``(..., 3, 3)``.
        rotation_true: ``(..., 3, 3)`` (broadcast).
        symmetry: point group of the reference, see :func:`symmetry_rotations`.

    Returns:
        ``(...)`` angles in degrees.
    """
    est = as_float_tensor(rotation_estimate)
    true = as_float_tensor(rotation_true, dtype=est.dtype, device=est.device)
    check_last_dims(est, (3, 3), "rotation_estimate")
    check_last_dims(true, (3, 3), "rotation_true")
    group = symmetry_rotations(symmetry, dtype=est.dtype, device=est.device)
    candidates = true[..., None, :, :] @ group  # (..., order, 3, 3)
    return rotation_angle_deg(est[..., None, :, :], candidates).amin(dim=-1)
