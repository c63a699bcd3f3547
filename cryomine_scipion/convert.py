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
from tomo.constants import BOTTOM_LEFT_CORNER

from cryomine_core.geometry import pose_to_scipion_matrix, scipion_matrix_to_pose
from cryomine_core.io import table as T
from cryomine_core.poses import table_poses, with_poses


def _tilt_range(acquisition):
    if acquisition is None:
        return None
    lo, hi = acquisition.getAngleMin(), acquisition.getAngleMax()
    if lo is None or hi is None:
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
        row = {T.TOMO_FILE: os.path.abspath(tomo.getFileName()), T.TOMO: tomo.getTsId(),
               T.COORDS[0]: x * factor, T.COORDS[1]: y * factor, T.COORDS[2]: z * factor,
               T.ITEM_ID: coord.getObjId()}
        tilt = _tilt_range(tomo.getAcquisition())
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
        row = {T.IMAGE: os.path.abspath(item.getFileName()), T.VOXEL_SIZE: item.getSamplingRate() or rate,
               T.ITEM_ID: item.getObjId()}
        tilt = _tilt_range(item.getAcquisition()) or tiltRange
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


def readTable(path):
    """Read a particle table the core wrote (absolute image paths)."""
    return T.read_table(path)
