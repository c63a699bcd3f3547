"""Missing-wedge masks and tilt-series sampling weights in Fourier space.

Acquisition geometry (pinned convention)
----------------------------------------
Volumes are zyx arrays ``vol[..., z, y, x]``; their rfft is ``(..., D, H, W // 2 + 1)`` in
torch's non-shifted layout, frequencies ``(kz, ky, kx)`` in cycles/voxel.

* At zero tilt the electron beam travels along **z** (the first array axis).
* The tilt axis is **y** by default (``tilt_axis="y"``) or **x** (``tilt_axis="x"``).
* Tilting by ``theta`` degrees is a right-handed rotation about the tilt axis; the beam
  direction, written in the tomogram's own frame, becomes

  - tilt axis y: ``b(theta) = cos(theta) z_hat + sin(theta) x_hat`` (turns from +z towards +x);
  - tilt axis x: ``b(theta) = cos(theta) z_hat - sin(theta) y_hat`` (turns from +z towards -y).

  For a symmetric range the sense of rotation does not matter; for an asymmetric one
  (e.g. -50..+60) it decides which side of the wedge is wider.
* Projection-slice theorem: the projection at tilt ``theta`` samples the central plane of
  Fourier space perpendicular to ``b(theta)``. A range ``[tilt_min, tilt_max]`` therefore
  observes the union of those planes: a double wedge around the kx axis (tilt axis y) that
  contains the whole ky axis and the kx-ky plane (the zero-tilt plane). The **missing wedge**
  is its complement, a double wedge around the beam axis **kz** with half-angle
  ``90 - tilt_max`` on one side and ``90 + tilt_min`` on the other.

Every Fourier voxel ``k`` is characterised by the tilt ``phi(k)`` whose plane contains it,
``phi = atan2(-kz, ke)`` folded into ``[-90, 90)`` (``ke = kx`` for tilt axis y, ``ke = -ky``
for tilt axis x); ``k`` is observed when ``tilt_min <= phi <= tilt_max`` (modulo 180).
Voxels on the tilt axis (``kz = ke = 0``, which includes DC) lie on every plane and are always
observed. The observed fraction of a sphere is ``(tilt_max - tilt_min) / 180``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from cryomine_core.fourier.grids import fftfreq_grid
from cryomine_core.tilt_range import RULE, invalid_tilt_ranges, tilt_range_problem

__all__ = [
    "missing_wedge_mask",
    "wedge_at",
    "observed_fraction",
    "tilt_series_weights",
    "validate_tilt_range",
]

# Voxels whose plane angle is within this many degrees of the range edge count as observed.
_ANGLE_TOLERANCE_DEG = 1e-3


def validate_tilt_range(tilt_min_deg, tilt_max_deg) -> None:
    """Raise ValueError unless every range satisfies :data:`cryomine_core.tilt_range.RULE` (elementwise)."""
    tmin = torch.as_tensor(tilt_min_deg, dtype=torch.float64)
    tmax = torch.as_tensor(tilt_max_deg, dtype=torch.float64)
    lo, hi = np.broadcast_arrays(tmin.cpu().numpy(), tmax.cpu().numpy())
    bad = invalid_tilt_ranges(lo, hi)
    if bad.size:
        why = tilt_range_problem(lo.ravel()[bad[0]], hi.ravel()[bad[0]])
        raise ValueError(f"invalid tilt range ({why}; {RULE}): got tilt_min_deg={_show(tmin)}, "
                         f"tilt_max_deg={_show(tmax)}.")


def observed_fraction(tilt_min_deg, tilt_max_deg) -> torch.Tensor:
    """Analytic fraction of a Fourier sphere observed by the range: ``(max - min) / 180``."""
    validate_tilt_range(tilt_min_deg, tilt_max_deg)
    tmin = torch.as_tensor(tilt_min_deg, dtype=torch.float64)
    tmax = torch.as_tensor(tilt_max_deg, dtype=torch.float64)
    return (tmax - tmin) / 180.0


def missing_wedge_mask(
    shape: Sequence[int],
    tilt_min_deg: float | torch.Tensor,
    tilt_max_deg: float | torch.Tensor,
    tilt_axis: str = "y",
    rfft: bool = True,
    soft_edge_deg: float = 0.0,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Fourier mask of the region observed by a single-axis tilt range.

    Parameters
    ----------
    shape
        Real-space volume shape ``(D, H, W)`` (zyx).
    tilt_min_deg, tilt_max_deg
        Tilt range in degrees, ``-90 <= tilt_min_deg < tilt_max_deg <= 90``. Floats or
        tensors with matching/broadcastable batch shape ``(...)`` (one range per particle);
        asymmetric ranges are allowed.
    tilt_axis
        ``"y"`` (default) or ``"x"``; see the module docstring for the geometry.
    rfft
        Mask in rfft layout ``(D, H, W // 2 + 1)`` (default) or full fft layout ``(D, H, W)``,
        both non-shifted.
    soft_edge_deg
        Width of a raised-cosine taper, in degrees of tilt, applied *outside* the observed
        range: the observed region stays exactly 1 and the mask falls to 0 at
        ``soft_edge_deg`` beyond each edge. 0 gives a binary mask.
    device
        Device of the mask; defaults to the device of ``tilt_min_deg`` if it is a tensor.

    Returns
    -------
    torch.Tensor
        float32 mask ``(..., D, H, W // 2 + 1)`` (or ``(..., D, H, W)``): 1 observed,
        0 missing. DC and the tilt axis are always 1. The mask is Friedel symmetric.

    Raises
    ------
    ValueError
        For a range outside [-90, 90], ``tilt_min_deg >= tilt_max_deg``, a bad ``tilt_axis``
        or a negative ``soft_edge_deg``.
    """
    validate_tilt_range(tilt_min_deg, tilt_max_deg)
    if soft_edge_deg < 0:
        raise ValueError(f"soft_edge_deg must be >= 0, got {soft_edge_deg}.")
    device = _infer_device(device, tilt_min_deg, tilt_max_deg)
    tmin = torch.as_tensor(tilt_min_deg, dtype=torch.float32, device=device)[..., None, None, None]
    tmax = torch.as_tensor(tilt_max_deg, dtype=torch.float32, device=device)[..., None, None, None]

    kz, ke = _beam_plane_components(shape, tilt_axis, rfft, device)
    # Nyquist samples of even axes stand for both +0.5 and -0.5: use the nearer interpretation,
    # which keeps the mask exactly Friedel symmetric.
    dist = None
    for z, e in _nyquist_variants(kz, ke):
        d = _range_distance(z, e, tmin, tmax)
        dist = d if dist is None else torch.minimum(dist, d)
    observed = dist <= _ANGLE_TOLERANCE_DEG
    if soft_edge_deg == 0:
        return observed.to(torch.float32)
    taper = 0.5 * (1.0 + torch.cos(torch.pi * dist / soft_edge_deg))
    taper = torch.where(dist < soft_edge_deg, taper, torch.zeros_like(taper))
    return torch.where(observed, torch.ones_like(taper), taper).to(torch.float32)


