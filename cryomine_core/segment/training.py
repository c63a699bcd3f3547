"""``cryomine segment train``: train the U-Net from a few annotated boxes.

Uses CryoMine's one training loop (:func:`cryomine_core.train.fit`: SGD with Nesterov momentum,
per-epoch atomic checkpoints, exact resume, early stopping on the validation loss, best-epoch
weights). Voxel cross-entropy over patches drawn inside the training boxes; the last
``val_boxes`` boxes (default: one when there are at least four) are held out for validation.

Outputs in ``out_dir``:

- ``model.pt`` (:mod:`.model_file`), ``checkpoint.pt`` (after every epoch; ``resume=True`` continues);
- ``boxes.star``: the boxes used (``rlnTomoName``, ``cmTomoFile``, ``rlnCoordinateX/Y/Z`` = box centre in
  voxels, ``cmBoxSize``, ``cmSplit`` = train/val);
- ``metrics.json``: classes, history (losses per epoch), best epoch, voxel Dice per class on the validation
  boxes (on the training boxes when none is held out), timings;
- ``training_curves.png``.
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from cryomine_core import __version__
from cryomine_core.device import seed_everything, select_device
from cryomine_core.errors import CryomineError
from cryomine_core.io import table as T
from cryomine_core.io.atomic import atomic_write_text
from cryomine_core.io.columns import SPLIT
from cryomine_core.polarity import UNCLEAR, tomogram_polarity
from cryomine_core.segment.data import (
    BOX_SIZE,
    Annotation,
    BoxDataset,
    PatchDataset,
    balance_keep,
    choose_boxes,
    class_values,
    load_annotation,
    read_boxes,
)
from cryomine_core.segment.evaluate import dice_per_class
from cryomine_core.segment.model_file import save_segmenter
from cryomine_core.segment.network import UNet3D
from cryomine_core.segment.tiling import predict_probabilities
from cryomine_core.train import TrainConfig, fit

log = logging.getLogger("cryomine")

__all__ = ["train_segmenter", "read_class_names", "STUFF_CLASSES"]

#: class names segmented as regions but not grouped into objects (case-insensitive)
STUFF_CLASSES = ("membrane",)


def read_class_names(path: str | os.PathLike | None) -> dict[int, str]:
    """Label value -> name from a JSON object such as the simulator's ``classes.json`` ({"1": "ribosome"})."""
    if path is None:
        return {}
    p = Path(path)
    try:
        raw = json.loads(p.read_text())
        return {int(k): str(v) for k, v in raw.items()}
    except (OSError, ValueError, AttributeError) as exc:
        raise CryomineError(f"{p}: not a readable class-name file ({exc}). Give a JSON object mapping label values to "
                            'names, e.g. {"1": "ribosome", "2": "membrane"}.') from exc


def training_contrast(annotations: Sequence[Annotation]) -> dict:
    """The protein contrast of the training tomograms (:func:`~cryomine_core.polarity.tomogram_polarity`),
    recorded in the model so prediction can say when a tomogram has the other one."""
    per = [tomogram_polarity(a.volume) for a in annotations]
    verdicts = {p["contrast"] for p in per} - {UNCLEAR}
    if len(verdicts) > 1:
        log.warning("the training tomograms have opposite contrasts (%s): protein is dark in some, bright in others; "
                    "invert those that differ before training", ", ".join(f"{a.name}: {p['contrast']}"
                                                                       for a, p in zip(annotations, per)))
    protein = verdicts.pop() if len(verdicts) == 1 else UNCLEAR
    log.info("training tomograms: protein %s (skewness %s)", protein, ", ".join(f"{p['skewness']:+.2f}" for p in per))
    return {"protein": protein, "skewness": [p["skewness"] for p in per]}


