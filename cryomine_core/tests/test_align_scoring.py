"""Constrained correlation, wedge masks at arbitrary frequencies, FSC and Fourier sampling of the align package."""

import math

import pytest
import torch

from cryomine_core.align.average import rfft_grid_points
from cryomine_core.align.reference import rfft_to_centred_full
from cryomine_core.align.scoring import constrained_correlation, wedge_masks
from cryomine_core.align.spectra import PaddedSpectrum, centred_rfft, half_sphere_points
from cryomine_core.fourier import fsc, missing_wedge_mask
from cryomine_core.fourier.wedge import wedge_at
from cryomine_core.simulate import phantom_volume

N = 20


@pytest.mark.parametrize("tilt", [(-60.0, 60.0), (-40.0, 40.0), (-50.0, 65.0)])
def test_wedge_at_matches_missing_wedge_mask_on_the_grid(tilt):
    k = rfft_grid_points(N)
    ours = wedge_at(k.reshape(-1, 3), torch.tensor(tilt[0]), torch.tensor(tilt[1])).reshape(k.shape[:-1])
    ref = missing_wedge_mask((N, N, N), *tilt)
    # Nyquist planes of an even box are interpreted differently (both signs) by the fourier module
    inside = k.abs().amax(-1) < 0.5 - 1e-6
    assert torch.equal(ours[inside], ref[inside])
    # observed fraction of a shell matches the tilt range: (max - min) / 180
    pts, _ = half_sphere_points(64, 0.3, 0.25)
    frac = float(wedge_at(pts, torch.tensor(tilt[0]), torch.tensor(tilt[1])).mean())
    assert frac == pytest.approx((tilt[1] - tilt[0]) / 180.0, abs=0.03)


def test_wedge_at_batches_per_particle_ranges():
    pts, _ = half_sphere_points(N, 0.4)
    tilt = torch.tensor([[-60.0, 60.0], [-30.0, 30.0]])
    w = wedge_at(pts[None], tilt[:, 0], tilt[:, 1])
    assert w.shape == (2, pts.shape[0])
    assert float(w[0].mean()) > float(w[1].mean()) + 0.2


def _wedged(vol, tilt):
    w = missing_wedge_mask(vol.shape, *tilt)
    return torch.fft.irfftn(torch.fft.rfftn(vol) * w, s=vol.shape), w


def test_constrained_correlation_is_one_with_itself_and_ignores_the_missing_wedge():
    vol = phantom_volume(0, N, 15.0)
    a, wa = _wedged(vol, (-60, 60))
    assert float(constrained_correlation(a, a, wa, wa)) == pytest.approx(1.0, abs=1e-5)
    other = phantom_volume(5, N, 15.0)
    # add strong content living only in the missing wedge of `a`
    junk = torch.fft.irfftn(torch.fft.rfftn(torch.randn(N, N, N) * 5) * (1 - wa), s=(N, N, N))
    cc_clean = constrained_correlation(a, other, wa, None)
    cc_junk = constrained_correlation(a + junk, other, wa, None)
    assert float(cc_junk) == pytest.approx(float(cc_clean), abs=1e-4)
    # a plain correlation (no masks) is changed by it: the masks matter
    assert abs(float(constrained_correlation(a + junk, other)) - float(constrained_correlation(a, other))) > 0.05


def test_constrained_correlation_batches_and_is_bounded():
    vols = torch.randn(3, N, N, N)
    cc = constrained_correlation(vols, vols[0])
    assert cc.shape == (3,)
    assert float(cc[0]) == pytest.approx(1.0, abs=1e-5)
    assert cc.abs().max() <= 1.0 + 1e-5
    assert cc[1:].abs().max() < 0.1


def test_fsc_of_identical_maps_is_one_and_of_independent_noise_about_zero():
    vol = phantom_volume(1, N, 15.0) + 0.1 * torch.randn(N, N, N)
    assert torch.allclose(fsc(vol, vol), torch.ones(N // 2 + 1), atol=1e-5)
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 40, 40, 40, generator=g)
    curve = fsc(a, b)
    assert curve[3:].abs().max() < 0.15
    assert abs(float(curve[3:].mean())) < 0.03


def test_padded_spectrum_is_exact_on_the_grid_and_rfft_full_conversion():
    vol = torch.randn(2, N, N, N)
    spec = PaddedSpectrum(vol, pad=2)
    pts, _ = half_sphere_points(N, 0.45)
    sampled = spec.sample(pts)
    ft = centred_rfft(vol)
    idx = torch.round(pts * N).long()
    direct = ft[:, idx[:, 2] % N, idx[:, 1] % N, idx[:, 0]]
    assert torch.allclose(sampled, direct, atol=1e-3 * float(direct.abs().max()))
    real = torch.fft.rfftn(vol[0]).abs()
    assert torch.allclose(rfft_to_centred_full(real), torch.fft.fftshift(torch.fft.fftn(vol[0]).abs()), atol=1e-4)


def test_wedge_masks_follow_tilt_ranges():
    m = wedge_masks(N, torch.tensor([[-60.0, 60.0], [-40.0, 40.0]]))
    assert m.shape == (2, N, N, N // 2 + 1)
    # the beam axis (kz) is missing, the tilt axis (ky) is observed
    assert float(m[0, 3, 0, 0]) == 0.0 and float(m[0, 0, 3, 0]) == 1.0
    # along a direction ~37 degrees from the beam (seen at tilt 53): observed at +-60, missing at +-40
    kz, kx = round(5 * math.cos(math.radians(40))), round(5 * math.sin(math.radians(40)))
    assert float(m[0, kz, 0, kx]) == 1.0 and float(m[1, kz, 0, kx]) == 0.0
