"""RELION particle STAR files (subtomograms or 3-D coordinates with orientations) <-> particle tables.

What is read
------------
A RELION 3.1/4 STAR file with a ``particles`` block (or a single block) and, optionally, an
``optics`` block. Columns used:

- ``rlnTomoName`` (tomogram, Scipion's tsId), ``rlnImageName`` (subtomogram MRC; relative paths
  are relative to the STAR file's folder), ``rlnCoordinateX/Y/Z`` (particle centre in the
  tomogram, voxels), ``rlnAngleRot/Tilt/Psi`` (ZYZ, degrees), ``rlnOriginX/Y/ZAngst`` (Å) or
  the older ``rlnOriginX/Y/Z`` (pixels), ``rlnClassNumber``, ``rlnRandomSubset`` (half set).
- The voxel size comes from the caller, else the particle row or its optics group
  (``rlnImagePixelSize``, ``rlnTomoTiltSeriesPixelSize``, ``rlnPixelSize``,
  ``rlnDetectorPixelSize``, first found).

Conventions (pinned by round-trip tests and by reading our files with scipion-em-reliontomo)
-------------------------------------------------------------------------------------------
- Angles and origins follow :mod:`cryomine_core.geometry`: RELION's ``A`` is the canonical
  rotation ``R``; ``rlnOrigin{X,Y,Z}Angst = -t * voxel_size``.
- ``rlnCoordinateX/Y/Z`` are voxels counted from the centre of the first voxel (0-based), as
  scipion-em-reliontomo reads and writes them (``BOTTOM_LEFT_CORNER``). RELION 5 files that give
  only ``rlnCenteredCoordinate{X,Y,Z}Angst`` are refused with a message pointing to the RELION 5
  reader (:mod:`cryomine_core.io.relion5`, ``--from relion5``).

The written file has an ``optics`` block (one group: voltage, Cs, amplitude contrast, voxel size,
box size, 3-D images: what RELION 3.1/4 needs to read it) and a ``particles``
block with the RELION columns above plus ``rlnTomoParticleId`` and ``rlnOpticsGroup``; CryoMine's
own ``cm...`` columns are kept (RELION ignores labels it does not know).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import starfile

from cryomine_core.errors import InputFileError, TableError
from cryomine_core.io import table as T
from cryomine_core.io.atomic import atomic_path
from cryomine_core.io.columns import (
    AMPLITUDE_CONTRAST,
    BLOCK,
    CENTERED,
    CS,
    DIMENSIONALITY,
    IMAGE_PIXEL_SIZE,
    IMAGE_SIZE,
    OPTICS_BLOCK,
    OPTICS_GROUP,
    OPTICS_GROUP_NAME,
    ORIGINS_PIXELS,
    PARTICLE_ID,
    PIXEL_SIZE_LABELS,
    RANDOM_SUBSET,
    VOLTAGE,
)

log = logging.getLogger("cryomine")

PARTICLES_BLOCK = BLOCK
CENTERED_ANGSTROM = CENTERED


def _blocks(path: Path) -> dict:
    if not path.exists():
        raise InputFileError(f"{path}: RELION STAR file not found.")
    try:
        data = starfile.read(path, always_dict=True)
    except Exception as exc:  # starfile raises many kinds of parse errors
        raise InputFileError(f"{path}: not a readable STAR file ({exc}).") from exc
    return {name: (df if isinstance(df, pd.DataFrame) else pd.DataFrame([df])) for name, df in data.items()}


def _particle_block(path: Path, blocks: dict) -> pd.DataFrame:
    if PARTICLES_BLOCK in blocks:
        return blocks[PARTICLES_BLOCK].copy()
    others = [name for name in blocks if name not in (OPTICS_BLOCK, "general")]
    if len(others) == 1:
        return blocks[others[0]].copy()
    raise TableError(f"{path}: no 'data_{PARTICLES_BLOCK}' block among {list(blocks)}; name the particle block "
                     f"data_{PARTICLES_BLOCK}.")


def _row_pixel_sizes(path: Path, df: pd.DataFrame, optics: pd.DataFrame | None) -> np.ndarray | None:
    for label in PIXEL_SIZE_LABELS:
        if label in df.columns:
            return pd.to_numeric(df[label], errors="coerce").to_numpy(float)
    if optics is not None and len(optics):
        for label in PIXEL_SIZE_LABELS:
            if label not in optics.columns:
                continue
            if OPTICS_GROUP in optics.columns and OPTICS_GROUP in df.columns:
                by_group = dict(zip(optics[OPTICS_GROUP].astype(int), optics[label].astype(float)))
                missing = sorted(set(df[OPTICS_GROUP].astype(int)) - set(by_group))
                if missing:
                    raise TableError(f"{path}: particles refer to optics group(s) {missing} that the optics block "
                                     "does not define.")
                return df[OPTICS_GROUP].astype(int).map(by_group).to_numpy(float)
            return np.full(len(df), float(optics[label].iloc[0]))
    return None


def read_relion_star(path: str | os.PathLike, *, voxel_size: float | None = None,
                     default_voxel_size: float | None = None, require_images: bool = False) -> pd.DataFrame:
    """Read a RELION particle STAR file as a CryoMine particle table.

    Args:
        path: the STAR file.
        voxel_size: Å per voxel of the particles (overrides the file's pixel size).
        default_voxel_size: used when neither ``voxel_size`` nor the file gives one.
        require_images: the caller needs ``rlnImageName`` (importing subtomograms).

    Returns:
        A DataFrame with CryoMine's column names (:mod:`cryomine_core.io.table`): the RELION
        columns it shares, ``cmVoxelSize``, ``cmHalfSet`` from ``rlnRandomSubset``, origins in Å,
        image paths made absolute. Other columns are kept unchanged.

    Raises:
        InputFileError, TableError: the message names the file, the column or row, and the fix.
    """
    path = Path(path)
    blocks = _blocks(path)
    df = _particle_block(path, blocks)
    if len(df) == 0:
        raise TableError(f"{path}: the particle block has no rows.")
    if require_images and T.IMAGE not in df.columns:
        raise TableError(f"{path}: no {T.IMAGE} column, so there are no subtomogram files to import. Import it as "
                         "coordinates instead, or give a STAR file that lists the subtomograms.")
    if not all(c in df.columns for c in T.COORDS) and all(c in df.columns for c in CENTERED_ANGSTROM) \
            and not require_images:
        raise TableError(f"{path}: coordinates are RELION 5 centred coordinates in Å ({CENTERED_ANGSTROM[0]}, ...), "
                         "a RELION 5 file: read it as RELION 5 (--from relion5, with its tomograms.star).")
    if voxel_size is not None:
        sizes = np.full(len(df), float(voxel_size))
    else:
        sizes = _row_pixel_sizes(path, df, blocks.get(OPTICS_BLOCK))
    if sizes is None and default_voxel_size is not None:
        sizes = np.full(len(df), float(default_voxel_size))
    has_origin = any(c in df.columns for c in (*T.ORIGINS, *ORIGINS_PIXELS))
    if sizes is None:
        if has_origin:
            raise TableError(f"{path}: the file gives origin shifts but no pixel size (none of {PIXEL_SIZE_LABELS} "
                             "in the particles or optics block). Give the voxel size explicitly.")
        sizes = np.ones(len(df))
    if np.any(~np.isfinite(sizes)) or np.any(sizes <= 0):
        bad = int(np.flatnonzero(~(np.isfinite(sizes) & (sizes > 0)))[0])
        raise TableError(f"{path}: row {bad + 1} has pixel size {sizes[bad]!r}; expected a positive number of Å.")
    df[T.VOXEL_SIZE] = sizes
    if not all(c in df.columns for c in T.ORIGINS) and all(c in df.columns for c in ORIGINS_PIXELS):
        for angst, pixels in zip(T.ORIGINS, ORIGINS_PIXELS):
            df[angst] = pd.to_numeric(df[pixels], errors="coerce") * sizes
    if RANDOM_SUBSET in df.columns and T.HALF_SET not in df.columns:
        df[T.HALF_SET] = pd.to_numeric(df[RANDOM_SUBSET], errors="coerce")
    if T.TOMO in df.columns:
        df[T.TOMO] = df[T.TOMO].astype(str)
    T.validate_table(df, require=(), source=str(path))
    if T.IMAGE in df.columns:
        base = path.resolve().parent
        df[T.IMAGE] = [str(p) if os.path.isabs(str(p)) else str((base / str(p)).resolve()) for p in df[T.IMAGE]]
    return df.reset_index(drop=True)


def _image_box(df: pd.DataFrame) -> int | None:
    """Box size of the table's subtomograms (the first image's header; CryoMine writes one box per set)."""
    if T.IMAGE not in df.columns or len(df) == 0:
        return None
    from cryomine_core.io.mrc import read_mrc_header

    first = str(df[T.IMAGE].iloc[0])
    if not os.path.exists(first):
        log.warning("rlnImageSize not written: the first subtomogram, %s, is not there to read its box from; RELION "
                    "needs it (\"box sizes not available\"): write the file where the subtomograms are", first)
        return None
    return int(read_mrc_header(first).shape[-1])


def write_relion_star(path: str | os.PathLike, df: pd.DataFrame, *, voltage_kv: float = 300.0, cs_mm: float = 2.7,
                      amplitude_contrast: float = 0.1) -> Path:
    """Write a particle table as a RELION STAR file (``optics`` + ``particles`` blocks), atomically.

    ``df`` holds CryoMine columns (``cmVoxelSize`` required; one voxel size for all rows). Class
    numbers, half sets, tomogram names, coordinates, angles and Å origins are written under their
    RELION names; ``rlnTomoParticleId`` numbers the rows from 1.

    The optics block is complete for RELION 3.1/4 (without ``rlnVoltage`` and
    ``rlnSphericalAberration`` RELION drops the optics table and fails later with "empty file
    name"; without ``rlnImageSize``, "box sizes not available"): voltage (kV), Cs (mm), amplitude
    contrast (the acquisition's, else RELION's usual 300 kV, 2.7 mm, 0.1), pixel size, image size
    (from the first subtomogram's header) and dimensionality 3. RELION needs even boxes: an odd
    box is written with a warning that names the fix.
    """
    path = Path(path)
    if len(df) == 0:
        raise TableError(f"writing {path}: no particles to write.")
    if T.VOXEL_SIZE not in df.columns:
        raise TableError(f"writing {path}: the table has no {T.VOXEL_SIZE} column; RELION needs the pixel size.")
    sizes = df[T.VOXEL_SIZE].to_numpy(float)
    if not np.allclose(sizes, sizes[0], rtol=1e-6):
        raise TableError(f"writing {path}: particles have different voxel sizes ({sorted(set(sizes))[:4]} ...); "
                         "RELION needs one pixel size per optics group. Rescale them to one voxel size first.")
    for name, value in (("voltage", voltage_kv), ("spherical aberration", cs_mm)):
        if not np.isfinite(value) or value <= 0:
            raise TableError(f"writing {path}: {name} {value!r}; give a positive number.")
    if not 0 <= amplitude_contrast < 1:
        raise TableError(f"writing {path}: amplitude contrast {amplitude_contrast!r}; give a fraction in [0, 1).")
    out = df.copy()
    out[PARTICLE_ID] = np.arange(1, len(out) + 1)
    out[OPTICS_GROUP] = 1
    if T.HALF_SET in out.columns:
        out[RANDOM_SUBSET] = out[T.HALF_SET].astype(int)
    if T.CLASS in out.columns:
        out[T.CLASS] = out[T.CLASS].astype(int)
    first = [c for c in (T.TOMO, PARTICLE_ID, T.IMAGE, *T.COORDS, *T.ANGLES, *T.ORIGINS, T.CLASS, RANDOM_SUBSET,
                         OPTICS_GROUP) if c in out.columns]
    out = out[first + [c for c in out.columns if c not in first]]
    optics = {OPTICS_GROUP: [1], OPTICS_GROUP_NAME: ["opticsGroup1"], VOLTAGE: [float(voltage_kv)],
              CS: [float(cs_mm)], AMPLITUDE_CONTRAST: [float(amplitude_contrast)],
              IMAGE_PIXEL_SIZE: [float(sizes[0])], DIMENSIONALITY: [3]}
    box = _image_box(df)
    if box is not None:
        optics[IMAGE_SIZE] = [box]
        if box % 2:
            log.warning("%s: the subtomograms are %d voxels wide; RELION needs even boxes (an odd box reconstructs "
                        "to noise). Extract them again with an even --box.", path, box)
    with atomic_path(path) as tmp:
        starfile.write({OPTICS_BLOCK: pd.DataFrame(optics), PARTICLES_BLOCK: out}, tmp, overwrite=True)
    return path
