"""One tilt-range rule for tables, options and the wedge; one wedge geometry on and off the grid."""

import numpy as np
import pytest
import torch

from cryomine_core.errors import CryomineError
from cryomine_core.fourier.grids import fftfreq_grid
from cryomine_core.fourier.wedge import missing_wedge_mask, validate_tilt_range, wedge_at
from cryomine_core.tilt_range import invalid_tilt_ranges, tilt_range_problem
from cryomine_core.train.augment import AugmentConfig


def test_one_rule_everywhere():
    lo = np.array([-60, -100, 30, 0, -45, np.nan])
    hi = np.array([60, 60, -30, 0, 90, 10])
    assert list(invalid_tilt_ranges(lo, hi)) == [1, 2, 3, 5]
    assert tilt_range_problem(-60, 60) is None and "smaller" in tilt_range_problem(30, -30)
    for a, b in zip(lo, hi):
        broken = bool(invalid_tilt_ranges(a, b).size)
        with_wedge = False
        try:
            validate_tilt_range(a, b)
        except ValueError:
            with_wedge = True
        assert with_wedge == broken
        augment_refuses = False
        try:
            AugmentConfig(tilt_range=(float(a), float(b))).validate()
        except CryomineError:
            augment_refuses = True
        assert augment_refuses == broken


@pytest.mark.parametrize("axis", ["y", "x"])
def test_wedge_at_equals_the_grid_mask_for_both_tilt_axes(axis):
    shape = (13, 13, 13)  # odd: no Nyquist plane (which the grid mask reads with both signs)
    k = fftfreq_grid(shape, rfft=True)[..., [2, 1, 0]]  # zyx grid -> xyz frequencies
    off_grid = wedge_at(k.reshape(-1, 3), torch.tensor(-45.0), torch.tensor(30.0), tilt_axis=axis)
    on_grid = missing_wedge_mask(shape, -45.0, 30.0, tilt_axis=axis)
    assert torch.equal(off_grid.reshape(on_grid.shape), on_grid)


def test_an_unknown_tilt_axis_is_refused():
    with pytest.raises(ValueError, match="tilt_axis"):
        wedge_at(torch.zeros(4, 3), torch.tensor(-60.0), torch.tensor(60.0), tilt_axis="z")
