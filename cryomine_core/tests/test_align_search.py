"""Search (planted rotations/shifts, symmetry, failure flag) and wedge-compensated averaging."""

import pytest
import torch

from cryomine_core.align.average import average_particles
from cryomine_core.align.reference import SearchReference
from cryomine_core.align.scoring import constrained_correlation
from cryomine_core.align.search import SearchSettings, align_particles, shift_grid, symmetry_reduced_grid
from cryomine_core.errors import CryomineError
from cryomine_core.fourier import missing_wedge_mask
from cryomine_core.geometry import (
    random_rotations,
    rotate_volume,
    rotation_angle_deg,
    rotation_z,
    shift_volume_fourier,
    so3_grid,
    symmetric_rotation_error,
)
from cryomine_core.simulate import phantom_volume

N = 24
VOXEL = 11.0


def _posed(ref, rot, shift, tilt, noise=0.0, seed=0):
    """Particles of poses (rot, shift) from ref, with a missing wedge and white noise."""
    b = rot.shape[0]
    vols = shift_volume_fourier(rotate_volume(ref.expand(b, *ref.shape), rot), shift)
    w = missing_wedge_mask(ref.shape, tilt[:, 0], tilt[:, 1])
    vols = torch.fft.irfftn(torch.fft.rfftn(vols, dim=(-3, -2, -1)) * w, s=ref.shape, dim=(-3, -2, -1))
    g = torch.Generator().manual_seed(seed)
    return vols + noise * vols.std() * torch.randn(vols.shape, generator=g)


@pytest.fixture(scope="module")
def reference():
    return phantom_volume(0, N, VOXEL)


@pytest.mark.parametrize("tilt_max", [60.0, 40.0])
def test_planted_rotation_and_shift_are_recovered(reference, tilt_max):
    rot = random_rotations(4, generator=7)
    shift = torch.tensor([[1.5, -1.0, 0.5], [0.0, 0.0, 0.0], [-1.5, 1.0, 1.0], [0.3, 0.7, -1.2]])
    tilt = torch.tensor([[-tilt_max, tilt_max]]).expand(4, 2)
    parts = _posed(reference, rot, shift, tilt, noise=0.5)
    res = align_particles(parts, tilt, SearchReference(reference),
                          SearchSettings(angular_step_deg=20, max_shift_voxels=4, f_max=0.4))
    err = rotation_angle_deg(res.rotations, rot)
    assert err.max() < 3.0, err
    assert (res.shifts - shift).norm(dim=-1).max() < 0.5
    assert not res.failed.any()
    assert (res.scores > 0.3).all()


def test_sub_degree_local_refinement(reference):
    rot = random_rotations(2, generator=3)
    tilt = torch.tensor([[-60.0, 60.0]]).expand(2, 2)
    parts = _posed(reference, rot, torch.zeros(2, 3), tilt)
    res = align_particles(parts, tilt, SearchReference(reference),
                          SearchSettings(angular_step_deg=20, max_shift_voxels=2, f_max=0.45))
    # well below the 15-degree grid: the local stages reach sub-degree steps
    assert rotation_angle_deg(res.rotations, rot).max() < 1.5
    assert res.shifts.norm(dim=-1).max() < 0.25


def test_max_shift_is_respected(reference):
    tilt = torch.tensor([[-60.0, 60.0]])
    parts = _posed(reference, torch.eye(3)[None], torch.tensor([[3.0, 0.0, 0.0]]), tilt)
    res = align_particles(parts, tilt, SearchReference(reference),
                          SearchSettings(angular_step_deg=20, max_shift_voxels=1.5, f_max=0.3))
    assert float(res.shifts.norm()) <= 1.5 + 1e-3


def test_symmetry_grid_and_cyclic_search():
    full = so3_grid(20.0)
    c4 = symmetry_reduced_grid(20.0, "C4")
    assert c4.shape[0] == pytest.approx(full.shape[0] / 4, rel=0.1)
    base = phantom_volume(4, N, VOXEL)
    sym = rotate_volume(base.expand(4, N, N, N), rotation_z(torch.arange(4) * 90.0)).mean(0)  # a C4 structure
    rot = random_rotations(2, generator=11)
    tilt = torch.tensor([[-60.0, 60.0]]).expand(2, 2)
    parts = _posed(sym, rot, torch.zeros(2, 3), tilt)
    res = align_particles(parts, tilt, SearchReference(sym),
                          SearchSettings(angular_step_deg=20, max_shift_voxels=2, f_max=0.4, symmetry="C4"))
    assert symmetric_rotation_error(res.rotations, rot, "C4").max() < 3.0


def test_failed_alignment_is_flagged(reference):
    tilt = torch.tensor([[-60.0, 60.0]]).expand(2, 2)
    parts = torch.stack([_posed(reference, torch.eye(3)[None], torch.zeros(1, 3), tilt[:1])[0], torch.zeros(N, N, N)])
    res = align_particles(parts, tilt, SearchReference(reference), SearchSettings(angular_step_deg=20, f_max=0.3))
    assert res.failed.tolist() == [False, True]


def test_search_settings_are_checked(reference):
    with pytest.raises(CryomineError, match="max-shift"):
        SearchSettings(max_shift_voxels=20).validate(N)
    with pytest.raises(CryomineError, match="reference box"):
        align_particles(torch.zeros(1, 16, 16, 16), torch.tensor([[-60.0, 60.0]]), SearchReference(reference))
    assert shift_grid(1.0, 1.0).shape == (7, 3)


def test_wedge_compensated_average_recovers_the_reference(reference):
    b = 24
    rot = random_rotations(b, generator=5)
    shift = (torch.rand(b, 3, generator=torch.Generator().manual_seed(1)) - 0.5) * 3
    tilt = torch.tensor([[-50.0, 50.0]]).expand(b, 2)
    parts = _posed(reference, rot, shift, tilt)
    vols, avg = average_particles(parts, rot, shift, tilt)
    cc_avg = float(constrained_correlation(vols[0], reference))
    single, _ = average_particles(parts[:1], rot[:1], shift[:1], tilt[:1])
    cc_single = float(constrained_correlation(single[0], reference))
    assert cc_avg > 0.97
    assert cc_avg > cc_single + 0.02  # the wedge of one particle is filled in by the others
    # coverage: one particle observes ~ (100/180) of Fourier space; 24 random ones nearly all of it
    cov = avg.coverage()[0]
    from cryomine_core.align.average import rfft_grid_points

    inside = rfft_grid_points(N).norm(dim=-1) < 0.45
    assert float((cov[inside] > 0.5).float().mean()) > 0.99
    assert float((w1 := missing_wedge_mask((N, N, N), -50.0, 50.0))[inside].mean()) < 0.7
    # a single particle at the identity: the average is the particle where observed, 0 in its missing wedge
    one, _ = average_particles(parts[:1] * 0 + _posed(reference, torch.eye(3)[None], torch.zeros(1, 3), tilt[:1]),
                               torch.eye(3)[None], torch.zeros(1, 3), tilt[:1])
    ft = torch.fft.rfftn(torch.fft.ifftshift(one[0]))
    assert float(ft[w1 == 0].abs().max()) < 1e-3 * float(ft.abs().max())
