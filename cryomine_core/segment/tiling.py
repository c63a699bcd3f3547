"""Tiled inference over whole tomograms: overlap blending, bounded network memory, CPU or GPU.

A tomogram ``(Z, Y, X)`` is cut into overlapping tiles of at most ``tile`` voxels per axis. Each
tile is run through the network with a context ``margin`` on every side that is inside the
volume; the margin's outputs are thrown away, and neighbouring tiles' kept regions overlap by
``blend`` voxels, where they are averaged with linear ramp weights (so no seam is visible even
when the margin is short). Tile corners lie on the network's pooling grid (multiples of
``2 ** depth``).

Exactness: when ``margin >= network.receptive_radius`` (the default), the kept output of every
tile equals the output of one pass over the whole volume at the same voxels (the network has no
input-dependent normalisation and its padding is placed identically; see :mod:`.network`), so the
blended result equals whole-volume inference up to float rounding.

Memory: the network sees one tile at a time (its activations scale with ``tile ** 3``); the
accumulators hold ``C + 1`` float32 values per voxel of the tomogram on the CPU (the tomogram
itself stays on the CPU; only tiles move to the device).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

log = logging.getLogger("cryomine")

__all__ = ["tile_starts", "predict_probabilities", "normalise_tomogram"]


def normalise_tomogram(volume: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Zero mean, unit standard deviation over the whole tomogram (float32); returns the array and the
    mean and standard deviation used. The same statistics serve every tile, so tiles match the whole."""
    vol = np.asarray(volume, dtype=np.float32)
    mean = float(vol.mean(dtype=np.float64))
    std = float(vol.std(dtype=np.float64))
    return (vol - mean) / max(std, 1e-6), mean, std


def _ceil_to(v: int, m: int) -> int:
    return int(math.ceil(v / m) * m)


def tile_starts(size: int, tile: int, margin: int, blend: int, multiple: int) -> list[tuple[int, int, int, int]]:
    """Tiles along one axis of ``size`` voxels.

    Returns ``(start, stop, keep_start, keep_stop)`` per tile: the network input is
    ``[start, stop)`` and the output kept is ``[keep_start, keep_stop)``. Starts are multiples of
    ``multiple``; kept regions cover ``[0, size)`` and consecutive ones overlap by at least ``blend``.
    """
    if size <= tile:
        return [(0, size, 0, size)]
    core = tile - 2 * margin - blend
    if core < multiple:
        raise ValueError(f"tile {tile} is too small for margin {margin} and blend {blend}: increase the tile or "
                         "lower the margin")
    step = max(multiple, (core // multiple) * multiple)
    out = []
    keep_lo = 0
    start = 0
    while True:
        if start + tile >= size - multiple:  # final tile: runs to the end (up to tile + multiple - 1 voxels)
            out.append((start, size, keep_lo, size))
            break
        stop = start + tile
        out.append((start, stop, keep_lo, stop - margin))
        nxt = start + step
        if nxt + tile >= size:  # make the next one final, flush with the end and on the grid
            nxt = max((size - tile) // multiple * multiple, start + multiple)
        keep_lo = nxt + margin
        start = nxt
    return out


def _ramp(n: int, lo_overlap: int, hi_overlap: int) -> np.ndarray:
    """Weights along one axis of a kept region: linear ramps over the overlaps, 1 inside."""
    w = np.ones(n, dtype=np.float32)
    if lo_overlap > 0:
        w[:lo_overlap] = np.minimum(w[:lo_overlap], (np.arange(lo_overlap) + 1.0) / (lo_overlap + 1.0))
    if hi_overlap > 0:
        w[n - hi_overlap:] = np.minimum(w[n - hi_overlap:], (np.arange(hi_overlap, 0, -1)) / (hi_overlap + 1.0))
    return w


@torch.no_grad()
def predict_probabilities(model: nn.Module, volume: np.ndarray, *, tile: int | Sequence[int] = 160,
                          margin: int | None = None, blend: int = 8, device: torch.device | str = "cpu",
                          amp: bool | None = None, normalise: bool = True) -> np.ndarray:
    """Softmax probabilities ``(C, Z, Y, X)`` float32 (CPU) of a tomogram ``(Z, Y, X)``.

    Args:
        model: a :class:`~cryomine_core.segment.network.UNet3D` (or any network with ``multiple``
            and ``receptive_radius``); put in eval mode here.
        volume: the tomogram (zyx, any real dtype).
        tile: largest network input edge per axis (int or ``(z, y, x)``); bounds network memory.
        margin: context voxels discarded on each inner tile side (default: the receptive radius,
            which makes the result equal whole-volume inference).
        blend: extra overlap (voxels) of kept regions, averaged with linear ramps.
        device: where the network runs.
        amp: bfloat16/float16 autocast on CUDA (default: on with CUDA); off on the CPU.
        normalise: z-score the tomogram with its global mean/std first.
    """
    device = torch.device(device)
    model.eval().to(device)
    vol = normalise_tomogram(volume)[0] if normalise else np.asarray(volume, dtype=np.float32)
    mult = int(getattr(model, "multiple", 1))
    margin = int(getattr(model, "receptive_radius", 0)) if margin is None else int(margin)
    margin = _ceil_to(margin, mult)
    tiles = (int(tile),) * 3 if np.isscalar(tile) else tuple(int(t) for t in tile)
    tiles = tuple(max(_ceil_to(t, mult), 2 * margin + blend + mult) for t in tiles)
    use_amp = (device.type == "cuda") if amp is None else bool(amp and device.type == "cuda")
    dtype = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float16
    axes = [tile_starts(n, t, margin, blend, mult) for n, t in zip(vol.shape, tiles)]
    n_classes = int(model.n_classes)
    acc = np.zeros((n_classes, *vol.shape), dtype=np.float32)
    wsum = np.zeros(vol.shape, dtype=np.float32)
    t0 = time.perf_counter()
    n_tiles = int(np.prod([len(a) for a in axes]))
    done = 0
    for tz in axes[0]:
        for ty in axes[1]:
            for tx in axes[2]:
                spans = (tz, ty, tx)
                x = torch.from_numpy(np.ascontiguousarray(vol[tz[0]:tz[1], ty[0]:ty[1], tx[0]:tx[1]]))
                x = x.to(device)[None, None]
                with torch.autocast(device.type, dtype=dtype, enabled=use_amp):
                    logits = model(x)
                prob = torch.softmax(logits.float(), dim=1)[0]
                keep = tuple(slice(s[2] - s[0], s[3] - s[0]) for s in spans)
                prob = prob[(slice(None), *keep)].cpu().numpy()
                ws = []
                for ax, s in enumerate(spans):
                    prev = [a for a in axes[ax] if a[2] < s[2]]
                    nxt = [a for a in axes[ax] if a[2] > s[2]]
                    lo = prev[-1][3] - s[2] if prev else 0
                    hi = s[3] - nxt[0][2] if nxt else 0
                    n = s[3] - s[2]
                    ws.append(_ramp(n, min(max(lo, 0), n), min(max(hi, 0), n)))
                w = ws[0][:, None, None] * ws[1][None, :, None] * ws[2][None, None, :]
                dst = tuple(slice(s[2], s[3]) for s in spans)
                acc[(slice(None), *dst)] += prob * w
                wsum[dst] += w
                done += 1
                if done == n_tiles or done % 20 == 0:
                    log.debug("tile %d/%d (%.1f s)", done, n_tiles, time.perf_counter() - t0)
    acc /= np.maximum(wsum, 1e-12)
    return acc
