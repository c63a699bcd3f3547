"""Tests of cryomine_core.fourier.ctf: sign convention, zeros, envelope, MTF."""

import math

import pytest
import torch
import torch_ctf

from cryomine_core.fourier import ctf_2d, electron_wavelength_angstrom, mtf

# CODATA constants, to compute the wavelength independently of torch-ctf
_H, _M0, _E, _C = 6.62607015e-34, 9.1093837015e-31, 1.602176634e-19, 299792458.0


def _wavelength_angstrom(voltage_kv: float) -> float:
    ev = _E * voltage_kv * 1e3
    return _H / math.sqrt(2 * _M0 * ev * (1 + ev / (2 * _M0 * _C**2))) * 1e10


def _first_zero_analytic(defocus_um, voltage_kv=300.0, cs_mm=2.7, amplitude_contrast=0.07) -> float:
    """Smallest k (1/Å) with pi*lam*dz*k^2 - pi/2*Cs*lam^3*k^4 + asin(A) = pi."""
    lam = _wavelength_angstrom(voltage_kv)
    dz, cs = defocus_um * 1e4, cs_mm * 1e7
    a, b, c = math.pi / 2 * cs * lam**3, math.pi * lam * dz, math.pi - math.asin(amplitude_contrast)
    u = (b - math.sqrt(b * b - 4 * a * c)) / (2 * a)  # u = k^2, smaller root
    return math.sqrt(u)


def _first_zero_measured(profile: torch.Tensor, k_step: float) -> float:
    """Linear-interpolated first sign change of a 1-D profile sampled at i * k_step."""
    p = profile.double()
    i = int(torch.nonzero(p[1:] * p[:-1] <= 0)[0]) + 1
    return (i - 1 + p[i - 1] / (p[i - 1] - p[i])).item() * k_step


def test_wavelength_300kv():
    assert float(electron_wavelength_angstrom(300)) == pytest.approx(_wavelength_angstrom(300), rel=1e-5)
    assert _wavelength_angstrom(300) == pytest.approx(0.019687, rel=1e-4)


@pytest.mark.parametrize("amplitude_contrast", [0.07, 0.1])
def test_ctf_at_dc_is_minus_amplitude_contrast(amplitude_contrast):
    c = ctf_2d((64, 64), 2.0, 3.0, amplitude_contrast=amplitude_contrast)
    assert float(c[0, 0]) == pytest.approx(-amplitude_contrast, abs=1e-6)
    # 90 deg phase plate: CTF(0) = -sin(pi/2 + asin(A)) = -sqrt(1 - A^2)
    c = ctf_2d((64, 64), 2.0, 0.5, amplitude_contrast=amplitude_contrast, phase_shift_deg=90)
    assert float(c[0, 0]) == pytest.approx(-math.sqrt(1 - amplitude_contrast**2), abs=1e-5)


def test_ctf_is_minus_torch_ctf():
    ours = ctf_2d((32, 48), 1.3, torch.tensor([1.5, 4.0]))
    theirs = torch_ctf.calculate_ctf_2d(
        defocus=torch.tensor([1.5, 4.0]),
        astigmatism=0.0,
        astigmatism_angle=0.0,
        voltage=300.0,
        spherical_aberration=2.7,
        amplitude_contrast=0.07,
        phase_shift=0.0,
        pixel_size=1.3,
        image_shape=(32, 48),
        rfft=True,
        fftshift=False,
    )
    assert torch.allclose(ours, -theirs)


def test_first_zero_matches_formula_and_first_lobe_is_negative():
    n, pixel = 1024, 1.0
    k_step = 1.0 / (n * pixel)
    defoci = torch.tensor([1.0, 2.0, 3.5])
    c = ctf_2d((n, n), pixel, defoci)
    assert c.shape == (3, n, n // 2 + 1)
    for j, dz in enumerate(defoci.tolist()):
        expected = _first_zero_analytic(dz)
        for profile in (c[j, 0, :], c[j, : n // 2, 0]):  # along kx and along ky: isotropic
            assert _first_zero_measured(profile, k_step) == pytest.approx(expected, abs=0.1 * k_step)
        i_zero = int(expected / k_step)
        assert torch.all(c[j, 0, : i_zero - 1] < 0)  # underfocus: first lobe negative
        assert float(c[j, 0, i_zero + 2]) > 0


def test_b_factor_envelope_and_layouts():
    shape, pixel = (64, 80), 1.5
    plain = ctf_2d(shape, pixel, 2.0)
    damped = ctf_2d(shape, pixel, 2.0, b_factor=100.0)
    ky, kx = 5 / (64 * pixel), 7 / (80 * pixel)
    ratio = float(damped[5, 7] / plain[5, 7])
    assert ratio == pytest.approx(math.exp(-100.0 * (ky**2 + kx**2) / 4), rel=1e-4)
    full = ctf_2d(shape, pixel, 2.0, rfft=False)
    assert full.shape == shape and plain.shape == (64, 41)
    assert torch.allclose(full[:, :41], plain)
    per_tilt = ctf_2d(shape, pixel, torch.tensor([2.0, 2.5]), b_factor=torch.tensor([0.0, 100.0]))
    assert torch.allclose(per_tilt[1], ctf_2d(shape, pixel, 2.5, b_factor=100.0))


def test_ctf_rejects_bad_input():
    with pytest.raises(ValueError, match="amplitude_contrast"):
        ctf_2d((16, 16), 1.0, 2.0, amplitude_contrast=1.0)
    with pytest.raises(ValueError, match="shape"):
        ctf_2d((16, 16, 16), 1.0, 2.0)
    with pytest.raises(ValueError, match="voxel_size"):
        ctf_2d((16, 16), 0.0, 2.0)


def test_mtf_model():
    m = mtf((64, 64))
    assert m.shape == (64, 33)
    assert float(m[0, 0]) == pytest.approx(1.0)
    assert float(m[0, 32]) == pytest.approx(2 / math.pi, rel=1e-5)  # sinc at Nyquist
    assert float(m[32, 32]) == pytest.approx((2 / math.pi) ** 2, rel=1e-5)
    assert torch.all(m[0, 1:] < m[0, :-1])  # monotone fall-off along an axis
    blurred = mtf((64, 64), psf_sigma_px=torch.tensor([0.0, 0.5]))
    assert blurred.shape == (2, 64, 33)
    assert torch.allclose(blurred[0], m)
    assert float(blurred[1, 0, 32] / m[0, 32]) == pytest.approx(math.exp(-2 * math.pi**2 * 0.25 * 0.25), rel=1e-5)
    assert mtf((8, 8, 8)).shape == (8, 8, 5)
