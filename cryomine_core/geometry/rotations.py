"""Rotation matrices: elementary rotations, RELION and Dynamo Euler angles, xyz <-> zyx.

Every matrix here is a ``(..., 3, 3)`` tensor acting on **column vectors of xyz coordinates**
unless its name says ``zyx``. Angles are in degrees. The canonical CryoMine rotation ``R`` is
*active*: a feature of the reference at ``p`` (relative to the box centre) lies at ``R @ p`` in
the particle (see :mod:`cryomine_core.geometry`).

RELION (ZYZ: rot, tilt, psi)
    :func:`relion_euler_matrix` builds exactly the matrix of RELION's ``Euler_angles2matrix``
    (``src/euler.cpp``), ``A = Rz(-psi) @ Ry(-tilt) @ Rz(-rot)`` with ``Rz``/``Ry`` the usual
    right-handed active rotations. RELION projects/rotates the reference by sampling it at
    ``A^-1 k`` (``Projector::project``/``rotate3D``), so ``A`` rotates the reference into the
    particle: **the canonical R equals RELION's A**. (Equivalently ``R^T = Rz(rot) Ry(tilt)
    Rz(psi)``, the intrinsic-ZYZ matrix the ``eulerangles`` package calls RELION's;
    scipion-em-reliontomo stores this ``R^T`` as the rotation block of Scipion's matrix.)

Dynamo (ZXZ: tdrot, tilt, narot)
    :func:`dynamo_euler_matrix` builds the matrix of Dynamo's ``dynamo_euler2matrix``,
    ``m = Rz(narot) @ Rx(tilt) @ Rz(tdrot)`` (extrinsic zxz). That matrix rotates the particle
    onto the reference; Dynamo rotates the reference onto the particle with ``m^T``
    (``dynamo_angles2orientations``), and scipion-em-dynamo stores ``m`` as the rotation block
    of Scipion's matrix, which is ``R^T``. So **the canonical R equals m^T**, i.e.
    ``R = Rz(-tdrot) @ Rx(-tilt) @ Rz(-narot)``.
    Consequence: the same pose satisfies ``A = m^T``, i.e. RELION ``(rot, tilt, psi) =
    (narot - 90, tilt, tdrot + 90)`` (mod 360).

Angle ranges returned by the matrix -> Euler functions: tilt in [0, 180], the two others in
(-180, 180]. At gimbal lock (tilt 0 or 180, only one combination of the two other angles is
defined) the first angle (RELION rot) or the last one (Dynamo narot) is set to 0, as RELION's
``Euler_matrix2angles`` does for rot.
"""

from __future__ import annotations

import math

import torch

from ._tensor import as_float_tensor, check_last_dims

__all__ = [
    "rotation_x",
    "rotation_y",
    "rotation_z",
    "relion_euler_matrix",
    "relion_eulers_to_rotation",
    "rotation_to_relion_eulers",
    "dynamo_euler_matrix",
    "dynamo_eulers_to_rotation",
    "rotation_to_dynamo_eulers",
    "matrix_xyz_to_zyx",
    "matrix_zyx_to_xyz",
]


def _elementary(angle_deg, axis: int) -> torch.Tensor:
    angle = torch.deg2rad(as_float_tensor(angle_deg))
    c, s = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(c), torch.zeros_like(c)
    if axis == 0:
        rows = [[one, zero, zero], [zero, c, -s], [zero, s, c]]
    elif axis == 1:
        rows = [[c, zero, s], [zero, one, zero], [-s, zero, c]]
    else:
        rows = [[c, -s, zero], [s, c, zero], [zero, zero, one]]
    return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)


def rotation_x(angle_deg) -> torch.Tensor:
    """Active right-handed rotation by ``angle_deg`` (shape ``(...)``) about x -> ``(..., 3, 3)``."""
    return _elementary(angle_deg, 0)


def rotation_y(angle_deg) -> torch.Tensor:
    """Active right-handed rotation by ``angle_deg`` (shape ``(...)``) about y -> ``(..., 3, 3)``."""
    return _elementary(angle_deg, 1)


