"""Euler conventions, elementary rotations, quaternions and xyz/zyx helpers."""

import math

import numpy as np
import pytest
import torch

from cryomine_core.geometry import (
    dynamo_euler_matrix,
    dynamo_eulers_to_rotation,
    matrix_to_quaternion,
    matrix_xyz_to_zyx,
    matrix_zyx_to_xyz,
    quaternion_to_matrix,
    random_rotations,
    relion_euler_matrix,
    relion_eulers_to_rotation,
    rotation_angle_deg,
    rotation_to_dynamo_eulers,
    rotation_to_relion_eulers,
    rotation_vector_to_matrix,
    rotation_x,
    rotation_y,
    rotation_z,
)

F64 = torch.float64


def _angle_diff(a, b):
    """Difference of angles in degrees wrapped into [-180, 180)."""
    return torch.remainder(a - b + 180.0, 360.0) - 180.0


def _relion_cpp_matrix(rot, tilt, psi):
    """The element formulas of RELION's Euler_angles2matrix (src/euler.cpp), written out."""
    a, b, g = (math.radians(v) for v in (rot, tilt, psi))
    ca, sa, cb, sb, cg, sg = math.cos(a), math.sin(a), math.cos(b), math.sin(b), math.cos(g), math.sin(g)
    cc, cs, sc, ss = cb * ca, cb * sa, sb * ca, sb * sa
    return torch.tensor(
        [
            [cg * cc - sg * sa, cg * cs + sg * ca, -cg * sb],
            [-sg * cc - cg * sa, -sg * cs + cg * ca, sg * sb],
            [sc, ss, cb],
        ],
        dtype=F64,
    )


def test_elementary_rotations_are_active_right_handed():
    x, y, z = torch.eye(3, dtype=F64)
    assert torch.allclose(rotation_z(torch.tensor(90.0, dtype=F64)) @ x, y, atol=1e-12)
    assert torch.allclose(rotation_x(torch.tensor(90.0, dtype=F64)) @ y, z, atol=1e-12)
    assert torch.allclose(rotation_y(torch.tensor(90.0, dtype=F64)) @ z, x, atol=1e-12)
    batch = rotation_z(torch.zeros(2, 5))
    assert batch.shape == (2, 5, 3, 3)


@pytest.mark.parametrize("angles", [(10.0, 20.0, 30.0), (-170.0, 95.0, 44.0), (0.0, 0.0, 0.0), (250.0, 180.0, -30.0)])
def test_relion_matrix_is_euler_angles2matrix(angles):
    ours = relion_euler_matrix(torch.tensor(angles, dtype=F64))
    assert torch.allclose(ours, _relion_cpp_matrix(*angles), atol=1e-12)


def test_relion_matrix_matches_eulerangles_inverse():
    """eulerangles' RELION matrix (intrinsic ZYZ, 'passive') is the transpose of RELION's A."""
    eulerangles = pytest.importorskip("eulerangles")
    eulers = torch.rand(50, 3, dtype=F64) * torch.tensor([360.0, 180.0, 360.0], dtype=F64) - torch.tensor(
        [180.0, 0.0, 180.0], dtype=F64
    )
    theirs = eulerangles.euler2matrix(eulers.numpy(), axes="zyz", intrinsic=True, right_handed_rotation=True)
    assert np.allclose(relion_eulers_to_rotation(eulers).transpose(-1, -2).numpy(), theirs, atol=1e-12)


def test_relion_round_trip_random_batch():
    rotations = random_rotations(500, generator=0, dtype=F64).reshape(5, 100, 3, 3)
    eulers = rotation_to_relion_eulers(rotations)
    assert eulers.shape == (5, 100, 3)
    assert (eulers[..., 1] >= 0).all() and (eulers[..., 1] <= 180).all()
    assert (eulers[..., [0, 2]].abs() <= 180).all()
    assert torch.allclose(relion_eulers_to_rotation(eulers), rotations, atol=1e-10)


