"""The cryo-ET picking score of the CZII challenge: per-class F-beta (beta = 4), weighted over classes.

The CZ Imaging Institute's CryoET Object Identification challenge (Kaggle, 2024-2025; the data
layout of the CZ cryoET data portal and copick) scores particle picks as follows (figures from
its evaluation description):

- a pick of class ``c`` is close to a true particle of class ``c`` when their centres are at most
  ``distance_fraction * radius_c`` apart (``distance_fraction`` = 0.5, ``radius_c`` the class's
  particle radius);
- per class, over all tomograms: ``TP`` = true particles with at least one close pick (a particle
  counts once however many picks land on it), ``FP`` = picks - ``TP``, ``FN`` = true particles -
  ``TP``; precision ``P = TP / (TP + FP)``, recall ``R = TP / (TP + FN)``;
- ``F_beta = (1 + beta^2) P R / (beta^2 P + R)`` with ``beta = 4``: recall weighs 16 times as much as
  precision (a missed particle costs more than a false pick);
- the score is the weighted mean of the per-class ``F_beta`` (the challenge weighted the small,
  hard classes 2 and the others 1; a class of weight 0 is reported and not scored).

Coordinates are in the same unit as the radii (Å, or voxels with radii in voxels).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy.spatial import cKDTree

__all__ = ["BETA", "DISTANCE_FRACTION", "close_counts", "fbeta", "picking_score"]

BETA = 4.0
DISTANCE_FRACTION = 0.5


def close_counts(true_xyz, picks_xyz, threshold: float) -> tuple[int, int, int]:
    """``(TP, FP, FN)`` of picks against true centres of one class in one tomogram.

    Args:
        true_xyz: ``(n, 3)`` true centres.
        picks_xyz: ``(m, 3)`` picked centres.
        threshold: the largest centre distance that counts as found (same unit).
    """
    truth = np.asarray(true_xyz, dtype=np.float64).reshape(-1, 3)
    picks = np.asarray(picks_xyz, dtype=np.float64).reshape(-1, 3)
    if not threshold > 0:
        raise ValueError(f"threshold {threshold!r}: give a positive distance")
    if len(truth) == 0 or len(picks) == 0:
        return 0, len(picks), len(truth)
    near = cKDTree(picks).query_ball_tree(cKDTree(truth), r=float(threshold))
    found = {j for hits in near for j in hits}
    return len(found), len(picks) - len(found), len(truth) - len(found)


def fbeta(tp: int, fp: int, fn: int, beta: float = BETA) -> dict:
    """Precision, recall and F-beta of counts (0 where undefined, as the challenge scores them)."""
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    b2 = beta * beta
    score = (1 + b2) * precision * recall / (b2 * precision + recall) if precision + recall else 0.0
    return {"tp": int(tp), "fp": int(fp), "fn": int(fn), "precision": precision, "recall": recall,
            "fbeta": score}


def picking_score(truth: Mapping[str, Sequence], picks: Mapping[str, Sequence], radius: Mapping[str, float], *,
                  weights: Mapping[str, float] | None = None, beta: float = BETA,
                  distance_fraction: float = DISTANCE_FRACTION) -> dict:
    """The challenge's score of picks against the truth, over several tomograms.

    Args:
        truth: class name -> a list with, per tomogram, the ``(n, 3)`` true centres.
        picks: class name -> the same list of ``(m, 3)`` picked centres (a class may be absent:
            no picks; a list shorter than the truth's is refused).
        radius: class name -> particle radius (the unit of the coordinates).
        weights: class name -> weight of its F-beta in the score (default 1 each).
        beta: recall's weight (4 in the challenge).
        distance_fraction: a pick is close within this fraction of the radius (0.5).

    Returns:
        ``{"per_class": {name: tp/fp/fn/precision/recall/fbeta/weight}, "score": weighted mean F-beta,
        "beta": beta, "distance_fraction": ...}``. Classes picked but absent from the truth count
        their picks as false positives with an F-beta of 0.
    """
    names = list(dict.fromkeys([*truth, *picks]))
    missing = [n for n in names if n not in radius]
    if missing:
        raise ValueError(f"no particle radius for class(es) {missing}")
    per_class, total, weight_sum = {}, 0.0, 0.0
    for name in names:
        true_lists = list(truth.get(name, []))
        pick_lists = list(picks.get(name, []))
        n_tomos = max(len(true_lists), len(pick_lists))
        if true_lists and pick_lists and len(pick_lists) != len(true_lists):
            raise ValueError(f"class {name}: picks for {len(pick_lists)} tomograms, truth for {len(true_lists)}")
        counts = np.zeros(3, dtype=np.int64)
        for k in range(n_tomos):
            t = true_lists[k] if true_lists else np.zeros((0, 3))
            p = pick_lists[k] if pick_lists else np.zeros((0, 3))
            counts += close_counts(t, p, distance_fraction * float(radius[name]))
        w = 1.0 if weights is None else float(weights.get(name, 1.0))
        per_class[name] = {**fbeta(*counts, beta=beta), "weight": w}
        total += w * per_class[name]["fbeta"]
        weight_sum += w
    return {"per_class": per_class, "score": total / weight_sum if weight_sum else 0.0, "beta": beta,
            "distance_fraction": distance_fraction}
