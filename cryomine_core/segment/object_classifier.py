"""Step 3 of segmentation: classify the objects from sub-volumes cut at their centres.

The classifier is CryoMine's subtomogram CNN (:mod:`cryomine_core.classify`; by default the small
box-independent ``compact3d``) trained with the shared loop, and stored in the classifier
``model.pt`` format, so a model made by ``cryomine classify train`` on extracted subtomograms
(``cryomine extract`` on a table of user-picked examples) works here too, and one trained here on
simulated tomograms can be fine-tuned there.

Sub-volumes are ``box^3`` cubes centred on the rounded object centre (zyx arrays; centres xyz
voxels), padded with the tomogram mean outside the volume, each normalised as the model file says
(``normalise``: the z-score by default, spectral whitening first for a model trained with it)
and, when the model records a ``tta_range``, classified under every wedge-preserving rotation
(test-time augmentation), exactly as ``cryomine classify predict`` does.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cryomine_core.classify.model_file import load_classifier, save_classifier
from cryomine_core.errors import CryomineError
from cryomine_core.io import table as T
from cryomine_core.io.columns import VOXEL_CLASS_NAME, VOXEL_SCORE
from cryomine_core.models import build_model
from cryomine_core.segment.data import read_volume
from cryomine_core.train import ArrayDataset, fit, fit_temperature, predict_logits
from cryomine_core.train.recipes import DEFAULT_RECIPE, recipe_config, recipe_normalisation

log = logging.getLogger("cryomine")

__all__ = ["extract_subvolumes", "train_object_classifier", "classify_objects", "VOXEL_CLASS_NAME"]

#: column keeping the voxel network's class when the classifier relabels an object


def extract_subvolumes(volume: np.ndarray, centres_xyz: np.ndarray, box: int) -> np.ndarray:
    """``(n, box, box, box)`` float32 cubes of ``volume`` centred on ``centres_xyz`` (rounded)."""
    vol = np.asarray(volume, dtype=np.float32)
    fill = float(vol.mean())
    c = np.rint(np.asarray(centres_xyz, dtype=np.float64).reshape(-1, 3)[:, ::-1]).astype(int)
    out = np.full((len(c), box, box, box), fill, dtype=np.float32)
    for i, zyx in enumerate(c):
        lo = zyx - box // 2
        src = tuple(slice(max(a, 0), min(a + box, n)) for a, n in zip(lo, vol.shape))
        dst = tuple(slice(s.start - a, s.stop - a) for s, a in zip(src, lo))
        if all(s.stop > s.start for s in src):
            out[(i, *dst)] = vol[src]
    return out


def train_object_classifier(volumes: Sequence[np.ndarray], centres: Sequence[np.ndarray],
                            labels: Sequence[np.ndarray], class_names: Sequence[str], out_path: str | os.PathLike, *,
                            box: int = 32, voxel_size: float = 1.0, epochs: int = 15, batch_size: int | None = None,
                            lr: float | None = None, width: float = 0.5, val_fraction: float = 0.2,
                            augment: int | None = None, recipe: str = DEFAULT_RECIPE,
                            tilt_range: tuple[float, float] = (-60.0, 60.0), seed: int = 0,
                            device: str | torch.device = "cpu", resume: bool = False) -> dict:
    """Train a ``compact3d`` classifier on sub-volumes at known object centres; save it as a classifier
    ``model.pt`` (with ``class_numbers`` 1..C in ``class_names`` order) and return a summary.

    Args:
        volumes: tomograms ``(Z, Y, X)``.
        centres: per tomogram ``(n, 3)`` xyz voxel centres.
        labels: per tomogram ``(n,)`` 0-based class of each centre.
        recipe: training recipe (:mod:`cryomine_core.train.recipes`); ``subtomo`` (default) augments
            every batch with the wedge-preserving rotations of ``tilt_range`` (degrees) and averages
            those rotations at prediction; ``batch_size`` and ``lr`` default to
            the recipe's.
        augment: stored copies of each training sub-volume with random xy flips (the missing wedge
            is kept); default 1 (none) with ``subtomo``, whose augmentation does this on the fly,
            and 4 with ``paper``.
    """
    subs, ys = [], []
    for vol, c, y in zip(volumes, centres, labels):
        subs.append(extract_subvolumes(vol, c, box))
        ys.append(np.asarray(y, dtype=np.int64))
    x, y = np.concatenate(subs), np.concatenate(ys)
    if len(np.unique(y)) < 2:
        raise CryomineError("the object classifier needs examples of at least two classes.")
    copies = augment if augment is not None else (1 if recipe == "subtomo" else 4)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    n_val = int(round(len(y) * val_fraction))
    val, tr = order[:n_val], order[n_val:]
    xa, ya = [x[tr]], [y[tr]]
    for _ in range(max(copies - 1, 0)):
        flip = x[tr].copy()
        fx, fy = rng.random(len(tr)) < 0.5, rng.random(len(tr)) < 0.5
        flip[fx] = flip[fx][..., ::-1]
        flip[fy] = flip[fy][:, :, ::-1, :]
        xa.append(flip)
        ya.append(y[tr])
    normalise = recipe_normalisation(recipe)
    train_ds = ArrayDataset(np.concatenate(xa), np.concatenate(ya), normalise=normalise)
    val_ds = ArrayDataset(x[val], y[val], normalise=normalise) if n_val else None
    torch.manual_seed(seed)
    model = build_model("compact3d", len(class_names), box, width=width)
    cfg = recipe_config(recipe, tilt_range=tilt_range, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                        channels_last=True, log_interval_s=120.0, patience=None if recipe == "subtomo" else 5)
    tta_range = cfg.tta_range()
    ckpt = Path(str(out_path) + ".checkpoint")
    result = fit(model, train_ds, val_ds, cfg, device=device, checkpoint_path=ckpt, resume=resume,
                 n_classes=len(class_names))
    temperature, val_acc = 1.0, None
    if val_ds is not None:
        logits, yv = predict_logits(model, val_ds, device=device, batch_size=64, tta_range=tta_range)
        temperature = fit_temperature(logits, yv)
        val_acc = float((logits.argmax(1).numpy() == yv).mean())
    save_classifier(out_path, model, voxel_size=voxel_size, class_names=list(class_names),
                    class_numbers=list(range(1, len(class_names) + 1)), temperature=temperature,
                    normalise=normalise, tta_range=tta_range,
                    training={"epochs_run": result.epochs_run, "best_epoch": result.best_epoch, "recipe": recipe,
                              "val_accuracy": val_acc, "n_train": int(len(tr)), "n_val": int(n_val)})
    return {"val_accuracy": val_acc, "temperature": temperature, "epochs_run": result.epochs_run, "recipe": recipe,
            "n_train": int(len(tr)), "n_val": int(n_val), "seconds": result.seconds}


@torch.no_grad()
def predict_object_classes(volume: np.ndarray, centres_xyz: np.ndarray, model, meta: dict,
                           device: str | torch.device = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """0-based class (model order) and calibrated confidence of sub-volumes at ``centres_xyz``."""
    box = int(meta["box"][-1])
    subs = extract_subvolumes(volume, centres_xyz, box)
    if len(subs) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    tta = meta.get("tta_range")
    logits, _ = predict_logits(model, ArrayDataset(subs, normalise=meta.get("normalise", "zscore")), device=device,
                               batch_size=64, tta_range=tuple(tta) if tta else None)
    prob = torch.softmax(logits.double() / float(meta.get("temperature", 1.0)), dim=1).numpy()
    return prob.argmax(1), prob.max(1)


def classify_objects(table: pd.DataFrame, classifier: str | os.PathLike, *, device: str | torch.device = "auto"
                     ) -> pd.DataFrame:
    """Relabel the objects of ``table`` (needs ``cmTomoFile``) with a classifier ``model.pt``: sets
    ``rlnClassNumber`` (the classifier's class number), ``cmClassName`` and ``cmScore`` (calibrated
    confidence); keeps the voxel network's class name in ``cmVoxelClassName``."""
    from cryomine_core.device import select_device

    dev = select_device(device) if isinstance(device, str) else device
    model, meta = load_classifier(classifier, dev)
    if T.TOMO_FILE not in table.columns:
        raise CryomineError("the object table has no cmTomoFile column: give --tomograms with --classifier.")
    out = table.copy()
    out[VOXEL_CLASS_NAME] = out[T.CLASS_NAME]
    if T.SCORE in out.columns:
        out[VOXEL_SCORE] = out[T.SCORE]
    numbers = list(meta.get("class_numbers") or range(1, len(meta["class_names"]) + 1))
    for tomo, idx in out.groupby(T.TOMO_FILE).groups.items():
        vol, _ = read_volume(tomo, "tomogram")
        k, conf = predict_object_classes(vol, out.loc[idx, list(T.COORDS)].to_numpy(), model, meta, dev)
        out.loc[idx, T.CLASS] = [int(numbers[i]) for i in k]
        out.loc[idx, T.CLASS_NAME] = [meta["class_names"][i] for i in k]
        out.loc[idx, T.SCORE] = conf
    return out
