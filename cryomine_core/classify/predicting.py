"""``cryomine classify predict``: apply a trained classifier to a particle table.

Writes ``out_dir/particles.star``: the input rows plus

- ``rlnClassNumber``: predicted class, 1-based in the model's class order (``class_names`` of
  ``model.pt``); **0** when the calibrated confidence is below ``unknown_threshold`` (0 is the
  particle table's "unlabelled"), with ``cmClassName`` = ``unknown``;
- ``cmClassName``: the predicted class's name (or ``unknown``);
- ``cmScore``: calibrated confidence, the largest of the class probabilities;
- ``cmProb1`` ... ``cmProbC``: calibrated probability of each class (model order);
- ``cmInputClassNumber`` / ``cmInputClassName``: the input's own labels, when it had any.

and ``out_dir/metrics.json`` (counts per class, throughput, and accuracy against the input labels
when those use the model's class names).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Subset

from cryomine_core import distributed
from cryomine_core.classify.model_file import load_classifier
from cryomine_core.device import select_device
from cryomine_core.errors import CryomineError, InputFileError
from cryomine_core.io import table as T
from cryomine_core.io.atomic import atomic_write_text
from cryomine_core.io.columns import INPUT_CLASS, INPUT_CLASS_NAME, PROB_PREFIX
from cryomine_core.io.mrc import read_mrc_header
from cryomine_core.train import VolumeDataset, predict_logits
from cryomine_core.validate import check_subtomograms

log = logging.getLogger("cryomine")

UNKNOWN = "unknown"


def check_compatible(df, meta: dict, model_path: str, *, rel_tol: float = 1e-3) -> None:
    """Refuse subtomograms whose box or voxel size differs from the model's, saying what to do."""
    box = tuple(int(b) for b in meta["box"])
    vs = float(meta["voxel_size"])
    first = df[T.IMAGE].iloc[0]
    head = read_mrc_header(first)
    got_vs = float(df[T.VOXEL_SIZE].iloc[0]) if T.VOXEL_SIZE in df.columns else head.voxel_size
    edge = "x".join(str(b) for b in box)
    if tuple(head.shape) != box:
        raise InputFileError(
            f"box mismatch: {first} is {'x'.join(str(s) for s in head.shape)} voxels but the model {model_path} was "
            f"trained on {edge} at {vs:.3f} Å/voxel. Re-extract the subtomograms with box {box[-1]} at {vs:.3f} "
            f"Å/voxel "
            f"(cryomine extract --box {box[-1]} --voxel-size {vs:.3f}), or train a model on subtomograms of this box.")
    if vs > 0 and got_vs > 0 and abs(got_vs - vs) > rel_tol * vs:
        raise InputFileError(
            f"voxel-size mismatch: {first} has {got_vs:.3f} Å/voxel but the model {model_path} was trained at "
            f"{vs:.3f} Å/voxel (box {edge}). Re-extract or rescale the subtomograms to {vs:.3f} Å/voxel with box "
            f"{box[-1]} (cryomine extract --box {box[-1]} --voxel-size {vs:.3f}), or train a model at this voxel size.")
    check_subtomograms(df, expect_box=box, expect_voxel_size=vs if vs > 0 else None)


