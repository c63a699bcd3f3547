"""Particle tables <-> IMOD models and Dynamo tables, with the coordinate conventions stated once.

CryoMine positions (``rlnCoordinateX/Y/Z`` of a particle table, Scipion's ``BOTTOM_LEFT_CORNER``)
are voxels counted from the **centre of the first voxel**: the voxel ``vol[k, j, i]`` is at
``(i, j, k)``.

IMOD (.mod)
    3dmod puts the model origin at the **corner** of the first pixel in X and Y but at the
    **centre** of the first section in Z: the centre of voxel ``(i, j, k)`` is the model point
    ``(i + 0.5, j + 0.5, k)``. Sources: the imodmodel documentation ("A note about 3dmod's
    coordinate system": (0,0,0) is the bottom-left corner in XY planes and the centre of the first
    Z plane), and IMOD's own MATLAB helper ``imodPoints2Index`` (voxel centres on half-integer X/Y
    and integer Z). So reading subtracts :data:`IMOD_VOXEL_CENTRE` = (0.5, 0.5, 0) and writing
    adds it. Points are in voxels of the volume the model was drawn on (scale them with the
    caller's sampling rates).

Dynamo (.tbl)
    Angles and shifts follow :mod:`cryomine_core.geometry` (canonical ``R = m^T`` with ``m``
    Dynamo's ``dynamo_euler2matrix``; ``(dx, dy, dz) = t``). Dynamo counts voxels from 1 (its
    wiki, "Volume center": the first pixel is ``V[1,1,1]``), so its table positions (columns
    24-26) are CryoMine positions + 1 (``index_base=1``, the default). scipion-em-dynamo reads
    and writes these columns without that shift; pass ``index_base=0`` for files meant for it.
    Column 20 (``tomo``) is a tomogram number; the caller maps it to tomogram names.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cryomine_core.errors import InputFileError, TableError
from cryomine_core.geometry import dynamo_to_pose, pose_to_dynamo
from cryomine_core.io import table as T
from cryomine_core.io.imod import read_imod_points, write_imod_points
from cryomine_core.io.poses import table_poses, with_poses

IMOD_VOXEL_CENTRE = (0.5, 0.5, 0.0)
DYNAMO_INDEX_BASE = 1
DYNAMO_SHIFTS = ("dx", "dy", "dz")
DYNAMO_ANGLES = ("tdrot", "tilt", "narot")
DYNAMO_POSITION = ("x", "y", "z")


# ----------------------------------------------------------------------------------------------
# IMOD
# ----------------------------------------------------------------------------------------------
def read_imod_coordinates(path: str | os.PathLike) -> pd.DataFrame:
    """Points of an IMOD model as CryoMine positions.

    Returns a DataFrame with ``object_id`` (1-based, as 3dmod numbers objects), ``contour_id``
    (1-based) and ``rlnCoordinateX/Y/Z`` (voxels from the centre of the first voxel).
    """
    points = read_imod_points(path, offset_voxels=0.0)
    xyz = points[["x", "y", "z"]].to_numpy(float) - np.asarray(IMOD_VOXEL_CENTRE)
    out = pd.DataFrame({"object_id": points["object_id"].astype(int).to_numpy() + 1,
                        "contour_id": points["contour_id"].astype(int).to_numpy() + 1})
    for i, c in enumerate(T.COORDS):
        out[c] = xyz[:, i]
    return out


def write_imod_coordinates(path: str | os.PathLike, xyz) -> Path:
    """Write CryoMine positions ``(n, 3)`` as one IMOD object, one single-point contour per particle."""
    xyz = np.asarray(xyz, dtype=float).reshape(-1, 3) + np.asarray(IMOD_VOXEL_CENTRE)
    return write_imod_points(path, xyz, object_id=0, offset_voxels=0.0)


# ----------------------------------------------------------------------------------------------
# Dynamo
# ----------------------------------------------------------------------------------------------
def dynamo_to_table(tbl: pd.DataFrame, *, voxel_size: float, tomo_names: dict | None = None,
                    index_base: int = DYNAMO_INDEX_BASE, source: str = "Dynamo table") -> pd.DataFrame:
    """A Dynamo table (``dynamotable`` column names) as a CryoMine particle table.

    Args:
        tbl: the rows, e.g. from :func:`cryomine_core.io.dynamo.read_dynamo_table`.
        voxel_size: Å per voxel of the particles (Dynamo tables do not store it).
        tomo_names: ``{tomo number: tomogram name}``; rows whose number is missing are an error.
            ``None`` keeps the number as the name.
        index_base: 1 for Dynamo's own positions, 0 for scipion-em-dynamo's.

    Returns columns ``cmItemId`` (the tag), coordinates, RELION angles/Å origins (the same pose),
    ``rlnClassNumber``, ``cmScore`` (cc), ``cmTiltMin/Max`` (ymintilt/ymaxtilt, when not both 0),
    ``rlnTomoName``, ``cmVoxelSize``.
    """
    missing = [c for c in ("tag", *DYNAMO_SHIFTS, *DYNAMO_ANGLES) if c not in tbl.columns]
    if missing:
        raise TableError(f"{source}: missing Dynamo column(s) {missing}.")
    if voxel_size is None or voxel_size <= 0:
        raise TableError(f"{source}: Dynamo tables do not store the voxel size; give a positive voxel size in Å.")
    n = len(tbl)
    eulers = torch.as_tensor(tbl[list(DYNAMO_ANGLES)].to_numpy(float), dtype=torch.float64)
    shifts = torch.as_tensor(tbl[list(DYNAMO_SHIFTS)].to_numpy(float), dtype=torch.float64)
    rot, t = dynamo_to_pose(eulers, shifts)
    out = pd.DataFrame({T.ITEM_ID: tbl["tag"].astype(int).to_numpy(), T.VOXEL_SIZE: np.full(n, float(voxel_size))})
    if all(c in tbl.columns for c in DYNAMO_POSITION):
        xyz = tbl[list(DYNAMO_POSITION)].to_numpy(float) - index_base
        for i, c in enumerate(T.COORDS):
            out[c] = xyz[:, i]
    if "class" in tbl.columns:
        out[T.CLASS] = tbl["class"].astype(int).to_numpy()
    if "cc" in tbl.columns:
        out[T.SCORE] = tbl["cc"].astype(float).to_numpy()
    if "ymintilt" in tbl.columns and "ymaxtilt" in tbl.columns:
        lo, hi = tbl["ymintilt"].to_numpy(float), tbl["ymaxtilt"].to_numpy(float)
        if np.any((lo != 0) | (hi != 0)):
            out[T.TILT_MIN], out[T.TILT_MAX] = lo, hi
    if "tomo" in tbl.columns:
        numbers = tbl["tomo"].astype(int).to_numpy()
        if tomo_names is None:
            out[T.TOMO] = [str(v) for v in numbers]
        else:
            unknown = sorted(set(numbers.tolist()) - set(tomo_names))
            if unknown:
                raise TableError(f"{source}: tomogram number(s) {unknown} (column 20, 'tomo') match no tomogram; "
                                 f"known numbers: {sorted(tomo_names)}. Give the tomograms in Dynamo's order (or "
                                 "the volume list, .vll, the table was made with).")
            out[T.TOMO] = [str(tomo_names[v]) for v in numbers]
    return with_poses(out, rot, t)


def table_to_dynamo(df: pd.DataFrame, *, tomo_numbers: dict | None = None,
                    index_base: int = DYNAMO_INDEX_BASE) -> pd.DataFrame:
    """A CryoMine particle table as a Dynamo table (``dynamotable`` column names).

    Args:
        df: rows with ``cmVoxelSize`` and, when present, angles/origins, coordinates, class,
            score, tilt range, tomogram name and item id (tag; else rows are numbered from 1).
        tomo_numbers: ``{tomogram name: number}`` for column 20; by default names are numbered
            1, 2, ... in sorted order.
        index_base: 1 for Dynamo's own positions, 0 for scipion-em-dynamo's.
    """
    n = len(df)
    rot, t = table_poses(df)
    eulers, shifts = pose_to_dynamo(rot, t)
    tbl = pd.DataFrame({"tag": df[T.ITEM_ID].astype(int).to_numpy() if T.ITEM_ID in df.columns
                        else np.arange(1, n + 1), "aligned_value": np.ones(n, dtype=int),
                        "averaged_value": np.ones(n, dtype=int)})
    for i, c in enumerate(DYNAMO_SHIFTS):
        tbl[c] = shifts[:, i].numpy()
    for i, c in enumerate(DYNAMO_ANGLES):
        tbl[c] = eulers[:, i].numpy()
    tbl["cc"] = df[T.SCORE].to_numpy(float) if T.SCORE in df.columns else np.zeros(n)
    if T.TILT_MIN in df.columns and T.TILT_MAX in df.columns:
        tbl["ftype"] = 1
        tbl["ymintilt"] = df[T.TILT_MIN].to_numpy(float)
        tbl["ymaxtilt"] = df[T.TILT_MAX].to_numpy(float)
    if T.TOMO in df.columns:
        names = df[T.TOMO].astype(str)
        if tomo_numbers is None:
            tomo_numbers = {name: i for i, name in enumerate(sorted(set(names)), start=1)}
        missing = sorted(set(names) - set(tomo_numbers))
        if missing:
            raise TableError(f"tomogram(s) {missing} have no Dynamo tomogram number.")
        tbl["tomo"] = names.map(tomo_numbers).astype(int).to_numpy()
    tbl["class"] = df[T.CLASS].astype(int).to_numpy() if T.CLASS in df.columns else np.ones(n, dtype=int)
    if all(c in df.columns for c in T.COORDS):
        xyz = df[list(T.COORDS)].to_numpy(float) + index_base
        for i, c in enumerate(DYNAMO_POSITION):
            tbl[c] = xyz[:, i]
    tbl["apix"] = df[T.VOXEL_SIZE].to_numpy(float) if T.VOXEL_SIZE in df.columns else np.zeros(n)
    return tbl


def read_volume_list(path: str | os.PathLike) -> dict:
    """A Dynamo volume list (.vll: one tomogram path per line) as ``{number (1-based): path}``."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: Dynamo volume list not found.")
    lines = [ln.strip() for ln in path.read_text().splitlines()]
    entries = [ln for ln in lines if ln and not ln.startswith("#") and not ln.startswith("*")]
    if not entries:
        raise InputFileError(f"{path}: the volume list names no tomogram.")
    return {i: entry.split()[0] for i, entry in enumerate(entries, start=1)}
