"""``cryomine segment objects``: objects from label/probability maps; object table; counts.

Outputs in ``out_dir`` for every input map ``NAME``:

- ``instances/NAME.mrc``: instance label map (0 background, ``i`` = object ``cmObjectId`` ``i``; int16, or
  float32 beyond 32767 objects);
- ``classes/NAME.mrc``: class label map of the objects (label value of each object's class over its
  voxels; voxels of non-object classes such as membrane keep their predicted value);

and once:

- ``objects.star`` (particle table, block ``particles``; chains into ``cryomine extract``): ``rlnTomoName``
  (NAME), ``cmTomoFile`` (when the tomograms are given), ``rlnCoordinateX/Y/Z`` (centre, voxels,
  0-based), ``rlnClassNumber`` (the class's label value), ``cmClassName``, ``cmScore`` (confidence),
  ``cmObjectId``, ``cmVoxels`` (volume, voxels), ``cmVolumeA3`` (volume, Å^3), ``cmSolidity``, ``cmObjectSplit``
  (1 when the object came from splitting a non-convex component), ``cmVoxelSize``;
- ``counts.csv``: one row per tomogram and class, columns ``tomogram, class, count``; ``counts.json``:
  ``{tomogram: {class: count}}``;
- ``metrics.json``: settings and numbers of objects; with ground truth,
  :func:`.object_evaluation.evaluate_objects` adds ``dice`` per class and ``objects``
  (localisation, per-class and overall precision/recall/F1, classification accuracy) per tomogram
  and pooled.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cryomine_core.errors import CryomineError, InputFileError
from cryomine_core.io import table as T
from cryomine_core.io.atomic import atomic_path, atomic_write_text
from cryomine_core.io.columns import OBJECT_ID, SOLIDITY, VOLUME_A3, VOXELS
from cryomine_core.io.columns import OBJECT_SPLIT as SPLIT_FLAG
from cryomine_core.io.mrc import read_mrc, write_mrc
from cryomine_core.segment.data import read_volume
from cryomine_core.segment.grouping import GroupingParams, group_objects

log = logging.getLogger("cryomine")

__all__ = ["objects_table", "find_objects", "counts_table", "OBJECT_ID", "VOXELS", "SOLIDITY"]



def objects_table(objects: Sequence[dict], tomo_name: str, class_values: Sequence[int], class_names: Sequence[str],
                  voxel_size: float, tomo_file: str | None = None) -> pd.DataFrame:
    """Object records of :func:`~.grouping.group_objects` (class indices) as particle-table rows."""
    rows = []
    for o in objects:
        k = int(o["class_index"])
        row = {T.TOMO: tomo_name, T.COORDS[0]: o["x"], T.COORDS[1]: o["y"], T.COORDS[2]: o["z"],
               T.CLASS: int(class_values[k]), T.CLASS_NAME: class_names[k], T.SCORE: float(o["confidence"]),
               OBJECT_ID: int(o["id"]), VOXELS: int(o["voxels"]), VOLUME_A3: float(o["voxels"] * voxel_size**3),
               SOLIDITY: float(o["solidity"]), SPLIT_FLAG: int(bool(o["split"])), T.VOXEL_SIZE: float(voxel_size)}
        if tomo_file:
            row[T.TOMO_FILE] = tomo_file
        rows.append(row)
    return pd.DataFrame(rows)


def counts_table(df: pd.DataFrame, tomograms: Sequence[str], class_names: Sequence[str]) -> pd.DataFrame:
    """Objects per class per tomogram (zeros included), columns ``tomogram, class, count``."""
    rows = []
    for t in tomograms:
        sub = df[df[T.TOMO] == t] if len(df) else df
        for c in class_names:
            n = int((sub[T.CLASS_NAME] == c).sum()) if len(sub) else 0
            rows.append({"tomogram": t, "class": c, "count": n})
    return pd.DataFrame(rows, columns=["tomogram", "class", "count"])


def read_classes(path: str | os.PathLike | None, source_hint: str) -> tuple[list[int], list[str], dict]:
    """Class values/names (+ object classes, expected volumes when present) from segmenter.json or classes.json."""
    if path is None:
        raise CryomineError(f"the class names are needed: give --classes (the classes.json or segmenter.json written "
                            f"by 'cryomine segment predict'{source_hint}).")
    p = Path(path)
    try:
        raw = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise InputFileError(f"{p}: not a readable class file ({exc}). Give classes.json or segmenter.json.") from exc
    if "class_values" in raw:
        values, names = [int(v) for v in raw["class_values"]], [str(n) for n in raw["class_names"]]
        extra = {"object_classes": raw.get("object_classes"),
                 "expected_voxels": {int(k): float(v) for k, v in raw.get("expected_voxels", {}).items()}}
    else:
        pairs = sorted((int(k), str(v)) for k, v in raw.items())
        values, names = [v for v, _ in pairs], [n for _, n in pairs]
        extra = {"object_classes": None, "expected_voxels": {}}
    if 0 not in values:
        values, names = [0, *values], ["background", *names]
    return values, names, extra


def find_objects(out_dir: str | os.PathLike, *, labels: Sequence[str | os.PathLike] = (),
                 probabilities: Sequence[str | os.PathLike] = (), classes: str | os.PathLike | None = None,
                 tomograms: Sequence[str | os.PathLike] = (), stuff_classes: Sequence[str] = ("membrane",),
                 params: GroupingParams | None = None, use_expected: bool = True,
                 classifier: str | os.PathLike | None = None, device: str = "auto") -> dict:
    """Group predicted maps into objects and write the outputs listed in the module docstring.

    Finding only: the evaluation against ground truth is :func:`.object_evaluation.evaluate_objects`,
    run on the outputs.

    Args:
        labels / probabilities: one map per tomogram (label maps in label values, or the ``(C, Z, Y, X)``
            stacks of ``segment predict``; probabilities give confidences and win when both are given).
        classes: ``segmenter.json`` or ``classes.json`` of the prediction.
        tomograms: the tomograms (recorded as ``cmTomoFile``; needed by ``classifier``), same order.
        stuff_classes: class names not grouped into objects (when segmenter.json does not say).
        params: grouping settings. use_expected: use the model's typical object volumes.
        classifier: a ``model.pt`` of ``cryomine classify train``: objects get its class (step 3).
    """
    maps = list(probabilities) or list(labels)
    if not maps:
        raise CryomineError("no map given: pass --probabilities or --labels (the outputs of 'cryomine segment "
                            "predict').")
    for name, given in (("--labels", labels), ("--tomograms", tomograms)):
        if given and len(given) != len(maps):
            raise CryomineError(f"{len(given)} file(s) for {name} but {len(maps)} map(s): give one per tomogram, in "
                                "the same order.")
    values, names, extra = read_classes(classes, "")
    stuff = {s.lower() for s in stuff_classes}
    object_idx = extra["object_classes"] or [k for k in range(1, len(values)) if names[k].lower() not in stuff]
    expected = extra["expected_voxels"] if use_expected else {}
    lut = np.full(max(values) + 1, -1, dtype=np.int64)
    lut[values] = np.arange(len(values))
    out = Path(out_dir)
    frames, per_tomo = [], []
    for i, path in enumerate(maps):
        stem = Path(path).stem
        prob = None
        if probabilities:
            prob, vs = read_mrc(path, check_finite=False)
            if prob.ndim != 4 or prob.shape[0] != len(values):
                raise InputFileError(f"{path}: expected a probability stack of {len(values)} classes (C, z, y, x), "
                                     f"found shape {prob.shape}. Give the probabilities/ file of 'segment predict' "
                                     "with its classes.json.")
            idx = prob.argmax(0)
        else:
            lab, vs = read_volume(path, "label map")
            lab = lab.astype(np.int64)
            if lab.min() < 0 or lab.max() > max(values) or np.any(lut[lab] < 0):
                raise InputFileError(f"{path}: label values {sorted(set(np.unique(lab).tolist()) - set(values))} are "
                                     f"not among the classes {dict(zip(values, names))}; give the matching --classes.")
            idx = lut[lab]
        instances, objs = group_objects(idx, object_idx, probabilities=prob, params=params, expected_voxels=expected)
        tomo_file = str(Path(tomograms[i]).resolve()) if tomograms else None
        df = objects_table(objs, stem, values, names, vs, tomo_file)
        frames.append(df)
        class_map = np.asarray(values, dtype=np.int16)[idx]
        class_map[np.isin(idx, object_idx)] = 0
        obj_value = np.zeros(len(objs) + 1, dtype=np.int16)
        for o in objs:
            obj_value[o["id"]] = values[o["class_index"]]
        sel = instances > 0
        class_map[sel] = obj_value[instances[sel]]
        inst_dtype = np.int16 if len(objs) < 32767 else np.float32
        write_mrc(out / "instances" / f"{stem}.mrc", instances, vs, dtype=inst_dtype)
        write_mrc(out / "classes" / f"{stem}.mrc", class_map, vs, dtype=np.int16)
        rec = {"name": stem, "map": str(path), "n_objects": len(objs)}
        per_tomo.append(rec)
        log.info("%s: %d objects %s", stem, len(objs), df[T.CLASS_NAME].value_counts().to_dict() if len(df) else {})
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if classifier is not None and len(table):
        from cryomine_core.segment.object_classifier import classify_objects

        if not tomograms:
            raise CryomineError("--classifier needs --tomograms (the sub-volumes are cut from them).")
        table = classify_objects(table, classifier, device=device)
    stems = [Path(m).stem for m in maps]
    obj_names = [names[k] for k in object_idx]
    count_names = list(dict.fromkeys([*obj_names, *(table[T.CLASS_NAME].astype(str) if len(table) else [])]))
    counts = counts_table(table, stems, count_names)
    if len(table):
        T.write_table(out / "objects.star", table, require=(T.TOMO, *T.COORDS))
    else:
        log.warning("no object found; objects.star is not written")
    with atomic_path(out / "counts.csv") as tmp:
        counts.to_csv(tmp, index=False)
    counts_json = {t: {c: int(n) for c, n in zip(g["class"], g["count"])} for t, g in counts.groupby("tomogram")}
    atomic_write_text(out / "counts.json", json.dumps(counts_json, indent=2))
    p = params or GroupingParams()
    metrics = {"n_objects": int(len(table)), "counts": counts_json, "object_classes": obj_names,
               "class_values": values, "class_names": names, "grouping": vars(p),
               "expected_voxels": {names[k]: v for k, v in expected.items() if k < len(names)}, "tomograms": per_tomo}
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    return metrics
