"""``cryomine classify train``: train a CNN classifier on a labelled particle table.

Outputs in ``out_dir``:

- ``model.pt`` -- the classifier (:mod:`.model_file`);
- ``checkpoint.pt`` -- written after every epoch (resume with ``resume=True``);
- ``split.star`` -- the input rows with ``cmSplit`` (train/val/test) and the 0-based ``cmLabel``;
- ``metrics.json`` -- history, accuracies, confusion matrices, calibration, timings;
- ``training_curves.png``, ``confusion.png`` (validation split), ``confusion_test.png``.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from cryomine_core import __version__, distributed
from cryomine_core.classify.labels import (
    MIN_PER_CLASS,
    SPLIT,
    check_labels,
    given_split,
    stratified_split,
    table_labels,
)
from cryomine_core.classify.model_file import save_classifier
from cryomine_core.device import seed_everything, select_device
from cryomine_core.errors import CryomineError
from cryomine_core.io import table as T
from cryomine_core.io.atomic import atomic_write_text
from cryomine_core.io.columns import LABEL
from cryomine_core.io.outputs import remove_results
from cryomine_core.models import DEFAULT_MODEL, build_model, canonical_name, count_parameters
from cryomine_core.train import TrainConfig, VolumeDataset, confusion_summary, fit, fit_temperature, nll, predict_logits
from cryomine_core.train.augment import AugmentConfig
from cryomine_core.train.calibration import expected_calibration_error
from cryomine_core.train.data import NORMALISATIONS
from cryomine_core.train.plots import plot_confusion, plot_training_curves
from cryomine_core.train.recipes import DEFAULT_RECIPE, recipe_config, recipe_normalisation
from cryomine_core.validate import check_subtomograms, check_volume_values

log = logging.getLogger("cryomine")


def _evaluate(model, ds, labels_names, device, cfg, tta_range, temperature=1.0
              ) -> tuple[dict, torch.Tensor, np.ndarray]:
    logits, y = predict_logits(model, ds, device=device, batch_size=cfg.eval_batch_size or 2 * cfg.batch_size,
                               workers=cfg.workers, amp=cfg.amp, channels_last=cfg.channels_last, tta_range=tta_range)
    pred = logits.argmax(1).numpy()
    summary = confusion_summary(y, pred, labels_names)
    if len(y):
        summary["nll"] = nll(logits, y, 1.0)
        summary["nll_calibrated"] = nll(logits, y, temperature)
        probs = torch.softmax(logits.double() / temperature, dim=1)
        summary["ece_calibrated"] = expected_calibration_error(probs, y)
        summary["ece"] = expected_calibration_error(torch.softmax(logits.double(), 1), y)
    return summary, logits, y


def _tilt_range(df, given: tuple[float, float] | None, source: str) -> tuple[float, float]:
    """The set's tilt range: ``given``, else the table's (one range for all rows), else -60..60."""
    if given is not None:
        return float(given[0]), float(given[1])
    if T.TILT_MIN in df.columns and T.TILT_MAX in df.columns:
        ranges = T.tilt_ranges(df, source=source)
        unique = np.unique(ranges, axis=0)
        if len(unique) > 1:
            # the widest missing wedge of the set: its augmentation never shows data the others lack
            lo, hi = float(ranges[:, 0].max()), float(ranges[:, 1].min())
            log.warning("%s: %d different tilt ranges; augmentation and test-time augmentation use the narrowest, "
                        "%g..%g", source, len(unique), lo, hi)
            return lo, hi
        return float(unique[0, 0]), float(unique[0, 1])
    log.warning("%s: no tilt range in the table (cmTiltMin/cmTiltMax); augmentation and test-time augmentation "
                "assume -60..60. Give --tilt-range MIN MAX if the data were acquired otherwise.", source)
    return -60.0, 60.0


#: files of a finished ``classify train`` run (removed when a new run starts in the same folder)
RESULT_FILES = ("model.pt", "metrics.json", "split.star", "training_curves.png", "confusion.png", "confusion_test.png")


def chance_warning(arch: str, val_accuracy: float | None, val_labels: np.ndarray) -> str | None:
    """A warning when the kept model is no better than always answering the largest class."""
    if val_accuracy is None or len(val_labels) == 0:
        return None
    majority = float(np.bincount(val_labels).max() / len(val_labels))
    if val_accuracy > majority + 0.05:
        return None
    msg = (f"the network did not learn: validation accuracy {val_accuracy:.3f} is at the level of always answering "
           f"the largest class ({majority:.3f}). Its predictions are meaningless. Try --model compact3d (it learns "
           f"from a few hundred subtomograms per class), more labelled subtomograms, or check the labels.")
    log.warning("%s: %s", arch, msg)
    return msg


def train_classifier(table: str | os.PathLike, out_dir: str | os.PathLike, *, model: str = DEFAULT_MODEL,
                     config: TrainConfig | None = None, recipe: str = DEFAULT_RECIPE, overrides: dict | None = None,
                     augment: str | None = None, tilt_range: tuple[float, float] | None = None,
                     normalise: str | None = None, width: float = 1.0,
                     test_fraction: float = 0.2, val_fraction: float = 0.2, min_per_class: int = MIN_PER_CLASS,
                     device: str = "auto", resume: bool = False, check_finite: bool = True, plots: bool = True) -> dict:
    """Train a classifier on the labelled subtomograms of ``table``; write the outputs to ``out_dir``.

    The settings are ``config`` when given, else the ``recipe`` (:mod:`cryomine_core.train.recipes`)
    with ``overrides`` (TrainConfig fields; None keeps the recipe's) and, for ``augment``, another
    rotation group. ``tilt_range`` (degrees) is the wedge of the augmentation when the table has
    none. ``normalise`` is the per-subtomogram input normalisation (``zscore``, ``whiten`` or
    ``none``; default the recipe's, :func:`~cryomine_core.train.recipes.recipe_normalisation`),
    recorded in ``model.pt`` so that prediction and feature extraction do the same.

    Returns the metrics dict (also written to ``metrics.json``). Raises CryomineError for bad input:
    no labels, one class, a class under ``min_per_class`` examples, unreadable/NaN volumes, mixed box
    or voxel sizes, a box the architecture cannot take, or a checkpoint that does not match on resume.
    """
    arch = canonical_name(model)
    out = Path(out_dir)
    src = str(table)
    df = T.read_table(table, require=(T.IMAGE,))
    if config is None:
        wedge = _tilt_range(df, tilt_range, src)
        config = recipe_config(recipe, tilt_range=wedge, **(overrides or {}))
        if augment is not None:
            base = config.augment or AugmentConfig(tilt_range=wedge)
            # 'none' keeps an inactive augmentation that still carries the wedge for test-time augmentation
            off = {"max_shift": 0, "contrast": 0.0, "noise": 0.0} if augment == "none" else {}
            config = replace(config, augment=replace(base, group=augment, **off))
    cfg = config
    cfg.validate()
    normalise = normalise or recipe_normalisation(cfg.recipe)
    if normalise not in NORMALISATIONS:
        raise CryomineError(f"unknown input normalisation '{normalise}'; use one of {', '.join(NORMALISATIONS)}.")
    tta_range = cfg.tta_range()
    labels, names, numbers = table_labels(df, source=src)
    keep = labels >= 0
    if (~keep).any():
        log.warning("%s: %d unlabelled row(s) ignored", src, int((~keep).sum()))
    df = df.loc[keep].reset_index(drop=True)
    labels = labels[keep]
    counts = check_labels(labels, names, min_per_class=min_per_class, source=src)
    info = check_subtomograms(df)
    box, voxel = info["box"], info["voxel_size"]
    if check_finite:
        t0 = time.perf_counter()
        check_volume_values(df[T.IMAGE])
        log.info("checked %d volumes for NaN/inf in %.1f s", len(df), time.perf_counter() - t0)
    split = given_split(df, labels, source=src)
    if split is None:
        split = stratified_split(labels, test_fraction, val_fraction, seed=cfg.seed)
    else:
        log.info("%s: using the table's own %s column", src, SPLIT)
    dev = select_device(device)  # an unusable device or box is refused before anything is written
    distributed.setup(dev)  # under torchrun: one process group (each process trains on its part of each batch)
    seed_everything(cfg.seed)
    net = build_model(arch, len(names), box, width=width)
    out.mkdir(parents=True, exist_ok=True)
    if distributed.is_writer():
        if not resume:  # a new run: an earlier run's model must not outlive it half-way (kill -9)
            remove_results(out, RESULT_FILES)
        split_df = df.copy()
        split_df[SPLIT] = split
        split_df[LABEL] = labels
        T.write_table(out / "split.star", split_df)

    n_params = count_parameters(net)
    log.info("model %s (width %g): %.2f M parameters, box %s, %d classes %s; split train %d / val %d / test %d",
             arch, width, n_params / 1e6, box, len(names), names, (split == "train").sum(), (split == "val").sum(),
             (split == "test").sum())
    log.info("input normalisation: %s", normalise)
    sets = {s: VolumeDataset(df.loc[split == s, T.IMAGE], labels[split == s], box=box, normalise=normalise)
            for s in ("train", "val", "test")}
    t0 = time.perf_counter()
    result = fit(net, sets["train"], sets["val"], cfg, device=dev, checkpoint_path=out / "checkpoint.pt",
                 resume=resume, n_classes=len(names), extra_checkpoint={"architecture": arch, "class_names": names})
    train_seconds = time.perf_counter() - t0
    if not distributed.is_writer():  # rank 0 evaluates and writes the one model
        return {"model": arch, "processes": distributed.world_size()}

    val_summary, val_logits, val_y = _evaluate(net, sets["val"], names, dev, cfg, tta_range)
    temperature = fit_temperature(val_logits, val_y) if len(val_y) else 1.0
    if len(val_y):
        val_summary["nll_calibrated"] = nll(val_logits, val_y, temperature)
        val_summary["ece_calibrated"] = expected_calibration_error(
            torch.softmax(val_logits.double() / temperature, 1), val_y)
    t1 = time.perf_counter()
    test_summary, _, test_y = _evaluate(net, sets["test"], names, dev, cfg, tta_range, temperature)
    test_seconds = time.perf_counter() - t1
    n_train_seen = sum(len(sets["train"]) for _ in result.history)

    training = {
        "epochs_run": result.epochs_run, "best_epoch": result.best_epoch, "stopped_early": result.stopped_early,
        "monitor": result.monitor, "val_accuracy": val_summary["accuracy"] if len(val_y) else None,
        "test_accuracy": test_summary["accuracy"] if len(test_y) else None, "config": cfg.as_dict(),
        "width": width, "trained_on": datetime.datetime.now().isoformat(timespec="seconds"),
        "cryomine_version": __version__, "table": str(Path(table).resolve()),
    }
    save_classifier(out / "model.pt", net, voxel_size=voxel, class_names=names, class_numbers=numbers,
                    temperature=temperature, normalise=normalise, tta_range=tta_range, training=training)
    metrics = {
        "model": arch, "recipe": cfg.recipe, "normalise": normalise, "tta_range": tta_range, "width": width,
        "n_parameters": n_params, "box": box, "voxel_size": voxel,
        "class_names": names, "class_numbers": numbers, "n_per_class": counts,
        "n_split": {s: int((split == s).sum()) for s in ("train", "val", "test")},
        "n_per_class_split": {s: {n: int(((split == s) & (labels == i)).sum()) for i, n in enumerate(names)}
                              for s in ("train", "val", "test")},
        "history": result.history, "best_epoch": result.best_epoch, "stopped_early": result.stopped_early,
        "epochs_run": result.epochs_run, "monitor": result.monitor, "resumed_from_epoch": result.resumed_from_epoch,
        "temperature": temperature,
        "val_accuracy": val_summary["accuracy"] if len(val_y) else None,
        "test_accuracy": test_summary["accuracy"] if len(test_y) else None,
        "confusion_val": val_summary, "confusion_test": test_summary,
        "train_seconds": train_seconds,
        "train_seconds_per_subtomogram_epoch": result.seconds / max(n_train_seen, 1),
        "test_seconds_per_subtomogram": test_seconds / max(len(test_y), 1),
        "device": str(dev), "threads": torch.get_num_threads(), "processes": distributed.world_size(),
        "config": cfg.as_dict(),
        "split_table": "split.star", "split_column": SPLIT,
        "warning": chance_warning(arch, val_summary["accuracy"] if len(val_y) else None, labels[split == "val"]),
    }
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2, default=float))
    if plots:
        plot_training_curves(result.history, out / "training_curves.png", title=f"{arch}: {len(names)} classes")
        if len(val_y):
            plot_confusion(val_summary["matrix"], names, out / "confusion.png",
                           title=f"validation: accuracy {val_summary['accuracy']:.3f} (n={len(val_y)})")
        if len(test_y):
            plot_confusion(test_summary["matrix"], names, out / "confusion_test.png",
                           title=f"test: accuracy {test_summary['accuracy']:.3f} (n={len(test_y)})")
    log.info("classifier written to %s: val accuracy %s, test accuracy %s, temperature %.3f", out / "model.pt",
             metrics["val_accuracy"], metrics["test_accuracy"], temperature)
    return metrics
