"""Scipion objects <-> CryoMine particle tables (the files the core reads and writes).

Only this module knows both sides. Coordinates go to the core in voxels of their tomogram,
referred to the first voxel (``BOTTOM_LEFT_CORNER``); tilt ranges come from each item's
acquisition (``ProtImportSubTomograms`` sets it per item, not on the set).
"""

import os

import numpy as np
import pandas as pd
import torch
from pwem.objects import Transform
from pyworkflow.object import Float, Integer, String
from tomo.constants import BOTTOM_LEFT_CORNER
from tomo.objects import Coordinate3D, SubTomogram, TomoAcquisition, Tomogram, TomoMask

from cryomine_core.geometry import pose_to_scipion_matrix, scipion_matrix_to_pose
from cryomine_core.io import table as T
from cryomine_core.io.columns import INSTANCE
from cryomine_core.io.mrc import split_stack_name
from cryomine_core.io.poses import table_poses, with_poses


def filePath(obj) -> str:
    """The absolute file path of a Scipion image object, without Scipion's format suffix.

    Scipion names some files ``path.mrc:mrc`` (the part after the colon tells its image handler the
    format); CryoMine's tools take the plain path. Every conversion goes through this one function.
    """
    name = obj.getFileName()
    path, sep, suffix = name.rpartition(":")
    if sep and suffix.lower() in ("mrc", "mrcs", "st", "rec", "map") and "/" not in suffix:
        name = path
    return os.path.abspath(name)


def imageName(item) -> str:
    """The core's ``rlnImageName`` of a Scipion subtomogram: its file, or ``k@stack`` for the k-th
    volume of a stack (Scipion's location index, 1-based like RELION's; 0 or None means a file of
    its own)."""
    index = item.getIndex()
    return f"{int(index)}@{filePath(item)}" if index else filePath(item)


def acquisitionTiltRange(acquisition):
    """The tilt range ``(min, max)`` of a Scipion acquisition, or None when it has none.

    The one reader of an acquisition's range in the plugin. Unset limits (None, or both 0, Scipion's
    empty acquisition) mean no range; any other pair is passed on as it is, and the core refuses an
    impossible one naming the item (cryomine_core.tilt_range).
    """
    if acquisition is None:
        return None
    lo, hi = acquisition.getAngleMin(), acquisition.getAngleMax()
    if lo is None or hi is None or (float(lo) == 0.0 and float(hi) == 0.0):
        return None
    return float(lo), float(hi)


def coordinatesToTable(coordSet, tomograms, path):
    """Write a coordinate table for ``cryomine extract``.

    Args:
        coordSet: SetOfCoordinates3D.
        tomograms: SetOfTomograms to cut from (matched to coordinates by tsId).
        path: STAR file to write.

    Returns the number of rows. Coordinates are scaled from the coordinates' sampling rate to
    each tomogram's voxels.
    """
    tomosById = {t.getTsId(): t.clone() for t in tomograms.iterItems()}
    coordRate = coordSet.getSamplingRate()
    rows, missing = [], set()
    for coord in coordSet.iterCoordinates():
        tomo = tomosById.get(coord.getTomoId())
        if tomo is None:
            missing.add(coord.getTomoId())
            continue
        factor = coordRate / tomo.getSamplingRate() if coordRate else 1.0
        x, y, z = coord.getPosition(BOTTOM_LEFT_CORNER)
        row = {T.TOMO_FILE: filePath(tomo), T.TOMO: tomo.getTsId(),
               T.COORDS[0]: x * factor, T.COORDS[1]: y * factor, T.COORDS[2]: z * factor,
               T.ITEM_ID: coord.getObjId()}
        tilt = acquisitionTiltRange(tomo.getAcquisition())
        if tilt is not None:
            row[T.TILT_MIN], row[T.TILT_MAX] = tilt
        rows.append(row)
    if not rows:
        raise ValueError(f"No coordinate matches a tomogram (coordinate tomogram ids: {sorted(missing)}; tomogram "
                         f"ids: {sorted(tomosById)}).")
    T.write_table(path, pd.DataFrame(rows), require=(T.TOMO_FILE, *T.COORDS))
    return len(rows)


