"""CryoMine's own code next to the teamtomo package that does the same job, number by number.

Each test pins either that the two agree (same conventions: a switch would change nothing) or the
measured difference that is the reason CryoMine keeps its own (recorded in the README's layout
section). The packages are test dependencies only: CryoMine's code does not import them.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from cryomine_core.extract import extract_subtomograms
from cryomine_core.fourier.filters import lowpass_filter
from cryomine_core.fourier.grids import radial_frequency
from cryomine_core.geometry import random_rotations
from cryomine_core.geometry.rotations import relion_eulers_to_rotation, rotation_y
from cryomine_core.geometry.so3 import so3_grid
from cryomine_core.simulate.tilt import centred_fft, extract_slices

tff = pytest.importorskip("torch_fourier_filter.bandpass")
tso3 = pytest.importorskip("torch_so3")
tsc = pytest.importorskip("torch_subpixel_crop")
tfs = pytest.importorskip("torch_fourier_slice")


def test_lowpass_same_hard_edge_but_the_package_transmits_beyond_the_cutoff():
    shape, fc, falloff = (32, 32, 32), 0.25, 0.05
    r = radial_frequency(shape, rfft=True)
    ours_hard = lowpass_filter(shape, cutoff_angstrom=40.0, voxel_size_angstrom=10.0, falloff_fftfreq=0.0)
    theirs_hard = tff.low_pass_filter(cutoff=fc, falloff=0.0, image_shape=shape, rfft=True, fftshift=False)
    off_edge = ((r - fc).abs() > 1e-6) & (r > 0)
    assert torch.equal(ours_hard[off_edge], theirs_hard[off_edge])  # same grid, same frequencies
    # ... except the mean: with no falloff the package's low-pass (band r > 0) removes it
    assert float(ours_hard[0, 0, 0]) == 1.0 and float(theirs_hard[0, 0, 0]) == 0.0
    ours = lowpass_filter(shape, cutoff_angstrom=40.0, voxel_size_angstrom=10.0, falloff_fftfreq=falloff)
    theirs = tff.low_pass_filter(cutoff=fc, falloff=falloff, image_shape=shape, rfft=True, fftshift=False)
    beyond = (r > fc + 1e-6) & (r < fc + falloff - 1e-6)
    # CryoMine's edge lies inside the band (nothing beyond a low-pass at the FSC resolution reaches
    # the next alignment iteration); the package's lies outside it, a quarter cosine
    assert float(ours[beyond].abs().max()) == 0.0
    assert float(theirs[beyond].min()) > 0.0
    assert float((ours - theirs).abs().max()) > 0.5


def _covering_radius_deg(grid: torch.Tensor, n_probe: int = 1500) -> float:
    probes = random_rotations(n_probe, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    g = grid.to(torch.float64)
    # angle between R1 and R2 from the trace of R1^T R2, for every probe and grid rotation
    trace = torch.einsum("pij,gij->pg", probes, g)
    best = trace.max(dim=1).values.clamp(-1.0, 3.0)
    return float(torch.rad2deg(torch.arccos(((best - 1) / 2).clamp(-1, 1))).max())


def test_so3_grids_are_equivalent():
    """torch-so3's Hopf-fibration grid and CryoMine's super-Fibonacci grid at the same 20-degree step:
    measured 1908 rotations reaching every rotation within 15.8 degrees against 1954 within 16.1
    (probes: 1500 random rotations). A switch would gain ~2 % of covering radius and change every
    alignment figure: kept (README)."""
    eulers = tso3.get_uniform_euler_angles(psi_step=20.0, theta_step=20.0)
    theirs = relion_eulers_to_rotation(eulers.to(torch.float64))
    ours = so3_grid(20.0, dtype=torch.float64)
    cover_ours, cover_theirs = _covering_radius_deg(ours), _covering_radius_deg(theirs)
    assert abs(len(ours) - len(theirs)) < 0.05 * len(theirs)
    assert abs(cover_ours - cover_theirs) < 1.0
    assert cover_ours < 0.85 * 20.0 and cover_theirs < 0.85 * 20.0
    identity = torch.eye(3, dtype=torch.float64).expand(len(theirs), 3, 3)
    assert torch.allclose(theirs @ theirs.transpose(-1, -2), identity, atol=1e-9)  # read as proper rotations


def test_extraction_equals_subpixel_crop_at_integer_centres():
    """Same box centre (index N // 2) and axis order: at integer positions CryoMine's windowed read
    of a memory-mapped tomogram gives the package's crop of the whole tomogram tensor exactly."""
    rng = np.random.default_rng(0)
    tomo = rng.standard_normal((40, 48, 56)).astype(np.float32)
    centres_xyz = np.array([[20.0, 24.0, 17.0], [30.0, 15.0, 25.0], [11.0, 33.0, 14.0]])
    ours = extract_subtomograms(tomo, centres_xyz, 16, normalise=False).volumes
    theirs = tsc.subpixel_crop_3d(torch.from_numpy(tomo), torch.from_numpy(centres_xyz[:, ::-1].copy()).float(), 16)
    assert np.allclose(ours, theirs.numpy(), atol=1e-5)


def test_tilt_projection_agrees_with_fourier_slice_projection():
    """The simulator's central-slice extraction and the package's projection give the same tilt
    image: the same matrix (xyz, the slice plane of the tilt) means the same tilt in both
    (correlation 0.99995-0.99999 at 0, 30 and -50 degrees; the transpose gives 0.72-0.77)."""
    n = 32
    vol = np.zeros((n, n, n), np.float32)
    vol[10:20, 12:18, 8:22] = 1.0
    vol[18:24, 18:26, 14:18] = 2.0
    vol = torch.from_numpy(gaussian_filter(vol, 1.5))
    for theta in (0.0, 30.0, -50.0):
        m = rotation_y(theta).to(torch.float32)  # xyz, active: the slice plane of the tilt image
        ours = torch.fft.irfft2(extract_slices(centred_fft(vol), m, (n, n)), s=(n, n))
        ours = torch.fft.fftshift(ours, dim=(-2, -1))  # rfft2 phase origin at index N // 2
        theirs = tfs.project_3d_to_2d(vol, m)
        corr = float(torch.corrcoef(torch.stack([ours.flatten(), theirs.flatten()]))[0, 1])
        assert corr > 0.9995, (theta, corr)
        if theta:
            transposed = tfs.project_3d_to_2d(vol, m.T)
            assert float(torch.corrcoef(torch.stack([ours.flatten(), transposed.flatten()]))[0, 1]) < 0.9


def test_fsc_same_quantity_other_shell_binning():
    """CryoMine's FSC (each Fourier voxel in one shell) and torch-fourier-shell-correlation's
    (each voxel spread over its two nearest shells) on a 32^3 pair: close, but up to ~0.04 apart in
    a shell, so switching would move reported resolutions (README)."""
    tfsc = pytest.importorskip("torch_fourier_shell_correlation")
    from cryomine_core.fourier.fsc import fsc

    rng = np.random.default_rng(1)
    truth = gaussian_filter(rng.standard_normal((32, 32, 32)), 2.0)
    truth /= truth.std()
    a = torch.from_numpy(truth + 0.5 * rng.standard_normal(truth.shape)).float()
    b = torch.from_numpy(truth + 0.5 * rng.standard_normal(truth.shape)).float()
    ours = fsc(a, b)
    theirs = tfsc.fourier_shell_correlation(a, b)
    n = min(len(ours), len(theirs))
    diff = (ours[:n] - theirs[:n]).abs()
    assert float(diff[:4].max()) < 0.02         # low shells: many voxels, same value
    assert 0.01 < float(diff.max()) < 0.1       # a visible difference in some shell
