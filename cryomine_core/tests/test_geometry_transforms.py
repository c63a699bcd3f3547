"""Poses <-> Scipion 4x4, RELION and Dynamo fields."""

import numpy as np
import pytest
import torch

from cryomine_core.geometry import (
    affine_to_pose,
    dynamo_to_pose,
    invert_pose,
    pose_to_affine,
    pose_to_dynamo,
    pose_to_relion,
    pose_to_relion_angstrom,
    pose_to_scipion_matrix,
    random_rotations,
    relion_angstrom_to_pose,
    relion_euler_matrix,
    relion_to_pose,
    relion_to_scipion_matrix,
    rotation_angle_deg,
    rotation_z,
    scipion_matrix_to_pose,
    scipion_to_relion_matrix,
)

F64 = torch.float64


@pytest.fixture
def poses():
    rotations = random_rotations(60, generator=10, dtype=F64).reshape(3, 20, 3, 3)
    shifts = torch.randn(3, 20, 3, generator=torch.Generator().manual_seed(11), dtype=F64) * 5
    return rotations, shifts


def _assert_same_pose(a, b, atol=1e-10):
    assert torch.allclose(a[0], b[0], atol=atol)
    assert torch.allclose(a[1], b[1], atol=atol)


def test_affine_semantics(poses):
    rotations, shifts = poses
    affine = pose_to_affine(rotations, shifts)
    assert affine.shape == (3, 20, 4, 4)
    p = torch.tensor([1.0, -2.0, 3.0, 1.0], dtype=F64)
    mapped = (affine @ p)[..., :3]
    assert torch.allclose(mapped, (rotations @ p[:3]) + shifts)
    _assert_same_pose(affine_to_pose(affine), (rotations, shifts))
    inverse = pose_to_affine(*invert_pose(rotations, shifts))
    assert torch.allclose(inverse @ affine, torch.eye(4, dtype=F64).expand(3, 20, 4, 4), atol=1e-12)


def test_scipion_matrix_semantics(poses):
    """M maps particle coordinates to reference coordinates: f'(r) = f(M r)."""
    rotations, shifts = poses
    m = pose_to_scipion_matrix(rotations, shifts)
    assert m.shape == (3, 20, 4, 4)
    assert torch.allclose(m, torch.linalg.inv(pose_to_affine(rotations, shifts)), atol=1e-12)
    reference_point = torch.tensor([2.0, 0.5, -1.0], dtype=F64)
    particle_point = rotations @ reference_point + shifts
    homogeneous = torch.cat([particle_point, torch.ones(3, 20, 1, dtype=F64)], dim=-1)
    assert torch.allclose((m @ homogeneous[..., None])[..., :3, 0], reference_point.expand(3, 20, 3), atol=1e-12)
    # tomo's docstring example: a pure translation by d is stored as -d
    d = torch.tensor([1.0, 2.0, 3.0], dtype=F64)
    assert torch.allclose(pose_to_scipion_matrix(torch.eye(3, dtype=F64), d)[:3, 3], -d)


def test_scipion_round_trip(poses):
    rotations, shifts = poses
    _assert_same_pose(scipion_matrix_to_pose(pose_to_scipion_matrix(rotations, shifts)), (rotations, shifts))
    m = pose_to_scipion_matrix(rotations, None)
    assert torch.all(m[..., :3, 3] == 0) and torch.all(m[..., 3, :] == torch.tensor([0, 0, 0, 1.0], dtype=F64))


def test_scipion_relion_4x4(poses):
    rotations, shifts = poses
    m = pose_to_scipion_matrix(rotations, shifts)
    n = scipion_to_relion_matrix(m)
    # for a pose, Scipion's "relion" matrix is [[R^T, t], [0, 1]]
    assert torch.allclose(n[..., :3, :3], rotations.transpose(-1, -2), atol=1e-12)
    assert torch.allclose(n[..., :3, 3], shifts, atol=1e-12)
    assert torch.allclose(relion_to_scipion_matrix(n), m, atol=1e-12)


