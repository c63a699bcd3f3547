"""Grouping predicted object voxels into objects: connectivity, convexity, size.

1. Foreground = voxels whose class is one of the *object* classes (membrane-like "stuff" classes
   are left out); connected components (6-connectivity) are the candidate objects.
2. A component whose **solidity** (voxel volume over the volume of the convex hull of its voxel
   cubes) is below ``min_solidity`` is not convex: it is split by a **distance-transform
   watershed** (markers: plateaus of local maxima of the Euclidean distance to the background).
   Two neighbouring parts are merged back when the neck between them is thick: the largest
   distance value on their common boundary is at least ``neck_ratio`` times the smaller of their
   two peak distances. A dumbbell splits at its neck; a convex blob has one peak and stays whole.
   With ``expected_voxels`` (typical object volume per class, e.g. from the training labels), a
   component no larger than ``split_factor`` times its class's typical volume is never split,
   and parts smaller than ``min_part_fraction`` of it are merged into their best neighbour.
3. Objects outside ``[min_voxels, max_voxels]`` are dropped, and, with ``expected_voxels``, objects
   smaller than ``min_size_fraction`` times the typical volume of the class they are given
   (specks of noise voted into a large class are not that complex).
4. Per object: centre (voxel centroid, xyz voxels, 0-based array indices), volume (voxels),
   class (the object class with the largest mean probability over the object's voxels, or the
   majority of voxel labels when no probabilities are given) and confidence (that mean
   probability, or the majority fraction).

Arrays are zyx; coordinates in the returned records are xyz.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

__all__ = ["GroupingParams", "solidity", "split_component", "group_objects", "padded_box"]

_CORNERS = np.array([[i, j, k] for i in (-0.5, 0.5) for j in (-0.5, 0.5) for k in (-0.5, 0.5)])


@dataclass
class GroupingParams:
    """Settings of :func:`group_objects` (see the module docstring)."""

    min_solidity: float = 0.8
    neck_ratio: float = 0.7
    peak_radius: int = 2
    min_voxels: int = 8
    max_voxels: int | None = None
    split_factor: float = 1.4
    min_part_fraction: float = 0.25
    min_size_fraction: float = 0.1


def padded_box(box: tuple[slice, ...], shape: tuple[int, ...], pad: int = 1) -> tuple[slice, ...]:
    """``box`` (slices of :func:`scipy.ndimage.find_objects`) grown by ``pad`` voxels, clipped to ``shape``."""
    return tuple(slice(max(s.start - pad, 0), min(s.stop + pad, dim)) for s, dim in zip(box, shape))


def solidity(mask: np.ndarray) -> float:
    """Voxel count over the number of lattice points inside the convex hull of the voxel centres.

    1 for any digitally convex set (a voxelised ball or box), smaller when the shape has dents or
    necks (a dumbbell: ~0.6)."""
    n = int(mask.sum())
    if n == 0:
        return 0.0
    surface = mask & ~ndimage.binary_erosion(mask)
    pts = np.argwhere(surface).astype(np.float64)
    try:
        hull = ConvexHull(pts)
    except (QhullError, ValueError):  # flat or degenerate: convex by definition here
        return 1.0
    lo, hi = pts.min(axis=0).astype(int), pts.max(axis=0).astype(int)
    grid = np.stack(np.meshgrid(*[np.arange(a, b + 1) for a, b in zip(lo, hi)], indexing="ij"), -1).reshape(-1, 3)
    inside = np.ones(len(grid), dtype=bool)
    for eq in hull.equations:  # normal . p + offset <= 0 inside
        inside &= grid @ eq[:3] + eq[3] <= 1e-6
    return float(min(1.0, n / max(int(inside.sum()), 1)))


def _pair_saddles(parts: np.ndarray, dist: np.ndarray) -> dict[tuple[int, int], float]:
    """Largest ``min(dist[u], dist[v])`` over face-adjacent voxels ``u, v`` of two different parts."""
    out: dict[tuple[int, int], float] = {}
    for ax in range(3):
        a = np.moveaxis(parts, ax, 0)
        d = np.moveaxis(dist, ax, 0)
        la, lb = a[:-1], a[1:]
        sel = (la > 0) & (lb > 0) & (la != lb)
        if not sel.any():
            continue
        pa, pb = la[sel], lb[sel]
        val = np.minimum(d[:-1][sel], d[1:][sel])
        lo, hi = np.minimum(pa, pb), np.maximum(pa, pb)
        for i, j, v in zip(lo.tolist(), hi.tolist(), val.tolist()):
            if v > out.get((i, j), -1.0):
                out[(i, j)] = v
    return out


_CROSS = ndimage.generate_binary_structure(3, 1)


def _flood(markers: np.ndarray, dist: np.ndarray, mask: np.ndarray, step: float = 0.5) -> np.ndarray:
    """Watershed of ``-dist`` from ``markers`` inside ``mask``: flood level by level (``step`` voxels of
    distance), each level growing the labelled regions into the newly submerged voxels."""
    lab = markers.copy()
    levels = np.unique(np.floor(dist[mask] / step) * step)[::-1]
    for t in [*levels.tolist(), -1.0]:
        region = mask & (dist >= t)
        while True:
            grown = ndimage.grey_dilation(lab, footprint=_CROSS)
            new = region & (lab == 0) & (grown > 0)
            if not new.any():
                break
            lab[new] = grown[new]
    return np.where(mask, lab, 0).astype(np.int32)


def split_component(mask: np.ndarray, params: GroupingParams | None = None,
                    expected: float | None = None) -> np.ndarray:
    """Split one component (a boolean mask, ideally cropped with a 1-voxel border) into convex parts.

    Returns an int32 map of the same shape: 0 outside the mask, ``1..k`` the parts.
    """
    p = params or GroupingParams()
    dist = ndimage.distance_transform_edt(mask)
    size = 2 * int(p.peak_radius) + 1
    peaks = (dist == ndimage.maximum_filter(dist, size=size)) & mask & (dist >= 1.0)
    markers, n = ndimage.label(peaks, structure=np.ones((3, 3, 3)))
    if n <= 1:
        return mask.astype(np.int32)
    parts = _flood(markers.astype(np.int32), dist, mask)
    ids = [i for i in range(1, n + 1)]
    peak = {i: float(dist[parts == i].max()) if (parts == i).any() else 0.0 for i in ids}
    vol = {i: int((parts == i).sum()) for i in ids}
    saddles = _pair_saddles(parts, dist)
    min_part = (p.min_part_fraction * expected) if expected else 0.0

    def merge(a: int, b: int) -> None:  # b into a
        parts[parts == b] = a
        peak[a] = max(peak[a], peak.pop(b))
        vol[a] += vol.pop(b)
        for (i, j), v in list(saddles.items()):
            if b in (i, j):
                del saddles[(i, j)]
                other = j if i == b else i
                if other != a:
                    key = (min(a, other), max(a, other))
                    saddles[key] = max(saddles.get(key, -1.0), v)

    while saddles:
        # thick necks first; then parts too small to be an object on their own
        best, best_score = None, -1.0
        for (i, j), v in saddles.items():
            ratio = v / max(min(peak[i], peak[j]), 1e-9)
            small = min(vol[i], vol[j]) < min_part
            score = ratio + (10.0 if small else 0.0)
            if (ratio >= p.neck_ratio or small) and score > best_score:
                best, best_score = (i, j), score
        if best is None:
            break
        i, j = best
        keep, drop = (i, j) if vol[i] >= vol[j] else (j, i)
        merge(keep, drop)
    # relabel 1..k
    out = np.zeros_like(parts)
    for k, i in enumerate(sorted(vol), start=1):
        out[parts == i] = k
    return out


def group_objects(labels: np.ndarray, object_classes: Sequence[int], *, probabilities: np.ndarray | None = None,
                  params: GroupingParams | None = None, expected_voxels: Mapping[int, float] | None = None
                  ) -> tuple[np.ndarray, list[dict]]:
    """Group the voxels of ``object_classes`` in a class label map ``(Z, Y, X)`` into objects.

    Args:
        labels: class of every voxel (0 background).
        object_classes: class indices that form objects (e.g. all but background and membrane).
        probabilities: optional ``(C, Z, Y, X)`` class probabilities (class index = channel), used
            for the object's class and confidence.
        params: :class:`GroupingParams`.
        expected_voxels: typical object volume (voxels) per class index.

    Returns:
        ``(instances, objects)``: an int32 instance map (0 background, ``i`` = ``objects[i-1]``) and
        one dict per object with ``id``, ``x``, ``y``, ``z`` (centroid, voxels), ``voxels``,
        ``class_index``, ``confidence``, ``solidity`` (of the component it came from) and ``split``
        (whether that component was split).
    """
    p = params or GroupingParams()
    classes = np.asarray(sorted(int(c) for c in object_classes))
    expected_voxels = dict(expected_voxels or {})
    fg = np.isin(labels, classes)
    comps, n = ndimage.label(fg)
    instances = np.zeros(labels.shape, dtype=np.int32)
    objects: list[dict] = []
    boxes = ndimage.find_objects(comps)

    def vote(sl, region) -> tuple[int, float]:
        if probabilities is not None:
            means = np.array([probabilities[c][sl][region].mean() for c in classes])
            k = int(np.argmax(means))
            return int(classes[k]), float(means[k])
        counts = np.array([np.count_nonzero(labels[sl][region] == c) for c in classes])
        k = int(np.argmax(counts))
        return int(classes[k]), float(counts[k] / max(counts.sum(), 1))

    for lab, bb in enumerate(boxes, start=1):
        if bb is None:
            continue
        sl = padded_box(bb, labels.shape)
        mask = comps[sl] == lab
        n_vox = int(mask.sum())
        if n_vox < p.min_voxels:
            continue
        sol = solidity(mask)
        cls, _ = vote(sl, mask)
        expected = expected_voxels.get(cls)
        parts = None
        if sol < p.min_solidity and not (expected and n_vox <= p.split_factor * expected):
            parts = split_component(mask, p, expected)
            if parts.max() <= 1:
                parts = None
        regions = [mask] if parts is None else [parts == k for k in range(1, int(parts.max()) + 1)]
        for region in regions:
            nv = int(region.sum())
            if nv < p.min_voxels or (p.max_voxels is not None and nv > p.max_voxels):
                continue
            c, conf = vote(sl, region)
            if p.min_size_fraction > 0 and nv < p.min_size_fraction * expected_voxels.get(c, 0.0):
                continue
            centre = np.argwhere(region).mean(axis=0) + np.array([s.start for s in sl])
            oid = len(objects) + 1
            instances[sl][region] = oid
            objects.append({"id": oid, "x": float(centre[2]), "y": float(centre[1]), "z": float(centre[0]),
                            "voxels": nv, "class_index": c, "confidence": conf, "solidity": sol,
                            "split": parts is not None})
    return instances, objects
