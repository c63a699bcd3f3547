"""Scores of a subdivision against ground truth: label agreement and map agreement.

- :func:`clustering_scores`: adjusted Rand index, normalised mutual information, and for each
  true class the cluster holding most of its members with that cluster's purity (fraction of the
  cluster from the class) and the class's recall (fraction of the class in that cluster).
- :func:`map_agreement`: a cluster average against a true map: the map is rotated and shifted
  onto the average with the alignment engine (:mod:`cryomine_core.align`), then compared by the
  Pearson correlation of both low-passed to ``resolution`` Å inside a soft sphere, and by FSC.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from cryomine_core.errors import CryomineError


def clustering_scores(true: Sequence, pred: Sequence[int], names: Sequence[str] | None = None) -> dict:
    """Compare cluster labels ``pred (N,)`` with true classes ``true (N,)`` (any hashable values).

    Returns ``{"ari", "nmi", "n", "n_classes", "n_clusters", "overall_purity", "per_class"}`` where
    ``per_class[name] = {"n", "cluster", "purity", "recall"}``: ``cluster`` is the (0-based, as
    in ``pred``) cluster holding most of the class, ``purity`` the fraction of that cluster from
    the class, ``recall`` the fraction of the class in that cluster. ``overall_purity`` is the
    fraction of items in the majority class of their cluster.
    """
    t = np.asarray(true)
    p = np.asarray(pred)
    if t.shape != p.shape or t.ndim != 1:
        raise CryomineError(f"true and predicted labels differ in shape ({t.shape} vs {p.shape}).")
    if t.size == 0:
        raise CryomineError("no labels to compare: the set is empty.")
    classes, ti = np.unique(t, return_inverse=True)
    clusters, pi = np.unique(p, return_inverse=True)
    table = np.zeros((len(classes), len(clusters)), dtype=np.int64)
    np.add.at(table, (ti, pi), 1)
    per_class = {}
    for c, cls in enumerate(classes):
        j = int(table[c].argmax())
        inter = int(table[c, j])
        key = str(names[int(cls)]) if names is not None else str(cls)
        per_class[key] = {"n": int(table[c].sum()), "cluster": int(clusters[j]),
                          "purity": inter / max(int(table[:, j].sum()), 1),
                          "recall": inter / max(int(table[c].sum()), 1)}
    return {"ari": float(adjusted_rand_score(t, p)), "nmi": float(normalized_mutual_info_score(t, p)),
            "n": int(t.size), "n_classes": int(len(classes)), "n_clusters": int(len(clusters)),
            "overall_purity": float(table.max(0).sum() / t.size), "per_class": per_class}


def pearson(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    w = mask / mask.sum()
    a = a - (a * w).sum()
    b = b - (b * w).sum()
    den = torch.sqrt((w * a * a).sum() * (w * b * b).sum())
    return float((w * a * b).sum() / den) if float(den) > 0 else float("nan")


def map_agreement(average: torch.Tensor, true_map: torch.Tensor, voxel_size: float, *, resolution: float = 30.0,
                  angular_step: float = 15.0, max_shift: float | None = None, contrast: str = "auto") -> dict:
    """Agreement of a cluster ``average (N, N, N)`` with a ``true_map (N, N, N)`` (any pose).

    The true map is aligned to the average (global search of ``angular_step`` degrees, shifts up
    to ``max_shift`` voxels, default ``N / 8``; frequencies up to ``resolution``) and resampled
    in the average's frame; both are then low-passed to ``resolution`` Å. ``contrast``:
    ``'same'``, ``'inverted'`` (subtomograms show density dark, maps bright: the map is negated),
    or ``'auto'`` (both tried, the better alignment score kept).

    Returns ``{"correlation": Pearson correlation at resolution (soft sphere), "fsc_05_A":
    resolution (Å) where the FSC of the aligned pair first falls below 0.5, "align_score",
    "inverted": whether the map was negated, "aligned_map": the (negated when inverted) true map
    rotated and shifted into the average's frame (N, N, N)}``.
    """
    if contrast not in ("auto", "same", "inverted"):
        raise CryomineError(f"contrast '{contrast}': use auto, same or inverted.")
    if contrast == "auto":
        tries = [map_agreement(average, true_map, voxel_size, resolution=resolution, angular_step=angular_step,
                               max_shift=max_shift, contrast=c) for c in ("same", "inverted")]
        return max(tries, key=lambda r: r["align_score"])
    from cryomine_core.align.average import average_particles
    from cryomine_core.align.reference import SearchReference
    from cryomine_core.align.scoring import soft_sphere_mask
    from cryomine_core.align.search import SearchSettings, align_particles
    from cryomine_core.fourier.filters import lowpass
    from cryomine_core.fourier.fsc import fsc

    if average.shape != true_map.shape or average.ndim != 3:
        raise CryomineError(f"average {tuple(average.shape)} and true map {tuple(true_map.shape)} must be volumes "
                            "of one box.")
    n = int(average.shape[-1])
    dev = average.device
    f = float(min(0.45, voxel_size / resolution))
    settings = SearchSettings(angular_step_deg=angular_step, max_shift_voxels=float(max_shift or n / 8),
                              f_max=max(f, 0.05), coarse_f_max=max(min(f, 0.2), 0.05), final_step_deg=1.0)
    mask = soft_sphere_mask(n, device=dev)
    ref = SearchReference(average.float(), mask=mask)
    tilt = torch.tensor([[-90.0, 90.0]], device=dev)
    truth = true_map.float().to(dev)[None] * (-1.0 if contrast == "inverted" else 1.0)
    res = align_particles(truth, tilt, ref, settings, batch_size=1)
    moved, _ = average_particles(truth, res.rotations, res.shifts, tilt)
    a = lowpass(average.float(), resolution, voxel_size)
    b = lowpass(moved[0], resolution, voxel_size)
    curve = fsc(average.float() * mask, moved[0] * mask)
    shells = torch.arange(curve.shape[-1], device=curve.device, dtype=torch.float32) / n
    below = torch.nonzero(curve[1:] < 0.5)
    fsc05 = float(voxel_size / shells[1 + int(below[0])]) if below.numel() else float(2 * voxel_size)
    return {"correlation": pearson(a, b, mask), "fsc_05_A": fsc05, "align_score": float(res.scores[0]),
            "inverted": contrast == "inverted", "aligned_map": moved[0]}