def subtomogramsToTable(subtomos, path, tiltRange=None):
    """Write a particle table for a SetOfSubTomograms (image, voxel size, tilt range, ids).

    Args:
        tiltRange: ``(min, max)`` degrees to use for items without an acquisition tilt range;
            ``None`` leaves the columns out for such items (the core then refuses to guess).
    """
    rows, matrices = [], []
    rate = subtomos.getSamplingRate()
    for item in subtomos.iterItems():
        row = {T.IMAGE: imageName(item), T.VOXEL_SIZE: item.getSamplingRate() or rate,
               T.ITEM_ID: item.getObjId()}
        tilt = acquisitionTiltRange(item.getAcquisition()) or tiltRange
        if tilt is not None:
            row[T.TILT_MIN], row[T.TILT_MAX] = tilt
        if item.getClassId() is not None:
            row[T.CLASS] = int(item.getClassId())
        rows.append(row)
        matrices.append(subtomoMatrix(item))
    df = pd.DataFrame(rows)
    rot, shift = scipion_matrix_to_pose(torch.as_tensor(np.stack(matrices), dtype=torch.float64))
    T.write_table(path, with_poses(df, rot, shift))
    return len(rows)


def labelledSubtomogramsToTable(groups, path, tiltRange=None):
    """Write a labelled particle table for ``cryomine classify train``.

    Args:
        groups: sequence of ``(className, items)``; class numbers follow the order (1-based).
        path: STAR file to write.
        tiltRange: ``(min, max)`` degrees for items without an acquisition tilt range.

    Returns ``{className: count}``.
    """
    rows, counts = [], {}
    for number, (name, items) in enumerate(groups, start=1):
        counts[name] = 0
        for item in items:
            row = {T.IMAGE: imageName(item), T.VOXEL_SIZE: item.getSamplingRate(),
                   T.ITEM_ID: item.getObjId(), T.CLASS: number, T.CLASS_NAME: name}
            tilt = acquisitionTiltRange(item.getAcquisition()) or tiltRange
            if tilt is not None:
                row[T.TILT_MIN], row[T.TILT_MAX] = tilt
            rows.append(row)
            counts[name] += 1
    if not rows:
        raise ValueError("No labelled subtomograms: every class is empty.")
    T.write_table(path, pd.DataFrame(rows), require=(T.IMAGE, T.CLASS))
    return counts


def subtomoMatrix(item):
    """The item's 4x4 transform in Scipion's own convention (identity when it has none)."""
    transform = item.getTransform()
    if transform is None or transform.getMatrix() is None:
        return np.eye(4)
    return np.asarray(transform.getMatrix(), dtype=float)


def tableTransforms(df):
    """Scipion 4x4 matrices (n, 4, 4), Scipion's convention, from a table's RELION angles/origins."""
    rot, shift = table_poses(df)
    return pose_to_scipion_matrix(rot, shift).numpy()


def setTransformFromTable(item, matrix):
    """Give ``item`` the Scipion transform ``matrix`` (from :func:`tableTransforms`)."""
    item.setTransform(Transform(np.asarray(matrix, dtype=float)))


def readTable(path, require=(T.IMAGE,)):
    """Read a particle table the core wrote (image paths made absolute)."""
    return T.read_table(path, require=require)


# ----------------------------------------------------------------------------------------------
# Simulated data (``cryomine simulate``) -> Scipion objects
# ----------------------------------------------------------------------------------------------
TRUE_ANGLES = ("_cmTrueRot", "_cmTrueTilt", "_cmTruePsi")  # RELION ZYZ, degrees
TRUE_SHIFTS = ("_cmTrueShiftX", "_cmTrueShiftY", "_cmTrueShiftZ")  # Å, canonical t (= -RELION origin)


def tomoAcquisition(angleMin, angleMax, step, voltage=None, cs=None, amplitudeContrast=None):
    """A TomoAcquisition with the tilt range (degrees) and, when given, the microscope settings."""
    acq = TomoAcquisition(angleMin=angleMin, angleMax=angleMax, step=step)
    if voltage is not None:
        acq.setVoltage(voltage)
    if cs is not None:
        acq.setSphericalAberration(cs)
    if amplitudeContrast is not None:
        acq.setAmplitudeContrast(amplitudeContrast)
    return acq


def _itemAcquisition(acquisition, row):
    acq = acquisition.clone()
    if T.TILT_MIN in row and T.TILT_MAX in row:
        acq.setAngleMin(float(row[T.TILT_MIN]))
        acq.setAngleMax(float(row[T.TILT_MAX]))
    return acq


