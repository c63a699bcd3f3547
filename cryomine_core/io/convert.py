"""Particle files of one format to another: CryoMine tables, RELION STAR, Dynamo .tbl, IMOD .mod.

The conventions of each format live in :mod:`cryomine_core.io.formats` and
:mod:`cryomine_core.io.relion`; this module reads a file of any of them into a CryoMine particle
table and writes a table out in any of them (IMOD models are read only). ``cryomine formats
convert`` is a thin front end to :func:`convert_particles`.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import pandas as pd

from cryomine_core.errors import TableError
from cryomine_core.io import table as T

log = logging.getLogger("cryomine")

__all__ = ["FORMATS", "WRITABLE", "read_particles", "write_particles", "convert_particles"]

FORMATS = ("cryomine", "relion", "dynamo", "imod")
WRITABLE = ("cryomine", "relion", "dynamo")


def read_particles(path: str | os.PathLike, source: str, *, voxel_size: float | None = None,
                   tomo_name: str | None = None, dynamo_index_base: int = 1) -> pd.DataFrame:
    """A CryoMine particle table from ``path`` in format ``source`` (:data:`FORMATS`).

    ``voxel_size`` (Å) is required for Dynamo and IMOD input (they do not store it) and overrides
    the file's own for CryoMine and RELION input (a difference is logged). ``tomo_name`` sets
    ``rlnTomoName`` of every row. ``dynamo_index_base``: 1 for Dynamo's positions, 0 for
    scipion-em-dynamo's.
    """
    from cryomine_core.io.dynamo import read_dynamo_table
    from cryomine_core.io.formats import dynamo_to_table, read_imod_coordinates
    from cryomine_core.io.relion import read_relion_star

    if source not in FORMATS:
        raise TableError(f"unknown input format '{source}'; use one of {', '.join(FORMATS)}.")
    if voxel_size is not None and not voxel_size > 0:
        raise TableError(f"--voxel-size {voxel_size:g}: give the voxel size in Å (> 0).")
    if source in ("dynamo", "imod") and voxel_size is None:
        raise TableError(f"{path}: --voxel-size is required for {source} input (the file does not store it).")
    if source == "cryomine":
        df = T.read_table(path, require=())
        if voxel_size is not None:
            if T.VOXEL_SIZE in df.columns and not np.allclose(df[T.VOXEL_SIZE].to_numpy(float), voxel_size):
                log.warning("%s: --voxel-size %g Å replaces the table's cmVoxelSize %s", path, voxel_size,
                            sorted(set(df[T.VOXEL_SIZE].round(4))))
            df[T.VOXEL_SIZE] = float(voxel_size)
    elif source == "relion":
        df = read_relion_star(path, voxel_size=voxel_size)
    elif source == "dynamo":
        df = dynamo_to_table(read_dynamo_table(path), voxel_size=voxel_size, index_base=dynamo_index_base,
                             source=str(path))
    else:
        points = read_imod_coordinates(path)
        df = pd.DataFrame({c: points[c] for c in T.COORDS})
        df[T.VOXEL_SIZE] = float(voxel_size)
        df[T.CLASS] = points["object_id"].astype(int)
    if tomo_name:
        df[T.TOMO] = tomo_name
    return df


def write_particles(df: pd.DataFrame, path: str | os.PathLike, target: str, *, dynamo_index_base: int = 1) -> None:
    """Write the particle table ``df`` to ``path`` in format ``target`` (:data:`WRITABLE`), atomically.

    A Dynamo table needs particle positions: a table without ``rlnCoordinateX/Y/Z`` is refused
    (Dynamo would read every particle at the origin of tomogram 0).
    """
    from cryomine_core.io.dynamo import write_dynamo_table
    from cryomine_core.io.formats import table_to_dynamo
    from cryomine_core.io.relion import write_relion_star

    if target not in WRITABLE:
        raise TableError(f"cannot write '{target}'; write one of {', '.join(WRITABLE)} (IMOD models are read only).")
    if target == "cryomine":
        T.write_table(path, df, require=())
    elif target == "relion":
        write_relion_star(path, df)
    else:
        missing = [c for c in T.COORDS if c not in df.columns]
        if missing:
            raise TableError(f"{path}: the particles have no positions ({', '.join(missing)} missing), and a Dynamo "
                             "table without them puts every particle at the origin of tomogram 0. Convert a table "
                             "with coordinates (e.g. the picking or extraction table).")
        if T.TOMO not in df.columns:
            log.warning("%s: the particles name no tomogram (rlnTomoName); Dynamo's tomogram column is left at 0 "
                        "(give --tomo-name to set one)", path)
        write_dynamo_table(path, table_to_dynamo(df, index_base=dynamo_index_base))


def convert_particles(path: str | os.PathLike, source: str, out: str | os.PathLike, target: str, *,
                      voxel_size: float | None = None, tomo_name: str | None = None,
                      dynamo_index_base: int = 1) -> int:
    """Read ``path`` (format ``source``), write ``out`` (format ``target``); return the particle count."""
    df = read_particles(path, source, voxel_size=voxel_size, tomo_name=tomo_name,
                        dynamo_index_base=dynamo_index_base)
    write_particles(df, out, target, dynamo_index_base=dynamo_index_base)
    log.info("%s (%s) -> %s (%s): %d particles", path, source, out, target, len(df))
    return len(df)
