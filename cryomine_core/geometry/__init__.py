"""Geometry of particles: rotations, poses, Euler conventions, volume rotation, SO(3) sampling.

Conventions (used by all of CryoMine)
-------------------------------------
- Volumes are ``(..., D, H, W)`` arrays/tensors indexed ``vol[z, y, x]`` (as mrcfile returns them).
- Coordinates and shifts are **xyz** vectors in **voxels** unless the name says ``_angstrom``;
  angles are in **degrees** (rotation vectors in radians); voxel sizes in Å/voxel.
- The box centre of an axis of length ``N`` is index ``N // 2`` (the FFT / RELION convention).
- The canonical rotation ``R`` is a ``(..., 3, 3)`` matrix acting on column vectors of xyz
  coordinates, **active**: a reference feature at ``p`` (relative to the box centre) sits at
  ``R @ p`` in the particle.
- A particle's pose is ``(R, t)``, ``t`` an xyz shift in voxels:
  ``particle(x) = reference(R^T (x - t))`` for ``x`` relative to the box centre, i.e. reference
  coordinates map to particle coordinates by ``x = R p + t``. :func:`rotate_volume` applies it.
- Functions are device-agnostic, take torch tensors (numpy arrays are converted) with leading
  batch dimensions, and broadcast those batch dimensions.

External conventions (details and sources in :mod:`.rotations` and :mod:`.transforms`)
-------------------------------------------------------------------------------------
- RELION ``(rot, tilt, psi)``: RELION's ``Euler_angles2matrix`` ``A`` **is** ``R``;
  ``rlnOrigin{X,Y,Z}`` (pixels) ``= -t`` and ``rlnOrigin{X,Y,Z}Angst = -t * voxel_size``.
- Dynamo ``(tdrot, tilt, narot)``: ``R = dynamo_euler2matrix(...)^T``; table shifts
  ``(dx, dy, dz) = t``.
- Scipion (``SubTomogram.getTransform().getMatrix()``, no convention; also "eman"/"dynamo"):
  ``M = [[R^T, -R^T t], [0, 1]]`` (``particle(r) = reference(M r)``). Scipion's "relion"
  4x4 convention: ``N = inv(M) Rot(M) Rot(M) = [[R^T, t], [0, 1]]``.
"""

from .quaternions import matrix_to_quaternion, quaternion_to_matrix, rotation_vector_to_matrix
from .rotate import rotate_volume, shift_volume_fourier
from .rotations import (
    dynamo_euler_matrix,
    dynamo_eulers_to_rotation,
    matrix_xyz_to_zyx,
    matrix_zyx_to_xyz,
    relion_euler_matrix,
    relion_eulers_to_rotation,
    rotation_to_dynamo_eulers,
    rotation_to_relion_eulers,
    rotation_x,
    rotation_y,
    rotation_z,
)
from .so3 import (
    local_rotations,
    random_rotations,
    rotation_angle_deg,
    so3_grid,
    so3_grid_size,
    symmetric_rotation_error,
    symmetry_rotations,
)
from .transforms import (
    affine_to_pose,
    dynamo_to_pose,
    invert_pose,
    pose_to_affine,
    pose_to_dynamo,
    pose_to_relion,
    pose_to_relion_angstrom,
    pose_to_scipion_matrix,
    relion_angstrom_to_pose,
    relion_to_pose,
    relion_to_scipion_matrix,
    scipion_matrix_to_pose,
    scipion_to_relion_matrix,
)

__all__ = [
    # rotations
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
    # quaternions
    "quaternion_to_matrix",
    "matrix_to_quaternion",
    "rotation_vector_to_matrix",
    # transforms
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
    # rotate
    "rotate_volume",
    "shift_volume_fourier",
    # so3
    "random_rotations",
    "so3_grid",
    "so3_grid_size",
    "local_rotations",
    "rotation_angle_deg",
    "symmetry_rotations",
    "symmetric_rotation_error",
]