def rotation_z(angle_deg) -> torch.Tensor:
    """Active right-handed rotation by ``angle_deg`` (shape ``(...)``) about z -> ``(..., 3, 3)``."""
    return _elementary(angle_deg, 2)


def _split_eulers(eulers) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    e = as_float_tensor(eulers)
    check_last_dims(e, (3,), "eulers")
    return e[..., 0], e[..., 1], e[..., 2]


def _wrap_deg(angle: torch.Tensor) -> torch.Tensor:
    """Wrap degrees into (-180, 180]."""
    wrapped = torch.remainder(angle + 180.0, 360.0) - 180.0
    return torch.where(wrapped <= -180.0, wrapped + 360.0, wrapped)


def _gimbal_eps(dtype: torch.dtype) -> float:
    # RELION uses 16 * FLT_EPSILON on sin(tilt); scale with the working precision.
    return 16.0 * torch.finfo(dtype).eps


def relion_euler_matrix(eulers) -> torch.Tensor:
    """RELION's ``Euler_angles2matrix`` for ``eulers = (rot, tilt, psi)`` in degrees.

    Args:
        eulers: ``(..., 3)`` RELION ZYZ angles ``rlnAngleRot, rlnAngleTilt, rlnAnglePsi``.

    Returns:
        ``(..., 3, 3)`` matrix ``A = Rz(-psi) Ry(-tilt) Rz(-rot)``, acting on xyz. ``A`` is the
        canonical rotation (reference -> particle); see the module docstring.
    """
    rot, tilt, psi = _split_eulers(eulers)
    return rotation_z(-psi) @ rotation_y(-tilt) @ rotation_z(-rot)


def relion_eulers_to_rotation(eulers) -> torch.Tensor:
    """Canonical rotation ``R`` (``(..., 3, 3)``, xyz, reference -> particle) of RELION angles.

    Identical to :func:`relion_euler_matrix` since RELION's ``A`` is the canonical rotation.
    """
    return relion_euler_matrix(eulers)


def rotation_to_relion_eulers(rotation) -> torch.Tensor:
    """RELION ``(rot, tilt, psi)`` in degrees of a canonical rotation.

    Inverse of :func:`relion_eulers_to_rotation`, following RELION's ``Euler_matrix2angles``:
    tilt in [0, 180], rot and psi in (-180, 180]; at tilt 0 or 180, rot = 0.

    Args:
        rotation: ``(..., 3, 3)`` canonical rotation (= RELION's ``A``).

    Returns:
        ``(..., 3)`` angles in degrees.
    """
    a = as_float_tensor(rotation)
    check_last_dims(a, (3, 3), "rotation")
    sin_tilt = torch.sqrt(a[..., 0, 2] ** 2 + a[..., 1, 2] ** 2)
    regular = sin_tilt > _gimbal_eps(a.dtype)
    tilt = torch.atan2(sin_tilt, a[..., 2, 2])
    rot = torch.atan2(a[..., 2, 1], a[..., 2, 0])
    psi = torch.atan2(a[..., 1, 2], -a[..., 0, 2])
    # Gimbal lock: A = Rz(-psi) (tilt 0) or A = Rz(-psi) diag(-1, 1, -1) (tilt 180), rot = 0.
    up = a[..., 2, 2] > 0
    psi_lock = torch.where(up, torch.atan2(-a[..., 1, 0], a[..., 0, 0]), torch.atan2(a[..., 1, 0], -a[..., 0, 0]))
    tilt_lock = torch.where(up, torch.zeros_like(tilt), torch.full_like(tilt, math.pi))
    rot = torch.where(regular, rot, torch.zeros_like(rot))
    tilt = torch.where(regular, tilt, tilt_lock)
    psi = torch.where(regular, psi, psi_lock)
    angles = torch.rad2deg(torch.stack([rot, tilt, psi], dim=-1))
    return torch.stack([_wrap_deg(angles[..., 0]), angles[..., 1], _wrap_deg(angles[..., 2])], dim=-1)


