"""SO(3) sampling, distances and symmetry."""

import math

import pytest
import torch

from cryomine_core.geometry import (
    local_rotations,
    matrix_to_quaternion,
    random_rotations,
    rotation_angle_deg,
    rotation_vector_to_matrix,
    rotation_x,
    rotation_z,
    so3_grid,
    so3_grid_size,
    symmetric_rotation_error,
    symmetry_rotations,
)

F64 = torch.float64


def _is_rotation(r, atol=1e-6):
    eye = torch.eye(3, dtype=r.dtype).expand(r.shape)
    return torch.allclose(r.transpose(-1, -2) @ r, eye, atol=atol) and torch.allclose(
        torch.linalg.det(r), torch.ones(r.shape[:-2], dtype=r.dtype), atol=atol
    )


def _nearest_angle_deg(queries, grid):
    """Angle from each query rotation to its nearest grid rotation, via quaternions (chunked)."""
    qg = matrix_to_quaternion(grid)
    qq = matrix_to_quaternion(queries)
    best = torch.zeros(qq.shape[0], dtype=qq.dtype)
    for chunk in torch.split(qg, 4096):
        best = torch.maximum(best, (qq @ chunk.T).abs().amax(dim=1))
    return torch.rad2deg(2 * torch.acos(best.clamp(max=1.0)))


def test_random_rotations_are_rotations_and_reproducible():
    r = random_rotations(100, generator=0, dtype=F64)
    assert r.shape == (100, 3, 3) and _is_rotation(r, atol=1e-12)
    assert torch.equal(r, random_rotations(100, generator=0, dtype=F64))
    assert not torch.equal(r, random_rotations(100, generator=1, dtype=F64))
    g = torch.Generator().manual_seed(5)
    assert random_rotations(3, generator=g).dtype == torch.float32


def test_random_rotations_are_haar_uniform():
    stats = pytest.importorskip("scipy.stats")
    r = random_rotations(20000, generator=42, dtype=F64)
    # the rotation angle of a Haar rotation has density (1 - cos t) / pi, CDF (t - sin t) / pi
    theta = torch.deg2rad(rotation_angle_deg(r)).numpy()
    result = stats.kstest(theta, lambda t: (t - torch.sin(torch.as_tensor(t)).numpy()) / math.pi)
    assert result.pvalue > 0.01
    # E[R] = 0 for the Haar measure (entries have variance 1/3)
    assert r.mean(dim=0).abs().max() < 4 * math.sqrt(1 / 3 / 20000) * 2
    # the rotated z axis is uniform on the sphere: each coordinate uniform on [-1, 1]
    z = r[:, :, 2]
    assert stats.kstest(z[:, 0].numpy(), "uniform", args=(-1, 2)).pvalue > 0.01


def test_rotation_angle_deg():
    angles = torch.tensor([0.0, 1e-6, 0.5, 45.0, 120.0, 179.999, 180.0], dtype=F64)
    assert torch.allclose(rotation_angle_deg(rotation_z(angles)), angles, atol=1e-9)
    axis_angle = torch.tensor([0.3, -0.2, 0.9], dtype=F64)
    r2 = rotation_vector_to_matrix(axis_angle)
    r1 = random_rotations(4, generator=3, dtype=F64)
    expected = torch.full((4,), math.degrees(axis_angle.norm().item()), dtype=F64)
    assert torch.allclose(rotation_angle_deg(r1, r1 @ r2), expected, atol=1e-9)  # right-invariant...
    assert torch.allclose(rotation_angle_deg(r1, r2 @ r1), expected, atol=1e-9)  # ...and left-invariant
    assert torch.allclose(rotation_angle_deg(r1 @ r2, r1), rotation_angle_deg(r1, r1 @ r2))
    assert rotation_angle_deg(r1[:, None], r1[None]).shape == (4, 4)


