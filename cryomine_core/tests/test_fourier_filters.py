"""Tests of cryomine_core.fourier.filters."""

import math

import pytest
import torch

from cryomine_core.fourier import (
    bandpass,
    bandpass_filter,
    highpass,
    lowpass,
    lowpass_filter,
    normalise,
    radial_frequency,
)

N = 64
SHAPE = (N, N, N)


@pytest.fixture(scope="module")
def volume():
    return torch.randn(2, N, N, N, generator=torch.Generator().manual_seed(3)) + 1.0


def test_lowpass_removes_power_beyond_cutoff(volume):
    out = lowpass(volume, cutoff_angstrom=10.0, voxel_size_angstrom=2.0)  # fc = 0.2 cycles/voxel
    assert out.shape == volume.shape and out.dtype == volume.dtype
    r = radial_frequency(SHAPE)
    before = torch.fft.rfftn(volume, dim=(-3, -2, -1)).abs() ** 2
    after = torch.fft.rfftn(out, dim=(-3, -2, -1)).abs() ** 2
    beyond = r >= 0.2
    assert float(after[..., beyond].sum() / before[..., beyond].sum()) < 1e-9
    passband = r <= 0.2 - 0.05
    assert torch.allclose(after[..., passband], before[..., passband], rtol=1e-3, atol=1e-2)
    assert float(out.mean()) == pytest.approx(float(volume.mean()), abs=1e-4)  # DC kept


def test_lowpass_filter_raised_cosine_edge():
    filt = lowpass_filter(SHAPE, cutoff_angstrom=8.0, voxel_size_angstrom=2.0, falloff_fftfreq=0.05)
    r = radial_frequency(SHAPE)
    fc, w = 0.25, 0.05
    expected = torch.where(
        r <= fc - w, 1.0, torch.where(r >= fc, 0.0, 0.5 * (1 + torch.cos(math.pi * (r - (fc - w)) / w)))
    )
    assert torch.allclose(filt, expected, atol=1e-6)
    assert filt[0, 0, 0] == 1
    hard = lowpass_filter(SHAPE, 8.0, 2.0, falloff_fftfreq=0.0)
    assert torch.equal(hard, (r < fc).float())
    coarse = lowpass_filter(SHAPE, 200.0, 2.0)  # fc = 0.01 < falloff: edge shortened, DC kept
    assert coarse[0, 0, 0] == 1 and torch.all(coarse[r >= 0.01] == 0)


def test_highpass_and_bandpass(volume):
    r = radial_frequency(SHAPE)
    hp = highpass(volume, cutoff_angstrom=40.0, voxel_size_angstrom=2.0)  # removes |k| <= 0.05
    spec = torch.fft.rfftn(hp, dim=(-3, -2, -1))
    assert float(spec[..., r <= 0.05].abs().max()) < 1e-2
    assert abs(float(hp.mean())) < 1e-5
    bp = bandpass(volume, 40.0, 10.0, voxel_size_angstrom=2.0)
    spec = torch.fft.rfftn(bp, dim=(-3, -2, -1)).abs()
    assert float(spec[..., (r <= 0.05) | (r >= 0.2)].max()) < 1e-2
    kept = (r >= 0.1) & (r <= 0.15)
    orig = torch.fft.rfftn(volume, dim=(-3, -2, -1)).abs()
    assert torch.allclose(spec[..., kept], orig[..., kept], rtol=1e-3, atol=1e-2)
    with pytest.raises(ValueError, match="coarser"):
        bandpass_filter(SHAPE, 10.0, 40.0, 2.0)


def test_filters_work_on_image_batches():
    images = torch.randn(5, 64, 64, generator=torch.Generator().manual_seed(0))
    out = lowpass(images, 8.0, 1.0, spatial_dims=2)
    assert out.shape == images.shape
    r = radial_frequency((64, 64))
    assert float(torch.fft.rfftn(out, dim=(-2, -1))[..., r >= 0.125].abs().max()) < 1e-4


def test_normalise_inside_mask(volume):
    mask = torch.zeros(SHAPE)
    mask[20:44, 20:44, 20:44] = 1
    vol = volume * 3.0 + 7.0
    out = normalise(vol, mask)
    inside = out[:, mask.bool()]
    assert torch.allclose(inside.mean(-1), torch.zeros(2), atol=1e-5)
    assert torch.allclose(inside.std(-1, unbiased=False), torch.ones(2), atol=1e-5)
    whole = normalise(vol)
    assert torch.allclose(whole.flatten(1).mean(-1), torch.zeros(2), atol=1e-5)
    assert torch.all(normalise(torch.full((4, 4, 4), 2.0)) == 0)
    with pytest.raises(ValueError, match="empty"):
        normalise(vol, torch.zeros(SHAPE))


def test_filter_input_validation(volume):
    with pytest.raises(ValueError, match="cutoff_angstrom"):
        lowpass(volume, -5.0, 2.0)
    with pytest.raises(ValueError, match="voxel_size"):
        lowpass(volume, 10.0, 0.0)
    with pytest.raises(ValueError, match="falloff"):
        lowpass(volume, 10.0, 2.0, falloff_fftfreq=-0.1)
