"""Checks on a set of subtomograms before any work is done: readable files, one box, one voxel size."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import numpy as np
import pandas as pd

from cryomine_core.errors import InputFileError
from cryomine_core.io.mrc import read_mrc, read_mrc_header
from cryomine_core.io.table import IMAGE, VOXEL_SIZE


def check_subtomograms(df: pd.DataFrame, *, expect_box: tuple[int, int, int] | None = None,
                       expect_voxel_size: float | None = None, rel_tol: float = 1e-3) -> dict:
    """Open every subtomogram header listed in ``df`` and check box and voxel size agree.

    The voxel size of an item is the table's ``cmVoxelSize`` when present, which must then agree
    with the MRC header (unless the header holds none, 0); an item with no voxel size at all is
    refused. The reference box and voxel size are ``expect_box`` / ``expect_voxel_size`` when given
    (e.g. a trained model's), else the most common ones of the set, so the odd item is the one
    named (not its neighbour).

    Returns ``{"n": count, "box": [z, y, x], "voxel_size": Å}``. Raises
    :class:`~cryomine_core.errors.InputFileError` naming the first file that is unreadable,
    truncated, not a single volume, without a voxel size, in disagreement with its table row, or
    of another box or voxel size than the reference.
    """
    table_vs = df[VOXEL_SIZE].to_numpy(float) if VOXEL_SIZE in df.columns else None
    paths = list(df[IMAGE])
    shapes, sizes = [], []
    for i, path in enumerate(paths):
        header = read_mrc_header(path)
        if len(header.shape) != 3:
            raise InputFileError(f"{path}: expected one volume (z, y, x), found data of shape {header.shape}.")
        vs = header.voxel_size
        if table_vs is not None:
            if vs > 0 and abs(table_vs[i] - vs) > rel_tol * vs:
                raise InputFileError(f"{path}: the table gives {table_vs[i]:.4f} Å per voxel ({VOXEL_SIZE}, row "
                                     f"{i + 1}) but the MRC header {vs:.4f} Å. Correct whichever is wrong (the table's "
                                     f"{VOXEL_SIZE} or the header) before going on.")
            vs = float(table_vs[i])
        if not vs > 0:
            raise InputFileError(f"{path}: no voxel size (MRC header {header.voxel_size:g} Å"
                                 f"{'' if table_vs is None else f', table {table_vs[i]:g} Å'}). Write the voxel size "
                                 f"into the header or give it in the table's {VOXEL_SIZE} column.")
        shapes.append(tuple(int(s) for s in header.shape))
        sizes.append(float(vs))
    if not shapes:
        return {"n": 0, "box": list(expect_box or []), "voxel_size": float(expect_voxel_size or 0.0)}
    box = tuple(expect_box) if expect_box is not None else Counter(shapes).most_common(1)[0][0]
    voxel = expect_voxel_size if expect_voxel_size else Counter(round(v, 3) for v in sizes).most_common(1)[0][0]
    where = "the model's" if expect_box is not None else f"that of the other {shapes.count(box)} item(s)"
    for path, shape, vs in zip(paths, shapes, sizes):
        if shape != box:
            raise InputFileError(f"{path}: box {shape} differs from {box}, {where}. Re-extract all subtomograms with "
                                 "one box size.")
        if abs(vs - voxel) > rel_tol * voxel:
            raise InputFileError(f"{path}: voxel size {vs:.4f} Å differs from {voxel:.4f} Å"
                                 f"{', the model' if expect_voxel_size else ', the most common one'}. Rescale the "
                                 "subtomograms to one voxel size.")
    return {"n": int(len(df)), "box": [int(b) for b in box], "voxel_size": float(voxel)}


def check_volume_values(paths: Iterable) -> None:
    """Read every volume once (memory-mapped) and refuse NaN/infinite values and constant volumes
    (an all-zero box from a failed extraction carries no signal and would be classified, clustered
    or averaged like a particle), naming the file."""
    for path in paths:
        data, _ = read_mrc(path, mmap=True, check_finite=False)
        check_volume_array(data, path)
        del data


def check_volume_array(data: np.ndarray, path) -> None:
    """Refuse a volume (read from ``path``) with NaN/infinite voxels or one value everywhere, naming the file."""
    finite = np.isfinite(data)
    if not finite.all():
        bad = int(np.size(data) - np.count_nonzero(finite))
        raise InputFileError(f"{path}: {bad} voxel(s) are NaN or infinite. Fix the file (e.g. re-extract the "
                             "subtomogram) or remove the item from the set.")
    if float(np.ptp(data)) == 0.0:
        raise InputFileError(f"{path}: the volume is constant ({float(data.flat[0]):g} everywhere), no signal; "
                             "re-extract it (was its box outside the tomogram?) or remove the item from the set.")
