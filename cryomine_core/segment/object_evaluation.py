"""Evaluation of found objects against ground truth (simulated tomograms): voxel Dice and object matching.

Run after :func:`cryomine_core.segment.objects.find_objects` on its output folder: the class
index map of every tomogram is recomputed from the same probability or label maps (arg-max, as
``find_objects`` does), the objects are read back from ``objects.star`` (in the order they were
found; with an object classifier, the voxel-vote class and confidence it kept in
``cmVoxelClassName``/``cmVoxelScore``), and the figures of :mod:`.evaluate` are added to the
folder's ``metrics.json`` (per tomogram and pooled), which is rewritten atomically.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cryomine_core.errors import CryomineError, InputFileError
from cryomine_core.io import table as T
from cryomine_core.io.atomic import atomic_write_text
from cryomine_core.io.columns import INSTANCE as TRUE_INSTANCE
from cryomine_core.io.columns import VOXEL_CLASS_NAME, VOXEL_SCORE
from cryomine_core.io.mrc import read_mrc
from cryomine_core.segment.data import read_volume
from cryomine_core.segment.evaluate import dice_per_class, match_objects, prf

__all__ = ["evaluate_objects", "pool_evaluations"]


def _class_indices(path, probabilities: bool, values: Sequence[int]) -> np.ndarray:
    """The class index map of one tomogram, as :func:`~.objects.find_objects` computes it."""
    if probabilities:
        prob, _ = read_mrc(path, check_finite=False)
        return prob.argmax(0)
    lab, _ = read_volume(path, "label map")
    lut = np.full(max(values) + 1, -1, dtype=np.int64)
    lut[list(values)] = np.arange(len(values))
    return lut[lab.astype(np.int64)]


def evaluate_objects(objects_dir: str | os.PathLike, maps: Sequence[str | os.PathLike], *, probabilities: bool = True,
                     truth_table: str | os.PathLike | None = None, truth_instances: Sequence[str | os.PathLike] = (),
                     truth_labels: Sequence[str | os.PathLike] = (), dilate: int = 0,
                     fill_cavities: bool = True) -> dict:
    """Add the ground-truth figures to the ``metrics.json`` of a ``find_objects`` folder; return the metrics.

    Args:
        objects_dir: the output folder of ``find_objects`` (``metrics.json``, ``objects.star``).
        maps: the probability stacks (``probabilities=True``) or label maps it was given, same order.
        truth_table / truth_instances / truth_labels: the simulator's ``particles.star`` (with
            ``cmInstanceId``), ``instances/`` and ``labels/`` maps, one map per tomogram.
        dilate: grow the true occupancies by this many voxels for the object matching.
        fill_cavities: count a particle's enclosed cavities as part of its occupancy (the centre of a
            hollow complex lies in its cavity; :func:`~.evaluate.fill_cavities`).
    """
    for name, given in (("--truth-instances", truth_instances), ("--truth-labels", truth_labels)):
        if given and len(given) != len(maps):
            raise CryomineError(f"{len(given)} file(s) for {name} but {len(maps)} map(s): give one per tomogram, in "
                                "the same order.")
    if truth_instances and truth_table is None:
        raise CryomineError("--truth-instances needs --truth-table (the particles.star with cmInstanceId).")
    out = Path(objects_dir)
    metrics = json.loads((out / "metrics.json").read_text())
    values, names = metrics["class_values"], metrics["class_names"]
    object_idx = [names.index(n) for n in metrics["object_classes"]]
    table = T.read_table(out / "objects.star", require=(T.TOMO, *T.COORDS), resolve_paths=False) \
        if (out / "objects.star").exists() else pd.DataFrame(columns=[T.TOMO, *T.COORDS])
    truth = T.read_table(truth_table, require=(T.TOMO, TRUE_INSTANCE, T.CLASS_NAME), resolve_paths=False) \
        if truth_table else None
    evals, pooled_pred, pooled_true = [], [], []
    for i, path in enumerate(maps):
        stem = Path(path).stem
        rec = next(t for t in metrics["tomograms"] if t["name"] == stem)
        if truth_labels:
            idx = _class_indices(path, probabilities, values)
            tl, _ = read_volume(truth_labels[i], "true label map")
            if tl.shape != idx.shape:
                raise InputFileError(f"{truth_labels[i]}: true label map {tl.shape} differs from the prediction "
                                     f"{idx.shape} (z, y, x); give the label map of the same tomogram.")
            tl = tl.astype(np.int64)
            lut = np.full(max(values) + 1, -1, dtype=np.int64)
            lut[values] = np.arange(len(values))
            tidx = np.where(np.isin(tl, values), lut[np.clip(tl, 0, max(values))], -1)
            rec["dice"] = dice_per_class(idx, tidx, dict(enumerate(names)))
            pooled_pred.append(idx.ravel())
            pooled_true.append(tidx.ravel())
        if truth_instances:
            ti, _ = read_volume(truth_instances[i], "true instance map")
            tc = _true_classes(truth, stem, names)
            if not tc:
                raise InputFileError(f"{truth_table}: no particle of tomogram '{stem}' ({T.TOMO} must name it).")
            sub = table[table[T.TOMO].astype(str) == stem] if len(table) else table
            cls = sub[VOXEL_CLASS_NAME] if VOXEL_CLASS_NAME in sub.columns else sub.get(T.CLASS_NAME, [])
            score = sub[VOXEL_SCORE] if VOXEL_SCORE in sub.columns else sub.get(T.SCORE, [])
            ev = match_objects(sub[list(T.COORDS)].to_numpy(float) if len(sub) else np.zeros((0, 3)),
                               [names.index(str(c)) for c in cls], list(np.asarray(score, dtype=float)),
                               ti.astype(np.int64), tc, {k: names[k] for k in object_idx}, dilate=dilate,
                               fill=fill_cavities)
            rec["objects"] = ev
            evals.append(ev)
    if pooled_pred:
        metrics["dice"] = dice_per_class(np.concatenate(pooled_pred), np.concatenate(pooled_true),
                                         dict(enumerate(names)))
    if evals:
        metrics["objects"] = pool_evaluations(evals)
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    return metrics


def _true_classes(truth: pd.DataFrame, tomo: str, names: Sequence[str]) -> dict[int, int]:
    """Instance id -> class index (by class name) of the true particles of tomogram ``tomo``."""
    key = truth[T.TOMO].astype(str).map(lambda s: Path(s).stem)
    sub = truth[key == tomo]
    index = {n: i for i, n in enumerate(names)}
    out = {}
    for iid, name in zip(sub[TRUE_INSTANCE], sub[T.CLASS_NAME].astype(str)):
        out[int(iid)] = index.get(name, -1)
    return out




def pool_evaluations(evals: Sequence[Mapping]) -> dict:
    """Sum the counts of several tomograms' :func:`~.evaluate.match_objects` results and recompute the figures."""
    def pooled(getter) -> dict:
        tp = sum(getter(e)["tp"] for e in evals)
        n_pred = sum(getter(e)["n_predicted"] for e in evals)
        n_true = sum(getter(e)["n_true"] for e in evals)
        return prf(tp, n_pred, n_true)

    names = list(evals[0]["per_class"])
    matched = sum(e["n_matched"] for e in evals)
    correct = sum((e["classification_accuracy"] or 0.0) * e["n_matched"] for e in evals)
    return {"localisation": pooled(lambda e: e["localisation"]),
            "per_class": {n: pooled(lambda e, n=n: e["per_class"][n]) for n in names},
            "overall": pooled(lambda e: e["overall"]),
            "classification_accuracy": (correct / matched) if matched else None, "n_matched": matched,
            "dilate": evals[0].get("dilate", 0), "fill_cavities": evals[0].get("fill_cavities", False)}
