"""The particle table: the one file the Scipion plugin and the ``cryomine`` CLI exchange.

A particle table is a STAR file (read and written with ``starfile``) with one data block,
``particles``, and one row per subtomogram. Its columns, with types and meanings, are listed in
:mod:`cryomine_core.io.columns`, which defines every name; this module re-exports the common ones
(``T.IMAGE``, ``T.COORDS``, ...).

Conversions between the Euler/origin columns and CryoMine's canonical pose live in
:mod:`cryomine_core.geometry`. Functions here only read, validate and write.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import starfile

from cryomine_core.errors import InputFileError, TableError
from cryomine_core.io.atomic import atomic_path
from cryomine_core.io.columns import (
    ANGLES,
    BLOCK,
    CLASS,
    CLASS_NAME,
    COORDS,
    HALF_SET,
    IMAGE,
    ITEM_ID,
    ORIGINS,
    SCORE,
    SNR,
    TILT_MAX,
    TILT_MIN,
    TOMO,
    TOMO_FILE,
    VOXEL_SIZE,
)
from cryomine_core.io.mrc import split_stack_name
from cryomine_core.tilt_range import RULE, invalid_tilt_ranges

__all__ = ["BLOCK", "IMAGE", "VOXEL_SIZE", "TILT_MIN", "TILT_MAX", "CLASS", "CLASS_NAME", "ANGLES", "ORIGINS", "SCORE",
           "TOMO", "TOMO_FILE", "COORDS", "ITEM_ID", "HALF_SET", "SNR", "read_table", "validate_table", "write_table",
           "tilt_ranges"]

_NUMERIC = {VOXEL_SIZE, TILT_MIN, TILT_MAX, CLASS, SCORE, ITEM_ID, HALF_SET, SNR, *ANGLES, *ORIGINS, *COORDS}


def read_table(path: str | os.PathLike, *, require: tuple[str, ...] = (IMAGE,), resolve_paths: bool = True
               ) -> pd.DataFrame:
    """Read a particle table and check it.

    Args:
        path: the STAR file.
        require: columns that must be present (the caller's needs, e.g. ``(IMAGE, CLASS)``).
        resolve_paths: turn relative ``rlnImageName`` entries into absolute paths, relative to
            the table's folder.

    Raises:
        InputFileError: missing or unreadable file.
        TableError: no rows, a required column missing, or non-numeric values where numbers
            are expected; the message names the column and the first offending row.
    """
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: particle table not found.")
    try:
        data = starfile.read(path, always_dict=True)
    except Exception as exc:  # starfile raises many kinds of parse errors
        raise InputFileError(f"{path}: not a readable STAR file ({exc}).") from exc
    if not data:
        raise InputFileError(f"{path}: not a STAR file (no data block found). Give a particle table in STAR format "
                             "(e.g. written by CryoMine, RELION or Scipion's export); convert other formats with "
                             "'cryomine formats convert'.")
    if BLOCK in data:
        df = data[BLOCK]
    elif len(data) == 1:
        df = next(iter(data.values()))
    else:
        raise TableError(f"{path}: no data block named '{BLOCK}' among {list(data)}; name the particle block "
                         f"'data_{BLOCK}'.")
    if not isinstance(df, pd.DataFrame):
        df = pd.DataFrame([df]) if isinstance(df, dict) else pd.DataFrame(df)
    df = df.copy()
    validate_table(df, require=require, source=str(path))
    if resolve_paths and IMAGE in df.columns:
        base = path.resolve().parent
        df[IMAGE] = [_absolute(str(p), base) for p in df[IMAGE]]
    return df


def _stack_prefix(name: str) -> tuple[str, str]:
    """``'12@a/b.mrcs'`` -> ``('12@', 'a/b.mrcs')``; ``'a/b.mrc'`` -> ``('', 'a/b.mrc')`` (RELION's stack names,
    by the one rule of :func:`cryomine_core.io.mrc.split_stack_name`)."""
    index, path = split_stack_name(name)
    return ("", name) if index is None else (f"{index}@", str(path))


def _absolute(name: str, base: Path) -> str:
    prefix, path = _stack_prefix(name)
    return prefix + (path if os.path.isabs(path) else str((base / path).resolve()))


def _relative(name: str, base: Path) -> str:
    prefix, path = _stack_prefix(name)
    return prefix + (os.path.relpath(path, base) if os.path.isabs(path) else path)


def validate_table(df: pd.DataFrame, *, require: tuple[str, ...] = (IMAGE,), source: str = "particle table") -> None:
    """Check that ``df`` has rows, the ``require``\\ d columns, and numbers where numbers belong."""
    if len(df) == 0:
        raise TableError(f"{source}: the table has no particles. Give a non-empty set.")
    missing = [c for c in require if c not in df.columns]
    if missing:
        raise TableError(f"{source}: missing column(s) {missing}. Columns present: {list(df.columns)}.")
    for col in df.columns:
        if col in _NUMERIC:
            values = pd.to_numeric(df[col], errors="coerce")
            bad = np.flatnonzero(values.isna().to_numpy())
            if bad.size:
                raise TableError(f"{source}: column {col} has a missing or non-numeric value in row {bad[0] + 1} "
                                 f"({df[col].iloc[bad[0]]!r}).")
            df[col] = values
    if CLASS in df.columns:
        df[CLASS] = df[CLASS].astype(int)
    if TILT_MIN in df.columns and TILT_MAX in df.columns:  # a swapped or impossible range is never used silently
        _check_tilt_values(df[[TILT_MIN, TILT_MAX]].to_numpy(dtype=float), source)


def write_table(path: str | os.PathLike, df: pd.DataFrame, *, require: tuple[str, ...] = (IMAGE,),
                relative_to_table: bool = False) -> Path:
    """Write a particle table atomically (STAR, block ``particles``).

    Args:
        path: target STAR file.
        df: the rows.
        require: columns that must be present (``rlnImageName`` for particles; a coordinate
            table for ``cryomine extract`` needs ``cmTomoFile`` and the coordinates instead).
        relative_to_table: store image paths relative to the table's folder when possible.
    """
    path = Path(path)
    validate_table(df.copy(), require=require, source=f"writing {path}")
    out = df.copy()
    if relative_to_table and IMAGE in out.columns:
        base = path.resolve().parent
        out[IMAGE] = [_relative(str(p), base) for p in out[IMAGE]]
    with atomic_path(path) as tmp:
        starfile.write({BLOCK: out}, tmp, overwrite=True)
    return path


def tilt_ranges(df: pd.DataFrame, *, source: str = "particle table") -> np.ndarray:
    """Return the per-particle tilt ranges ``(n, 2)`` in degrees, refusing rows that lack one.

    CryoMine never guesses a missing wedge: a table without ``cmTiltMin``/``cmTiltMax`` is an
    error that tells the user to give the tilt range (Scipion: the acquisition of each item).
    """
    missing = [c for c in (TILT_MIN, TILT_MAX) if c not in df.columns]
    if missing:
        raise TableError(f"{source}: no tilt range ({', '.join(missing)} missing). Set the acquisition's tilt range "
                         "on the input subtomograms (Scipion), add cmTiltMin/cmTiltMax columns (degrees) to the "
                         "table, or, with 'cryomine align' and 'cryomine classify train', pass --tilt-range MIN MAX "
                         "to apply one range to all.")
    ranges = df[[TILT_MIN, TILT_MAX]].to_numpy(dtype=float)
    _check_tilt_values(ranges, source)
    return ranges


def _check_tilt_values(ranges: np.ndarray, source: str) -> None:
    bad = invalid_tilt_ranges(ranges[:, 0], ranges[:, 1])
    if bad.size:
        raise TableError(f"{source}: row {bad[0] + 1} has tilt range {tuple(ranges[bad[0]])}; expected {RULE}.")
