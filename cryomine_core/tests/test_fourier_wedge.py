"""Tests of cryomine_core.fourier.wedge: geometry, analytic fractions, symmetry, validation."""

import math

import pytest
import torch

from cryomine_core.fourier import missing_wedge_mask, observed_fraction, radial_frequency, tilt_series_weights

N = 64
SHAPE = (N, N, N)


def _sphere_fraction(mask_rfft: torch.Tensor) -> float:
    """Observed fraction of the Nyquist ball, counting rfft voxels with their Friedel mates."""
    r = radial_frequency(SHAPE)
    mult = torch.full((N // 2 + 1,), 2.0)
    mult[0] = mult[-1] = 1.0
    weight = mult * (r <= 0.5)
    return float((mask_rfft * weight).sum() / weight.sum())


def _friedel_partner(full: torch.Tensor) -> torch.Tensor:
    """full[..., -i, -j, -k] for a non-shifted full-layout array."""
    dims = (-3, -2, -1)
    return torch.roll(torch.flip(full, dims), shifts=(1, 1, 1), dims=dims)


@pytest.mark.parametrize("tilt_axis", ["y", "x"])
@pytest.mark.parametrize("tmin,tmax", [(-60, 60), (-40, 40), (-50, 60), (-30, 70)])
def test_observed_fraction_matches_analytic(tmin, tmax, tilt_axis):
    mask = missing_wedge_mask(SHAPE, tmin, tmax, tilt_axis=tilt_axis)
    assert mask.shape == (N, N, N // 2 + 1)
    assert mask.dtype == torch.float32
    expected = (tmax - tmin) / 180.0
    assert float(observed_fraction(tmin, tmax)) == pytest.approx(expected)
    assert _sphere_fraction(mask) == pytest.approx(expected, abs=0.01)


@pytest.mark.parametrize("tilt_axis", ["y", "x"])
@pytest.mark.parametrize("tmin,tmax", [(-60, 60), (-50, 60)])
def test_mask_is_friedel_symmetric_and_rfft_is_half_of_full(tmin, tmax, tilt_axis):
    full = missing_wedge_mask(SHAPE, tmin, tmax, tilt_axis=tilt_axis, rfft=False)
    assert full.shape == SHAPE
    assert torch.equal(full, _friedel_partner(full))
    half = missing_wedge_mask(SHAPE, tmin, tmax, tilt_axis=tilt_axis, rfft=True)
    assert torch.equal(full[..., : N // 2 + 1], half)


def test_full_range_is_full_sphere():
    assert torch.all(missing_wedge_mask(SHAPE, -90, 90) == 1)
    assert torch.all(missing_wedge_mask(SHAPE, -90, 90, tilt_axis="x", soft_edge_deg=5) == 1)


def _i(k: int) -> int:
    """Array index of the signed DFT frequency index k."""
    return k % N


def test_missing_region_is_around_beam_axis_kz_tilt_axis_y():
    m = missing_wedge_mask(SHAPE, -60, 60)  # [kz, ky, kx]
    assert m[0, 0, 0] == 1  # DC
    for k in (1, 5, 20, 31):
        assert m[_i(k), 0, 0] == 0  # kz axis (beam) is missing
        assert m[_i(-k), 0, 0] == 0
        assert m[0, 0, k] == 1  # kx axis observed (zero-tilt plane)
        assert m[0, _i(k), 0] == 1  # ky axis = tilt axis, always observed
        assert m[_i(k), _i(k), 0] == 0  # ky-kz plane away from ky axis: missing
    assert m[_i(10), 0, 3] == 0  # 16.7 deg from kz: inside the 30-deg half-angle wedge
    assert m[_i(3), _i(7), 10] == 1  # plane tilt atan(3/10) = 16.7 deg: observed
    assert m[_i(10), 0, 6] == 1  # plane tilt 59.0 deg: observed
    assert m[_i(10), 0, 5] == 0  # plane tilt 63.4 deg: missing


def test_asymmetric_range_side_follows_beam_rotation_convention():
    # Tilt axis y: b(theta) = cos(theta) z + sin(theta) x. Voxel (kx, kz) = (10, -14) lies on the
    # plane of theta = atan(14 / 10) = 54.5 deg, its mirror (10, +14) on theta = -54.5 deg.
    m = missing_wedge_mask(SHAPE, -50, 60)
    assert m[_i(-14), 0, 10] == 1
    assert m[_i(14), 0, 10] == 0
    theta = math.atan(14 / 10)
    assert abs(10 * math.sin(theta) + (-14) * math.cos(theta)) < 1e-12
    # Tilt axis x: b(theta) = cos(theta) z - sin(theta) y; (ky, kz) = (10, 14) is on theta = +54.5.
    mx = missing_wedge_mask(SHAPE, -50, 60, tilt_axis="x")
    assert mx[_i(14), 10, 0] == 1
    assert mx[_i(-14), 10, 0] == 0
    assert mx[0, _i(10), 0] == 1 and mx[0, 0, 10] == 1  # ky (zero-tilt) and kx (tilt axis) observed
    assert mx[_i(10), 0, 0] == 0


def test_batched_ranges_give_one_mask_each():
    tmin = torch.tensor([-60.0, -40.0, -50.0])
    tmax = torch.tensor([60.0, 40.0, 60.0])
    masks = missing_wedge_mask((32, 32, 32), tmin, tmax)
    assert masks.shape == (3, 32, 32, 17)
    for i in range(3):
        single = missing_wedge_mask((32, 32, 32), float(tmin[i]), float(tmax[i]))
        assert torch.equal(masks[i], single)
    grid = missing_wedge_mask((16, 16, 16), torch.full((2, 4), -45.0), torch.full((2, 4), 45.0))
    assert grid.shape == (2, 4, 16, 16, 9)


def test_soft_edge_tapers_outside_observed_range():
    hard = missing_wedge_mask(SHAPE, -60, 60)
    soft = missing_wedge_mask(SHAPE, -60, 60, soft_edge_deg=10)
    wider = missing_wedge_mask(SHAPE, -70, 70)
    assert soft.min() >= 0 and soft.max() <= 1
    assert torch.all(soft[hard == 1] == 1)
    assert torch.all(soft[wider == 0] == 0)
    ramp = soft[(hard == 0) & (wider == 1)]
    assert ramp.numel() > 0 and torch.all((ramp > 0) & (ramp < 1))
    # voxel (kx, kz) = (10, -21) lies on the plane of tilt atan(2.1) = 64.5 deg, 4.5 deg into the taper
    expected = 0.5 * (1 + math.cos(math.pi * (math.degrees(math.atan(2.1)) - 60) / 10))
    assert float(soft[_i(-21), 0, 10]) == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize(
    "tmin,tmax,match",
    [(-100, 60, r"\[-90, 90\]"), (-60, 95, r"\[-90, 90\]"), (60, 60, "smaller"), (30, -30, "smaller")],
)
def test_invalid_ranges_raise(tmin, tmax, match):
    with pytest.raises(ValueError, match=match):
        missing_wedge_mask(SHAPE, tmin, tmax)


def test_invalid_options_raise():
    with pytest.raises(ValueError, match="tilt_axis"):
        missing_wedge_mask(SHAPE, -60, 60, tilt_axis="z")
    with pytest.raises(ValueError, match="soft_edge_deg"):
        missing_wedge_mask(SHAPE, -60, 60, soft_edge_deg=-1)
    with pytest.raises(ValueError, match="smaller"):
        missing_wedge_mask(SHAPE, torch.tensor([-60.0, 10.0]), torch.tensor([60.0, 0.0]))
    with pytest.raises(ValueError, match=r"\[-90, 90\]"):
        tilt_series_weights(SHAPE, [-95.0, 0.0])


def test_tilt_series_weights_single_zero_tilt_is_central_kz_plane():
    w = tilt_series_weights((32, 32, 32), [0.0])
    assert w.shape == (32, 32, 17)
    assert torch.all(w[0] == 1)
    assert torch.all(w[1:] == 0)


def test_tilt_series_weights_fill_the_wedge_and_count_tilts():
    angles = torch.arange(-60.0, 60.1, 3.0)  # 41 tilts, dense enough to fill a 64^3 ball
    w = tilt_series_weights(SHAPE, angles)
    assert w[0, 0, 0] == pytest.approx(41)
    assert torch.allclose(w[0, :, 0], torch.full((N,), 41.0))  # tilt axis (ky) lies on every slice
    inside = radial_frequency(SHAPE) <= 0.5
    observed_core = missing_wedge_mask(SHAPE, -58, 58) == 1
    assert torch.all(w[observed_core & inside] > 0)
    # Deep in the missing wedge (>= 15 deg from its edge) and >= 4 voxels from the tilt axis, every
    # slice is more than one Fourier voxel away, so nothing is sampled.
    grid = torch.fft.fftfreq(N) * N
    r_perp = torch.sqrt(grid[:, None, None] ** 2 + grid[: N // 2 + 1][None, None, :].abs() ** 2)
    missing_core = (missing_wedge_mask(SHAPE, -75, 75) == 0) & (r_perp >= 4)
    assert missing_core.sum() > 1000
    assert torch.all(w[missing_core] == 0)
    full = tilt_series_weights(SHAPE, angles, rfft=False)
    assert torch.allclose(full, _friedel_partner(full), atol=1e-4)
    batched = tilt_series_weights((16, 16, 16), torch.stack([angles, angles.flip(0)]))
    assert batched.shape == (2, 16, 16, 9)
    assert torch.allclose(batched[0], batched[1], atol=1e-4)