def dynamo_euler_matrix(eulers) -> torch.Tensor:
    """Dynamo's ``dynamo_euler2matrix`` for ``eulers = (tdrot, tilt, narot)`` in degrees.

    Args:
        eulers: ``(..., 3)`` Dynamo ZXZ angles (table columns 7, 8, 9).

    Returns:
        ``(..., 3, 3)`` matrix ``m = Rz(narot) Rx(tilt) Rz(tdrot)`` acting on xyz. ``m`` rotates
        the particle onto the reference: the canonical rotation is ``m^T``.
    """
    tdrot, tilt, narot = _split_eulers(eulers)
    return rotation_z(narot) @ rotation_x(tilt) @ rotation_z(tdrot)


def dynamo_eulers_to_rotation(eulers) -> torch.Tensor:
    """Canonical rotation ``R = dynamo_euler_matrix(eulers)^T`` (``(..., 3, 3)``, xyz)."""
    return dynamo_euler_matrix(eulers).transpose(-1, -2)


def rotation_to_dynamo_eulers(rotation) -> torch.Tensor:
    """Dynamo ``(tdrot, tilt, narot)`` in degrees of a canonical rotation.

    Inverse of :func:`dynamo_eulers_to_rotation`: tilt in [0, 180], tdrot and narot in
    (-180, 180]; at tilt 0 or 180, narot = 0 and tdrot carries the in-plane angle.

    Args:
        rotation: ``(..., 3, 3)`` canonical rotation (= ``m^T``).

    Returns:
        ``(..., 3)`` angles in degrees.
    """
    r = as_float_tensor(rotation)
    check_last_dims(r, (3, 3), "rotation")
    m = r.transpose(-1, -2)
    sin_tilt = torch.sqrt(m[..., 2, 0] ** 2 + m[..., 2, 1] ** 2)
    regular = sin_tilt > _gimbal_eps(m.dtype)
    tilt = torch.atan2(sin_tilt, m[..., 2, 2])
    tdrot = torch.atan2(m[..., 2, 0], m[..., 2, 1])
    narot = torch.atan2(m[..., 0, 2], -m[..., 1, 2])
    # Gimbal lock: m = Rz(tdrot) (tilt 0) or m = Rz(-tdrot) diag(1, -1, -1) (tilt 180), narot = 0.
    up = m[..., 2, 2] > 0
    td_lock = torch.where(up, torch.atan2(m[..., 1, 0], m[..., 0, 0]), torch.atan2(-m[..., 1, 0], m[..., 0, 0]))
    tilt_lock = torch.where(up, torch.zeros_like(tilt), torch.full_like(tilt, math.pi))
    tdrot = torch.where(regular, tdrot, td_lock)
    tilt = torch.where(regular, tilt, tilt_lock)
    narot = torch.where(regular, narot, torch.zeros_like(narot))
    angles = torch.rad2deg(torch.stack([tdrot, tilt, narot], dim=-1))
    return torch.stack([_wrap_deg(angles[..., 0]), angles[..., 1], _wrap_deg(angles[..., 2])], dim=-1)


def matrix_xyz_to_zyx(matrix) -> torch.Tensor:
    """Re-express a matrix acting on xyz column vectors as one acting on zyx (index) vectors.

    If ``v_xyz' = M v_xyz`` then ``v_zyx' = P M P v_zyx`` with ``P`` the axis-reversing
    permutation; this is what one needs to apply ``M`` to ``(z, y, x)`` array indices.

    Args:
        matrix: ``(..., 3, 3)``.

    Returns:
        ``(..., 3, 3)`` (both axes reversed).
    """
    m = as_float_tensor(matrix)
    check_last_dims(m, (3, 3), "matrix")
    return m.flip(-1).flip(-2)


def matrix_zyx_to_xyz(matrix) -> torch.Tensor:
    """Inverse of :func:`matrix_xyz_to_zyx` (the same axis reversal; it is an involution)."""
    return matrix_xyz_to_zyx(matrix)
