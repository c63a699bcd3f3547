"""Checks on a set of subtomograms before any work is done: readable files, one box, one voxel size."""

from __future__ import annotations

import pandas as pd

from cryomine_core.errors import InputFileError
from cryomine_core.io.mrc import read_mrc_header
from cryomine_core.io.table import IMAGE, VOXEL_SIZE


def check_subtomograms(df: pd.DataFrame, *, expect_box: tuple[int, int, int] | None = None,
                       expect_voxel_size: float | None = None, rel_tol: float = 1e-3) -> dict:
    """Open every subtomogram header listed in ``df`` and check box and voxel size agree.

    Returns ``{"n": count, "box": [z, y, x], "voxel_size": Å}``. Raises
    :class:`~cryomine_core.errors.InputFileError` naming the first file that is unreadable,
    truncated, not a single volume, or of a different box or voxel size than the first (or than
    ``expect_box`` / ``expect_voxel_size`` when given, e.g. a trained model's).
    """
    box, voxel = expect_box, expect_voxel_size
    for i, path in enumerate(df[IMAGE]):
        header = read_mrc_header(path)
        if len(header.shape) != 3:
            raise InputFileError(f"{path}: expected one volume (z, y, x), found data of shape {header.shape}.")
        vs = float(df[VOXEL_SIZE].iloc[i]) if VOXEL_SIZE in df.columns else header.voxel_size
        if box is None:
            box, voxel = header.shape, vs
        if tuple(header.shape) != tuple(box):
            raise InputFileError(f"{path}: box {header.shape} differs from {tuple(box)} (the first item or the model). "
                                 "Re-extract all subtomograms with one box size.")
        if voxel and vs and abs(vs - voxel) > rel_tol * voxel:
            raise InputFileError(f"{path}: voxel size {vs:.4f} Å differs from {voxel:.4f} Å. Rescale the "
                                 "subtomograms to one voxel size.")
    return {"n": int(len(df)), "box": [int(b) for b in box], "voxel_size": float(voxel or 0.0)}
