"""CryoMine poses against scipion-em-tomo's transform conventions (no Scipion project needed).

Checks ``cryomine_core.geometry`` against ``tomo.objects.convertMatrix`` and
``SubTomogram.setTransform/getTransform``, and against the way the reliontomo and dynamo
plugins fill Scipion's matrix (their formulas restated here with pwem's ``euler_matrix``).
"""

import numpy as np
import pytest
import torch

tomo_objects = pytest.importorskip("tomo.objects")
transformations = pytest.importorskip("pwem.convert.transformations")
Transform = pytest.importorskip("pwem.objects").Transform

from cryomine_core.geometry import (  # noqa: E402
    dynamo_euler_matrix,
    dynamo_to_pose,
    pose_to_dynamo,
    pose_to_relion,
    pose_to_scipion_matrix,
    random_rotations,
    relion_euler_matrix,
    relion_to_pose,
    relion_to_scipion_matrix,
    scipion_matrix_to_pose,
    scipion_to_relion_matrix,
)

F64 = torch.float64
N_POSES = 25


@pytest.fixture
def poses():
    rotations = random_rotations(N_POSES, generator=100, dtype=F64)
    shifts = torch.randn(N_POSES, 3, generator=torch.Generator().manual_seed(101), dtype=F64) * 6
    return rotations, shifts


def _np(t):
    return t.detach().cpu().numpy()


def test_relion_4x4_matches_convert_matrix(poses):
    matrices = pose_to_scipion_matrix(*poses)
    ours_get = scipion_to_relion_matrix(matrices)
    for m, n in zip(matrices, ours_get):
        theirs = tomo_objects.convertMatrix(_np(m), convention="relion", direction="get")
        assert np.allclose(_np(n), theirs, atol=1e-12)
        back = tomo_objects.convertMatrix(theirs, convention="relion", direction="set")
        assert np.allclose(_np(relion_to_scipion_matrix(torch.as_tensor(theirs))), back, atol=1e-12)
        assert np.allclose(back, _np(m), atol=1e-12)


@pytest.mark.parametrize("convention", [None, "eman", "dynamo"])
def test_identity_conventions_match_convert_matrix(poses, convention):
    m = _np(pose_to_scipion_matrix(*poses)[0])
    assert np.array_equal(tomo_objects.convertMatrix(m, convention=convention, direction="get"), m)


def test_subtomogram_transform_round_trip(poses):
    """A SubTomogram can be built without a project; its transform keeps our matrix."""
    rotations, shifts = poses
    for r, t in zip(rotations, shifts):
        subtomo = tomo_objects.SubTomogram()
        subtomo.setTransform(Transform(_np(pose_to_scipion_matrix(r, t))))
        stored = torch.as_tensor(subtomo.getTransform().getMatrix())
        r_back, t_back = scipion_matrix_to_pose(stored)
        assert torch.allclose(r_back, r, atol=1e-12) and torch.allclose(t_back, t, atol=1e-12)
        relion_view = subtomo.getTransform(convention="relion").getMatrix()
        assert np.allclose(relion_view, _np(scipion_to_relion_matrix(pose_to_scipion_matrix(r, t))), atol=1e-12)
        # setting through the relion convention stores the same Scipion matrix
        other = tomo_objects.SubTomogram()
        other.setTransform(Transform(relion_view.copy()), convention="relion")
        assert np.allclose(other.getTransform().getMatrix(), _np(pose_to_scipion_matrix(r, t)), atol=1e-12)


def _reliontomo_star_to_scipion(eulers, origin_angstrom, sampling_rate):
    """What scipion-em-reliontomo stores for a particle row (genTransformMatrix, no convention)."""
    rot, tilt, psi = np.deg2rad(eulers)
    m = transformations.euler_matrix(-rot, -tilt, -psi, "szyz")
    m[:3, 3] = -np.asarray(origin_angstrom) / sampling_rate
    return np.linalg.inv(m)


def _reliontomo_scipion_to_star(subtomo, sampling_rate):
    """What scipion-em-reliontomo writes for a subtomogram (getTransformInfoFromCoordOrSubtomo)."""
    n = subtomo.getTransform(convention="relion").getMatrix()
    shifts = -transformations.translation_from_matrix(n) * sampling_rate
    angles = -np.rad2deg(transformations.euler_from_matrix(np.linalg.inv(n), axes="szyz"))
    return angles, shifts


def test_reliontomo_import_matches_our_relion_pose(poses):
    rotations, shifts = poses
    voxel_size = 2.7
    eulers, origin_px = pose_to_relion(rotations, shifts)
    for e, o, r, t in zip(eulers, origin_px, rotations, shifts):
        stored = _reliontomo_star_to_scipion(_np(e), _np(o) * voxel_size, voxel_size)
        assert np.allclose(stored, _np(pose_to_scipion_matrix(r, t)), atol=1e-10)
        # reliontomo's matrix rotation block is RELION's A transposed
        assert np.allclose(stored[:3, :3], _np(relion_euler_matrix(e)).T, atol=1e-12)


def test_reliontomo_export_matches_our_relion_fields(poses):
    rotations, shifts = poses
    voxel_size = 1.35
    for r, t in zip(rotations, shifts):
        subtomo = tomo_objects.SubTomogram()
        subtomo.setTransform(Transform(_np(pose_to_scipion_matrix(r, t))))
        angles, origin_angstrom = _reliontomo_scipion_to_star(subtomo, voxel_size)
        assert np.allclose(origin_angstrom, -_np(t) * voxel_size, atol=1e-10)
        r_theirs, _ = relion_to_pose(torch.as_tensor(angles))
        assert torch.allclose(r_theirs, r, atol=1e-10)


def _dynamo_plugin_to_scipion(eulers, shifts):
    """What scipion-em-dynamo stores for a table row (eulerAngles2matrix)."""
    tdrot, tilt, narot = np.deg2rad(eulers)
    rot = transformations.euler_matrix(tdrot, tilt, narot, axes="szxz")[:3, :3]
    m = np.eye(4)
    m[:3, :3] = rot
    m[:3, 3] = -rot @ np.asarray(shifts)
    return m


def test_dynamo_plugin_matches_our_dynamo_pose(poses):
    rotations, shifts = poses
    eulers, d = pose_to_dynamo(rotations, shifts)
    for e, s, r, t in zip(eulers, d, rotations, shifts):
        stored = _dynamo_plugin_to_scipion(_np(e), _np(s))
        assert np.allclose(stored, _np(pose_to_scipion_matrix(r, t)), atol=1e-10)
        assert np.allclose(stored[:3, :3], _np(dynamo_euler_matrix(e)), atol=1e-12)
        r_back, t_back = dynamo_to_pose(e, s)
        assert torch.allclose(r_back, r, atol=1e-10) and torch.allclose(t_back, t, atol=1e-10)


def test_relion_and_dynamo_plugins_agree_through_scipion(poses):
    """A RELION row and the Dynamo row we derive for the same pose give the same Scipion matrix."""
    rotations, shifts = poses
    eulers_r, origin_px = pose_to_relion(rotations, shifts)
    eulers_d, d = pose_to_dynamo(*relion_to_pose(eulers_r, origin_px))
    for er, o, ed, s in zip(eulers_r, origin_px, eulers_d, d):
        from_relion = _reliontomo_star_to_scipion(_np(er), _np(o), 1.0)
        from_dynamo = _dynamo_plugin_to_scipion(_np(ed), _np(s))
        assert np.allclose(from_relion, from_dynamo, atol=1e-10)
