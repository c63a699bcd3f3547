"""Tests of cryomine_core.fourier.grids (frequency grids and FSC shells)."""

import pytest
import torch

from cryomine_core.fourier import fft_shape, fftfreq_grid, n_shells, radial_frequency, shell_frequencies, shell_index


def test_fftfreq_grid_matches_torch_fftfreq_in_array_axis_order():
    shape = (4, 6, 8)
    grid = fftfreq_grid(shape, rfft=True)
    assert grid.shape == (4, 6, 5, 3)
    kz, ky, kx = torch.fft.fftfreq(4), torch.fft.fftfreq(6), torch.fft.rfftfreq(8)
    assert torch.allclose(grid[:, 0, 0, 0], kz)
    assert torch.allclose(grid[0, :, 0, 1], ky)
    assert torch.allclose(grid[0, 0, :, 2], kx)
    full = fftfreq_grid(shape, rfft=False)
    assert full.shape == (4, 6, 8, 3)
    assert torch.allclose(full[0, 0, :, 2], torch.fft.fftfreq(8))


def test_fft_shape_and_radial_frequency():
    assert fft_shape((64, 64, 64)) == (64, 64, 33)
    assert fft_shape((10, 12), rfft=False) == (10, 12)
    r = radial_frequency((8, 8, 8))
    assert r.shape == (8, 8, 5)
    assert r[0, 0, 0] == 0
    assert r[0, 0, 4] == pytest.approx(0.5)
    assert r[1, 1, 1] == pytest.approx(3**0.5 / 8)
    r2 = radial_frequency((16, 16))
    assert r2.shape == (16, 9) and r2[8, 0] == pytest.approx(0.5)


def test_shell_index_rounds_radius_and_flags_corners():
    shape = (32, 32, 32)
    idx = shell_index(shape)
    assert n_shells(shape) == 17
    assert idx[0, 0, 0] == 0
    assert idx[0, 0, 5] == 5
    assert idx[3, 4, 0] == 5  # |k| = 5 / 32 exactly
    assert idx[0, 0, 16] == 16  # Nyquist on the axis is the last shell
    assert idx[16, 16, 16] == 17  # corner beyond Nyquist -> overflow bin
    r = radial_frequency(shape)
    assert torch.all(idx[r * 32 <= 16.49] <= 16)
    assert torch.all(idx[r * 32 >= 16.5] == 17)
    full = shell_index(shape, rfft=False)
    assert torch.equal(full[..., :17], idx)


def test_shell_frequencies_units():
    f = shell_frequencies((64, 64, 64))
    assert f.shape == (33,)
    assert f[-1] == pytest.approx(0.5)
    assert f[16] == pytest.approx(0.25)
    f_a = shell_frequencies((64, 64, 64), voxel_size_angstrom=2.0)
    assert f_a[-1] == pytest.approx(0.25)  # 1/Å: Nyquist of 2 Å voxels is 4 Å
    with pytest.raises(ValueError):
        shell_frequencies((64, 64, 64), voxel_size_angstrom=0)


def test_bad_shape_raises():
    with pytest.raises(ValueError, match="shape"):
        fftfreq_grid((8,))
