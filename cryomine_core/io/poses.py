"""Poses stored in a particle table: RELION angles and origins <-> CryoMine's canonical (R, t).

The table keeps orientations as RELION ``rlnAngleRot/Tilt/Psi`` and ``rlnOrigin{X,Y,Z}Angst``
(so RELION reads it directly); this module converts them to and from the canonical pose of
:mod:`cryomine_core.geometry` (``particle(x) = reference(R^T (x - t))``, t in voxels).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from cryomine_core.errors import TableError
from cryomine_core.geometry import pose_to_relion_angstrom, relion_angstrom_to_pose
from cryomine_core.io.table import ANGLES, ORIGINS, VOXEL_SIZE


def table_poses(df: pd.DataFrame, voxel_size: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(R (n,3,3), t (n,3) voxels)`` from the table's angles and origins (float64).

    Rows without angles are the identity; without origins, no shift. ``voxel_size`` (Å)
    converts origins in Å to voxels; by default the ``cmVoxelSize`` column is used.
    """
    n = len(df)
    eulers = df[list(ANGLES)].to_numpy(float) if all(c in df.columns for c in ANGLES) else np.zeros((n, 3))
    origins = df[list(ORIGINS)].to_numpy(float) if all(c in df.columns for c in ORIGINS) else np.zeros((n, 3))
    if voxel_size is None:
        if VOXEL_SIZE not in df.columns:
            if np.any(origins):
                raise TableError("origin shifts are in Å but the table has no cmVoxelSize column; add it.")
            voxel_size = 1.0
        else:
            vs = df[VOXEL_SIZE].to_numpy(float)
            voxel_size = torch.tensor(vs, dtype=torch.float64)[:, None]
    rot, shift = relion_angstrom_to_pose(torch.as_tensor(eulers, dtype=torch.float64),
                                         torch.as_tensor(origins, dtype=torch.float64), voxel_size)
    return rot, shift


def with_poses(df: pd.DataFrame, rotation, shift, voxel_size: float | None = None) -> pd.DataFrame:
    """Return a copy of ``df`` whose angle and origin columns hold the poses ``(R, t)``."""
    out = df.copy()
    if voxel_size is None:
        if VOXEL_SIZE not in df.columns:
            raise TableError("cannot store origins in Å: the table has no cmVoxelSize column.")
        voxel_size = torch.tensor(df[VOXEL_SIZE].to_numpy(float), dtype=torch.float64)[:, None]
    rotation = torch.as_tensor(rotation, dtype=torch.float64)
    shift = torch.as_tensor(shift, dtype=torch.float64)
    eulers, origins = pose_to_relion_angstrom(rotation, shift, voxel_size)
    for i, c in enumerate(ANGLES):
        out[c] = eulers[:, i].numpy()
    for i, c in enumerate(ORIGINS):
        out[c] = origins[:, i].numpy()
    return out
