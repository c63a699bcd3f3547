"""Per-subtomogram feature vectors for subdivision, streamed over the set in batches.

- :func:`network_features`: the penultimate layer of a classification network (the input of its
  last ``nn.Linear``), read with a forward pre-hook, so no network file needs a ``features()``
  method. Works for every network of :mod:`cryomine_core.models` (all end with a linear layer).
- :func:`model_features`: the same from a ``model.pt`` (:func:`~cryomine_core.classify.load_classifier`),
  after checking that the subtomograms have the model's box and voxel size.
- :func:`rif_features`: the rotation-invariant baseline (spherical-harmonic power per shell,
  :mod:`cryomine_core.features`), as ``log`` power so that no shell dominates.

Datasets are those of :mod:`cryomine_core.train` (``(volume (1, Z, Y, X), label, index)`` items,
z-scored per volume); one batch at a time is in memory, and features go to a numpy array or,
with ``out=``, into a caller's (e.g. memory-mapped) ``(N, F)`` array.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from cryomine_core.errors import CryomineError
from cryomine_core.io import table as T
from cryomine_core.train import VolumeDataset
from cryomine_core.train.loop import flush_denormals

log = logging.getLogger("cryomine")

RIF_DEFAULTS = {"l_max": 8, "n_shells": 8, "source": "both"}


def penultimate_layer(model: nn.Module) -> nn.Linear:
    """The last ``nn.Linear`` of ``model`` (its input is the penultimate-layer feature vector)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise CryomineError(f"{type(model).__name__}: the network has no linear output layer to take features "
                            "before; use a classification network of cryomine_core.models.")
    return linears[-1]


def feature_dimension(model: nn.Module) -> int:
    """Length ``F`` of the penultimate-layer feature vector of ``model``."""
    return int(penultimate_layer(model).in_features)


def _loader(dataset: Dataset, batch_size: int, workers: int) -> DataLoader:
    if batch_size < 1:
        raise CryomineError(f"--batch-size {batch_size}: give at least 1.")
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, drop_last=False)


@torch.no_grad()
def network_features(model: nn.Module, dataset: Dataset, *, device: torch.device | str = "cpu",
                     batch_size: int = 64, workers: int = 0, out: np.ndarray | None = None,
                     logits: list | None = None) -> np.ndarray:
    """Penultimate-layer features ``(N, F)`` float32 of every item of ``dataset``, in dataset order.

    The model is put in eval mode (dropout off, batch-norm running statistics), so the features
    of an item do not depend on the batch it is in. ``out``: optional preallocated ``(N, F)`` array.
    ``logits``: optional list that receives the network's output ``(b, C)`` of every batch.
    """
    device = torch.device(device)
    layer = penultimate_layer(model)
    n, f = len(dataset), int(layer.in_features)
    if out is None:
        out = np.empty((n, f), dtype=np.float32)
    elif tuple(out.shape) != (n, f):
        raise ValueError(f"out must have shape {(n, f)}, got {tuple(out.shape)}")
    captured: list[torch.Tensor] = []
    handle = layer.register_forward_pre_hook(lambda _m, args: captured.append(args[0].detach()))
    was_training = model.training
    model.eval()
    start = 0
    try:
        with flush_denormals(device):
            for x, _, _ in _loader(dataset, batch_size, workers):
                captured.clear()
                y = model(x.to(device))
                if logits is not None:
                    logits.append(y.detach().float().cpu())
                feats = captured[-1].reshape(x.shape[0], -1).float().cpu().numpy()
                out[start:start + len(feats)] = feats
                start += len(feats)
    finally:
        handle.remove()
        model.train(was_training)
    return out


def _rif_batch(x: torch.Tensor, settings: dict) -> np.ndarray:
    from cryomine_core.features import rotation_invariant_features

    feats = rotation_invariant_features(x[:, 0], normalise=False, **settings).cpu().numpy()
    return np.log(np.maximum(feats, 1e-12)).astype(np.float32)


def rif_features(dataset: Dataset, *, batch_size: int = 64, workers: int = 0, out: np.ndarray | None = None,
                 **settings) -> np.ndarray:
    """Rotation-invariant features ``(N, F)`` float32 (log spherical-harmonic power per shell).

    ``settings`` go to :func:`~cryomine_core.features.rotation_invariant_features` (default
    ``l_max=8, n_shells=8, source='both'``: ``F = 2 * 8 * 9 = 144``).
    """
    cfg = {**RIF_DEFAULTS, **settings}
    n = len(dataset)
    rows = []
    start = 0
    for x, _, _ in _loader(dataset, batch_size, workers):
        feats = _rif_batch(x, cfg)
        if out is None:
            rows.append(feats)
        else:
            out[start:start + len(feats)] = feats
        start += len(feats)
    if out is not None:
        return out
    if not rows:
        return np.zeros((n, 0), dtype=np.float32)
    return np.concatenate(rows)


def open_features(path: str | os.PathLike, n: int, dim: int) -> np.ndarray:
    """A writable memory-mapped ``(n, dim)`` float32 ``.npy`` file for features."""
    return np.lib.format.open_memmap(str(path), mode="w+", dtype=np.float32, shape=(int(n), int(dim)))


def rif_dimension(**settings) -> int:
    """Length of the rotation-invariant feature vector for ``settings`` (see :func:`rif_features`)."""
    cfg = {**RIF_DEFAULTS, **settings}
    return int(cfg["n_shells"] * (cfg["l_max"] + 1) * (2 if cfg["source"] == "both" else 1))


def table_dataset(df: pd.DataFrame, box=None) -> VolumeDataset:
    """A streaming dataset over the ``rlnImageName`` files of a particle table (z-scored volumes)."""
    if len(df) == 0:
        raise CryomineError("the particle table is empty: nothing to subdivide. Give a table with subtomograms.")
    return VolumeDataset(df[T.IMAGE], None, normalise="zscore", box=box)


def model_features(df: pd.DataFrame, model_path: str | os.PathLike, *, device: torch.device | str = "cpu",
                   batch_size: int = 64, workers: int = 0, out_file: str | os.PathLike | None = None
                   ) -> tuple[np.ndarray, dict]:
    """Penultimate-layer features of the subtomograms of ``df`` from ``model.pt``.

    Returns ``(features (N, F), model metadata)``; with ``out_file`` the features are written
    batch by batch into a memory-mapped ``.npy`` file there (bounded memory for large sets).
    Raises CryomineError when the subtomograms' box or voxel size differs from the model's (the
    message says how to re-extract), or a volume is unreadable or non-finite (naming the file).
    """
    from cryomine_core.classify.model_file import load_classifier
    from cryomine_core.classify.predicting import check_compatible

    if len(df) == 0:
        raise CryomineError("the particle table is empty: nothing to subdivide. Give a table with subtomograms.")
    model, meta = load_classifier(model_path, device)
    check_compatible(df, meta, str(model_path))
    ds = VolumeDataset(df[T.IMAGE], None, normalise=meta.get("normalise", "zscore"),
                       box=tuple(int(b) for b in meta["box"]))
    out = None if out_file is None else open_features(out_file, len(df), int(penultimate_layer(model).in_features))
    feats = network_features(model, ds, device=device, batch_size=batch_size, workers=workers, out=out)
    log.info("features of %d subtomograms from %s (%s, %d dimensions)", len(df), model_path, meta["architecture"],
             feats.shape[1])
    return feats, meta
