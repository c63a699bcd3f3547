"""Dynamo particle tables (.tbl) through the ``dynamotable`` package.

Columns used by CryoMine: ``tag`` (particle id), ``x, y, z`` (particle position in the
tomogram, voxels), ``dx, dy, dz`` (shift in voxels), ``tdrot, tilt, narot`` (Dynamo ZXZ Euler
angles, degrees), ``tomo`` (tomogram number), ``class``, ``cc`` (score), and
``ymintilt, ymaxtilt`` (the tilt range about the y axis, degrees). Conversions between the
angles/shifts and CryoMine's canonical pose are in :mod:`cryomine_core.geometry`.
"""

from __future__ import annotations

import os
from pathlib import Path

import dynamotable
import pandas as pd

from cryomine_core.errors import InputFileError
from cryomine_core.io.atomic import atomic_path


def read_dynamo_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a Dynamo .tbl as a DataFrame with Dynamo's column names."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: Dynamo table not found.")
    try:
        df = dynamotable.read(str(path))
    except (ValueError, IndexError, OSError) as exc:
        raise InputFileError(f"{path}: not a readable Dynamo table ({exc}).") from exc
    if len(df) == 0:
        raise InputFileError(f"{path}: the Dynamo table has no rows.")
    return df


def write_dynamo_table(path: str | os.PathLike, df: pd.DataFrame) -> Path:
    """Write a Dynamo .tbl atomically (missing standard columns are filled with zeros)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        dynamotable.write(df, str(tmp))
    return path
