"""Scipion objects <-> CryoMine particle tables (the files the core reads and writes).

Only this module knows both sides. Coordinates go to the core in voxels of their tomogram,
referred to the first voxel (``BOTTOM_LEFT_CORNER``); tilt ranges come from each item's
acquisition (``ProtImportSubTomograms`` sets it per item, not on the set).
"""

import os

import pandas as pd
from tomo.constants import BOTTOM_LEFT_CORNER

from cryomine_core.io import table as T


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
    rows = []
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
    T.write_table(path, pd.DataFrame(rows))
    return len(rows)


def readTable(path):
    """Read a particle table the core wrote (absolute image paths)."""
    return T.read_table(path)
