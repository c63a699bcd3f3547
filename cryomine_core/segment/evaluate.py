"""Evaluation against ground truth: voxel Dice per class, object-level precision / recall / F1.

Voxel level: ``Dice_c = 2 |P_c & T_c| / (|P_c| + |T_c|)`` for every class ``c`` (``None`` when the
class is absent from both maps).

Object level (SHREC-style): a predicted object *hits* the true particle whose occupancy contains
its centre (rounded to the nearest voxel). The occupancy of a particle is its voxels in the true
instance map **with its enclosed cavities filled** (:func:`fill_cavities`; ``fill=False``
gives the unfilled definition used before), optionally dilated by ``dilate`` voxels. A hollow
complex such as the 20S proteasome has its centre in its cavity: without the filling, even the
true coordinates miss their own particle. Predictions are taken by decreasing confidence and
each true particle is matched at most once, so a second prediction in the same particle is a
false positive.

- *localisation* (class-agnostic): TP = predictions that hit a not-yet-matched particle;
  precision = TP / predictions, recall = matched particles / true particles.
- *per class* ``c``: the same with only the predictions of class ``c`` and the particles of
  class ``c``; ``overall`` sums TP, FP, FN over classes (micro average).
- *classification accuracy*: among localisation matches, the fraction whose predicted class is
  the particle's class.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import ndimage

from cryomine_core.segment.grouping import padded_box

__all__ = ["dice_per_class", "prf", "match_objects", "dilate_instances", "fill_cavities", "recall_by_orientation"]


def dice_per_class(pred: np.ndarray, true: np.ndarray, class_names: Mapping[int, str],
                   mask: np.ndarray | None = None) -> dict[str, float | None]:
    """Voxel Dice of every class index in ``class_names`` (background included if listed)."""
    if pred.shape != true.shape:
        raise ValueError(f"prediction {pred.shape} and truth {true.shape} differ in shape")
    if mask is not None:
        pred, true = pred[mask], true[mask]
    out: dict[str, float | None] = {}
    for c, name in class_names.items():
        p, t = pred == c, true == c
        den = int(p.sum()) + int(t.sum())
        out[str(name)] = None if den == 0 else float(2.0 * np.count_nonzero(p & t) / den)
    return out


def recall_by_orientation(pred: np.ndarray, true: np.ndarray, bins=(0.0, 0.5, 0.866, 1.0),
                          sigma: float = 2.0) -> list[dict]:
    """Recall of a thin class (a membrane) binned by the orientation of its surface, a diagnostic of the
    missing wedge.

    ``pred``, ``true``: boolean ``(Z, Y, X)`` masks. The surface normal at a true voxel is the gradient
    of the true mask smoothed with a Gaussian of ``sigma`` voxels; ``|cos|`` of its angle to z (the
    beam) is binned by ``bins``. With a +-60 degree tilt range, normals within 30 degrees of the beam
    (``|cos| > 0.866``) lie in the missing wedge: such membrane is absent from the data.
    Returns one ``{"cos_min", "cos_max", "true_voxels", "fraction", "recall"}`` per bin.
    """
    true = np.asarray(true, dtype=bool)
    g = np.gradient(ndimage.gaussian_filter(true.astype(np.float32), sigma))
    norm = np.sqrt(g[0] ** 2 + g[1] ** 2 + g[2] ** 2)
    cos = np.abs(g[0]) / np.maximum(norm, 1e-12)
    n_all = max(int(true.sum()), 1)
    out = []
    for k, (lo, hi) in enumerate(zip(bins[:-1], bins[1:])):
        top = cos <= hi if k == len(bins) - 2 else cos < hi
        sel = true & (cos >= lo) & top
        n = int(sel.sum())
        out.append({"cos_min": float(lo), "cos_max": float(hi), "true_voxels": n, "fraction": n / n_all,
                    "recall": (int(np.count_nonzero(pred[sel])) / n) if n else None})
    return out


def prf(tp: int, n_pred: int, n_true: int) -> dict:
    """Precision, recall and F1 from counts (``None`` where a denominator is 0)."""
    precision = tp / n_pred if n_pred else None
    recall = tp / n_true if n_true else None
    if precision is None or recall is None:
        f1 = None if (n_pred == 0 and n_true == 0) else 0.0
    else:
        f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return {"precision": precision, "recall": recall, "f1": f1, "tp": int(tp), "fp": int(n_pred - tp),
            "fn": int(n_true - tp), "n_predicted": int(n_pred), "n_true": int(n_true)}


def dilate_instances(instances: np.ndarray, voxels: int) -> np.ndarray:
    """Grow every particle's occupancy by ``voxels`` into the background (never into another particle)."""
    if voxels <= 0:
        return instances
    out = instances.copy()
    for _ in range(int(voxels)):
        grown = ndimage.grey_dilation(out, footprint=ndimage.generate_binary_structure(3, 1))
        out = np.where(out == 0, grown, out)
    return out


