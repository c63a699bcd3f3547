"""Rotation-invariant spherical-harmonic features."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from cryomine_core.features import rotation_invariant_features as rif
from cryomine_core.features import shell_radii
from cryomine_core.geometry import random_rotations, rotate_volume, rotation_x, rotation_z
from cryomine_core.simulate.structures import load_structure

N = 24
VOXEL = 18.0  # Å: phantoms (150-250 Å across) fit a 24^3 box


@pytest.fixture(scope="module")
def phantoms():
    # slightly blurred (sigma 1 voxel) so that rotating them by trilinear interpolation is accurate
    return [torch.as_tensor(gaussian_filter(load_structure(f"phantom:{i}", VOXEL, N).volume.numpy(), 1.0))
            for i in range(3)]


def _rel(a, b) -> float:
    return float((a - b).norm() / a.norm())


def test_shape_and_sources(phantoms):
    vols = torch.stack(phantoms)
    assert rif(vols, source="real").shape == (3, 14 * 9)
    assert rif(vols, source="fourier", l_max=4, n_shells=6).shape == (3, 6 * 5)
    assert rif(vols).shape == (3, 2 * 14 * 9)
    assert rif(vols[0]).shape == (2 * 14 * 9,)
    assert np.allclose(shell_radii(24, 4), [1.375, 4.125, 6.875, 9.625])
    with pytest.raises(ValueError, match="source"):
        rif(vols, source="wavelet")


@pytest.mark.parametrize("source", ["real", "fourier"])
def test_invariant_under_rotation_and_discriminative(phantoms, source):
    a, b, c = phantoms
    fa = rif(a, source=source)
    # grid-exact rotations (no interpolation of the volume): only the quadrature's error is left
    for rot in (rotation_z(90.0), rotation_x(90.0), rotation_z(180.0) @ rotation_x(90.0)):
        assert _rel(fa, rif(rotate_volume(a, rot), source=source)) < 2e-3
    # arbitrary rotations: within the error of trilinear interpolation of the volume
    errors = [_rel(fa, rif(rotate_volume(a, r), source=source))
              for r in random_rotations(4, generator=torch.Generator().manual_seed(0))]
    between = min(_rel(fa, rif(b, source=source)), _rel(fa, rif(c, source=source)))
    assert max(errors) < 0.05
    assert between > 1.5 * max(errors)
    if source == "real":
        assert between > 3 * max(errors)


def test_fourier_features_ignore_translation(phantoms):
    a = phantoms[0]
    shifted = torch.roll(a, shifts=(2, -3, 1), dims=(0, 1, 2))  # circular shift: |FFT| unchanged
    assert _rel(rif(a, source="fourier"), rif(shifted, source="fourier")) < 1e-4
    assert _rel(rif(a, source="real"), rif(shifted, source="real")) > 0.05  # the real-space ones do see it


def test_cross_shell_invariants(phantoms):
    a, b, _ = phantoms
    f = rif(a, source="real", n_shells=6, l_max=4, cross_shells=True)
    assert f.shape == (6 * 5 + 5 * 15,)
    power, cosine = f[:30], f[30:]
    assert torch.allclose(power, rif(a, source="real", n_shells=6, l_max=4), rtol=1e-4, atol=1e-6)
    assert cosine.abs().max() <= 1.0
    # a grid-exact rotation leaves the between-shell cosines unchanged up to the quadrature's error
    g = rif(rotate_volume(a, rotation_z(90.0) @ rotation_x(90.0)), source="real", n_shells=6, l_max=4,
            cross_shells=True)
    assert _rel(f, g) < 5e-3
    # and they tell two phantoms apart where the per-shell power is alike
    assert _rel(f, rif(b, source="real", n_shells=6, l_max=4, cross_shells=True)) > 10 * _rel(f, g)
