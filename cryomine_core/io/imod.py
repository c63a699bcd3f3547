"""IMOD model (.mod) points: a bounded reader of IMOD's binary format, writing through ``imodmodel``.

An IMOD model holds objects, contours and points; for particle picking each point is one
particle. Points are read as xyz in voxels of the tomogram the model was made on. IMOD and
Scipion's ``BOTTOM_LEFT_CORNER`` may differ by half a voxel depending on how the model was
made; CryoMine does not guess: ``offset_voxels`` (default 0) is added to every coordinate on
reading and subtracted on writing, so a user can state the convention of their files.

Reading walks the chunks of IMOD's binary specification
(https://bio3d.colorado.edu/imod/doc/binspec.html; big-endian): the ``IMOD`` magic and version
(8 bytes), the model header (232 bytes), then named chunks up to ``IEOF``: ``OBJT`` (176-byte
object header), ``CONT`` (16-byte header, then ``psize`` xyz float32 points), ``MESH`` (16-byte
header, ``vsize`` vertices of 12 bytes, ``lsize`` int32 indices), and every other chunk as a
4-byte size followed by that many bytes (skipped). Every read is checked against the end of the
data and every step consumes bytes, so a file that is not an IMOD model, or a truncated or
corrupt one, is refused at once with one line naming the file and the problem (the
``imodmodel`` package's own reader loops for ever past the end of such data).
"""

from __future__ import annotations

import os
import re
import struct
from pathlib import Path

import imodmodel
import numpy as np
import pandas as pd

from cryomine_core.errors import InputFileError
from cryomine_core.io.atomic import atomic_path

IMOD_MAGIC = b"IMOD"
END_CHUNK = b"IEOF"
ID_BYTES = 8
MODEL_HEADER_BYTES = 232
OBJECT_HEADER_BYTES = 176
CONTOUR_HEADER_BYTES = 16
MESH_HEADER_BYTES = 16
_CHUNK_NAME = re.compile(rb"[A-Z0-9]{4}")


class _Cursor:
    """Position in the bytes of one model file; every read is bounds-checked and advances."""

    def __init__(self, data: bytes, path: Path):
        self.data, self.path, self.pos = data, path, 0

    def take(self, n: int, what: str) -> bytes:
        """The next ``n`` bytes (``what`` names them in the error when fewer remain)."""
        left = len(self.data) - self.pos
        if n < 0 or n > left:
            raise InputFileError(f"{self.path}: truncated or corrupt IMOD model: {what} at byte {self.pos} needs "
                                 f"{n} bytes but {left} remain; re-export the model from 3dmod.")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def count(self, fmt: str, what: str) -> tuple[int, ...]:
        """Big-endian integers of ``fmt`` (struct codes), each required to be >= 0."""
        values = struct.unpack(">" + fmt, self.take(struct.calcsize(">" + fmt), what))
        if any(v < 0 for v in values):
            raise InputFileError(f"{self.path}: corrupt IMOD model: negative {what} {values} before byte "
                                 f"{self.pos}; re-export the model from 3dmod.")
        return values


def _check_magic(head: bytes, path) -> None:
    """Refuse data whose first bytes ``head`` are not IMOD's magic ``IMOD`` (e.g. a STAR file or a Dynamo table)."""
    head = head[:len(IMOD_MAGIC)]
    if head != IMOD_MAGIC:
        raise InputFileError(f"{path}: not an IMOD model (it starts with {head!r}, not b'IMOD'); give a .mod file "
                             "saved by 3dmod, or the --from format that matches the file.")


def _chunk(cur: _Cursor, name: bytes, state: dict, points: list) -> None:
    """Consume the body of one chunk ``name``; ``state`` holds the current object and contour indices."""
    if name == b"OBJT":
        cur.take(OBJECT_HEADER_BYTES, "object header")
        state["object"] += 1
        state["contour"] = -1
    elif name == b"CONT":
        if state["object"] < 0:
            raise InputFileError(f"{cur.path}: corrupt IMOD model: a contour at byte {cur.pos - 4} comes before "
                                 "any object; re-export the model from 3dmod.")
        (psize,) = cur.count("i", "contour point count")
        cur.take(CONTOUR_HEADER_BYTES - 4, "contour header")
        xyz = np.frombuffer(cur.take(12 * psize, f"contour of {psize} points"), dtype=">f4").reshape(psize, 3)
        state["contour"] += 1
        points.append((state["object"], state["contour"], xyz.astype(float)))
    elif name == b"MESH":
        vsize, lsize = cur.count("ii", "mesh vertex/index counts")
        cur.take(MESH_HEADER_BYTES - 8, "mesh header")
        cur.take(12 * vsize + 4 * lsize, "mesh data")
    elif _CHUNK_NAME.fullmatch(name):
        (size,) = cur.count("i", f"size of chunk {name.decode()}")
        cur.take(size, f"chunk {name.decode()}")
    else:
        raise InputFileError(f"{cur.path}: corrupt IMOD model: bytes {name!r} at byte {cur.pos - 4} are not a chunk "
                             "name; re-export the model from 3dmod.")


def parse_imod_points(data: bytes, path: str | os.PathLike = "<bytes>") -> list[tuple[int, int, np.ndarray]]:
    """Points of the IMOD model in ``data``: ``[(object index, contour index, xyz (P, 3) float), ...]`` (0-based).

    Raises InputFileError (naming ``path``) for a missing magic, a truncated file, a missing ``IEOF``,
    a negative count or size, or bytes that are not a chunk name.
    """
    _check_magic(data, path)
    cur = _Cursor(data, Path(path))
    cur.take(ID_BYTES + MODEL_HEADER_BYTES, "model header")
    state = {"object": -1, "contour": -1}
    points: list = []
    while True:
        start = cur.pos
        if start == len(data):
            raise InputFileError(f"{path}: truncated IMOD model: the data end at byte {start} without the IEOF end "
                                 "marker; re-export the model from 3dmod.")
        name = cur.take(4, "chunk name")
        if name == END_CHUNK:
            return points
        _chunk(cur, name, state, points)
        if cur.pos <= start:  # cannot happen (every chunk consumes its name); guards against an endless loop
            raise InputFileError(f"{path}: corrupt IMOD model: no progress at byte {start}.")


def read_imod_points(path: str | os.PathLike, *, offset_voxels: float = 0.0) -> pd.DataFrame:
    """Read every point of an IMOD model: columns ``object_id, contour_id, x, y, z`` (0-based ids, voxels)."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: IMOD model not found.")
    with open(path, "rb") as fh:  # the magic first: a large file of another format is refused without reading it
        _check_magic(fh.read(len(IMOD_MAGIC)), path)
    contours = parse_imod_points(path.read_bytes(), path)
    rows = [pd.DataFrame({"object_id": obj, "contour_id": cont, "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]})
            for obj, cont, xyz in contours if len(xyz)]
    if not rows:
        raise InputFileError(f"{path}: the IMOD model has no points.")
    df = pd.concat(rows, ignore_index=True)
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
