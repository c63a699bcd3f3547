"""rotate_volume and shift_volume_fourier on tiny phantoms."""

import numpy as np
import pytest
import torch

from cryomine_core.geometry import (
    dynamo_to_pose,
    matrix_xyz_to_zyx,
    pose_to_dynamo,
    pose_to_relion,
    pose_to_relion_angstrom,
    pose_to_scipion_matrix,
    random_rotations,
    relion_angstrom_to_pose,
    relion_eulers_to_rotation,
    relion_to_pose,
    relion_to_scipion_matrix,
    rotate_volume,
    rotation_z,
    scipion_matrix_to_pose,
    scipion_to_relion_matrix,
    shift_volume_fourier,
)

F64 = torch.float64


def _centred_xyz(shape):
    """(D, H, W, 3) xyz coordinates relative to the box centre N // 2."""
    d, h, w = shape
    z, y, x = torch.meshgrid(*(torch.arange(s, dtype=F64) for s in shape), indexing="ij")
    return torch.stack([x - w // 2, y - h // 2, z - d // 2], dim=-1)


def _blobs(shape, centres, sigma=1.5, weights=None):
    xyz = _centred_xyz(shape)
    vol = torch.zeros(shape, dtype=F64)
    for i, c in enumerate(centres):
        weight = 1.0 if weights is None else weights[i]
        vol += weight * torch.exp(-((xyz - torch.as_tensor(c, dtype=F64)) ** 2).sum(-1) / (2 * sigma**2))
    return vol


def _centroid(vol):
    xyz = _centred_xyz(vol.shape[-3:])
    return (vol[..., None] * xyz).sum((-4, -3, -2)) / vol.sum((-3, -2, -1))[..., None]


@pytest.fixture
def phantom():
    """An asymmetric phantom: three blobs of different weights, off centre, in a 32^3 box."""
    return _blobs((32, 32, 32), [(6.0, 0.0, 0.0), (0.0, -4.0, 2.0), (-2.0, 3.0, -5.0)], weights=[1.0, 0.6, 0.3])


def test_blob_moves_to_r_p_plus_t():
    shape = (32, 30, 28)  # non-cubic, one odd axis: centres 16, 15, 14
    p = torch.tensor([5.0, -3.0, 2.0], dtype=F64)
    vol = _blobs(shape, [p])
    rotations = random_rotations(6, generator=20, dtype=F64)
    shifts = torch.tensor([1.5, -0.5, 2.25], dtype=F64)
    out = rotate_volume(vol, rotations, shifts)
    assert out.shape == (6, *shape)
    assert torch.allclose(_centroid(out), rotations @ p + shifts, atol=5e-3)


def test_rotation_about_z_moves_x_to_y():
    vol = _blobs((24, 24, 24), [(6.0, 0.0, 0.0)])
    out = rotate_volume(vol, rotation_z(torch.tensor(90.0, dtype=F64)))
    expected = _blobs((24, 24, 24), [(0.0, 6.0, 0.0)])
    assert torch.allclose(out, expected, atol=1e-10)  # exact 90 degrees: grid points land on grid points
    assert out[12, 18, 12] > 0.99 and out[12, 12, 18] < 1e-3  # zyx indexing of the centre + 6 y


def test_identity_and_integer_shift_are_exact(phantom):
    assert torch.allclose(rotate_volume(phantom, torch.eye(3, dtype=F64)), phantom, atol=1e-12)
    shifted = rotate_volume(phantom, torch.eye(3, dtype=F64), torch.tensor([2.0, -1.0, 3.0], dtype=F64))
    rolled = torch.roll(phantom, shifts=(3, -1, 2), dims=(0, 1, 2))
    assert torch.allclose(shifted[4:-4, 4:-4, 4:-4], rolled[4:-4, 4:-4, 4:-4], atol=1e-12)


def test_zero_outside_and_nearest():
    vol = torch.ones(16, 16, 16, dtype=F64)
    out = rotate_volume(vol, torch.eye(3, dtype=F64), torch.tensor([5.0, 0.0, 0.0], dtype=F64), interpolation="nearest")
    assert torch.all(out[..., :5] == 0) and torch.all(out[..., 5:] == 1)
    with pytest.raises(ValueError):
        rotate_volume(vol, torch.eye(3), interpolation="cubic")


def test_inverse_pose_restores(phantom):
    r = random_rotations(1, generator=21, dtype=F64)[0]
    t = torch.tensor([1.0, 0.5, -1.5], dtype=F64)
    there = rotate_volume(phantom, r, t)
    back = rotate_volume(there, r.T, -(r.T @ t))
    # two trilinear resamplings blur 1.5-voxel blobs a little; positions must be restored
    assert (back - phantom).abs().max() < 0.25
    assert torch.allclose(_centroid(back), _centroid(phantom), atol=0.02)
    assert torch.corrcoef(torch.stack([back.flatten(), phantom.flatten()]))[0, 1] > 0.99


def test_matches_scipy_affine_transform(phantom):
    """Independent check of the zyx/xyz flip and the centre with scipy.ndimage (order 1)."""
    ndimage = pytest.importorskip("scipy.ndimage")
    r = random_rotations(1, generator=22, dtype=F64)[0]
    t = torch.tensor([0.7, -1.2, 2.0], dtype=F64)
    ours = rotate_volume(phantom, r, t)
    # output[o] = input[A o + b] in zyx index space: A = zyx(R^T), b = c - A (c + t_zyx)
    a = matrix_xyz_to_zyx(r.T).numpy()
    c = np.array([16.0, 16.0, 16.0])
    b = c - a @ (c + t.flip(0).numpy())
    theirs = ndimage.affine_transform(phantom.numpy(), a, offset=b, order=1, mode="grid-constant", cval=0.0)
    assert np.allclose(ours.numpy(), theirs, atol=1e-12)


def test_same_volume_from_every_convention(phantom):
    """Each convention's representation of one pose, read back, rotates the phantom identically."""
    r = relion_eulers_to_rotation(torch.tensor([35.0, 70.0, -120.0], dtype=F64))
    t = torch.tensor([1.25, -2.0, 0.5], dtype=F64)
    expected = rotate_volume(phantom, r, t)
    assert _centroid(expected).sub(_centroid(phantom)).norm() > 1.0  # the pose really moves things

    voxel_size = 3.2
    eulers_relion, origin_px = pose_to_relion(r, t)
    _, origin_a = pose_to_relion_angstrom(r, t, voxel_size)
    eulers_dynamo, shifts_dynamo = pose_to_dynamo(r, t)
    scipion = pose_to_scipion_matrix(r, t)
    relion_4x4 = scipion_to_relion_matrix(scipion)
    poses = {
        "relion_px": relion_to_pose(eulers_relion, origin_px),
        "relion_angstrom": relion_angstrom_to_pose(eulers_relion, origin_a, voxel_size),
        "dynamo": dynamo_to_pose(eulers_dynamo, shifts_dynamo),
        "scipion": scipion_matrix_to_pose(scipion),
        "scipion_relion_4x4": scipion_matrix_to_pose(relion_to_scipion_matrix(relion_4x4)),
        # RELION -> Dynamo by the textbook formula, not through our own conversion
        "dynamo_from_relion_formula": dynamo_to_pose(
            torch.stack([eulers_relion[2] - 90.0, eulers_relion[1], eulers_relion[0] + 90.0]), -origin_px
        ),
    }
    for name, (rotation, shift) in poses.items():
        assert torch.allclose(rotate_volume(phantom, rotation, shift), expected, atol=1e-9), name


def test_batch_broadcasting_and_dtype():
    vols = torch.randn(2, 1, 8, 10, 12)
    rotations = random_rotations(3, generator=23)
    out = rotate_volume(vols, rotations, torch.zeros(3))
    assert out.shape == (2, 3, 8, 10, 12) and out.dtype == torch.float32
    single = rotate_volume(vols[1, 0], rotations[2])
    assert torch.allclose(out[1, 2], single, atol=1e-6)
    assert rotate_volume(np.zeros((8, 8, 8)), np.eye(3)).dtype == F64


def test_fourier_shift_integer_equals_roll(phantom):
    out = shift_volume_fourier(phantom, torch.tensor([1.0, -2.0, 3.0], dtype=F64))
    assert torch.allclose(out, torch.roll(phantom, shifts=(3, -2, 1), dims=(0, 1, 2)), atol=1e-12)


def test_fourier_subvoxel_shift_matches_analytic_blob():
    p = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    t = torch.tensor([[0.5, 0.25, -1.5], [0.0, 0.0, 0.0]], dtype=F64)
    out = shift_volume_fourier(_blobs((32, 32, 32), [p], sigma=2.0), t)
    assert out.shape == (2, 32, 32, 32)
    assert torch.allclose(out[0], _blobs((32, 32, 32), [p + t[0]], sigma=2.0), atol=1e-6)
    assert torch.allclose(_centroid(out[0]), p + t[0], atol=1e-6)
