"""Training data for the segmenter: a few annotated boxes in tomograms, patches with augmentation.

An *annotation* is a tomogram ``(Z, Y, X)`` with a class label map of the same shape (a TomoMask:
0 background, positive integers the classes; e.g. the ``labels/`` maps of ``cryomine simulate
tomograms``) and a handful of *boxes*: cubic sub-volumes whose voxels are trusted. Only voxels in
boxes are used for training, so a user labels a few boxes and leaves the rest of the map at 0.

Boxes are given as centres (xyz voxels) with one edge for all, from a particle-table-like STAR/CSV
file, or chosen automatically (:func:`choose_boxes`: ``n`` boxes centred on annotated object
voxels of every class in turn, as a user would pick them).

:class:`PatchDataset` draws training patches inside the boxes (half of them centred on an object
voxel), with augmentation: flips along x and y, an optional 90-degree rotation in the xy plane
(it moves the missing wedge from the y to the x tilt axis, so it is off by default) and intensity
jitter (gain, offset, added Gaussian noise). Randomness comes from torch's global generator, whose
state the training loop checkpoints, so an interrupted run resumes identically.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from cryomine_core.errors import CryomineError, InputFileError
from cryomine_core.io import table as T
from cryomine_core.io.columns import BOX_SIZE
from cryomine_core.io.mrc import read_mrc
from cryomine_core.segment.tiling import normalise_tomogram

log = logging.getLogger("cryomine")

__all__ = ["Annotation", "load_annotation", "choose_boxes", "read_boxes", "PatchDataset", "BoxDataset",
           "class_values", "read_volume", "balance_keep", "IGNORE"]

#: target value ignored by the loss (torch's cross-entropy default)
IGNORE = -100


def balance_keep(annotations: Sequence[Annotation], lut: np.ndarray, n_classes: int, power: float = 1.0) -> np.ndarray:
    """Per class index, the probability of keeping a voxel in the loss: ``(f_min / f_c) ** power`` with
    ``f_c`` the class's voxel fraction in the training boxes. ``power = 1`` equalises the classes'
    expected voxel counts (inverse-frequency weighting by subsampling), 0 keeps every voxel."""
    counts = np.zeros(n_classes, dtype=np.float64)
    for a in annotations:
        for b, s in zip(a.boxes, a.split):
            if s == "train":
                counts += np.bincount(lut[a.labels[b[0]:b[3], b[1]:b[4], b[2]:b[5]]].ravel(), minlength=n_classes)
    present = counts > 0
    keep = np.ones(n_classes, dtype=np.float64)
    keep[present] = (counts[present].min() / counts[present]) ** float(power)
    return keep.astype(np.float32)


def read_volume(path: str | os.PathLike, what: str = "tomogram") -> tuple[np.ndarray, float]:
    """Read a 3-D MRC volume, refusing NaN/infinite values with a message naming the file."""
    path = Path(path)
    data, vs = read_mrc(path, check_finite=False)
    if data.ndim != 3:
        raise InputFileError(f"{path}: expected one 3-D {what} (z, y, x), found data of shape {data.shape}. Give a "
                             "single volume per file.")
    bad = int(data.size - np.count_nonzero(np.isfinite(data)))
    if bad:
        raise InputFileError(f"{path}: {bad} voxel(s) of the {what} are NaN or infinite. Fix or re-reconstruct the "
                             "file (e.g. replace NaN by the mean) before segmenting.")
    return data, vs


@dataclass
class Annotation:
    """One annotated tomogram: normalised volume, label map (int64 class indices), boxes.

    ``boxes`` are ``(z0, y0, x0, z1, y1, x1)`` voxel ranges (clipped to the volume); ``split`` says
    ``train`` or ``val`` per box.
    """

    name: str
    tomogram_path: str
    labels_path: str
    volume: np.ndarray
    labels: np.ndarray
    voxel_size: float
    boxes: list[tuple[int, int, int, int, int, int]] = field(default_factory=list)
    split: list[str] = field(default_factory=list)


def load_annotation(tomogram: str | os.PathLike, labels: str | os.PathLike) -> Annotation:
    """Read a tomogram and its label map and check that they fit together."""
    vol, vs = read_volume(tomogram, "tomogram")
    lab, _ = read_volume(labels, "label map")
    if lab.shape != vol.shape:
        raise InputFileError(f"{labels}: label map of shape {lab.shape} (z, y, x) does not match the tomogram "
                             f"{tomogram} of shape {vol.shape}. Give the label map made for this tomogram "
                             "(same size and binning).")
    if np.any(lab < 0) or np.any(lab != np.round(lab)):
        raise InputFileError(f"{labels}: the label map holds negative or non-integer values; it must hold 0 for "
                             "background and positive integer class labels.")
    norm, _, _ = normalise_tomogram(vol)
    return Annotation(Path(tomogram).stem, str(tomogram), str(labels), norm, lab.astype(np.int64), vs)


def _box_at(centre_zyx, edge: int, shape) -> tuple[int, int, int, int, int, int]:
    lo = [int(round(c)) - edge // 2 for c in centre_zyx]
    lo = [min(max(v, 0), max(n - edge, 0)) for v, n in zip(lo, shape)]
    hi = [min(v + edge, n) for v, n in zip(lo, shape)]
    return (lo[0], lo[1], lo[2], hi[0], hi[1], hi[2])


def choose_boxes(labels: np.ndarray, n: int, edge: int, seed: int = 0) -> list[tuple[int, int, int, int, int, int]]:
    """``n`` boxes of ``edge`` voxels centred on object voxels, cycling through the classes present.

    Boxes avoid overlapping earlier ones when possible (up to 200 tries each)."""
    rng = np.random.default_rng(seed)
    classes = [int(c) for c in np.unique(labels) if c > 0]
    if not classes:
        return []
    out: list[tuple[int, ...]] = []
    for k in range(n):
        c = classes[k % len(classes)]
        idx = np.flatnonzero(labels.reshape(-1) == c)
        best = None
        for _ in range(200):
            centre = np.unravel_index(int(idx[rng.integers(len(idx))]), labels.shape)
            box = _box_at(centre, edge, labels.shape)
            best = best or box
            if all(any(box[a] >= o[a + 3] or o[a] >= box[a + 3] for a in range(3)) for o in out):
                best = box
                break
        out.append(best)
    return out  # type: ignore[return-value]


def read_boxes(path: str | os.PathLike, edge: int, annotations: Sequence[Annotation]) -> None:
    """Fill the boxes of ``annotations`` from a STAR (particle-table block) or CSV file of box centres.

    Columns: ``rlnCoordinateX/Y/Z`` (centre, voxels; in a CSV also ``x, y, z``), optional
    ``rlnTomoName`` (or ``tomo``) matching a tomogram's file name or stem (needed with several
    tomograms), optional ``cmBoxSize`` (edge, voxels; default ``edge``).
    """
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: boxes table not found. Give a STAR or CSV file of box centres, or --boxes N.")
    if path.suffix.lower() == ".csv":
        df = pd.read_csv(path)
        df = df.rename(columns={"x": T.COORDS[0], "y": T.COORDS[1], "z": T.COORDS[2], "tomo": T.TOMO,
                                "size": BOX_SIZE})
        T.validate_table(df, require=T.COORDS, source=str(path))
    else:
        df = T.read_table(path, require=T.COORDS, resolve_paths=False)
    for r in df.to_dict("records"):
        if len(annotations) == 1:
            target = annotations[0]
        else:
            if T.TOMO not in df.columns:
                raise InputFileError(f"{path}: several tomograms are given, so every box needs {T.TOMO} (the "
                                     "tomogram's file name or stem).")
            key = Path(str(r[T.TOMO])).stem
            match = [a for a in annotations if a.name == key or Path(a.tomogram_path).name == str(r[T.TOMO])]
            if not match:
                raise InputFileError(f"{path}: box on tomogram '{r[T.TOMO]}', which is not among "
                                     f"{[a.name for a in annotations]}.")
            target = match[0]
        e = int(r.get(BOX_SIZE, edge) or edge)
        centre = (float(r[T.COORDS[2]]), float(r[T.COORDS[1]]), float(r[T.COORDS[0]]))
        if not all(0 <= c < n for c, n in zip(centre, target.volume.shape)):
            raise InputFileError(f"{path}: box centre {centre[::-1]} (x, y, z) lies outside tomogram {target.name} "
                                 f"of size {target.volume.shape[::-1]} (x, y, z).")
        target.boxes.append(_box_at(centre, e, target.volume.shape))


def class_values(annotations: Sequence[Annotation]) -> list[int]:
    """Sorted label values seen inside the boxes, 0 (background) first; raises when no object voxel is
    annotated."""
    seen = {0}
    for a in annotations:
        for b in a.boxes:
            seen.update(int(v) for v in np.unique(a.labels[b[0]:b[3], b[1]:b[4], b[2]:b[5]]))
    if len(seen) < 2:
        files = ", ".join(a.labels_path for a in annotations)
        raise CryomineError(f"{files}: no object voxel (label > 0) inside the annotated boxes. Annotate at least one "
                            "object in the label map, or place the boxes (--boxes) on annotated objects.")
    return sorted(seen)


class PatchDataset(Dataset):
    """Random augmented patches from the training boxes.

    Items are ``(patch (1, Pz, Py, Px) float32, labels (Pz, Py, Px) int64 class indices, index)``;
    ``len`` is the number of patches per epoch.

    Args:
        annotations: annotated tomograms (their ``split == 'train'`` boxes are used).
        lut: label value -> class index lookup (array indexed by value).
        patch: patch edge (clipped per axis to the smallest box, so patches lie inside boxes).
        n_items: patches per epoch.
        object_fraction: fraction of patches centred on an object voxel.
        rot90: allow 90-degree rotations in the xy plane.
        jitter: intensity jitter strength (0 disables).
        keep: per class index, the probability that a voxel of that class counts in the loss
            (:func:`balance_keep`); the others get the ignore label ``IGNORE``.
    """

    def __init__(self, annotations: Sequence[Annotation], lut: np.ndarray, patch: int, n_items: int, *,
                 object_fraction: float = 0.5, rot90: bool = False, jitter: float = 0.1, split: str = "train",
                 keep: np.ndarray | None = None):
        self.keep = None if keep is None else np.asarray(keep, dtype=np.float32)
        self.items = [(a, b) for a in annotations for b, s in zip(a.boxes, a.split) if s == split]
        if not self.items:
            raise CryomineError("no training box: give more boxes (--boxes).")
        smallest = np.min([[b[3] - b[0], b[4] - b[1], b[5] - b[2]] for _, b in self.items], axis=0)
        self.patch = tuple(int(min(patch, s)) for s in smallest)
        if rot90 and self.patch[1] != self.patch[2]:
            rot90 = False
        self.lut, self.n, self.object_fraction, self.rot90, self.jitter = lut, int(n_items), object_fraction, rot90, \
            jitter
        self.labels = np.zeros(self.n, dtype=np.int64)  # per-item labels for the loop's sampler (unused)
        weights = np.array([np.prod([b[3] - b[0], b[4] - b[1], b[5] - b[2]]) for _, b in self.items], dtype=float)
        self.box_p = weights / weights.sum()
        self.objects = []
        for a, b in self.items:
            sub = a.labels[b[0]:b[3], b[1]:b[4], b[2]:b[5]]
            self.objects.append(np.argwhere(sub > 0) + np.array(b[:3]))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int):
        g = np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))
        k = int(g.choice(len(self.items), p=self.box_p))
        a, b = self.items[k]
        lo, hi = np.array(b[:3]), np.array(b[3:])
        objs = self.objects[k]
        if len(objs) and g.random() < self.object_fraction:
            centre = objs[g.integers(len(objs))]
        else:
            centre = lo + (g.random(3) * (hi - lo)).astype(int)
        p = np.array(self.patch)
        corner = np.clip(centre - p // 2, lo, hi - p)
        sl = tuple(slice(int(c), int(c + n)) for c, n in zip(corner, p))
        x = a.volume[sl].copy()
        y = self.lut[a.labels[sl]]
        if g.random() < 0.5:
            x, y = x[:, :, ::-1], y[:, :, ::-1]
        if g.random() < 0.5:
            x, y = x[:, ::-1, :], y[:, ::-1, :]
        if self.rot90 and g.random() < 0.5:
            x, y = np.rot90(x, 1, axes=(1, 2)), np.rot90(y, 1, axes=(1, 2))
        if self.jitter > 0:
            x = x * (1.0 + self.jitter * g.uniform(-2, 2)) + self.jitter * g.normal()
            x = x + (self.jitter * g.uniform(0, 2)) * g.standard_normal(x.shape).astype(np.float32)
        y = np.ascontiguousarray(y, dtype=np.int64)
        if self.keep is not None:
            y = np.where(g.random(y.shape, dtype=np.float32) < self.keep[y], y, IGNORE)
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None]
        return xt, torch.from_numpy(y), index


class BoxDataset(Dataset):
    """The boxes of one split as they are (no augmentation), cropped to a common shape: validation."""

    def __init__(self, annotations: Sequence[Annotation], lut: np.ndarray, split: str = "val",
                 keep: np.ndarray | None = None):
        self.keep = None if keep is None else np.asarray(keep, dtype=np.float32)
        self.items = [(a, b) for a in annotations for b, s in zip(a.boxes, a.split) if s == split]
        shapes = np.array([[b[3] - b[0], b[4] - b[1], b[5] - b[2]] for _, b in self.items]).reshape(-1, 3)
        self.shape = tuple(int(s) for s in shapes.min(axis=0)) if len(shapes) else (0, 0, 0)
        self.lut = lut
        self.labels = np.zeros(len(self.items), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        a, b = self.items[index]
        sl = tuple(slice(b[i], b[i] + self.shape[i]) for i in range(3))
        x = torch.from_numpy(np.ascontiguousarray(a.volume[sl]))[None]
        y = self.lut[a.labels[sl]].astype(np.int64)
        if self.keep is not None:  # the same subsampling as in training, fixed per box
            g = np.random.default_rng(index)
            y = np.where(g.random(y.shape, dtype=np.float32) < self.keep[y], y, IGNORE)
        return x, torch.from_numpy(y), index
