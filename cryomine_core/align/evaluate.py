"""Pose errors against ground truth, up to the global pose of a reference-free average.

A reference-free average is the true structure in an arbitrary pose ``(A, a)``:
``avg(y) = ref(A^T (y - a))``. Then a particle of true pose ``(R, t)`` is found at
``R_est = R A^T`` and ``t_est = t - R_est a``. :func:`global_pose_offset` estimates ``(A, a)``
robustly from all particles, and :func:`pose_errors` reports the remaining per-particle
rotation (degrees, symmetry-aware) and translation (voxels) errors.
"""

from __future__ import annotations

import torch

from cryomine_core.geometry import rotation_angle_deg, symmetric_rotation_error, symmetry_rotations

__all__ = ["global_pose_offset", "pose_errors", "project_to_rotation"]


def project_to_rotation(m: torch.Tensor) -> torch.Tensor:
    """Nearest rotation (Frobenius) to ``(..., 3, 3)`` matrices."""
    u, _, vh = torch.linalg.svd(m.double())
    d = torch.sign(torch.linalg.det(u @ vh))
    fix = torch.ones_like(u[..., 0, :])
    fix[..., -1] = d
    return (u * fix[..., None, :]) @ vh


def global_pose_offset(rot_est: torch.Tensor, shift_est: torch.Tensor, rot_true: torch.Tensor,
                       shift_true: torch.Tensor, symmetry: str = "C1", iterations: int = 5,
                       inlier_deg: float = 20.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Estimate ``(A (3, 3), a (3,))`` with ``R_est ~ R_true S A^T`` (S in the point group).

    Starts from the offset implied by one particle that most others agree with (within
    ``inlier_deg``), then takes the chordal mean over the inliers, a few times.
    """
    r_e, r_t = rot_est.double(), rot_true.double()
    group = symmetry_rotations(symmetry, dtype=torch.float64, device=r_e.device)
    # Each particle implies an offset A^T = R_true^T R_est (up to symmetry); start from the implied offset
    # that most particles agree with (a robust mode), then average over its inliers.
    implied = r_t.transpose(-1, -2) @ r_e  # (B, 3, 3)
    cand = implied[:: max(1, implied.shape[0] // 256)]
    agree = rotation_angle_deg((r_t[:, None, None] @ group[None, None] @ cand[None, :, None]), r_e[:, None, None])
    votes = (agree.amin(-1) <= inlier_deg).sum(0)  # (n_candidates,)
    at = cand[int(votes.argmax())]
    inliers = torch.ones(r_e.shape[0], dtype=torch.bool, device=r_e.device)
    for _ in range(iterations):
        cand = r_t[:, None] @ group[None] @ at  # (B, G, 3, 3): predictions of R_est
        err = rotation_angle_deg(r_e[:, None], cand)
        best = err.argmin(1)
        s = group[best]
        inliers = err.amin(1) <= inlier_deg
        if int(inliers.sum()) < 3:
            inliers = torch.ones_like(inliers)
        at = project_to_rotation(((r_t @ s).transpose(-1, -2) @ r_e)[inliers].mean(0))
    a_vec = (r_e.transpose(-1, -2) @ (shift_true.double() - shift_est.double())[..., None])[..., 0]
    a_vec = a_vec[inliers].median(0).values
    return at.transpose(-1, -2), a_vec


def pose_errors(rot_est: torch.Tensor, shift_est: torch.Tensor, rot_true: torch.Tensor, shift_true: torch.Tensor,
                symmetry: str = "C1", up_to_global: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-particle ``(rotation error deg (B,), translation error voxels (B,))``.

    With ``up_to_global`` the global pose of the estimate's reference is removed first
    (:func:`global_pose_offset`); otherwise poses are compared directly (reference given in
    the true frame).
    """
    r_e, t_e = rot_est.double(), shift_est.double()
    r_t, t_t = rot_true.double(), shift_true.double()
    if up_to_global:
        a_rot, a_vec = global_pose_offset(r_e, t_e, r_t, t_t, symmetry)
        r_e = r_e @ a_rot  # R_est A = R_true
        t_e = t_e + (rot_est.double() @ a_vec[:, None])[..., 0]
    rot_err = symmetric_rotation_error(r_e, r_t, symmetry)
    return rot_err.float(), (t_e - t_t).norm(dim=-1).float()
