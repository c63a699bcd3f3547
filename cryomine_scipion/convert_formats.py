"""Scipion objects <-> RELION STAR / Dynamo .tbl / IMOD .mod, through CryoMine particle tables.

Every conversion goes through a particle table (:mod:`cryomine_core.io.table` columns), so the
pose conventions are those of :mod:`cryomine_core.geometry` and the coordinate conventions those
of :mod:`cryomine_core.io.formats` and :mod:`cryomine_core.io.relion`:

- Scipion transform of a subtomogram: ``M = [[R^T, -R^T t], [0, 1]]`` (no convention argument).
- Coordinates: voxels of their tomogram from the centre of the first voxel
  (``BOTTOM_LEFT_CORNER``); IMOD model points are shifted by (0.5, 0.5, 0), Dynamo positions
  by +1 (Dynamo's own convention) or 0 (scipion-em-dynamo's), RELION positions are unchanged.
- A Coordinate3D gets the rotation only (``M`` with ``t = 0``); a RELION origin shift given with
  coordinates is applied to the position (the particle centre), not stored in the matrix.
"""

import os

import numpy as np
import pandas as pd
import torch
from pwem.objects import Transform
from tomo.constants import BOTTOM_LEFT_CORNER
from tomo.objects import Coordinate3D, SubTomogram, TomoAcquisition

from cryomine_core.geometry import pose_to_scipion_matrix, scipion_matrix_to_pose
from cryomine_core.io import table as T
from cryomine_core.io.poses import table_poses, with_poses
from cryomine_scipion.convert import acquisitionTiltRange, filePath, subtomoMatrix