def test_relion_angles_recovered_in_canonical_range():
    eulers = torch.tensor([[10.0, 20.0, 30.0], [-120.0, 150.0, 170.0], [179.0, 1.0, -179.0]], dtype=F64)
    back = rotation_to_relion_eulers(relion_eulers_to_rotation(eulers))
    assert torch.allclose(back, eulers, atol=1e-9)


@pytest.mark.parametrize("tilt", [0.0, 180.0])
def test_relion_gimbal_lock(tilt):
    eulers = torch.tensor([[35.0, tilt, 20.0], [-100.0, tilt, 170.0], [0.0, tilt, -45.0]], dtype=F64)
    rotations = relion_eulers_to_rotation(eulers)
    back = rotation_to_relion_eulers(rotations)
    assert torch.all(back[:, 0] == 0.0)  # RELION puts the in-plane angle into psi
    assert torch.allclose(back[:, 1], torch.full((3,), tilt, dtype=F64))
    assert torch.allclose(relion_eulers_to_rotation(back), rotations, atol=1e-12)
    # tilt 0: only rot + psi matters; tilt 180: only psi - rot matters
    combined = eulers[:, 0] + eulers[:, 2] if tilt == 0 else eulers[:, 2] - eulers[:, 0]
    assert torch.allclose(_angle_diff(back[:, 2], combined), torch.zeros(3, dtype=F64), atol=1e-9)


def test_relion_gimbal_lock_float32():
    rotations = relion_eulers_to_rotation(torch.tensor([[0.0, 0.0, 30.0], [12.0, 180.0, 0.0]]))
    back = rotation_to_relion_eulers(rotations)
    assert back.dtype == torch.float32
    assert torch.allclose(relion_eulers_to_rotation(back), rotations, atol=1e-6)


def test_dynamo_matrix_pinned_value():
    """dynamo_euler2matrix([30, 60, 90]) as printed by Dynamo (zxz extrinsic)."""
    expected = torch.tensor(
        [[-0.25, -0.4330127018922, 0.8660254037844], [0.8660254037844, -0.5, 0.0], [0.4330127018922, 0.75, 0.5]],
        dtype=F64,
    )
    assert torch.allclose(dynamo_euler_matrix(torch.tensor([30.0, 60.0, 90.0], dtype=F64)), expected, atol=1e-12)
    assert torch.allclose(dynamo_eulers_to_rotation(torch.tensor([30.0, 60.0, 90.0], dtype=F64)), expected.T)


def test_dynamo_orientation_of_z_axis():
    """Dynamo orients a reference's z axis to m^T z (dynamo_angles2orientations): R z must be it."""
    eulers = torch.tensor([[0.0, 90.0, 0.0], [40.0, 30.0, -70.0]], dtype=F64)
    z = torch.tensor([0.0, 0.0, 1.0], dtype=F64)
    expected = dynamo_euler_matrix(eulers).transpose(-1, -2) @ z
    assert torch.allclose(dynamo_eulers_to_rotation(eulers) @ z, expected)
    # tdrot=0, tilt=90: the z axis goes to +y for the reference-to-particle rotation
    plus_y = torch.tensor([0.0, 1.0, 0.0], dtype=F64)
    assert torch.allclose(dynamo_eulers_to_rotation(eulers[0]) @ z, plus_y, atol=1e-12)


def test_dynamo_round_trip_random_batch():
    rotations = random_rotations(400, generator=1, dtype=F64)
    eulers = rotation_to_dynamo_eulers(rotations)
    assert (eulers[:, 1] >= 0).all() and (eulers[:, 1] <= 180).all()
    assert torch.allclose(dynamo_eulers_to_rotation(eulers), rotations, atol=1e-10)
    known = torch.tensor([[30.0, 60.0, 90.0], [-150.0, 170.0, 5.0]], dtype=F64)
    assert torch.allclose(rotation_to_dynamo_eulers(dynamo_eulers_to_rotation(known)), known, atol=1e-9)


