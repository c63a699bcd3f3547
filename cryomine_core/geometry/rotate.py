"""Apply a pose to a volume: real-space rotation + shift, and Fourier (sub-voxel) shifts.

Volumes are ``(..., D, H, W)`` tensors indexed ``[z, y, x]``; rotations are canonical
(``(..., 3, 3)``, active, acting on xyz) and shifts are ``(..., 3)`` xyz in voxels. The box centre
of an axis of length ``N`` is index ``N // 2``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._tensor import as_float_tensor, check_last_dims

__all__ = ["rotate_volume", "shift_volume_fourier"]

_MODES = {"linear": "bilinear", "trilinear": "bilinear", "nearest": "nearest"}


def rotate_volume(volume, rotation, shift=None, interpolation: str = "linear") -> torch.Tensor:
    """Rotate a volume about its box centre, then shift it: ``out(x) = volume(R^T (x - t))``.

    A feature at ``p`` (xyz, relative to the centre ``N // 2``) of ``volume`` lands at
    ``R p + t`` in the output, i.e. the output is the particle of pose ``(R, t)`` built from the
    reference ``volume``. Samples from outside the input are 0.

    Args:
        volume: ``(..., D, H, W)`` real tensor (zyx); each of D, H, W must be >= 2.
        rotation: ``(..., 3, 3)`` canonical rotation(s).
        shift: ``(..., 3)`` xyz shift(s) in voxels, or None.
        interpolation: ``'linear'`` (trilinear) or ``'nearest'``.

    Returns:
        ``(..., D, H, W)`` with the broadcast batch shape of the three inputs, in the volume's
        floating dtype and on its device.
    """
    if interpolation not in _MODES:
        raise ValueError(f"interpolation must be one of {sorted(_MODES)}, got {interpolation!r}")
    vol = as_float_tensor(volume)
    if vol.ndim < 3:
        raise ValueError(f"volume must have shape (..., D, H, W), got {tuple(vol.shape)}")
    d, h, w = vol.shape[-3:]
    if min(d, h, w) < 2:
        raise ValueError(f"every volume axis must have length >= 2, got {(d, h, w)}")
    rot = as_float_tensor(rotation, dtype=vol.dtype, device=vol.device)
    check_last_dims(rot, (3, 3), "rotation")
    if shift is None:
        t = torch.zeros(3, dtype=vol.dtype, device=vol.device)
    else:
        t = as_float_tensor(shift, dtype=vol.dtype, device=vol.device)
        check_last_dims(t, (3,), "shift")

    batch = torch.broadcast_shapes(vol.shape[:-3], rot.shape[:-2], t.shape[:-1])
    n = math.prod(batch)
    vol_b = vol.expand(*batch, d, h, w).reshape(n, 1, d, h, w)
    rot_b = rot.expand(*batch, 3, 3).reshape(n, 3, 3)
    t_b = t.expand(*batch, 3).reshape(n, 1, 3)

    sizes_xyz = torch.tensor([w, h, d], dtype=vol.dtype, device=vol.device)
    centre_xyz = torch.div(sizes_xyz, 2, rounding_mode="floor")
    zz, yy, xx = torch.meshgrid(
        *(torch.arange(s, dtype=vol.dtype, device=vol.device) for s in (d, h, w)), indexing="ij"
    )
    out_xyz = torch.stack([xx, yy, zz], dim=-1).reshape(1, -1, 3) - centre_xyz  # (1, P, 3)
    # Row-vector form of R^T (x - t): (x - t)^T R.
    src_xyz = (out_xyz - t_b) @ rot_b + centre_xyz  # (n, P, 3) input indices, xyz
    # grid_sample with align_corners=True: -1 and +1 are the centres of the first/last voxels;
    # the last grid dimension is ordered (x, y, z) = (W, H, D).
    grid = (2.0 * src_xyz / (sizes_xyz - 1) - 1.0).reshape(n, d, h, w, 3)
    out = F.grid_sample(vol_b, grid, mode=_MODES[interpolation], padding_mode="zeros", align_corners=True)
    return out.reshape(*batch, d, h, w)


def shift_volume_fourier(volume, shift) -> torch.Tensor:
    """Shift a volume by a (sub-)voxel amount with a Fourier phase ramp: ``out(x) = volume(x - t)``.

    The shift is circular (what leaves one face re-enters at the opposite one). Integer shifts
    equal ``torch.roll``; non-integer shifts are band-limited (sinc) interpolation.

    Args:
        volume: ``(..., D, H, W)`` real tensor (zyx).
        shift: ``(..., 3)`` xyz shift in voxels.

    Returns:
        ``(..., D, H, W)`` real tensor (broadcast batch shape).
    """
    vol = as_float_tensor(volume)
    if vol.ndim < 3:
        raise ValueError(f"volume must have shape (..., D, H, W), got {tuple(vol.shape)}")
    t = as_float_tensor(shift, dtype=vol.dtype, device=vol.device)
    check_last_dims(t, (3,), "shift")
    d, h, w = vol.shape[-3:]
    kz = torch.fft.fftfreq(d, dtype=vol.dtype, device=vol.device)[:, None, None]
    ky = torch.fft.fftfreq(h, dtype=vol.dtype, device=vol.device)[None, :, None]
    kx = torch.fft.rfftfreq(w, dtype=vol.dtype, device=vol.device)[None, None, :]
    tx, ty, tz = (t[..., i, None, None, None] for i in range(3))
    phase = -2.0 * math.pi * (kx * tx + ky * ty + kz * tz)
    spectrum = torch.fft.rfftn(vol, dim=(-3, -2, -1))
    return torch.fft.irfftn(spectrum * torch.polar(torch.ones_like(phase), phase), s=(d, h, w), dim=(-3, -2, -1))
