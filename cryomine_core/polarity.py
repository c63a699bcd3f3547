"""Contrast of a set of subtomograms: is the protein darker or brighter than the solvent around it?

Raw tomograms (CTF-affected, not inverted) show protein dark; maps from the EMDB or a simulator's
ground truth show it bright. Mixing the two (a bright reference against dark particles, a model
trained on bright data applied to dark data) gives plausible-looking wrong results, so
``cryomine table check`` reports the set's contrast.

The estimate needs no reference: subtomograms are picked and extracted *around* a particle, so
the density near the box centre is the particle's and the density near the box edge mostly the
solvent's. For each subtomogram (z-scored, smoothed with a 1-voxel Gaussian against the noise)
the mean inside a central sphere of radius ``box / 4`` is compared with the mean of the shell
between ``box / 3`` and ``box / 2``. ``bright`` when the centre is higher in at least
:data:`MIN_FRACTION` of the sample and a one-sided sign test gives ``p <= MAX_P``, ``dark`` for the
same the other way round, ``unclear`` otherwise (noise, particles off-centre, boxes full of
protein).

A whole tomogram (:func:`tomogram_polarity`, used by segmentation) has no box centre; there the sign
of the skewness of its density, binned by 2 and smoothed with a 1-voxel Gaussian, tells: protein
takes a minority of the volume and pulls the histogram's tail its way. On simulated crowded
tomograms at SNR 0.1 (12 Å voxels) it was -1.6 with the CTF (dark protein), +1.7 without (bright),
and within +-0.04 for noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

__all__ = ["BRIGHT", "DARK", "UNCLEAR", "MAX_P", "MIN_FRACTION", "MIN_SKEWNESS", "set_polarity", "tomogram_polarity"]

BRIGHT, DARK, UNCLEAR = "bright", "dark", "unclear"
#: least share of the sample that must agree on the sign
MIN_FRACTION = 0.7
#: largest one-sided sign-test p-value for a verdict
MAX_P = 0.01
#: smallest |skewness| of a smoothed tomogram for a verdict (noise alone: below 0.04)
MIN_SKEWNESS = 0.2


def _sign_test_p(wins: int, n: int) -> float:
    """P(X >= wins) for X ~ Binomial(n, 1/2)."""
    return float(sum(math.comb(n, k) for k in range(wins, n + 1)) / 2.0 ** n) if n else 1.0


def _centre_minus_edge(volumes: torch.Tensor) -> torch.Tensor:
    """``(B,)`` mean of the central sphere minus mean of the outer shell, z-scored and smoothed volumes."""
    b, d, h, w = volumes.shape
    v = volumes.to(torch.float32)
    v = (v - v.mean(dim=(-3, -2, -1), keepdim=True)) / v.std(dim=(-3, -2, -1), keepdim=True).clamp_min(1e-6)
    v = torch.from_numpy(gaussian_filter(v.cpu().numpy(), sigma=(0, 1, 1, 1), mode="nearest"))  # against noise
    zz, yy, xx = torch.meshgrid(*(torch.arange(n, dtype=torch.float32) - n // 2 for n in (d, h, w)), indexing="ij")
    r = torch.sqrt(zz ** 2 + yy ** 2 + xx ** 2)
    half = min(d, h, w) / 2.0
    centre, edge = r <= half / 2.0, (r >= 2.0 * half / 3.0) & (r < half)
    return v[:, centre].mean(dim=1) - v[:, edge].mean(dim=1)


def set_polarity(volumes: Sequence[np.ndarray] | torch.Tensor) -> dict:
    """The contrast of subtomograms ``(B, Z, Y, X)`` (a sample of a set; at least 8 for a verdict).

    Returns ``{"contrast": 'bright'|'dark'|'unclear', "n": B, "centre_brighter": count,
    "fraction": share agreeing with the verdict's sign, "p_value": one-sided sign test,
    "median_difference": median centre-minus-edge difference in standard deviations}``.
    """
    vols = volumes if isinstance(volumes, torch.Tensor) else torch.as_tensor(np.stack([np.asarray(v) for v in volumes]))
    if vols.dim() != 4 or vols.shape[0] == 0:
        raise ValueError(f"volumes must be a non-empty (B, Z, Y, X) stack, got {tuple(vols.shape)}")
    diff = _centre_minus_edge(vols)
    n = int(diff.numel())
    brighter = int((diff > 0).sum())
    darker = int((diff < 0).sum())
    p_bright, p_dark = _sign_test_p(brighter, n), _sign_test_p(darker, n)
    verdict, share, p = UNCLEAR, max(brighter, darker) / n, min(p_bright, p_dark)
    if brighter / n >= MIN_FRACTION and p_bright <= MAX_P:
        verdict = BRIGHT
    elif darker / n >= MIN_FRACTION and p_dark <= MAX_P:
        verdict = DARK
    return {"contrast": verdict, "n": n, "centre_brighter": brighter, "fraction": round(share, 4),
            "p_value": p, "median_difference": round(float(diff.median()), 4)}


def tomogram_polarity(volume: np.ndarray) -> dict:
    """The contrast of a tomogram ``(Z, Y, X)``: ``{"contrast": 'bright'|'dark'|'unclear', "skewness": s}``."""
    v = np.asarray(volume, dtype=np.float32)
    z, y, x = (d - d % 2 for d in v.shape)
    if min(z, y, x) < 4:
        return {"contrast": UNCLEAR, "skewness": 0.0}
    binned = v[:z, :y, :x].reshape(z // 2, 2, y // 2, 2, x // 2, 2).mean(axis=(1, 3, 5))
    g = gaussian_filter(binned, 1.0).astype(np.float64).ravel()
    g -= g.mean()
    sd = g.std()
    skewness = float((g ** 3).mean() / sd ** 3) if sd > 0 else 0.0
    verdict = UNCLEAR if abs(skewness) < MIN_SKEWNESS else (BRIGHT if skewness > 0 else DARK)
    return {"contrast": verdict, "skewness": round(skewness, 4)}