@pytest.mark.parametrize("tilt", [0.0, 180.0])
def test_dynamo_gimbal_lock(tilt):
    eulers = torch.tensor([[35.0, tilt, 20.0], [-100.0, tilt, 170.0]], dtype=F64)
    rotations = dynamo_eulers_to_rotation(eulers)
    back = rotation_to_dynamo_eulers(rotations)
    assert torch.all(back[:, 2] == 0.0)
    assert torch.allclose(back[:, 1], torch.full((2,), tilt, dtype=F64))
    assert torch.allclose(dynamo_eulers_to_rotation(back), rotations, atol=1e-12)


def test_relion_dynamo_relation_and_eulerangles():
    """Same pose: RELION (rot, tilt, psi) = (narot - 90, tilt, tdrot + 90); eulerangles agrees."""
    rotations = random_rotations(200, generator=2, dtype=F64)
    relion = rotation_to_relion_eulers(rotations)
    dynamo = rotation_to_dynamo_eulers(rotations)
    formula = torch.stack([dynamo[:, 2] - 90.0, dynamo[:, 1], dynamo[:, 0] + 90.0], dim=-1)
    assert torch.allclose(_angle_diff(relion, formula), torch.zeros_like(relion), atol=1e-8)
    eulerangles = pytest.importorskip("eulerangles")
    converted = torch.as_tensor(np.array(eulerangles.convert_eulers(dynamo.numpy(), "dynamo", "relion")))
    assert rotation_angle_deg(relion_eulers_to_rotation(converted), rotations).max() < 1e-8


def test_numpy_and_int_inputs():
    r = relion_eulers_to_rotation(np.array([10, 20, 30]))
    assert isinstance(r, torch.Tensor) and r.dtype == torch.get_default_dtype()
    r64 = relion_eulers_to_rotation(np.array([10.0, 20.0, 30.0]))
    assert r64.dtype == F64
    assert rotation_to_dynamo_eulers(r64.numpy()).shape == (3,)
    with pytest.raises(ValueError):
        relion_eulers_to_rotation(torch.zeros(4))


def test_xyz_zyx_matrix_helpers():
    rotation = random_rotations(3, generator=3, dtype=F64)
    v_xyz = torch.randn(3, 3, dtype=F64)
    rotated_xyz = (rotation @ v_xyz[..., None])[..., 0]
    rotated_zyx = (matrix_xyz_to_zyx(rotation) @ v_xyz.flip(-1)[..., None])[..., 0]
    assert torch.allclose(rotated_zyx, rotated_xyz.flip(-1))
    assert torch.equal(matrix_zyx_to_xyz(matrix_xyz_to_zyx(rotation)), rotation)
    # a rotation about z (xyz) is a rotation about the first index axis (zyx)
    rz = matrix_xyz_to_zyx(rotation_z(torch.tensor(30.0, dtype=F64)))
    assert rz[0, 0] == 1.0 and rz[0, 1:].abs().max() == 0


def test_quaternions_round_trip():
    rotations = random_rotations(300, generator=4, dtype=F64)
    q = matrix_to_quaternion(rotations)
    assert (q[:, 0] >= 0).all()
    assert torch.allclose(torch.linalg.vector_norm(q, dim=-1), torch.ones(300, dtype=F64))
    assert torch.allclose(quaternion_to_matrix(q), rotations, atol=1e-12)
    # 180 degree rotations (w = 0) go through the non-w branches
    half_turns = rotation_vector_to_matrix(torch.tensor([[math.pi, 0, 0], [0, math.pi, 0], [0, 0, math.pi]], dtype=F64))
    assert torch.allclose(quaternion_to_matrix(matrix_to_quaternion(half_turns)), half_turns, atol=1e-12)


def test_rotation_vector_matches_elementary():
    angle = torch.tensor(37.0, dtype=F64)
    v = torch.tensor([0.0, 0.0, math.radians(37.0)], dtype=F64)
    assert torch.allclose(rotation_vector_to_matrix(v), rotation_z(angle), atol=1e-12)
    assert torch.allclose(rotation_vector_to_matrix(torch.zeros(3, dtype=F64)), torch.eye(3, dtype=F64))
