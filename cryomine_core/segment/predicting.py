"""``cryomine segment predict``: probability and label maps of whole tomograms.

Outputs in ``out_dir`` for every tomogram ``NAME.mrc``:

- ``labels/NAME.mrc``: int16 class label map, in the training label values (0 background);
- ``probabilities/NAME.mrc`` (unless turned off): float16 stack ``(C, Z, Y, X)``, channel ``k`` the
  probability of network class ``k`` (label value ``class_values[k]``);

and once: ``classes.json`` (label value -> class name, like the simulator's), ``segmenter.json``
(class values, names, object classes, typical object volumes, voxel size: what ``segment objects``
needs) and ``metrics.json`` (per tomogram: shape, seconds, voxels per class; device, tiling).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cryomine_core.device import select_device
from cryomine_core.errors import CryomineError, InputFileError
from cryomine_core.io.atomic import atomic_write_text
from cryomine_core.io.mrc import read_mrc_header, write_mrc
from cryomine_core.polarity import BRIGHT, DARK, tomogram_polarity
from cryomine_core.segment.data import read_volume
from cryomine_core.segment.model_file import load_segmenter
from cryomine_core.segment.tiling import predict_probabilities

log = logging.getLogger("cryomine")

__all__ = ["predict_tomograms", "segmenter_info", "flip_averaged_probabilities"]

#: flips of the x and y axes (array axes 2 and 1) used by the test-time augmentation
FLIPS = ((), (2,), (1,), (1, 2))


def flip_averaged_probabilities(model, volume: np.ndarray, **kwargs) -> np.ndarray:
    """Probabilities ``(C, Z, Y, X)`` averaged over the four flips of the tomogram ``(Z, Y, X)`` in x and y
    (the flips used as training augmentation; z is never flipped in training). Four times the cost of
    :func:`~.tiling.predict_probabilities`, whose keyword arguments it takes."""
    acc = None
    for axes in FLIPS:
        v = np.flip(volume, axes) if axes else volume
        prob = predict_probabilities(model, np.ascontiguousarray(v), **kwargs)
        prob = np.flip(prob, tuple(a + 1 for a in axes)) if axes else prob
        acc = prob.copy() if acc is None else acc + prob
    return acc / len(FLIPS)


def segmenter_info(meta: dict) -> dict:
    """What grouping needs from a model's metadata (JSON-ready)."""
    return {"class_values": meta["class_values"], "class_names": meta["class_names"],
            "object_classes": meta["object_classes"],
            "expected_voxels": {str(k): v for k, v in meta.get("expected_voxels", {}).items()},
            "voxel_size": meta["voxel_size"]}


def _check_contrast(volume: np.ndarray, meta: dict, source: str) -> dict:
    """The tomogram's protein contrast against the training tomograms' (recorded in the model); a
    warning when they are opposite, since the segmentation of such a tomogram means nothing."""
    pol = tomogram_polarity(volume)
    trained = (meta.get("training") or {}).get("contrast", {}).get("protein")
    known = trained in (BRIGHT, DARK) and pol["contrast"] in (BRIGHT, DARK)
    record = {**pol, "training": trained, "matches_training": (pol["contrast"] == trained) if known else None}
    if known and pol["contrast"] != trained:
        log.warning("%s: protein looks %s here (skewness %+.2f) but was %s in the training tomograms: the "
                    "segmentation is not reliable. Invert the tomogram (multiply by -1) or train on tomograms of "
                    "this contrast.", source, pol["contrast"], pol["skewness"], trained)
    return record


def predict_tomograms(model_path: str | os.PathLike, tomograms: Sequence[str | os.PathLike],
                      out_dir: str | os.PathLike, *, tile: int = 256, margin: int | None = None, blend: int = 8,
                      device: str = "auto", probabilities: bool = True, tta: bool = False) -> dict:
    """Segment every tomogram with the model of ``model_path``; write the maps; return the metrics.

    ``tta``: average the probabilities over the four x/y flips of each tomogram
    (:func:`flip_averaged_probabilities`; 4x slower)."""
    if not tomograms:
        raise CryomineError("no tomogram given: pass --tomograms.")
    stems = [Path(t).stem for t in tomograms]
    if len(set(stems)) != len(stems):
        raise CryomineError(f"tomogram names repeat ({stems}); outputs are named after the file stems, so give files "
                            "with distinct names.")
    dev = select_device(device)
    model, meta = load_segmenter(model_path, dev)
    values = np.asarray(meta["class_values"], dtype=np.int16)
    for path in tomograms:  # every header is read (exists, not truncated, 3-D) before any result is written
        shape = read_mrc_header(path).shape
        if len(shape) != 3:
            raise InputFileError(f"{path}: expected one 3-D tomogram (z, y, x), found data of shape {shape}. Give a "
                                 "single volume per file.")
    out = Path(out_dir)
    per_tomo = []
    for path, stem in zip(tomograms, stems):
        vol, vs = read_volume(path, "tomogram")
        if abs(vs - meta["voxel_size"]) > 0.02 * meta["voxel_size"] and vs > 0:
            log.warning("%s: %.3f Å/voxel but the model was trained at %.3f Å/voxel; rescale the tomogram for "
                        "reliable results", path, vs, meta["voxel_size"])
        contrast = _check_contrast(vol, meta, str(path))
        t0 = time.perf_counter()
        predict = flip_averaged_probabilities if tta else predict_probabilities
        prob = predict(model, vol, tile=tile, margin=margin, blend=blend, device=dev)
        seconds = time.perf_counter() - t0
        labels = values[prob.argmax(0)]
        write_mrc(out / "labels" / f"{stem}.mrc", labels, vs or meta["voxel_size"], dtype=np.int16)
        if probabilities:
            write_mrc(out / "probabilities" / f"{stem}.mrc", prob, vs or meta["voxel_size"], dtype=np.float16)
        counts = np.bincount(prob.argmax(0).ravel(), minlength=len(values))
        per_tomo.append({"tomogram": str(path), "name": stem, "shape_zyx": list(vol.shape), "seconds": seconds,
                         "contrast": contrast,
                         "voxels_per_class": {n: int(c) for n, c in zip(meta["class_names"], counts)}})
        log.info("%s: %s voxels segmented in %.1f s", stem, "x".join(str(s) for s in vol.shape[::-1]), seconds)
        del prob, labels, vol
    classes = {str(v): n for v, n in zip(meta["class_values"], meta["class_names"])}
    atomic_write_text(out / "classes.json", json.dumps(classes, indent=2))
    atomic_write_text(out / "segmenter.json", json.dumps(segmenter_info(meta), indent=2))
    metrics = {"model": str(model_path), "device": str(dev), "tile": tile, "margin": margin, "blend": blend, "tta": tta,
               "receptive_radius": model.receptive_radius, "class_names": meta["class_names"],
               "seconds_per_tomogram": float(np.mean([t["seconds"] for t in per_tomo])), "tomograms": per_tomo}
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    return metrics
