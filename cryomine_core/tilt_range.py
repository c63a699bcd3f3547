"""The one rule for a tilt range, shared by every reader and by the Fourier-space wedge (numpy only).

A tilt range is ``(tilt_min, tilt_max)`` in degrees with ``-90 <= tilt_min < tilt_max <= 90`` (a
single-axis tilt series; asymmetric ranges allowed, the range need not contain 0). Tables
(``cmTiltMin``/``cmTiltMax``), ``--tilt-range`` options, the Scipion acquisitions and the wedge
functions of :mod:`cryomine_core.fourier.wedge` all check it here.
"""

from __future__ import annotations

import numpy as np

RULE = "-90 <= min < max <= 90 degrees"

__all__ = ["RULE", "invalid_tilt_ranges", "tilt_range_problem"]


def invalid_tilt_ranges(tilt_min_deg, tilt_max_deg) -> np.ndarray:
    """Indices (into the flattened, broadcast arrays) of ranges that break :data:`RULE` (NaN included)."""
    tmin, tmax = np.broadcast_arrays(np.asarray(tilt_min_deg, dtype=float), np.asarray(tilt_max_deg, dtype=float))
    tmin, tmax = tmin.ravel(), tmax.ravel()
    ok = (tmin >= -90) & (tmax <= 90) & (tmin < tmax)  # False for NaN
    return np.flatnonzero(~ok)


def tilt_range_problem(tilt_min_deg: float, tilt_max_deg: float) -> str | None:
    """What is wrong with one range, in words (None when it follows :data:`RULE`)."""
    lo, hi = float(tilt_min_deg), float(tilt_max_deg)
    if np.isnan(lo) or np.isnan(hi):
        return "a tilt limit is not a number"
    if not (-90 <= lo <= 90 and -90 <= hi <= 90):
        return "the tilt limits must lie within [-90, 90] degrees"
    if lo >= hi:
        return "the minimum tilt must be smaller than the maximum"
    return None
