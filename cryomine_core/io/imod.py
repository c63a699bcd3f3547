"""IMOD model (.mod) points through the ``imodmodel`` package.

An IMOD model holds objects, contours and points; for particle picking each point is one
particle. Points are read as xyz in voxels of the tomogram the model was made on. IMOD and
Scipion's ``BOTTOM_LEFT_CORNER`` may differ by half a voxel depending on how the model was
made; CryoMine does not guess: ``offset_voxels`` (default 0) is added to every coordinate on
reading and subtracted on writing, so a user can state the convention of their files.
"""

from __future__ import annotations

import os
from pathlib import Path

import imodmodel
import numpy as np
import pandas as pd

from cryomine_core.errors import InputFileError
from cryomine_core.io.atomic import atomic_path


def read_imod_points(path: str | os.PathLike, *, offset_voxels: float = 0.0) -> pd.DataFrame:
    """Read every point of an IMOD model: columns ``object_id, contour_id, x, y, z`` (voxels)."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: IMOD model not found.")
    try:
        df = imodmodel.read(str(path))
    except (ValueError, OSError, EOFError) as exc:
        raise InputFileError(f"{path}: not a readable IMOD model ({exc}).") from exc
    if len(df) == 0:
        raise InputFileError(f"{path}: the IMOD model has no points.")
    df = df.reset_index(drop=True)
    df[["x", "y", "z"]] = df[["x", "y", "z"]].astype(float) + offset_voxels
    return df


def write_imod_points(path: str | os.PathLike, xyz: np.ndarray, *, object_id: int = 0,
                      offset_voxels: float = 0.0) -> Path:
    """Write points (n, 3) xyz voxels as one scattered-point object, one contour per point."""
    xyz = np.asarray(xyz, dtype=float).reshape(-1, 3) - offset_voxels
    df = pd.DataFrame({"object_id": object_id, "contour_id": np.arange(len(xyz)),
                       "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]})
    path = Path(path)
    with atomic_path(path) as tmp:
        imodmodel.write(df, tmp)
    return path