def predict_table(table: str | os.PathLike, model_path: str | os.PathLike, out_dir: str | os.PathLike, *,
                  batch_size: int = 256, unknown_threshold: float | None = None, device: str = "auto",
                  workers: int = 0, amp: str | bool = "auto", channels_last: str | bool = "auto") -> dict:
    """Classify every subtomogram of ``table`` with ``model.pt``; write ``particles.star`` and ``metrics.json``.

    The subtomograms are read in batches (memory depends on ``batch_size``, not on the set). Under
    ``torchrun`` each process classifies its share (:mod:`cryomine_core.distributed`), the logits
    are gathered and rank 0 writes the one result.
    """
    if unknown_threshold is not None and not 0 <= unknown_threshold <= 1:
        raise CryomineError(f"--unknown-threshold {unknown_threshold}: give a probability in [0, 1].")
    if batch_size < 1:
        raise CryomineError(f"--batch-size {batch_size}: give at least 1.")
    dev = select_device(device)
    distributed.setup(dev)
    model, meta = load_classifier(model_path, dev)
    df = T.read_table(table, require=(T.IMAGE,))
    check_compatible(df, meta, str(model_path))
    names = list(meta["class_names"])
    ds = VolumeDataset(df[T.IMAGE], None, normalise=meta.get("normalise", "zscore"),
                       box=tuple(int(b) for b in meta["box"]))
    t0 = time.perf_counter()
    tta_range = tuple(meta["tta_range"]) if meta.get("tta_range") else None
    if tta_range is not None:
        log.info("test-time augmentation over the wedge-preserving rotations of tilt range %g..%g", *tta_range)
    mine = distributed.share(len(df))
    part, _ = predict_logits(model, Subset(ds, mine.tolist()), device=dev, batch_size=batch_size, workers=workers,
                             amp=amp, channels_last=channels_last, tta_range=tta_range)
    logits = torch.zeros((len(df), len(meta["class_names"])), dtype=torch.float32)
    logits[torch.as_tensor(mine, dtype=torch.long)] = part
    distributed.sum_(logits)  # every row comes from exactly one process
    seconds = time.perf_counter() - t0
    if not distributed.is_writer():
        return {"n": int(len(df)), "rows_classified_here": int(len(mine)), "seconds": seconds}
    temperature = float(meta.get("temperature", 1.0))
    probs = torch.softmax(logits.double() / temperature, dim=1).numpy()
    conf = probs.max(axis=1)
    pred = probs.argmax(axis=1)
    unknown = conf < unknown_threshold if unknown_threshold is not None else np.zeros(len(pred), dtype=bool)

    out_df = df.copy()
    if T.CLASS in df.columns:
        out_df[INPUT_CLASS] = df[T.CLASS].astype(int)
    if T.CLASS_NAME in df.columns:
        out_df[INPUT_CLASS_NAME] = df[T.CLASS_NAME].astype(str)
    out_df[T.CLASS] = np.where(unknown, 0, pred + 1).astype(int)
    out_df[T.CLASS_NAME] = [UNKNOWN if u else names[p] for p, u in zip(pred, unknown)]
    out_df[T.SCORE] = conf
    for i in range(len(names)):
        out_df[f"{PROB_PREFIX}{i + 1}"] = probs[:, i]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    T.write_table(out / "particles.star", out_df)

    counts = {n: int(((pred == i) & ~unknown).sum()) for i, n in enumerate(names)}
    metrics = {
        "model": str(Path(model_path).resolve()), "architecture": meta["architecture"], "class_names": names,
        "class_numbers_out": {n: i + 1 for i, n in enumerate(names)}, "unknown_class_number": 0,
        "probability_columns": {f"{PROB_PREFIX}{i + 1}": n for i, n in enumerate(names)},
        "n": int(len(df)), "counts": counts, "n_unknown": int(unknown.sum()),
        "unknown_threshold": unknown_threshold, "temperature": temperature, "tta_range": tta_range,
        "mean_score": float(conf.mean()) if len(conf) else None,
        "seconds": seconds, "subtomograms_per_s": len(df) / max(seconds, 1e-9), "device": str(dev),
        "batch_size": batch_size, "processes": distributed.world_size(),
    }
    if INPUT_CLASS_NAME in out_df.columns:
        truth = out_df[INPUT_CLASS_NAME].to_numpy()
        known = np.isin(truth, names)
        if known.any():
            metrics["accuracy_vs_input_labels"] = float((np.array(names)[pred[known]] == truth[known]).mean())
            metrics["n_compared"] = int(known.sum())
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    log.info("classified %d subtomograms in %.2f s (%.1f/s): %s%s", len(df), seconds, metrics["subtomograms_per_s"],
             counts, f", {metrics['n_unknown']} unknown" if unknown_threshold is not None else "")
    return metrics