def wedge_at(k: torch.Tensor, tilt_min_deg, tilt_max_deg, tilt_axis: str = "y", margin: float = 0.0) -> torch.Tensor:
    """The observed region at arbitrary frequencies (interpolated transforms, off-grid samples).

    The geometry of :func:`missing_wedge_mask` (module docstring): ``k`` is observed when the tilt of
    the central plane containing it lies in ``[tilt_min, tilt_max]`` (modulo 180); points on the tilt
    axis are always observed.

    Args:
        k: ``(..., K, 3)`` xyz frequencies (any units).
        tilt_min_deg, tilt_max_deg: ``(...)`` tilt ranges in degrees (broadcast against k's batch dims).
        tilt_axis: ``"y"`` (default) or ``"x"``.
        margin: if > 0, observed points closer than ``margin`` (in the units of ``k``; ``1 / N`` is
            one Fourier voxel of an ``N`` box) to a wedge boundary plane are down-weighted linearly
            to 0 at the plane. Interpolated transforms are smeared across the wedge edge over about
            one Fourier voxel; without the margin that attenuation biases scores towards
            orientations that keep the reference's power away from the edges.

    Returns:
        ``(..., K)`` float32 in [0, 1]: 1 observed, 0 missing.
    """
    kz = k[..., 2]
    ke = _in_plane_component(k[..., 0], k[..., 1], tilt_axis)
    tmin = torch.as_tensor(tilt_min_deg, dtype=k.dtype, device=k.device)[..., None]
    tmax = torch.as_tensor(tilt_max_deg, dtype=k.dtype, device=k.device)[..., None]
    observed = _range_distance(kz, ke, tmin, tmax) <= _ANGLE_TOLERANCE_DEG
    on_axis = (kz.abs() <= 1e-7) & (ke.abs() <= 1e-7)
    weight = (observed | on_axis).to(torch.float32)
    if margin > 0:
        full = (tmax - tmin) >= 180.0 - _ANGLE_TOLERANCE_DEG
        # distance to the boundary plane of tilt t: |k . b(t)|, b(t) = cos t z_hat + sin t e_hat
        lo, hi = torch.deg2rad(tmin), torch.deg2rad(tmax)
        d_lo = (kz * torch.cos(lo) + ke * torch.sin(lo)).abs()
        d = torch.minimum(d_lo, (kz * torch.cos(hi) + ke * torch.sin(hi)).abs())
        ramp = (d / margin).clamp(0.0, 1.0)
        weight = torch.where(full, weight, weight * ramp)
    return weight


