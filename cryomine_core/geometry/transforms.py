"""Particle poses and their Scipion / RELION / Dynamo representations.

A CryoMine pose is ``(R, t)``: ``R`` a ``(..., 3, 3)`` canonical rotation (active, xyz) and ``t``
a ``(..., 3)`` xyz shift in voxels, meaning ``particle(x) = reference(R^T (x - t))`` with ``x``
relative to the box centre (index ``N // 2`` on each axis). The reference centre sits at ``t`` in
the particle box; ``x -> R x + t`` maps reference coordinates to particle coordinates.

Scipion (``SubTomogram.getTransform()/setTransform()`` with ``convention=None``, also Eman and
Dynamo in ``tomo.objects.convertMatrix``)
    Scipion stores a 4x4 ``M`` with ``f'(r) = f(M r)``, ``f`` the reference and ``f'`` the
    particle, so ``M`` maps particle to reference coordinates:
    ``M = [[R^T, -R^T t], [0, 0, 0, 1]]`` (the inverse of ``[[R, t], [0, 1]]``), shifts in
    voxels of the subtomogram. Pinned on scipion-em-reliontomo's STAR reader, which stores
    ``inv([[A, -o], [0, 1]])`` (``A`` RELION's matrix, ``o`` rlnOrigin in pixels) without a
    convention, and on scipion-em-dynamo's ``eulerAngles2matrix``, which stores
    ``[[m, -m d], [0, 1]]`` (``m`` Dynamo's matrix, ``d`` the table shifts); both agree with
    ``R = A = m^T`` and ``t = -o = d``.

Scipion's "relion" 4x4 convention (``convertMatrix(M, 'relion', 'get'|'set')``)
    ``N = inv(M) @ Rot(M) @ Rot(M)`` with ``Rot(M)`` the rotation block of ``M`` padded to 4x4;
    back: ``M = Rot(N) @ Rot(N) @ inv(N)``. For a pose this gives ``N = [[R^T, t], [0, 1]]``.
    Mirrored by :func:`scipion_to_relion_matrix` / :func:`relion_to_scipion_matrix`.

RELION STAR fields
    Angles ``(rlnAngleRot, rlnAngleTilt, rlnAnglePsi)`` give ``R`` directly (see
    :mod:`.rotations`). Origins (``rlnOriginX/Y/Z`` in pixels up to RELION 3.0,
    ``rlnOriginX/Y/ZAngst`` in Å since 3.1) are the shift that centres the particle, i.e. the
    particle centre is at ``-origin`` from the box centre: ``origin = -t`` (pixels) and
    ``origin_angstrom = -t * voxel_size``. Subtomogram (RELION 4/5) tables use the same
    semantics.

Dynamo table fields
    Angles ``(tdrot, tilt, narot)`` (columns 7-9) give ``R = dynamo_euler_matrix^T``; shifts
    ``(dx, dy, dz)`` (columns 4-6, voxels) move the rotated reference onto the particle:
    ``d = t``.
"""

from __future__ import annotations

import torch

from ._tensor import as_float_tensor, check_last_dims
from .rotations import (
    dynamo_eulers_to_rotation,
    relion_eulers_to_rotation,
    rotation_to_dynamo_eulers,
    rotation_to_relion_eulers,
)

__all__ = [
    "pose_to_affine",
    "affine_to_pose",
    "invert_pose",
    "pose_to_scipion_matrix",
    "scipion_matrix_to_pose",
    "scipion_to_relion_matrix",
    "relion_to_scipion_matrix",
    "pose_to_relion",
    "relion_to_pose",
    "pose_to_relion_angstrom",
    "relion_angstrom_to_pose",
    "pose_to_dynamo",
    "dynamo_to_pose",
]


def _pose_inputs(rotation, shift) -> tuple[torch.Tensor, torch.Tensor]:
    r = as_float_tensor(rotation)
    check_last_dims(r, (3, 3), "rotation")
    if shift is None:
        t = torch.zeros(r.shape[:-1], dtype=r.dtype, device=r.device)
    else:
        t = as_float_tensor(shift, dtype=r.dtype, device=r.device)
        check_last_dims(t, (3,), "shift")
    batch = torch.broadcast_shapes(r.shape[:-2], t.shape[:-1])
    return r.expand(*batch, 3, 3), t.expand(*batch, 3)


def _homogeneous(block: torch.Tensor, column: torch.Tensor) -> torch.Tensor:
    """``[[block, column], [0, 0, 0, 1]]`` for ``block (..., 3, 3)`` and ``column (..., 3)``."""
    top = torch.cat([block, column[..., None]], dim=-1)
    bottom = torch.zeros((*top.shape[:-2], 1, 4), dtype=top.dtype, device=top.device)
    bottom[..., 0, 3] = 1
    return torch.cat([top, bottom], dim=-2)


