"""Tests of cryomine_core.fourier.fsc."""

import pytest
import torch

from cryomine_core.fourier import (
    FSC_THRESHOLD_GOLD_STANDARD,
    FSC_THRESHOLD_HALF,
    fsc,
    missing_wedge_mask,
    resolution_at,
    shell_frequencies,
    shell_index,
)

N = 64


@pytest.fixture(scope="module")
def noise():
    g = torch.Generator().manual_seed(1234)
    return torch.randn(3, N, N, N, generator=g)


def test_identical_maps_correlate_perfectly_in_every_shell(noise):
    curve = fsc(noise, noise)
    assert curve.shape == (3, N // 2 + 1)
    assert torch.allclose(curve, torch.ones_like(curve), atol=1e-5)
    assert torch.allclose(fsc(noise[0], 3.0 * noise[0]), torch.ones(N // 2 + 1), atol=1e-5)
    assert torch.allclose(fsc(noise[0], -noise[0]), -torch.ones(N // 2 + 1), atol=1e-5)


def test_independent_noise_is_uncorrelated(noise):
    curve = fsc(noise[0], noise[1])
    assert curve.shape == (N // 2 + 1,)
    assert abs(float(curve[4:].mean())) < 0.05
    assert float(curve[8:].abs().max()) < 0.15


def test_half_maps_at_snr_one_give_half(noise):
    signal = noise[0]
    g = torch.Generator().manual_seed(7)
    half1 = signal + torch.randn(N, N, N, generator=g)
    half2 = signal + torch.randn(N, N, N, generator=g)
    curve = fsc(half1, half2)
    assert float(curve[4:].mean()) == pytest.approx(0.5, abs=0.03)


def test_matches_full_fft_reference(noise):
    a, b = noise[0][:32, :32, :32], (noise[1] + 0.5 * noise[0])[:32, :32, :32]
    fa, fb = torch.fft.fftn(a).flatten(), torch.fft.fftn(b).flatten()
    idx = shell_index((32, 32, 32), rfft=False).flatten()

    def shell_sum(v):
        return torch.zeros(18, dtype=torch.float64).index_add_(0, idx, v.double())[:17]

    ref = shell_sum((fa * fb.conj()).real) / torch.sqrt(shell_sum(fa.abs() ** 2) * shell_sum(fb.abs() ** 2))
    assert torch.allclose(fsc(a, b).double(), ref, atol=1e-5)
    # odd, non-cubic box: 11 shells of width 1/21, same answer as the full spectrum
    shape = (21, 24, 27)
    c, d = noise[0][:21, :24, :27], (noise[2] + noise[0])[:21, :24, :27]
    fc, fd = torch.fft.fftn(c).flatten(), torch.fft.fftn(d).flatten()
    idx = shell_index(shape, rfft=False).flatten()

    def shell_sum_odd(v):
        return torch.zeros(12, dtype=torch.float64).index_add_(0, idx, v.double())[:11]

    ref = shell_sum_odd((fc * fd.conj()).real) / torch.sqrt(shell_sum_odd(fc.abs() ** 2) * shell_sum_odd(fd.abs() ** 2))
    assert fsc(c, d).shape == (11,)
    assert torch.allclose(fsc(c, d).double(), ref, atol=1e-5)


def test_real_space_and_fourier_masks(noise):
    a = noise[0]
    mask = torch.zeros(N, N, N)
    mask[16:48, 16:48, 16:48] = 1
    b = a + 5.0 * noise[1] * (1 - mask)  # differs only outside the mask
    assert float(fsc(a, b)[4:].mean()) < 0.5
    assert torch.allclose(fsc(a, b, mask=mask), torch.ones(N // 2 + 1), atol=1e-5)

    wedge = missing_wedge_mask((N, N, N), -60, 60)
    a_w = torch.fft.irfftn(torch.fft.rfftn(a) * wedge, s=(N, N, N))
    b_w = a_w + torch.fft.irfftn(torch.fft.rfftn(noise[1]) * (1 - wedge), s=(N, N, N))
    assert float(fsc(a_w, b_w)[4:].mean()) < 0.95
    assert torch.allclose(fsc(a_w, b_w, fourier_mask=wedge)[1:], torch.ones(N // 2), atol=1e-4)


def test_resolution_at_linear_interpolation():
    shells = torch.arange(N // 2 + 1, dtype=torch.float32)
    curve = 1.0 - shells / 20.0  # crosses 0.143 at shell 17.14, 0.5 at shell 10
    res = resolution_at(curve, FSC_THRESHOLD_GOLD_STANDARD, voxel_size_angstrom=2.0)
    assert float(res) == pytest.approx(2.0 * N / (20 * (1 - 0.143)), rel=1e-5)
    assert float(resolution_at(curve, FSC_THRESHOLD_HALF, 2.0)) == pytest.approx(2.0 * N / 10, rel=1e-5)
    # shell frequencies in 1/Å agree with the same answer
    f = shell_frequencies((N, N, N), voxel_size_angstrom=2.0)
    assert float(1 / f[10]) == pytest.approx(2.0 * N / 10)


def test_resolution_at_first_crossing_batch_and_never_crossing():
    n = N // 2 + 1
    dip = torch.ones(n)
    dip[5] = 0.0  # a dip: first crossing is between shells 4 and 5
    dip_res = 4.0 * N / (4 + (1 - 0.5) / 1.0)
    flat = torch.ones(n)
    batch = torch.stack([dip, flat])
    res = resolution_at(batch, 0.5, voxel_size_angstrom=4.0)
    assert res.shape == (2,)
    assert float(res[0]) == pytest.approx(dip_res, rel=1e-5)
    assert float(res[1]) == pytest.approx(8.0)  # never crossed: Nyquist = 2 * voxel size
    # crossing already in shell 1: interpolate from DC taken as 1
    early = torch.zeros(n)
    assert float(resolution_at(early, 0.5, 1.0)) == pytest.approx(1.0 / (0.5 / N), rel=1e-5)
    # odd box: explicit shell frequencies
    freqs = shell_frequencies((21, 21, 21))
    assert float(resolution_at(torch.ones(11), 0.143, 1.0, frequencies=freqs)) == pytest.approx(21 / 10)


def test_resolution_at_validation():
    with pytest.raises(ValueError, match="threshold"):
        resolution_at(torch.ones(10), 1.5)
    with pytest.raises(ValueError, match="frequencies"):
        resolution_at(torch.ones(10), 0.5, 1.0, frequencies=torch.ones(3))
    with pytest.raises(ValueError, match="shapes differ"):
        fsc(torch.zeros(8, 8, 8), torch.zeros(8, 8, 9))
