"""Datasets and the sampler of the training loop.

:class:`VolumeDataset` streams subtomograms from MRC files (memory-mapped; one file is read when
its item is asked for, so the set need not fit in RAM). :class:`ArrayDataset` wraps volumes
already in memory (benchmarks, tests). Both return ``(volume (1, Z, Y, X) float32, label, index)``
with each volume normalised to zero mean and unit standard deviation (``normalise='zscore'``), after
spectral whitening with ``normalise='whiten'``.

:class:`EpochSampler` gives the order of one epoch as a pure function of ``(seed, epoch)``, so a
run resumed at epoch *k* draws exactly the batches an uninterrupted run draws; with
``balance=True`` it draws every class equally often (with replacement).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from cryomine_core.errors import CryomineError, InputFileError
from cryomine_core.fourier.whitening import whiten
from cryomine_core.io.mrc import read_mrc
from cryomine_core.validate import check_volume_array

NORMALISATIONS = ("zscore", "whiten", "none")


def normalise_volume(volume: torch.Tensor, mode: str = "zscore") -> torch.Tensor:
    """Zero mean, unit standard deviation per volume (``'zscore'``); spectral whitening
    (:func:`~cryomine_core.fourier.whitening.whiten`) then z-score (``'whiten'``); or unchanged
    (``'none'``). ``volume`` is ``(..., Z, Y, X)``; each trailing volume is normalised on its own."""
    if mode == "none":
        return volume
    if mode not in NORMALISATIONS:
        raise CryomineError(f"unknown normalisation '{mode}'; use one of {NORMALISATIONS}.")
    if mode == "whiten":
        volume = whiten(volume)
    dims = tuple(range(-3, 0))
    mean = volume.mean(dim=dims, keepdim=True)
    std = volume.std(dim=dims, keepdim=True)
    return (volume - mean) / std.clamp_min(1e-6)


class VolumeDataset(Dataset):
    """Subtomograms listed by path, read lazily through memory maps.

    Args:
        paths: MRC file of each item.
        labels: 0-based class of each item (``-1`` or None: unlabelled).
        normalise: ``'zscore'``, ``'whiten'`` or ``'none'`` (:func:`normalise_volume`).
        box: expected ``(z, y, x)``; an item of another shape raises InputFileError.
    """

    def __init__(self, paths: Sequence[str | os.PathLike], labels: Sequence[int] | None = None, *,
                 normalise: str = "zscore", box: Sequence[int] | None = None):
        self.paths = [str(p) for p in paths]
        self.labels = np.full(len(self.paths), -1, dtype=np.int64) if labels is None else np.asarray(labels, np.int64)
        if len(self.labels) != len(self.paths):
            raise ValueError("labels and paths differ in length")
        self.normalise = normalise
        self.box = tuple(int(b) for b in box) if box is not None else None

    def __len__(self) -> int:
        return len(self.paths)

    def volume(self, index: int) -> np.ndarray:
        path = self.paths[index]
        data, _ = read_mrc(path, mmap=True, check_finite=False)
        arr = np.array(data, dtype=np.float32, copy=True)  # one item leaves the memory map
        del data
        if arr.ndim != 3:
            raise InputFileError(f"{path}: expected one volume (z, y, x), found data of shape {arr.shape}.")
        if self.box is not None and arr.shape != self.box:
            raise InputFileError(f"{path}: box {arr.shape} differs from {self.box}. Re-extract all subtomograms "
                                 "with one box size.")
        check_volume_array(arr, path)  # NaN/inf or constant (no signal): refused, naming the file
        return arr

    def __getitem__(self, index: int):
        vol = normalise_volume(torch.from_numpy(self.volume(index)), self.normalise)
        return vol.unsqueeze(0), int(self.labels[index]), int(index)


class ArrayDataset(Dataset):
    """Volumes already in memory, ``(N, Z, Y, X)`` array or tensor, with optional labels."""

    def __init__(self, volumes, labels: Sequence[int] | None = None, *, normalise: str = "zscore"):
        vols = torch.as_tensor(np.asarray(volumes, dtype=np.float32) if not torch.is_tensor(volumes) else volumes)
        if vols.dim() != 4:
            raise ValueError(f"ArrayDataset needs (N, Z, Y, X) volumes, got {tuple(vols.shape)}")
        if not torch.isfinite(vols).all():
            bad = int((~torch.isfinite(vols)).flatten(1).any(1).nonzero()[0])
            raise CryomineError(f"volume {bad} holds NaN or infinite values; remove or fix it.")
        self.volumes = normalise_volume(vols.float(), normalise)
        n = vols.shape[0]
        self.labels = np.full(n, -1, dtype=np.int64) if labels is None else np.asarray(labels, np.int64)
        self.box = tuple(vols.shape[1:])

    def __len__(self) -> int:
        return int(self.volumes.shape[0])

    def __getitem__(self, index: int):
        return self.volumes[index].unsqueeze(0), int(self.labels[index]), int(index)


def dataset_labels(dataset: Dataset) -> np.ndarray:
    """Labels of a dataset (ours, or a Subset of ours)."""
    if hasattr(dataset, "labels"):
        return np.asarray(dataset.labels)
    if isinstance(dataset, torch.utils.data.Subset):
        return dataset_labels(dataset.dataset)[np.asarray(dataset.indices)]
    return np.array([int(dataset[i][1]) for i in range(len(dataset))])


class EpochSampler(Sampler[int]):
    """Per-epoch order that depends only on ``(seed, epoch)`` (resumable without saved state).

    Args:
        labels: 0-based labels of the items (used by ``balance``).
        seed: base seed.
        shuffle: random order (else the natural order).
        balance: draw ``len(labels)`` items per epoch with every class equally likely (with
            replacement), instead of a permutation.
    """

    def __init__(self, labels: Sequence[int], seed: int = 0, *, shuffle: bool = True, balance: bool = False):
        self.labels = np.asarray(labels, dtype=np.int64)
        self.seed = int(seed)
        self.shuffle = shuffle
        self.balance = balance
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.labels)

    def indices(self) -> list[int]:
        n = len(self.labels)
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch * 7919 + 17)
        if self.balance:
            classes, counts = np.unique(self.labels, return_counts=True)
            per_item = 1.0 / counts[np.searchsorted(classes, self.labels)]
            weights = torch.as_tensor(per_item, dtype=torch.float64)
            return torch.multinomial(weights, n, replacement=True, generator=gen).tolist()
        if self.shuffle:
            return torch.randperm(n, generator=gen).tolist()
        return list(range(n))

    def __iter__(self):
        return iter(self.indices())
