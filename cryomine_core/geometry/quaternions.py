"""Unit quaternions and rotation vectors <-> rotation matrices.

Quaternions are ``(..., 4)`` tensors ordered ``(w, x, y, z)`` (scalar first); ``q`` and ``-q``
are the same rotation. Rotation vectors (axis-angle) are ``(..., 3)`` xyz vectors whose direction
is the axis and whose norm is the angle, in **radians**. Matrices are active, act on xyz column
vectors and are ``(..., 3, 3)``.
"""

from __future__ import annotations

import torch

from ._tensor import as_float_tensor, check_last_dims

__all__ = [
    "quaternion_to_matrix",
    "matrix_to_quaternion",
    "rotation_vector_to_matrix",
]


def quaternion_to_matrix(quaternion) -> torch.Tensor:
    """Rotation matrix of a quaternion ``(w, x, y, z)`` (normalised here).

    Args:
        quaternion: ``(..., 4)``, any non-zero norm.

    Returns:
        ``(..., 3, 3)`` active rotation acting on xyz.
    """
    q = as_float_tensor(quaternion)
    check_last_dims(q, (4,), "quaternion")
    q = q / torch.linalg.vector_norm(q, dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ]
    return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)


def matrix_to_quaternion(matrix) -> torch.Tensor:
    """Unit quaternion ``(w, x, y, z)`` with ``w >= 0`` of a rotation matrix.

    Uses the numerically stable branch (largest diagonal term) per element.

    Args:
        matrix: ``(..., 3, 3)`` rotation.

    Returns:
        ``(..., 4)``.
    """
    m = as_float_tensor(matrix)
    check_last_dims(m, (3, 3), "matrix")
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    # 4 * (w^2, x^2, y^2, z^2); pick the largest to divide by.
    sq = torch.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], dim=-1)
    d21, d02, d10 = m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]
    s21, s02, s10 = m[..., 2, 1] + m[..., 1, 2], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 0] + m[..., 0, 1]
    candidates = torch.stack(
        [
            torch.stack([sq[..., 0], d21, d02, d10], dim=-1),
            torch.stack([d21, sq[..., 1], s10, s02], dim=-1),
            torch.stack([d02, s10, sq[..., 2], s21], dim=-1),
            torch.stack([d10, s02, s21, sq[..., 3]], dim=-1),
        ],
        dim=-2,
    )  # (..., 4 candidates, 4), each proportional to q
    best = sq.argmax(dim=-1)
    index = best[..., None, None].expand(*best.shape, 1, 4)
    q = torch.gather(candidates, -2, index).squeeze(-2)
    q = q / torch.linalg.vector_norm(q, dim=-1, keepdim=True)
    return torch.where(q[..., :1] < 0, -q, q)


def rotation_vector_to_matrix(rotation_vector) -> torch.Tensor:
    """Rotation matrix of an axis-angle vector (angle = norm, radians; Rodrigues' formula).

    Args:
        rotation_vector: ``(..., 3)`` xyz.

    Returns:
        ``(..., 3, 3)`` active rotation about the vector's direction, right-handed.
    """
    v = as_float_tensor(rotation_vector)
    check_last_dims(v, (3,), "rotation_vector")
    half = 0.5 * torch.linalg.vector_norm(v, dim=-1, keepdim=True)
    # sin(h)/(2h) -> 1/2 as h -> 0; sinc(x) = sin(pi x)/(pi x).
    scale = 0.5 * torch.sinc(half / torch.pi)
    q = torch.cat([torch.cos(half), v * scale], dim=-1)
    return quaternion_to_matrix(q)