def stem(path):
    """File name without folder and extension(s) ``.mrc``, ``.rec``, ``.mod``, ``.tbl``, ..."""
    name = os.path.basename(str(path))
    for ext in (".mrc", ".mrcs", ".rec", ".st", ".ali", ".em", ".mod", ".tbl", ".star", ".txt"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return os.path.splitext(name)[0]


class TomogramIndex:
    """Find a tomogram of a set by tsId or by its file's name (without folder and extension)."""

    def __init__(self, tomograms):
        self.tomograms = [t.clone() for t in tomograms.iterItems(orderBy="id")]
        self.samplingRate = tomograms.getSamplingRate()
        self._byKey = {}
        for tomo in self.tomograms:
            for key in (tomo.getTsId(), stem(tomo.getFileName())):
                if key:
                    self._byKey.setdefault(str(key), tomo)

    def names(self):
        return sorted({t.getTsId() or stem(t.getFileName()) for t in self.tomograms})

    def find(self, name):
        """The tomogram whose tsId or file name is ``name`` (a path or a bare name), or None."""
        if name is None:
            return None
        return self._byKey.get(str(name)) or self._byKey.get(stem(name))

    def byNumber(self, number):
        """The ``number``-th tomogram of the set (1-based, in the set's order), or None."""
        return self.tomograms[number - 1] if 1 <= number <= len(self.tomograms) else None


# ----------------------------------------------------------------------------------------------
# Scipion -> particle table (exports)
# ----------------------------------------------------------------------------------------------
def _iterWithClass(inputSet):
    """(item, class number or None) for a SetOfSubTomograms or a SetOfClassesSubTomograms."""
    if inputSet.getClassName().startswith("SetOfClasses"):
        for cls in inputSet.iterItems(orderBy="id"):
            number = int(cls.getObjId())
            for item in cls.iterItems(orderBy="id"):
                yield item, number
    else:
        for item in inputSet.iterItems(orderBy="id"):
            yield item, (int(item.getClassId()) if item.getClassId() is not None else None)


def _coordinatesById(inputSet):
    """``{item id: (tsId, position BOTTOM_LEFT_CORNER)}`` of the subtomograms that have a coordinate.

    Coordinates lose their tomogram when stored; ``iterSubtomos`` of the subtomogram set (the
    images of a set of classes) links them again, which ``getPosition`` needs.
    """
    images = inputSet.getImages() if inputSet.getClassName().startswith("SetOfClasses") else inputSet
    info = {}
    for item in images.iterSubtomos():
        coord = item.getCoordinate3D() if item.hasCoordinate3D() else None
        if coord is not None and coord.getVolume() is not None:
            info[item.getObjId()] = (coord.getTomoId(), coord.getPosition(BOTTOM_LEFT_CORNER))
    return info


def _imageFile(item):
    return filePath(item)


def subtomogramsToExportTable(inputSet, coordSamplingRate=None):
    """A particle table of a SetOfSubTomograms or SetOfClassesSubTomograms, for exports.

    Rows keep the item id (``cmItemId``), the class number (the class's id for a set of classes,
    else the item's classId, when set), the tomogram name (the coordinate's tsId, else the
    tomogram file name), the coordinate in voxels of the subtomograms (scaled from
    ``coordSamplingRate`` when given), the tilt range of the item's acquisition and its pose.
    """
    rows, matrices = [], []
    setRate = inputSet.getSamplingRate()
    coordInfo = _coordinatesById(inputSet)
    for item, classNumber in _iterWithClass(inputSet):
        rate = item.getSamplingRate() or setRate
        row = {T.IMAGE: _imageFile(item), T.VOXEL_SIZE: float(rate), T.ITEM_ID: int(item.getObjId())}
        if classNumber is not None:
            row[T.CLASS] = classNumber
        tomoName = None
        if item.getObjId() in coordInfo:
            tomoName, position = coordInfo[item.getObjId()]
            factor = (coordSamplingRate / rate) if coordSamplingRate else 1.0
            for c, v in zip(T.COORDS, position):
                row[c] = float(v) * factor
        if not tomoName and item.getVolName():
            tomoName = stem(item.getVolName())
        if tomoName:
            row[T.TOMO] = str(tomoName)
        acq = item.getAcquisition() if item.hasAcquisition() else None
        tilt = acquisitionTiltRange(acq)
        if tilt is not None:
            row[T.TILT_MIN], row[T.TILT_MAX] = tilt
        rows.append(row)
        matrices.append(subtomoMatrix(item))
    if not rows:
        raise ValueError("The input has no subtomograms to export.")
    df = pd.DataFrame(rows)
    for col in (T.COORDS + (T.TOMO, T.TILT_MIN, T.TILT_MAX, T.CLASS)):
        if col in df.columns and df[col].isna().any():
            first = int(np.flatnonzero(df[col].isna().to_numpy())[0])
            if col == T.CLASS:
                df[T.CLASS] = df[T.CLASS].fillna(0)
            elif col in (T.TILT_MIN, T.TILT_MAX):
                df = df.drop(columns=[T.TILT_MIN, T.TILT_MAX], errors="ignore")
            else:
                raise ValueError(f"Subtomogram {df[T.ITEM_ID].iloc[first]} has no {col} while others have one: "
                                 "give every subtomogram a coordinate (extract them from coordinates).")
    if T.CLASS in df.columns:
        df[T.CLASS] = df[T.CLASS].astype(int)
    rot, shift = scipion_matrix_to_pose(torch.as_tensor(np.stack(matrices), dtype=torch.float64))
    return with_poses(df, rot, shift)


# ----------------------------------------------------------------------------------------------
# particle table -> Scipion (imports)
# ----------------------------------------------------------------------------------------------
def _acquisition(row, tiltRange, template=None):
    acq = template.clone() if template is not None else TomoAcquisition()
    if T.TILT_MIN in row and T.TILT_MAX in row and not (pd.isna(row[T.TILT_MIN]) or pd.isna(row[T.TILT_MAX])):
        acq.setAngleMin(float(row[T.TILT_MIN]))
        acq.setAngleMax(float(row[T.TILT_MAX]))
    elif tiltRange is not None:
        acq.setAngleMin(float(tiltRange[0]))
        acq.setAngleMax(float(tiltRange[1]))
    return acq


def unmatchedTomograms(df, index, source):
    """Raise ValueError naming the table's tomogram names that match no tomogram of ``index``."""
    if T.TOMO not in df.columns:
        if len(index.tomograms) == 1:
            return
        raise ValueError(f"{source}: the table does not say which tomogram each particle belongs to (no "
                         f"{T.TOMO} column) and {len(index.tomograms)} tomograms were given. Give only that "
                         "tomogram.")
    missing = sorted({str(n) for n in df[T.TOMO] if index.find(n) is None})
    if missing:
        raise ValueError(f"{source}: tomogram name(s) {missing} match no tomogram (tsIds / file names: "
                         f"{index.names()}). Give the tomograms the table refers to, or rename them so that "
                         "tsIds match.")


def _tomoFor(row, index):
    if T.TOMO in row and not pd.isna(row[T.TOMO]):
        return index.find(row[T.TOMO])
    return index.tomograms[0]


def tableToCoordinates(df, coordSet, index, coordSamplingRate=None, boxSize=20, applyOrigins=True):
    """Fill a SetOfCoordinates3D from a particle table (positions, rotations, class as group id).

    Args:
        df: rows with ``rlnCoordinateX/Y/Z`` (voxels at ``coordSamplingRate``).
        coordSet: the output set; it gets the tomograms' sampling rate and ``boxSize``.
        index: :class:`TomogramIndex` of the tomograms.
        coordSamplingRate: Å/voxel of the table's coordinates (None: the tomograms').
        applyOrigins: add the pose's shift (RELION origins) to the position.
    """
    tomoRate = index.samplingRate
    scale = (coordSamplingRate / tomoRate) if coordSamplingRate else 1.0
    coordSet.setSamplingRate(tomoRate)
    coordSet.setBoxSize(boxSize)
    rot, shift = table_poses(df)
    matrices = pose_to_scipion_matrix(rot, torch.zeros_like(shift)).numpy()
    shiftTomo = shift.numpy() * df[T.VOXEL_SIZE].to_numpy(float)[:, None] / tomoRate if applyOrigins \
        else np.zeros((len(df), 3))
    xyz = df[list(T.COORDS)].to_numpy(float) * scale + shiftTomo
    for i, (_, row) in enumerate(df.iterrows()):
        coord = Coordinate3D()
        coord.setVolume(_tomoFor(row, index))
        coord.setPosition(*xyz[i], BOTTOM_LEFT_CORNER)
        coord.setMatrix(matrices[i])
        if T.CLASS in row and not pd.isna(row[T.CLASS]):
            coord.setGroupId(int(row[T.CLASS]))
        coordSet.append(coord)
    return coordSet


def tableToSubtomograms(df, outSet, tiltRange=None, index=None, coordSet=None, coordSamplingRate=None):
    """Fill a SetOfSubTomograms from a particle table with images (transform, class, tilt range).

    With ``index`` (tomograms) and coordinates in the table, each subtomogram also gets its
    Coordinate3D (rotation only, position unshifted: the shift is in the subtomogram's transform),
    appended to ``coordSet``, and its tomogram file name.
    """
    voxel = float(df[T.VOXEL_SIZE].iloc[0])
    outSet.setSamplingRate(voxel)
    rot, shift = table_poses(df)
    matrices = pose_to_scipion_matrix(rot, shift).numpy()
    rotations = pose_to_scipion_matrix(rot, torch.zeros_like(shift)).numpy()
    withCoords = index is not None and all(c in df.columns for c in T.COORDS)
    scale = (coordSamplingRate / index.samplingRate) if (withCoords and coordSamplingRate) else 1.0
    firstAcq = None
    for i, (_, row) in enumerate(df.iterrows()):
        sub = SubTomogram()
        sub.setLocation(str(row[T.IMAGE]))
        sub.setSamplingRate(float(row[T.VOXEL_SIZE]))
        sub.setTransform(Transform(matrices[i]))
        if T.CLASS in row and not pd.isna(row[T.CLASS]):
            sub.setClassId(int(row[T.CLASS]))
        acq = _acquisition(row, tiltRange)
        firstAcq = firstAcq or acq
        sub.setAcquisition(acq)
        if withCoords:
            tomo = _tomoFor(row, index)
            coord = Coordinate3D()
            coord.setVolume(tomo)
            coord.setPosition(*(float(row[c]) * scale for c in T.COORDS), BOTTOM_LEFT_CORNER)
            coord.setMatrix(rotations[i])
            if T.CLASS in row and not pd.isna(row[T.CLASS]):
                coord.setGroupId(int(row[T.CLASS]))
            if coordSet is not None:
                coordSet.append(coord)
            sub.setCoordinate3D(coord)
            sub.setVolName(tomo.getFileName())
        outSet.append(sub)
    if firstAcq is not None:
        outSet.setAcquisition(firstAcq.clone())
    return outSet


def missingImages(df, source):
    """Raise ValueError naming the first subtomogram files of the table that do not exist."""
    missing = [p for p in df[T.IMAGE] if not os.path.exists(str(p))]
    if missing:
        raise ValueError(f"{source}: {len(missing)} subtomogram file(s) not found, e.g. {missing[:3]}. Relative "
                         "paths are read from the table's folder: keep the files beside it or write absolute paths.")
