"""Particle files of one format to another: CryoMine tables, RELION 3/4 and 5 STAR, Dynamo, IMOD, copick.

The conventions of each format live in :mod:`cryomine_core.io.formats`, :mod:`cryomine_core.io.relion`
and :mod:`cryomine_core.io.relion5`; this module reads a file of any of them into a CryoMine particle
table and writes a table out in any of them (IMOD models are read only). ``cryomine formats
convert`` is a thin front end to :func:`convert_particles`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from cryomine_core.errors import TableError
from cryomine_core.io import table as T

log = logging.getLogger("cryomine")

__all__ = ["FORMATS", "WRITABLE", "CopickOptions", "Relion5Options", "relion5_companions", "read_particles",
           "write_particles", "convert_particles"]

FORMATS = ("cryomine", "relion", "relion5", "dynamo", "imod", "copick")
WRITABLE = ("cryomine", "relion", "relion5", "dynamo", "copick")


@dataclass(frozen=True)
class CopickOptions:
    """Which picks of a copick project are read, and whose picks are written (:mod:`cryomine_core.io.copick_project`).

    Attributes:
        user_id, session_id: reading: only these (None: all); writing: required.
        objects: reading: only these pickable objects (None: every particle object); writing: one
            name files every particle under that object (None: the particles' classes).
        runs: reading: only these runs (None: all).
    """

    user_id: str | None = None
    session_id: str | None = None
    objects: tuple[str, ...] | None = None
    runs: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Relion5Options:
    """What writing RELION 5 needs beyond the table (see :func:`cryomine_core.io.relion5.write_relion5_particles`).

    Attributes:
        tomograms: a RELION 5 ``tomograms.star`` describing the particles' tomograms (default: built
            from the MRC headers of the table's ``cmTomoFile``).
        tilt_series_pixel_size: Å per tilt-series pixel when the tomograms come from MRC headers
            (default: the tomogram's voxel size, i.e. binning 1).
        hand: RELION's handedness written for tomograms built from headers (-1 or 1).
        orientation: ``"subtomogram"`` (oriented picks) or ``"particle"`` (a refined set).
        pixel_coordinates: also write ``rlnCoordinate{X,Y,Z}`` in bin-1 pixels.
    """

    tomograms: str | None = None
    tilt_series_pixel_size: float | None = None
    hand: float = -1.0
    orientation: str = "subtomogram"
    pixel_coordinates: bool = False


def relion5_companions(path: str | os.PathLike) -> tuple[Path, Path]:
    """The tomograms file and optimisation set written beside a RELION 5 particle file ``path``."""
    path = Path(path)
    return path.with_name(f"{path.stem}_tomograms.star"), path.with_name(f"{path.stem}_optimisation_set.star")


def read_particles(path: str | os.PathLike, source: str, *, voxel_size: float | None = None,
                   tomo_name: str | None = None, dynamo_index_base: int = 1,
                   tomograms: str | os.PathLike | None = None, copick: CopickOptions | None = None) -> pd.DataFrame:
    """A CryoMine particle table from ``path`` in format ``source`` (:data:`FORMATS`).

    ``voxel_size`` (Å) is required for Dynamo and IMOD input (they do not store it) and overrides
    the file's own for CryoMine and RELION input (a difference is logged); for RELION 5 input it is
    the voxel size of the tomograms the coordinates should refer to (default: the reconstructions of
    the tomograms file). ``tomo_name`` sets ``rlnTomoName`` of every row. ``dynamo_index_base``: 1
    for Dynamo's positions, 0 for scipion-em-dynamo's. ``tomograms``: RELION 5's ``tomograms.star``
    (RELION 5 input only; default: the one an optimisation set names). A copick ``path`` is the
    project's configuration file; ``voxel_size`` (required) is the tomograms' and ``copick`` filters
    the picks.
    """
    from cryomine_core.io.dynamo import read_dynamo_table
    from cryomine_core.io.formats import dynamo_to_table, read_imod_coordinates
    from cryomine_core.io.relion import read_relion_star
    from cryomine_core.io.relion5 import read_relion5_particles

    if source not in FORMATS:
        raise TableError(f"unknown input format '{source}'; use one of {', '.join(FORMATS)}.")
    if voxel_size is not None and not voxel_size > 0:
        raise TableError(f"--voxel-size {voxel_size:g}: give the voxel size in Å (> 0).")
    if tomograms is not None and source != "relion5":
        raise TableError(f"--tomograms is read with RELION 5 input only (this input is '{source}').")
    if source in ("dynamo", "imod", "copick") and voxel_size is None:
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
    elif source == "relion5":
        df = read_relion5_particles(path, tomograms, voxel_size=voxel_size)
    elif source == "copick":
        from cryomine_core.io.copick_project import read_copick_picks

        options = copick or CopickOptions()
        df = read_copick_picks(path, voxel_size=voxel_size, user_id=options.user_id, session_id=options.session_id,
                               objects=list(options.objects) if options.objects else None,
                               runs=list(options.runs) if options.runs else None)
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


def write_particles(df: pd.DataFrame, path: str | os.PathLike, target: str, *, dynamo_index_base: int = 1,
                    relion5: Relion5Options | None = None, copick: CopickOptions | None = None) -> None:
    """Write the particle table ``df`` to ``path`` in format ``target`` (:data:`WRITABLE`), atomically.

    A Dynamo table needs particle positions: a table without ``rlnCoordinateX/Y/Z`` is refused
    (Dynamo would read every particle at the origin of tomogram 0). RELION 5 writes three files:
    the particles at ``path`` and, beside them, the tomograms file and the optimisation set naming
    both (:func:`relion5_companions`). copick writes picks into the project whose configuration
    is ``path`` (it must exist), as ``copick.user_id`` / ``copick.session_id``.
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
    elif target == "relion5":
        _write_relion5(df, path, relion5 or Relion5Options())
    elif target == "copick":
        from cryomine_core.io.copick_project import write_copick_picks

        options = copick or CopickOptions()
        if options.objects and len(options.objects) != 1:
            raise TableError(f"{path}: writing copick picks, --copick-objects names the one object every particle is "
                             f"filed under; got {len(options.objects)}.")
        write_copick_picks(path, df, user_id=options.user_id, session_id=options.session_id,
                           object_name=options.objects[0] if options.objects else None)
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


def _write_relion5(df: pd.DataFrame, path: str | os.PathLike, options: Relion5Options) -> None:
    from cryomine_core.io.relion5 import write_optimisation_set, write_relion5_particles
    from cryomine_core.io.relion_tomograms import read_tomograms_star, tomograms_from_files, write_tomograms_star

    if options.tomograms is not None:
        tomograms = read_tomograms_star(options.tomograms)
    else:
        if T.TOMO_FILE not in df.columns or T.TOMO not in df.columns:
            raise TableError(f"{path}: RELION 5 positions are centred on their tomogram, whose size is unknown here: "
                             f"give --tomograms tomograms.star, or convert a table with {T.TOMO} and {T.TOMO_FILE} "
                             "(a picking or extraction table).")
        pairs = df[[T.TOMO, T.TOMO_FILE]].astype(str).drop_duplicates()
        clash = pairs[T.TOMO][pairs[T.TOMO].duplicated()]
        if len(clash):
            raise TableError(f"{path}: tomogram '{clash.iloc[0]}' names more than one {T.TOMO_FILE}; one file per "
                             "tomogram name.")
        tomograms = tomograms_from_files(dict(zip(pairs[T.TOMO], pairs[T.TOMO_FILE])),
                                         tilt_series_pixel_size=options.tilt_series_pixel_size, hand=options.hand)
    tomo_file, opt_file = relion5_companions(path)
    write_relion5_particles(path, df, tomograms, orientation=options.orientation,
                            pixel_coordinates=options.pixel_coordinates)
    write_tomograms_star(tomo_file, tomograms)
    write_optimisation_set(opt_file, path, tomo_file)
    log.info("RELION 5: particles %s, tomograms %s, optimisation set %s", path, tomo_file, opt_file)


def convert_particles(path: str | os.PathLike, source: str, out: str | os.PathLike, target: str, *,
                      voxel_size: float | None = None, tomo_name: str | None = None,
                      dynamo_index_base: int = 1, tomograms: str | os.PathLike | None = None,
                      relion5: Relion5Options | None = None, copick: CopickOptions | None = None) -> int:
    """Read ``path`` (format ``source``), write ``out`` (format ``target``); return the particle count.

    ``tomograms``: a RELION 5 ``tomograms.star``, read with RELION 5 input and written with RELION 5
    output (unless ``relion5`` names another); ``relion5``: the options of RELION 5 output;
    ``copick``: which picks are read, or whose picks are written.
    """
    if tomograms is not None and "relion5" not in (source, target):
        raise TableError("--tomograms is a RELION 5 file; use it with --from relion5 or --to relion5.")
    relion5 = relion5 or Relion5Options()
    if target == "relion5" and relion5.tomograms is None and tomograms is not None:
        relion5 = replace(relion5, tomograms=str(tomograms))
    df = read_particles(path, source, voxel_size=voxel_size, tomo_name=tomo_name,
                        dynamo_index_base=dynamo_index_base, tomograms=tomograms if source == "relion5" else None,
                        copick=copick)
    write_particles(df, out, target, dynamo_index_base=dynamo_index_base, relion5=relion5, copick=copick)
    log.info("%s (%s) -> %s (%s): %d particles", path, source, out, target, len(df))
    return len(df)