def test_so3_grid_size_and_coverage():
    step = 20.0
    grid = so3_grid(step, dtype=F64)
    assert grid.shape == (so3_grid_size(step), 3, 3) == (1954, 3, 3)
    assert _is_rotation(grid, atol=1e-12)
    assert so3_grid_size(10.0) == 15625
    queries = random_rotations(5000, generator=7, dtype=F64)
    distances = _nearest_angle_deg(queries, grid)
    assert distances.max() <= step
    assert distances.mean() < 0.6 * step
    assert torch.equal(grid, so3_grid(step, dtype=F64))  # deterministic


def test_so3_grid_finer_step_covers_finer():
    coarse, fine = so3_grid(30.0, dtype=F64), so3_grid(15.0, dtype=F64)
    queries = random_rotations(2000, generator=8, dtype=F64)
    assert _nearest_angle_deg(queries, fine).max() <= 15.0
    assert _nearest_angle_deg(queries, fine).mean() < _nearest_angle_deg(queries, coarse).mean() * 0.6


def test_local_rotations():
    center = random_rotations(1, generator=9, dtype=F64)[0]
    local = local_rotations(center, max_angle_deg=10.0, step_deg=2.5)
    assert torch.allclose(local[0], center)
    angles = rotation_angle_deg(local, center)
    assert angles.max() <= 10.0 + 1e-9
    assert torch.all(angles[1:] >= angles[:-1] - 1e-9)  # sorted by distance from the centre
    assert _is_rotation(local, atol=1e-12)
    # any rotation within 8 degrees of the centre is close to the local grid
    g = torch.Generator().manual_seed(10)
    directions = torch.nn.functional.normalize(torch.randn(500, 3, generator=g, dtype=F64), dim=-1)
    magnitudes = torch.deg2rad(8.0 * torch.rand(500, 1, generator=g, dtype=F64) ** (1 / 3))
    queries = rotation_vector_to_matrix(directions * magnitudes) @ center
    assert _nearest_angle_deg(queries, local).max() <= 0.9 * 2.5 + 0.05
    batched = local_rotations(torch.stack([center, torch.eye(3, dtype=F64)]), 5.0, 5.0)
    assert batched.shape == (2, 7, 3, 3)


@pytest.mark.parametrize(("name", "order"), [("C1", 1), ("C4", 4), ("c7", 7), ("D1", 2), ("D2", 4), ("D6", 12)])
def test_symmetry_groups(name, order):
    group = symmetry_rotations(name, dtype=F64)
    assert group.shape == (order, 3, 3) and _is_rotation(group, atol=1e-12)
    assert torch.allclose(group[0], torch.eye(3, dtype=F64))
    # closed under composition: every product is in the group
    products = (group[:, None] @ group[None]).reshape(-1, 3, 3)
    assert rotation_angle_deg(products[:, None], group[None]).amin(dim=1).max() < 1e-6
    if name.upper().startswith("D"):
        assert rotation_angle_deg(group, rotation_x(torch.tensor(180.0, dtype=F64))).min() < 1e-6


def test_symmetry_invalid():
    for bad in ("O", "I", "C0", "X3", "T"):
        with pytest.raises(ValueError):
            symmetry_rotations(bad)


def test_symmetric_rotation_error():
    r_true = random_rotations(50, generator=11, dtype=F64)
    c4 = symmetry_rotations("C4", dtype=F64)
    # an estimate off by a symmetry operation (applied in the reference frame) has zero error
    r_equivalent = r_true @ c4[1]
    assert symmetric_rotation_error(r_equivalent, r_true, "C4").max() < 1e-6
    assert rotation_angle_deg(r_equivalent, r_true).min() > 89.0
    assert symmetric_rotation_error(r_equivalent, r_true, "C1").min() > 89.0
    # a genuine 5 degree error stays 5 degrees
    perturbed = rotation_vector_to_matrix(torch.tensor([0.0, math.radians(5.0), 0.0], dtype=F64)) @ r_true
    assert torch.allclose(symmetric_rotation_error(perturbed, r_true, "D2"), torch.full((50,), 5.0, dtype=F64))
    # D2 includes the 2-fold about x
    flipped = r_true @ rotation_x(torch.tensor(180.0, dtype=F64))
    assert symmetric_rotation_error(flipped, r_true, "D2").max() < 1e-6
    assert symmetric_rotation_error(flipped, r_true, "C2").min() > 1.0