def fill_cavities(instances: np.ndarray) -> np.ndarray:
    """Fill every particle's enclosed cavities: background voxels that the particle's occupancy
    surrounds on all sides (3-D ``binary_fill_holes`` per particle, 6-connected background) take its
    id; voxels of other particles are left as they are. ``instances``: ``(Z, Y, X)`` int map."""
    inst = np.asarray(instances)
    out = inst.copy()
    for pid, bb in enumerate(ndimage.find_objects(inst), start=1):
        if bb is None:
            continue
        sl = padded_box(bb, inst.shape)
        mask = inst[sl] == pid
        filled = ndimage.binary_fill_holes(mask) & (out[sl] == 0)
        out[sl][filled] = pid
    return out


def match_objects(centres_xyz: np.ndarray, pred_classes: Sequence[int], scores: Sequence[float],
                  instances: np.ndarray, true_classes: Mapping[int, int], class_names: Mapping[int, str],
                  *, dilate: int = 0, fill: bool = True) -> dict:
    """Object-level figures of predictions against a true instance map.

    Args:
        centres_xyz: ``(n, 3)`` predicted centres, xyz voxels (0-based array indices).
        pred_classes: ``(n,)`` predicted class index of each.
        scores: ``(n,)`` confidences (higher first when matching).
        instances: ``(Z, Y, X)`` true instance map (0 background, ``i`` particle ``i``).
        true_classes: class index of every true particle id (particles absent from the map count
            as true particles all the same).
        class_names: class index -> name for the per-class figures.
        dilate: grow the true occupancies by this many voxels (after the filling).
        fill: fill the particles' enclosed cavities first (:func:`fill_cavities`).

    Returns:
        JSON-ready dict: ``localisation``, ``per_class`` (name -> precision/recall/f1/counts),
        ``overall`` (micro average over classes), ``classification_accuracy``, ``n_matched``.
    """
    occ = np.asarray(instances)
    occ = dilate_instances(fill_cavities(occ) if fill else occ, dilate)
    xyz = np.asarray(centres_xyz, dtype=np.float64).reshape(-1, 3)
    pc = np.asarray(pred_classes, dtype=np.int64).reshape(-1)
    order = np.argsort(-np.asarray(scores, dtype=np.float64).reshape(-1), kind="stable")
    zyx = np.clip(np.rint(xyz[:, ::-1]).astype(np.int64), 0, np.array(occ.shape) - 1)
    hit = occ[zyx[:, 0], zyx[:, 1], zyx[:, 2]] if len(xyz) else np.zeros(0, dtype=np.int64)
    tc = {int(k): int(v) for k, v in true_classes.items()}

    matched: dict[int, int] = {}  # particle id -> prediction index (class-agnostic)
    for i in order:
        pid = int(hit[i])
        if pid > 0 and pid in tc and pid not in matched:
            matched[pid] = int(i)
    loc = prf(len(matched), len(xyz), len(tc))
    correct = sum(1 for pid, i in matched.items() if pc[i] == tc[pid])
    per_class, tot = {}, [0, 0, 0]
    for c, name in class_names.items():
        n_true = sum(1 for v in tc.values() if v == c)
        taken: set[int] = set()
        for i in order:
            if pc[i] != c:
                continue
            pid = int(hit[i])
            if pid > 0 and tc.get(pid) == c and pid not in taken:
                taken.add(pid)
        n_pred = int(np.count_nonzero(pc == c))
        rec = prf(len(taken), n_pred, n_true)
        rec["localisation_recall"] = (sum(1 for pid in matched if tc[pid] == c) / n_true) if n_true else None
        per_class[str(name)] = rec
        tot[0] += len(taken)
        tot[1] += n_pred
        tot[2] += n_true
    return {"localisation": loc, "per_class": per_class, "overall": prf(*tot),
            "classification_accuracy": (correct / len(matched)) if matched else None, "n_matched": len(matched),
            "dilate": int(dilate), "fill_cavities": bool(fill)}