def _matvec(m: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return (m @ v[..., None])[..., 0]


def pose_to_affine(rotation, shift=None) -> torch.Tensor:
    """Forward 4x4 affine ``[[R, t], [0, 1]]`` mapping reference to particle coordinates.

    Args:
        rotation: ``(..., 3, 3)`` canonical rotation.
        shift: ``(..., 3)`` xyz voxels, or None for zero.

    Returns:
        ``(..., 4, 4)``.
    """
    r, t = _pose_inputs(rotation, shift)
    return _homogeneous(r, t)


def affine_to_pose(affine) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of :func:`pose_to_affine`: ``(..., 4, 4) -> (R (..., 3, 3), t (..., 3))``."""
    a = as_float_tensor(affine)
    check_last_dims(a, (4, 4), "affine")
    return a[..., :3, :3], a[..., :3, 3]


def invert_pose(rotation, shift=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pose of the reference seen from the particle: ``(R^T, -R^T t)``."""
    r, t = _pose_inputs(rotation, shift)
    rt = r.transpose(-1, -2)
    return rt, -_matvec(rt, t)


def pose_to_scipion_matrix(rotation, shift=None) -> torch.Tensor:
    """Scipion's 4x4 subtomogram transform (``convention=None``) of a pose.

    Args:
        rotation: ``(..., 3, 3)`` canonical rotation.
        shift: ``(..., 3)`` xyz voxels, or None.

    Returns:
        ``(..., 4, 4)`` ``M = [[R^T, -R^T t], [0, 1]]`` (particle -> reference coordinates).
    """
    r, t = _pose_inputs(rotation, shift)
    rt = r.transpose(-1, -2)
    return _homogeneous(rt, -_matvec(rt, t))


def scipion_matrix_to_pose(matrix) -> tuple[torch.Tensor, torch.Tensor]:
    """Pose of Scipion's 4x4 transform: ``R = M[:3, :3]^T``, ``t = -R M[:3, 3]``.

    Args:
        matrix: ``(..., 4, 4)`` as ``SubTomogram.getTransform().getMatrix()`` returns it.

    Returns:
        ``(R (..., 3, 3), t (..., 3))``, t in voxels.
    """
    m = as_float_tensor(matrix)
    check_last_dims(m, (4, 4), "matrix")
    r = m[..., :3, :3].transpose(-1, -2)
    return r, -_matvec(r, m[..., :3, 3])


def _rotation_block(m: torch.Tensor) -> torch.Tensor:
    zeros = torch.zeros(m.shape[:-2] + (3,), dtype=m.dtype, device=m.device)
    return _homogeneous(m[..., :3, :3], zeros)


def scipion_to_relion_matrix(matrix) -> torch.Tensor:
    """``tomo.objects.convertMatrix(M, convention='relion', direction='get')``, batched.

    ``N = inv(M) @ Rot(M) @ Rot(M)``; for a pose, ``N = [[R^T, t], [0, 1]]``.
    """
    m = as_float_tensor(matrix)
    check_last_dims(m, (4, 4), "matrix")
    rot = _rotation_block(m)
    return torch.linalg.inv(m) @ rot @ rot


def relion_to_scipion_matrix(matrix) -> torch.Tensor:
    """``tomo.objects.convertMatrix(N, convention='relion', direction='set')``, batched.

    ``M = Rot(N) @ Rot(N) @ inv(N)``; inverse of :func:`scipion_to_relion_matrix`.
    """
    n = as_float_tensor(matrix)
    check_last_dims(n, (4, 4), "matrix")
    rot = _rotation_block(n)
    return rot @ rot @ torch.linalg.inv(n)


def pose_to_relion(rotation, shift=None) -> tuple[torch.Tensor, torch.Tensor]:
    """RELION angles and pixel origins of a pose.

    Args:
        rotation: ``(..., 3, 3)`` canonical rotation.
        shift: ``(..., 3)`` xyz voxels, or None.

    Returns:
        ``(eulers, origin)``: ``(..., 3)`` ``(rot, tilt, psi)`` in degrees and ``(..., 3)``
        ``(rlnOriginX, rlnOriginY, rlnOriginZ)`` in pixels, ``origin = -t``.
    """
    r, t = _pose_inputs(rotation, shift)
    return rotation_to_relion_eulers(r), -t


def relion_to_pose(eulers, origin=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pose of RELION angles (degrees) and pixel origins (``t = -origin``; None means 0)."""
    r = relion_eulers_to_rotation(eulers)
    if origin is None:
        return r, torch.zeros(r.shape[:-1], dtype=r.dtype, device=r.device)
    o = as_float_tensor(origin, dtype=r.dtype, device=r.device)
    check_last_dims(o, (3,), "origin")
    return _pose_inputs(r, -o)


def pose_to_relion_angstrom(rotation, shift, voxel_size: float) -> tuple[torch.Tensor, torch.Tensor]:
    """RELION >= 3.1 angles and ``rlnOriginX/Y/ZAngst`` of a pose.

    Args:
        rotation: ``(..., 3, 3)`` canonical rotation.
        shift: ``(..., 3)`` xyz voxels, or None.
        voxel_size: Å per voxel of the box the shift refers to.

    Returns:
        ``(eulers (..., 3) degrees, origin_angstrom (..., 3))`` with ``origin = -t * voxel_size``.
    """
    eulers, origin = pose_to_relion(rotation, shift)
    return eulers, origin * voxel_size


def relion_angstrom_to_pose(eulers, origin_angstrom, voxel_size: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Pose of RELION >= 3.1 angles and Å origins: ``t = -origin_angstrom / voxel_size``."""
    if origin_angstrom is None:
        return relion_to_pose(eulers)
    return relion_to_pose(eulers, as_float_tensor(origin_angstrom) / voxel_size)


def pose_to_dynamo(rotation, shift=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Dynamo table angles and shifts of a pose.

    Returns:
        ``(eulers, shifts)``: ``(..., 3)`` ``(tdrot, tilt, narot)`` in degrees and ``(..., 3)``
        ``(dx, dy, dz)`` in voxels, ``d = t``.
    """
    r, t = _pose_inputs(rotation, shift)
    return rotation_to_dynamo_eulers(r), t.clone()


def dynamo_to_pose(eulers, shifts=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pose of Dynamo ``(tdrot, tilt, narot)`` (degrees) and ``(dx, dy, dz)`` (voxels, None = 0)."""
    r = dynamo_eulers_to_rotation(eulers)
    return _pose_inputs(r, shifts)