def tilt_series_weights(
    shape: Sequence[int],
    tilt_angles_deg: Sequence[float] | torch.Tensor,
    tilt_axis: str = "y",
    rfft: bool = True,
    slice_thickness_voxels: float = 1.0,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Sampling density of a discrete tilt series in Fourier space.

    Each tilt image fills the central plane perpendicular to its beam direction ``b(theta)``
    (module docstring). The plane is given a thickness through a tent kernel
    ``max(0, 1 - d / slice_thickness_voxels)`` where ``d`` is the distance of a Fourier voxel
    from the plane, measured in Fourier-voxel (DFT index) units; the weight of a voxel is the
    sum over all tilts. So a voxel lying on exactly one plane gets 1, DC and the tilt axis
    get ``n_tilts``, and regions no slice reaches (the missing wedge, and gaps between slices
    at high frequency beyond the Crowther limit) get 0. Useful to simulate a tilt series and
    to weight wedge-compensated averages.

    Parameters
    ----------
    shape
        Real-space volume shape ``(D, H, W)`` (zyx).
    tilt_angles_deg
        ``(..., n_tilts)`` tilt angles in degrees, each within [-90, 90]; leading dims are
        batch dims (e.g. one tilt scheme per particle).
    tilt_axis
        ``"y"`` (default) or ``"x"``.
    rfft
        rfft layout ``(D, H, W // 2 + 1)`` (default) or full fft ``(D, H, W)``, non-shifted.
    slice_thickness_voxels
        Half-width of the tent kernel, in Fourier voxels (~1).
    device
        Device of the result; defaults to the device of ``tilt_angles_deg`` if a tensor.

    Returns
    -------
    torch.Tensor
        float32 ``(..., D, H, W // 2 + 1)`` (or full layout) weights, Friedel symmetric.
    """
    angles = torch.as_tensor(tilt_angles_deg, dtype=torch.float64)
    if angles.ndim == 0 or angles.shape[-1] == 0:
        raise ValueError("tilt_angles_deg must hold at least one angle, as a (..., n_tilts) array.")
    if torch.isnan(angles).any() or (angles.abs() > 90).any():
        raise ValueError(f"tilt angles must lie within [-90, 90] degrees, got {_show(angles)}.")
    if slice_thickness_voxels <= 0:
        raise ValueError(f"slice_thickness_voxels must be positive, got {slice_thickness_voxels}.")
    device = _infer_device(device, tilt_angles_deg)
    theta = torch.deg2rad(angles).to(torch.float32).to(device)

    kz, ke = _beam_plane_components(shape, tilt_axis, rfft, device)
    n_z = float(shape[0])
    n_e = float(shape[2] if tilt_axis.lower() == "y" else shape[1])

    weights = torch.zeros((*theta.shape[:-1], *kz.shape), dtype=torch.float32, device=device)
    variants = _nyquist_variants(kz, ke)
    for i in range(theta.shape[-1]):
        t = theta[..., i][..., None, None, None]
        cos_t, sin_t = torch.cos(t), torch.sin(t)
        norm = torch.sqrt((cos_t / n_z) ** 2 + (sin_t / n_e) ** 2)
        # |k . b| (cycles/voxel) converted to a distance from the plane in DFT-index units;
        # Nyquist samples take the nearer of their two interpretations (Friedel symmetry).
        dist = torch.stack([(z * cos_t + e * sin_t).abs() for z, e in variants]).amin(0) / norm
        weights = weights + torch.clamp(1.0 - dist / slice_thickness_voxels, min=0.0)
    return weights


def _range_distance(kz: torch.Tensor, ke: torch.Tensor, tmin: torch.Tensor, tmax: torch.Tensor) -> torch.Tensor:
    """Angular distance (degrees, modulo 180) from the plane tilt of each voxel to [tmin, tmax]."""
    phi = torch.rad2deg(torch.atan2(-kz, ke))
    phi = torch.remainder(phi + 90.0, 180.0) - 90.0  # tilt of the plane containing k, in [-90, 90)
    dist = None
    for shift in (-180.0, 0.0, 180.0):
        p = phi + shift
        d = torch.clamp(torch.maximum(tmin - p, p - tmax), min=0.0)
        dist = d if dist is None else torch.minimum(dist, d)
    on_axis = (kz == 0) & (ke == 0)  # the tilt axis (and DC) lies on every plane
    return torch.where(on_axis, torch.zeros_like(dist), dist)


def _nyquist_variants(kz: torch.Tensor, ke: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(kz, ke) plus the versions with the sign of Nyquist (|k| = 0.5) components flipped."""
    variants = [(kz, ke)]
    nyq_z, nyq_e = kz.abs() == 0.5, ke.abs() == 0.5
    if nyq_z.any():
        variants.append((torch.where(nyq_z, -kz, kz), ke))
    if nyq_e.any():
        variants.append((kz, torch.where(nyq_e, -ke, ke)))
    return variants


def _beam_plane_components(
    shape: Sequence[int], tilt_axis: str, rfft: bool, device
) -> tuple[torch.Tensor, torch.Tensor]:
    """(kz, ke) grids: beam-axis frequency and the in-plane component ``k . e_hat``."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3:
        raise ValueError(f"shape must be a volume shape (D, H, W), got {shape}.")
    grid = fftfreq_grid(shape, rfft=rfft, device=device)
    return grid[..., 0], _in_plane_component(grid[..., 2], grid[..., 1], tilt_axis)


def _in_plane_component(kx: torch.Tensor, ky: torch.Tensor, tilt_axis: str) -> torch.Tensor:
    """``k . e_hat``: the in-plane direction the beam turns towards (``kx`` for tilt axis y, ``-ky`` for x)."""
    axis = str(tilt_axis).lower()
    if axis not in ("x", "y"):
        raise ValueError(f"tilt_axis must be 'y' or 'x', got {tilt_axis!r}.")
    return kx if axis == "y" else -ky


def _infer_device(device, *values):
    if device is not None:
        return torch.device(device)
    for v in values:
        if isinstance(v, torch.Tensor):
            return v.device
    return torch.device("cpu")


def _show(t: torch.Tensor) -> str:
    if t.numel() == 1:
        return f"{t.item():g}"
    flat = t.flatten()
    head = ", ".join(f"{v:g}" for v in flat[:6].tolist())
    return f"[{head}{', ...' if flat.numel() > 6 else ''}] (shape {tuple(t.shape)})"