def _typical_volumes(annotations: Sequence[Annotation], values: Sequence[int], object_idx: Sequence[int]) -> dict:
    """Median voxel count of the connected objects of each object class inside the training boxes
    (objects cut by a box edge are used only when no whole one exists)."""
    out = {}
    for k in object_idx:
        v = values[k]
        whole, cut = [], []
        for a in annotations:
            for b in a.boxes:
                sub = a.labels[b[0]:b[3], b[1]:b[4], b[2]:b[5]] == v
                comps, n = ndimage.label(sub)
                if n == 0:
                    continue
                sizes = np.bincount(comps.ravel())[1:]
                edge = np.unique(np.concatenate([comps[0].ravel(), comps[-1].ravel(), comps[:, 0].ravel(),
                                                 comps[:, -1].ravel(), comps[:, :, 0].ravel(),
                                                 comps[:, :, -1].ravel()]))
                for i, s in enumerate(sizes, start=1):
                    (cut if i in edge else whole).append(int(s))
        sizes = whole or cut
        if sizes:
            out[int(k)] = float(np.median(sizes))
    return out


def _predict_box(model, a: Annotation, b, device) -> np.ndarray:
    """Class indices of a box, predicted with the network's full context around it."""
    m = int(model.receptive_radius)
    lo = [max(b[i] - m, 0) for i in range(3)]
    hi = [min(b[i + 3] + m, a.volume.shape[i]) for i in range(3)]
    # keep the crop on the pooling grid of the whole volume
    lo = [v - v % model.multiple for v in lo]
    crop = a.volume[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    prob = predict_probabilities(model, crop, tile=max(crop.shape), device=device, normalise=False)
    inner = tuple(slice(b[i] - lo[i], b[i + 3] - lo[i]) for i in range(3))
    return prob[(slice(None), *inner)].argmax(0)


def train_segmenter(tomograms: Sequence[str | os.PathLike], labels: Sequence[str | os.PathLike],
                    out_dir: str | os.PathLike, *, boxes: int | str | os.PathLike = 10, box_size: int = 64,
                    patch: int = 48, epochs: int = 40, patches_per_epoch: int = 64, batch_size: int = 4,
                    lr: float = 0.02, momentum: float = 0.9, weight_decay: float = 1e-5, patience: int = 10,
                    base: int = 8, depth: int = 2, val_boxes: int | None = None,
                    class_names: Mapping[int, str] | None = None, stuff_classes: Sequence[str] = STUFF_CLASSES,
                    object_fraction: float = 0.5, rot90: bool = False, jitter: float = 0.1,
                    class_balance: float = 0.5, seed: int = 0,
                    device: str = "auto", resume: bool = False, plots: bool = True) -> dict:
    """Train a segmenter; write ``model.pt``, ``checkpoint.pt``, ``boxes.star``, ``metrics.json`` (and
    ``training_curves.png``) to ``out_dir``; return the metrics.

    Args:
        tomograms, labels: MRC files, one label map per tomogram (0 background, positive classes).
        boxes: number of boxes to choose automatically on annotated objects (spread over the
            tomograms), or a STAR/CSV file of box centres (:func:`~.data.read_boxes`).
        box_size: box edge, voxels. patch: training patch edge (at most the box edge).
        epochs, patches_per_epoch, batch_size, lr, momentum, weight_decay, patience: training loop.
        base, depth: U-Net width (channels at full resolution) and number of poolings.
        val_boxes: boxes held out for validation (default: 1 when there are >= 4 boxes, else 0).
        class_names: label value -> name (e.g. from the simulator's classes.json).
        stuff_classes: names of classes that are not grouped into objects (default: membrane).
        object_fraction, rot90, jitter: patch sampling and augmentation (:class:`~.data.PatchDataset`).
        class_balance: exponent of the inverse-frequency voxel subsampling (:func:`~.data.balance_keep`;
            1 equalises the classes, 0 turns it off).
    """
    t_start = time.perf_counter()
    if len(tomograms) == 0:
        raise CryomineError("no tomogram given: pass --tomograms and one --labels map per tomogram.")
    if len(tomograms) != len(labels):
        raise CryomineError(f"{len(tomograms)} tomogram(s) but {len(labels)} label map(s): give one label map per "
                            "tomogram, in the same order.")
    if box_size < 8 or patch < 8:
        raise CryomineError(f"box size {box_size} / patch {patch}: give at least 8 voxels.")
    if patch > box_size:
        raise CryomineError(f"--patch {patch} is larger than --box-size {box_size}: training patches are cut from "
                            "the annotated boxes; give a patch of at most the box size.")
    if not 1 <= depth or 2 ** depth > patch:
        raise CryomineError(f"--depth {depth}: give 1 to {int(math.log2(patch))} poolings for a patch of {patch} "
                            "voxels (each pooling halves it; 2 by default).")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dev = select_device(device)
    seed_everything(seed)
    annotations = [load_annotation(t, lab) for t, lab in zip(tomograms, labels)]
    contrast = training_contrast(annotations)
    if isinstance(boxes, (int, np.integer)):
        if boxes < 1:
            raise CryomineError(f"--boxes {boxes}: give at least 1 box (or a boxes table).")
        n_t = len(annotations)
        share = [boxes // n_t + (1 if i < boxes % n_t else 0) for i in range(n_t)]
        for i, (a, n) in enumerate(zip(annotations, share)):
            a.boxes = choose_boxes(a.labels, n, box_size, seed + i)
    else:
        read_boxes(boxes, box_size, annotations)
    values = class_values(annotations)
    n_boxes = sum(len(a.boxes) for a in annotations)
    n_val = (1 if n_boxes >= 4 else 0) if val_boxes is None else int(val_boxes)
    if not 0 <= n_val < n_boxes:
        raise CryomineError(f"{n_val} validation box(es) of {n_boxes}: keep at least one box for training.")
    order = [(i, j) for i, a in enumerate(annotations) for j in range(len(a.boxes))]
    val_set = set(order[len(order) - n_val:])
    for i, a in enumerate(annotations):
        a.split = ["val" if (i, j) in val_set else "train" for j in range(len(a.boxes))]
    max_value = max(int(a.labels.max()) for a in annotations)
    lut = np.zeros(max_value + 1, dtype=np.int64)
    lut[values] = np.arange(len(values))
    names_by_value = dict(class_names or {})
    names = ["background" if v == 0 else names_by_value.get(v, f"class{v}") for v in values]
    stuff = {s.lower() for s in stuff_classes}
    object_idx = [k for k in range(1, len(values)) if names[k].lower() not in stuff]
    expected = _typical_volumes([_train_only(a) for a in annotations], values, object_idx)
    log.info("classes %s (label values %s); %d box(es) of %d^3 (%d for validation); objects: %s", names, values,
             n_boxes, box_size, n_val, [names[k] for k in object_idx])

    model = UNet3D(len(values), base=base, depth=depth)
    keep = balance_keep(annotations, lut, len(values), class_balance)
    log.info("voxels kept in the loss per class (class balance %.2f): %s", class_balance,
             {n: round(float(k), 4) for n, k in zip(names, keep)})
    train_ds = PatchDataset(annotations, lut, patch, patches_per_epoch, object_fraction=object_fraction, rot90=rot90,
                            jitter=jitter, keep=keep)
    val_ds = BoxDataset(annotations, lut, "val", keep=keep) if n_val else None
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum, weight_decay=weight_decay,
                      patience=patience, seed=seed, eval_batch_size=1, log_interval_s=60.0, channels_last=True)
    result = fit(model, train_ds, val_ds, cfg, device=dev, checkpoint_path=out / "checkpoint.pt", resume=resume,
                 n_classes=len(values), extra_checkpoint={"architecture": "unet3d", "build_args": model.build_args})
    # the loop's voxel accuracies are dominated by the background: Dice per class (below) says more
    history = [{k: v for k, v in h.items() if "accuracy" not in k} for h in result.history]

    model.eval()
    dice_split = "val" if n_val else "train"
    pred_all, true_all = [], []
    for a in annotations:
        for b, s in zip(a.boxes, a.split):
            if s == dice_split:
                pred_all.append(_predict_box(model, a, b, dev).ravel())
                true_all.append(lut[a.labels[b[0]:b[3], b[1]:b[4], b[2]:b[5]]].ravel())
    dice = dice_per_class(np.concatenate(pred_all), np.concatenate(true_all), dict(enumerate(names)))

    rows = []
    for a in annotations:
        for b, s in zip(a.boxes, a.split):
            rows.append({T.TOMO: a.name, T.TOMO_FILE: str(Path(a.tomogram_path).resolve()),
                         T.COORDS[0]: (b[2] + b[5] - 1) / 2, T.COORDS[1]: (b[1] + b[4] - 1) / 2,
                         T.COORDS[2]: (b[0] + b[3] - 1) / 2, BOX_SIZE: int(max(b[3] - b[0], b[4] - b[1], b[5] - b[2])),
                         SPLIT: s})
    T.write_table(out / "boxes.star", pd.DataFrame(rows), require=(T.TOMO, *T.COORDS))
    training = {"epochs_run": result.epochs_run, "best_epoch": result.best_epoch, "stopped_early": result.stopped_early,
                "dice": dice, "dice_on": f"{dice_split} boxes", "seconds": result.seconds,
                "settings": {"boxes": n_boxes, "val_boxes": n_val, "box_size": box_size, "patch": list(train_ds.patch),
                             "epochs": epochs, "patches_per_epoch": patches_per_epoch, "batch_size": batch_size,
                             "lr": lr, "momentum": momentum, "weight_decay": weight_decay, "patience": patience,
                             "base": base, "depth": depth, "object_fraction": object_fraction, "rot90": rot90,
                             "jitter": jitter, "class_balance": class_balance, "seed": seed},
                "contrast": contrast,
                "date": datetime.datetime.now().isoformat(timespec="seconds"), "cryomine": __version__}
    save_segmenter(out / "model.pt", model, class_values=values, class_names=names, object_classes=object_idx,
                   expected_voxels=expected, voxel_size=annotations[0].voxel_size, training=training)
    metrics = {"class_values": values, "class_names": names, "object_classes": [names[k] for k in object_idx],
               "expected_voxels": {names[k]: v for k, v in expected.items()}, "n_boxes": n_boxes, "n_val_boxes": n_val,
               "tomograms": [a.tomogram_path for a in annotations], "labels": [a.labels_path for a in annotations],
               "history": history, "best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
               "dice": dice, "dice_on": f"{dice_split} boxes",
               "mean_object_dice": _mean([dice[names[k]] for k in object_idx]),
               "receptive_radius": model.receptive_radius, "device": str(dev),
               "seconds_training": result.seconds, "seconds_total": time.perf_counter() - t_start,
               "settings": training["settings"]}
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    if plots and history:
        from cryomine_core.train.plots import plot_training_curves

        curves = [dict(h, train_accuracy=float("nan"), val_accuracy=float("nan")) for h in history]
        plot_training_curves(curves, out / "training_curves.png", title="segmenter (losses)")
    log.info("segmenter trained: Dice on %s boxes %s", dice_split,
             {k: (None if v is None else round(v, 3)) for k, v in dice.items()})
    return metrics


def _train_only(a: Annotation) -> Annotation:
    """A view of ``a`` with only its training boxes."""
    keep = [b for b, s in zip(a.boxes, a.split) if s == "train"]
    return Annotation(a.name, a.tomogram_path, a.labels_path, a.volume, a.labels, a.voxel_size, keep,
                      ["train"] * len(keep))


def _mean(values) -> float | None:
    v = [x for x in values if x is not None and not math.isnan(x)]
    return float(np.mean(v)) if v else None