def test_relion_fields_round_trip(poses):
    rotations, shifts = poses
    eulers, origin = pose_to_relion(rotations, shifts)
    assert eulers.shape == origin.shape == (3, 20, 3)
    assert torch.allclose(origin, -shifts)
    _assert_same_pose(relion_to_pose(eulers, origin), (rotations, shifts))
    eulers_a, origin_a = pose_to_relion_angstrom(rotations, shifts, voxel_size=2.5)
    assert torch.allclose(eulers_a, eulers)
    assert torch.allclose(origin_a, -2.5 * shifts)
    _assert_same_pose(relion_angstrom_to_pose(eulers_a, origin_a, voxel_size=2.5), (rotations, shifts))
    r0, t0 = relion_to_pose(eulers)
    assert torch.allclose(r0, rotations, atol=1e-10) and torch.all(t0 == 0)


def test_relion_origin_sign_pinned():
    """RELION re-centring: new coordinate = coordinate - origin, so the particle centre is at -origin."""
    _, t = relion_to_pose(torch.zeros(3, dtype=F64), torch.tensor([2.0, -1.0, 4.0], dtype=F64))
    assert torch.allclose(t, torch.tensor([-2.0, 1.0, -4.0], dtype=F64))
    _, t = relion_angstrom_to_pose(torch.zeros(3, dtype=F64), torch.tensor([10.0, 0.0, 0.0], dtype=F64), 5.0)
    assert torch.allclose(t, torch.tensor([-2.0, 0.0, 0.0], dtype=F64))
    r, _ = relion_to_pose(torch.tensor([10.0, 20.0, 30.0], dtype=F64))
    assert torch.allclose(r, relion_euler_matrix(torch.tensor([10.0, 20.0, 30.0], dtype=F64)))


def test_dynamo_fields_round_trip(poses):
    rotations, shifts = poses
    eulers, d = pose_to_dynamo(rotations, shifts)
    assert torch.allclose(d, shifts)
    _assert_same_pose(dynamo_to_pose(eulers, d), (rotations, shifts))


def test_relion_to_dynamo_via_canonical(poses):
    rotations, shifts = poses
    eulers_r, origin = pose_to_relion(rotations, shifts)
    eulers_d, d = pose_to_dynamo(*relion_to_pose(eulers_r, origin))
    assert torch.allclose(d, -origin)
    back = relion_to_pose(*pose_to_relion(*dynamo_to_pose(eulers_d, d)))
    _assert_same_pose(back, (rotations, shifts))


def test_relion_to_dynamo_against_eulerangles():
    eulerangles = pytest.importorskip("eulerangles")
    rotations = random_rotations(100, generator=12, dtype=F64)
    eulers_r, _ = pose_to_relion(rotations)
    dynamo = torch.as_tensor(np.array(eulerangles.convert_eulers(eulers_r.numpy(), "relion", "dynamo")))
    r, _ = dynamo_to_pose(dynamo)
    assert rotation_angle_deg(r, rotations).max() < 1e-8


def test_all_representations_agree_scipion_relion_dynamo():
    """One pose, every representation, back to the same (R, t)."""
    r = rotation_z(torch.tensor(30.0, dtype=F64)) @ relion_euler_matrix(torch.tensor([0.0, 40.0, 0.0], dtype=F64))
    t = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    from_scipion = scipion_matrix_to_pose(pose_to_scipion_matrix(r, t))
    relion_4x4 = scipion_to_relion_matrix(pose_to_scipion_matrix(r, t))
    from_relion_4x4 = scipion_matrix_to_pose(relion_to_scipion_matrix(relion_4x4))
    from_relion = relion_to_pose(*pose_to_relion(r, t))
    from_relion_a = relion_angstrom_to_pose(*pose_to_relion_angstrom(r, t, 1.7), 1.7)
    from_dynamo = dynamo_to_pose(*pose_to_dynamo(r, t))
    for pose in (from_scipion, from_relion_4x4, from_relion, from_relion_a, from_dynamo):
        _assert_same_pose(pose, (r, t))


def test_broadcasting_and_numpy():
    r = random_rotations(4, generator=13, dtype=F64)
    m = pose_to_scipion_matrix(r.numpy(), np.array([1.0, 2.0, 3.0]))
    assert m.shape == (4, 4, 4) and m.dtype == F64
    eulers, origin = pose_to_relion(r[0], torch.zeros(5, 3, dtype=F64))
    assert eulers.shape == origin.shape == (5, 3)
    with pytest.raises(ValueError):
        pose_to_scipion_matrix(torch.eye(4))
