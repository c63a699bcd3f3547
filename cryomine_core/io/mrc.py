"""MRC volumes and stacks through mrcfile, with validation and atomic writes.

Arrays are returned in mrcfile's order, which is **zyx** for volumes (``data[z, y, x]``) and
``(n, z, y, x)`` for volume stacks. The voxel size is returned in **Å/voxel** (the x value of
the header's ``voxel_size``; CryoMine refuses anisotropic voxels rather than guess).

**Stacked sets**: a particle table may point into one memory-mappable volume stack per set instead
of one file per subtomogram, with RELION's image-name convention ``k@stack.mrcs`` (``k`` 1-based:
the k-th volume of the ``(n, z, y, x)`` stack). :func:`read_mrc` and :func:`read_mrc_header` take such
names and read only that volume; :func:`split_stack_name` splits one.

Reading is permissive (mrcfile's ``permissive=True``, so files written by other programs with
small header oddities still open), followed by CryoMine's own checks: the file exists, is long
enough for the header and for the data the header announces, and (optionally) holds only
finite numbers. A failed check raises :class:`~cryomine_core.errors.InputFileError` naming the
file and what to do.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import mrcfile
import numpy as np

from cryomine_core.errors import InputFileError
from cryomine_core.io.atomic import atomic_path

_HEADER_BYTES = 1024


@dataclass(frozen=True)
class MrcHeader:
    """What CryoMine needs from an MRC header.

    Attributes:
        shape: data shape in mrcfile order, ``(z, y, x)`` or ``(n, z, y, x)``.
        voxel_size: Å per voxel (isotropic).
        dtype: numpy dtype of the stored values.
    """

    shape: tuple[int, ...]
    voxel_size: float
    dtype: np.dtype


def split_stack_name(name: str | os.PathLike) -> tuple[int | None, Path]:
    """``'12@dir/set.mrcs'`` -> ``(12, Path('dir/set.mrcs'))``; a plain file name -> ``(None, path)``.

    Raises InputFileError for an index that is not a positive integer.
    """
    text = str(name)
    head, sep, tail = text.partition("@")
    if not sep or os.sep in head or "/" in head:
        return None, Path(text)
    if not head.isdigit() or int(head) < 1:
        raise InputFileError(f"{text}: '{head}' before '@' is not a stack index (1, 2, ...); write k@stack.mrcs "
                             "with k counted from 1.")
    return int(head), Path(tail)


def _stack_item(mrc, index: int, name: str):
    data = mrc.data
    if data.ndim != 4:
        raise InputFileError(f"{name}: '{index}@' points into a stack but the file holds one volume of shape "
                             f"{data.shape}; name the file alone, or write the set as a volume stack.")
    if index > data.shape[0]:
        raise InputFileError(f"{name}: the stack holds {data.shape[0]} volumes, there is no volume {index}; check "
                             "the particle table against the stack.")
    return data[index - 1]


def _voxel_size(mrc, path: Path) -> float:
    vs = mrc.voxel_size
    sizes = (float(vs.x), float(vs.y), float(vs.z))
    present = [s for s in sizes if s > 0]
    if present and (max(present) - min(present)) > 1e-3 * max(present):
        raise InputFileError(
            f"{path}: anisotropic voxel size {sizes} Å; CryoMine needs cubic voxels. "
            "Resample the volume to isotropic voxels first."
        )
    return sizes[0]


def _open(path: Path, mmap: bool):
    if not path.exists():
        raise InputFileError(f"{path}: file not found. Check the path in the particle table or the input set.")
    size = path.stat().st_size
    if size < _HEADER_BYTES:
        raise InputFileError(
            f"{path}: {size} bytes, shorter than an MRC header ({_HEADER_BYTES} bytes); the file is "
            "truncated or not an MRC file. Re-export or re-copy it."
        )
    opener = mrcfile.mmap if mmap else mrcfile.open
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            mrc = opener(str(path), mode="r", permissive=True)
        except (ValueError, OSError, EOFError) as exc:
            raise InputFileError(f"{path}: not a readable MRC file ({exc}). Re-export or re-copy it.") from exc
    if mrc.data is None:
        notes = "; ".join(str(w.message) for w in caught) or "no data block"
        mrc.close()
        raise InputFileError(
            f"{path}: the MRC data block is missing or shorter than the header announces ({notes}); "
            "the file is truncated or corrupt. Re-export or re-copy it."
        )
    return mrc


def read_mrc_header(path: str | os.PathLike) -> MrcHeader:
    """Read and validate an MRC header without loading the data (memory-mapped); for ``k@stack.mrcs``
    the shape is that of the one volume."""
    index, path = split_stack_name(path)
    mrc = _open(path, mmap=True)
    try:
        data = mrc.data if index is None else _stack_item(mrc, index, f"{index}@{path}")
        return MrcHeader(shape=tuple(int(s) for s in data.shape), voxel_size=_voxel_size(mrc, path),
                         dtype=np.dtype(mrc.data.dtype))
    finally:
        mrc.close()


def read_mrc(
    path: str | os.PathLike, *, mmap: bool = False, check_finite: bool = True, dtype=np.float32
) -> tuple[np.ndarray, float]:
    """Read an MRC volume or stack.

    Args:
        path: the file, or ``k@stack.mrcs`` for the k-th volume of a stack (only it is read).
        mmap: if True, return a read-only memory-mapped array (no copy; the file stays open until
            the array is garbage collected). Use it to stream large stacks.
        check_finite: refuse data holding NaN or infinity (reads the whole array once).
        dtype: convert to this dtype (ignored when ``mmap`` is True, which keeps the stored type).

    Returns:
        ``(data, voxel_size)``: data in zyx (or nzyx) order and the voxel size in Å.
    """
    index, path = split_stack_name(path)
    if index is not None:
        mmap = False  # one volume is copied out of the memory-mapped stack
    mrc = _open(path, mmap=mmap or index is not None)
    try:
        voxel_size = _voxel_size(mrc, path)
        if index is not None:
            data = np.asarray(_stack_item(mrc, index, f"{index}@{path}"), dtype=dtype)
            path = Path(f"{index}@{path}")  # the messages name the item
        else:
            data = mrc.data if mmap else np.asarray(mrc.data, dtype=dtype)
        if check_finite and not np.isfinite(data).all():
            bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
            raise InputFileError(
                f"{path}: {bad} voxel(s) are NaN or infinite. Fix the file (e.g. re-extract the "
                "subtomogram) or remove the item from the set."
            )
        if not mmap:
            data = np.array(data, copy=True)
        return data, voxel_size
    finally:
        if not mmap:
            mrc.close()


def write_mrc(path: str | os.PathLike, data: np.ndarray, voxel_size: float, *, dtype=np.float32) -> Path:
    """Write a volume ``(z, y, x)`` or volume stack ``(n, z, y, x)`` atomically.

    Args:
        path: target file (parent folders are created).
        data: the array in zyx / nzyx order.
        voxel_size: Å per voxel, written to the header.
        dtype: stored type (float32 by default, MRC mode 2).
    """
    path = Path(path)
    arr = np.ascontiguousarray(np.asarray(data, dtype=dtype))
    if arr.ndim not in (2, 3, 4):
        raise ValueError(f"write_mrc: expected a 2-D, 3-D or 4-D array for {path}, got shape {arr.shape}")
    if not voxel_size > 0:
        raise ValueError(f"write_mrc: voxel size must be positive for {path}, got {voxel_size}")
    with atomic_path(path) as tmp:
        with mrcfile.new(str(tmp), overwrite=True) as mrc:
            mrc.set_data(arr)
            mrc.voxel_size = float(voxel_size)
            mrc.update_header_stats()
    return path


def write_volume_stack(path: str | os.PathLike, volumes, n: int, box: tuple[int, int, int], voxel_size: float) -> Path:
    """Write ``n`` volumes of ``box`` (z, y, x), given one at a time by the iterable ``volumes``, into one
    volume stack ``(n, z, y, x)`` float32, atomically; only one volume is held in memory at a time
    (the stack is filled through a memory map). Items are then read as ``k@path`` (``k`` from 1).
    """
    path = Path(path)
    if not voxel_size > 0:
        raise ValueError(f"write_volume_stack: voxel size must be positive for {path}, got {voxel_size}")
    shape = (int(n), *(int(b) for b in box))
    with atomic_path(path) as tmp:
        with mrcfile.new_mmap(str(tmp), shape=shape, mrc_mode=2, overwrite=True) as mrc:
            mrc.header.ispg = 401  # a stack of volumes
            count = 0
            for count, vol in enumerate(volumes, start=1):
                if count > shape[0]:
                    raise ValueError(f"write_volume_stack: more than the {shape[0]} volumes announced for {path}")
                arr = np.asarray(vol, dtype=np.float32)
                if arr.shape != shape[1:]:
                    raise ValueError(f"write_volume_stack: volume {count} has shape {arr.shape}, not {shape[1:]}")
                mrc.data[count - 1] = arr
            if count != shape[0]:
                raise ValueError(f"write_volume_stack: {count} volumes given for {path}, {shape[0]} announced")
            mrc.voxel_size = float(voxel_size)
            mrc.update_header_stats()
    return path