def tableToSubtomograms(df, outSet, acquisition, keepTruth=False):
    """Fill ``outSet`` (SetOfSubTomograms) with one SubTomogram per table row.

    Each item gets its image, voxel size, class id (``rlnClassNumber``) when present and its own
    acquisition carrying the row's tilt range; its transform is the identity. With ``keepTruth``,
    the row's pose (the simulator's ground truth) is kept in the attributes :data:`TRUE_ANGLES`
    and :data:`TRUE_SHIFTS` instead, so no protocol downstream starts from the answer.
    """
    voxel = float(df[T.VOXEL_SIZE].iloc[0])
    outSet.setSamplingRate(voxel)
    outSet.setAcquisition(acquisition.clone())
    if keepTruth:
        _, shift = table_poses(df)
        angles = df[list(T.ANGLES)].to_numpy(dtype=float)
        shifts = shift.numpy() * df[T.VOXEL_SIZE].to_numpy(dtype=float)[:, None]
    for i, (_, row) in enumerate(df.iterrows()):
        sub = SubTomogram()
        index, path = split_stack_name(row[T.IMAGE])
        if index is None:
            sub.setLocation(str(path))
        else:  # Scipion's location (index, file) of a volume in a stack
            sub.setLocation(index, str(path))
        sub.setSamplingRate(float(row[T.VOXEL_SIZE]))
        if T.CLASS in row:
            sub.setClassId(int(row[T.CLASS]))
        sub.setAcquisition(_itemAcquisition(acquisition, row))
        sub.setTransform(Transform(np.eye(4)))
        if keepTruth:
            for name, value in zip(TRUE_ANGLES + TRUE_SHIFTS, list(angles[i]) + list(shifts[i])):
                setattr(sub, name, Float(float(value)))
        outSet.append(sub)
    return outSet


def fileStem(path):
    """File name without folder and last extension (``tomograms/tomo000.mrc`` -> ``tomo000``)."""
    return os.path.splitext(os.path.basename(str(path)))[0]


def simulatedTomogramsToScipion(folder, df, acquisition, tomos, labels=None, instances=None):
    """Fill SetOfTomograms (and optionally SetOfTomoMasks of labels and instances) from a
    ``cryomine simulate tomograms`` output folder. The tsId of each tomogram is its file stem."""
    voxel = float(df[T.VOXEL_SIZE].iloc[0])
    names = sorted(fileStem(f) for f in os.listdir(os.path.join(folder, "tomograms")) if f.endswith(".mrc"))
    for target, sub, cls in ((tomos, "tomograms", Tomogram), (labels, "labels", TomoMask),
                             (instances, "instances", TomoMask)):
        if target is None:
            continue
        target.setSamplingRate(voxel)
        target.setAcquisition(acquisition.clone())
        for name in names:
            item = cls()
            item.setLocation(os.path.abspath(os.path.join(folder, sub, name + ".mrc")))
            item.setSamplingRate(voxel)
            item.setOrigin()
            item.setTsId(name)
            item.setAcquisition(acquisition.clone())
            if cls is TomoMask:
                item.setVolName(os.path.abspath(os.path.join(folder, "tomograms", name + ".mrc")))
            target.append(item)
    return names


def simulatedCoordinatesToScipion(df, tomos, coords, boxSize):
    """Fill SetOfCoordinates3D with the true particle positions of a simulated tomogram table.

    Positions are voxels from the first voxel (BOTTOM_LEFT_CORNER), the class number is the
    group id (the class name is in ``_cmClassName``, the instance label in ``_cmInstanceId``) and
    the true orientation is the coordinate's matrix in Scipion's convention.
    """
    byId = {t.getTsId(): t.clone() for t in tomos.iterItems()}
    coords.setSamplingRate(tomos.getSamplingRate())
    coords.setBoxSize(boxSize)
    rot, _ = table_poses(df)
    matrices = pose_to_scipion_matrix(rot, torch.zeros(len(df), 3, dtype=rot.dtype)).numpy()
    for i, (_, row) in enumerate(df.iterrows()):
        tomo = byId[fileStem(row[T.TOMO])]
        coord = Coordinate3D()
        coord.setVolume(tomo)
        coord.setPosition(*(float(row[c]) for c in T.COORDS), BOTTOM_LEFT_CORNER)
        coord.setMatrix(matrices[i])
        if T.CLASS in row:
            coord.setGroupId(int(row[T.CLASS]))
        coord._cmClassName = String(str(row.get(T.CLASS_NAME, "")))
        coord._cmInstanceId = Integer(int(row.get(INSTANCE, i + 1)))
        coords.append(coord)
    return coords
