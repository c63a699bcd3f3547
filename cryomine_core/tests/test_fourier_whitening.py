"""Spectral whitening: flat shell power, indifference to radial filters, phases kept."""

import torch

from cryomine_core.fourier.filters import apply_filter
from cryomine_core.fourier.grids import n_shells, shell_index
from cryomine_core.fourier.whitening import whiten
from cryomine_core.train.data import normalise_volume


def _shell_power(x: torch.Tensor) -> torch.Tensor:
    shape = tuple(x.shape[-3:])
    idx = shell_index(shape).clamp_max(n_shells(shape) - 1).reshape(-1)
    p = torch.fft.rfftn(x, dim=(-3, -2, -1)).abs().square().reshape(*x.shape[:-3], -1)
    sums = torch.zeros(*p.shape[:-1], int(idx.max()) + 1, dtype=p.dtype).index_add_(-1, idx, p)
    return sums / torch.bincount(idx).to(p.dtype)


def test_whitened_power_is_flat_and_mean_zero():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 16, 16, 16, generator=g, dtype=torch.float64).cumsum(-1)  # strongly coloured
    y = whiten(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    power = _shell_power(y)[:, 1:]
    assert torch.allclose(power, torch.ones_like(power), rtol=1e-6)
    assert y.mean(dim=(-3, -2, -1)).abs().max() < 1e-9
    assert _shell_power(x)[:, 1:].std() > 10  # the input was far from flat


def test_whitening_undoes_any_radial_filter():
    """A filter constant on each shell (a CTF envelope, the WBP ramp) changes nothing after whitening."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 12, 12, 12, generator=g, dtype=torch.float64)
    shells = shell_index((12, 12, 12)).clamp_max(n_shells((12, 12, 12)) - 1)
    gain = torch.rand(int(shells.max()) + 1, generator=g, dtype=torch.float64) * 5 + 0.1
    filtered = apply_filter(x, gain[shells])
    assert not torch.allclose(filtered, x)
    assert torch.allclose(whiten(filtered), whiten(x), atol=1e-9)


def test_whitening_keeps_phases_and_empty_shells():
    x = torch.zeros(8, 8, 8, dtype=torch.float64)
    x[2:5, 3:6, 1:4] = 1.0
    spectrum = torch.fft.rfftn(x)
    phases = torch.angle(torch.fft.rfftn(whiten(x)))
    keep = spectrum.abs() > 1e-6
    keep[0, 0, 0] = False
    diff = torch.remainder(phases[keep] - torch.angle(spectrum)[keep] + torch.pi, 2 * torch.pi) - torch.pi
    assert diff.abs().max() < 1e-6
    assert torch.equal(whiten(torch.zeros(8, 8, 8)), torch.zeros(8, 8, 8))


def test_whiten_normalisation_mode():
    x = torch.randn(2, 10, 10, 10, generator=torch.Generator().manual_seed(2)) * 7 + 3
    y = normalise_volume(x, "whiten")
    assert torch.allclose(y.mean(dim=(-3, -2, -1)), torch.zeros(2), atol=1e-5)
    assert torch.allclose(y.std(dim=(-3, -2, -1)), torch.ones(2), atol=1e-4)
    assert torch.allclose(y, normalise_volume(whiten(x), "zscore"), atol=1e-6)
