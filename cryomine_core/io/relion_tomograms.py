"""RELION 5 ``tomograms.star``: the tomograms a RELION 5 particle file refers to.

RELION 5 stores particle positions relative to the centre of their tomogram, in Å
(``rlnCenteredCoordinate{X,Y,Z}Angst``), so reading or writing them needs each tomogram's
size and pixel size. Those live in ``tomograms.star`` (block ``global``, one row per tomogram):

| column | meaning |
|---|---|
| ``rlnTomoName`` | the tomogram's name (``rlnTomoName`` of its particles; Scipion's tsId) |
| ``rlnTomoSizeX``, ``rlnTomoSizeY``, ``rlnTomoSizeZ`` | size of the **bin-1** tomogram, pixels |
| ``rlnTomoTiltSeriesPixelSize`` | pixel size of the tilt series (bin 1), Å |
| ``rlnTomoTomogramBinning`` | binning of the reconstructed tomogram (1 when absent) |
| ``rlnTomoHand`` | handedness: the slope of defocus over image-space z (-1 when absent) |
| ``rlnVoltage``, ``rlnSphericalAberration``, ``rlnAmplitudeContrast`` | optics (kV, mm, fraction) |
| ``rlnTomoReconstructedTomogram`` | the reconstructed tomogram's MRC file (optional) |
| ``rlnTomoTiltSeriesStarFile`` | per-tilt STAR file (optional; ``rlnTomoNominalStageTiltAngle``: tilt range) |

Conventions (RELION 5's ``TomogramSet`` and ``ParticleSet``; pinned by round-trip tests):

- The tomogram centre is ``size / 2`` in bin-1 pixels (``TomogramSet`` divides as floating point).
- Bin-1 pixel coordinates count from the centre of the first pixel (0-based), as CryoMine's
  coordinates do; a coordinate ``x`` in a tomogram binned ``b`` times is ``x * b`` at bin 1 (the
  scaling RELION and scipion-em-reliontomo apply).
- Handedness changes the sign of the defocus gradient through the sample (``Tomogram::getCtf``);
  it does not move particles. It is read, kept and written back, not applied to coordinates.

Relative file names are resolved against the STAR file's folder, then the two folders above it
(RELION writes them relative to its project folder, which is usually two levels up:
``Tomograms/job012/tomograms.star``); a file not found there is reported when it is needed.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import starfile

from cryomine_core.errors import InputFileError, TableError
from cryomine_core.io.atomic import atomic_path
from cryomine_core.io.columns import (
    AMPLITUDE_CONTRAST,
    CS,
    NOMINAL_TILT,
    OPTICS_GROUP_NAME,
    TILT_SERIES_STAR,
    TOMO,
    TOMO_BINNING,
    TOMO_HAND,
    TOMO_RECONSTRUCTION,
    TOMO_SIZES,
    TOMOGRAMS_BLOCK,
    TS_PIXEL_SIZE,
    VOLTAGE,
)

BLOCK = TOMOGRAMS_BLOCK
NAME = TOMO
SIZES = TOMO_SIZES
PIXEL_SIZE = TS_PIXEL_SIZE
BINNING = TOMO_BINNING
HAND = TOMO_HAND
RECONSTRUCTION = TOMO_RECONSTRUCTION


@dataclass(frozen=True)
class RelionTomogram:
    """One tomogram of a RELION 5 tomogram set.

    Attributes:
        name: ``rlnTomoName``.
        size_bin1: ``(x, y, z)`` size of the bin-1 tomogram, pixels.
        tilt_series_pixel_size: Å per bin-1 pixel.
        binning: the reconstructed tomogram's binning (its voxel size over the tilt series' pixel size).
        hand: RELION's handedness, -1 or 1.
        voltage_kv, cs_mm, amplitude_contrast: optics.
        reconstruction: the reconstructed tomogram's MRC file, absolute, if known.
        tilt_range: ``(min, max)`` nominal tilt angles in degrees, if the tilt-series file was read.
    """

    name: str
    size_bin1: tuple[float, float, float]
    tilt_series_pixel_size: float
    binning: float = 1.0
    hand: float = -1.0
    voltage_kv: float = 300.0
    cs_mm: float = 2.7
    amplitude_contrast: float = 0.1
    reconstruction: str | None = None
    tilt_range: tuple[float, float] | None = None

    @property
    def voxel_size(self) -> float:
        """Å per voxel of the reconstructed (binned) tomogram."""
        return self.tilt_series_pixel_size * self.binning

    @property
    def centre_bin1(self) -> tuple[float, float, float]:
        """The centre RELION 5 measures ``rlnCenteredCoordinate*Angst`` from: ``size / 2``, bin-1 pixels."""
        return tuple(s / 2.0 for s in self.size_bin1)


def _resolve(value: str, star: Path) -> Path | None:
    candidate = Path(value)
    if candidate.is_absolute():
        return candidate if candidate.exists() else None
    for base in (star.parent, star.parent.parent, star.parent.parent.parent):
        if (base / candidate).exists():
            return (base / candidate).resolve()
    return None


def _tilt_range(value: str, star: Path, name: str) -> tuple[float, float] | None:
    path = _resolve(value, star)
    if path is None:
        return None
    try:
        blocks = starfile.read(path, always_dict=True)
    except Exception as exc:  # starfile raises many kinds of parse errors
        raise InputFileError(f"{path}: the tilt-series file of tomogram '{name}' is not a readable STAR file "
                             f"({exc}).") from exc
    table = blocks.get(name, next(iter(blocks.values()), None)) if blocks else None
    if not isinstance(table, pd.DataFrame) or NOMINAL_TILT not in table.columns:
        return None
    tilts = pd.to_numeric(table[NOMINAL_TILT], errors="coerce").dropna()
    return (float(tilts.min()), float(tilts.max())) if len(tilts) else None


def _number(row: pd.Series, column: str, path: Path, default: float | None = None) -> float:
    if column not in row.index or pd.isna(row[column]):
        if default is None:
            raise TableError(f"{path}: tomogram '{row[NAME]}' has no {column}; RELION 5 tomogram files give it "
                             "(write the file with RELION 5, Warp or `cryomine formats convert --to relion5`).")
        return default
    value = pd.to_numeric(row[column], errors="coerce")
    if not math.isfinite(value) or value <= 0 and column != HAND:
        raise TableError(f"{path}: tomogram '{row[NAME]}' has {column} = {row[column]!r}; expected a positive "
                         "number.")
    return float(value)


def read_tomograms_star(path: str | os.PathLike) -> dict[str, RelionTomogram]:
    """Read a RELION 5 ``tomograms.star`` into ``{name: RelionTomogram}``.

    Raises:
        InputFileError: the file is missing or not a STAR file.
        TableError: no ``global`` block, no ``rlnTomoName``, a tomogram without size or pixel size,
            a name given twice; the message names the file, the tomogram and the column.
    """
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: RELION 5 tomograms file not found.")
    try:
        blocks = starfile.read(path, always_dict=True)
    except Exception as exc:  # starfile raises many kinds of parse errors
        raise InputFileError(f"{path}: not a readable STAR file ({exc}).") from exc
    table = blocks.get(BLOCK)
    if table is None and len(blocks) == 1:
        table = next(iter(blocks.values()))
    if isinstance(table, dict):
        table = pd.DataFrame([table])
    if not isinstance(table, pd.DataFrame) or NAME not in table.columns:
        raise TableError(f"{path}: no 'data_{BLOCK}' block with {NAME}; is this a RELION 5 tomograms.star "
                         "(not a particle file)?")
    out: dict[str, RelionTomogram] = {}
    for _, row in table.iterrows():
        name = str(row[NAME])
        if name in out:
            raise TableError(f"{path}: tomogram '{name}' is listed twice.")
        tilt_range = None
        if TILT_SERIES_STAR in row.index and isinstance(row[TILT_SERIES_STAR], str):
            tilt_range = _tilt_range(row[TILT_SERIES_STAR], path, name)
        reconstruction = None
        if RECONSTRUCTION in row.index and isinstance(row[RECONSTRUCTION], str):
            found = _resolve(row[RECONSTRUCTION], path)
            reconstruction = str(found) if found is not None else None
        out[name] = RelionTomogram(
            name=name,
            size_bin1=tuple(_number(row, c, path) for c in SIZES),
            tilt_series_pixel_size=_number(row, PIXEL_SIZE, path),
            binning=_number(row, BINNING, path, 1.0),
            hand=_number(row, HAND, path, -1.0),
            voltage_kv=_number(row, VOLTAGE, path, 300.0),
            cs_mm=_number(row, CS, path, 2.7),
            amplitude_contrast=_number(row, AMPLITUDE_CONTRAST, path, 0.1),
            reconstruction=reconstruction,
            tilt_range=tilt_range,
        )
    if not out:
        raise TableError(f"{path}: the tomograms file lists no tomogram.")
    return out


def write_tomograms_star(path: str | os.PathLike, tomograms: dict[str, RelionTomogram]) -> Path:
    """Write ``tomograms`` as a RELION 5 ``tomograms.star`` (block ``global``), atomically."""
    path = Path(path)
    if not tomograms:
        raise TableError(f"writing {path}: no tomograms to write.")
    rows = []
    for t in tomograms.values():
        row = {NAME: t.name, VOLTAGE: t.voltage_kv, CS: t.cs_mm, AMPLITUDE_CONTRAST: t.amplitude_contrast,
               HAND: t.hand, OPTICS_GROUP_NAME: "optics1", PIXEL_SIZE: t.tilt_series_pixel_size,
               BINNING: t.binning}
        row.update({c: int(round(s)) for c, s in zip(SIZES, t.size_bin1)})
        if t.reconstruction:
            row[RECONSTRUCTION] = t.reconstruction
        rows.append(row)
    table = pd.DataFrame(rows)
    with atomic_path(path) as tmp:
        starfile.write({BLOCK: table}, tmp, overwrite=True)
    return path


def tomograms_from_files(files: dict[str, str], *, tilt_series_pixel_size: float | None = None,
                         hand: float = -1.0, voltage_kv: float = 300.0, cs_mm: float = 2.7,
                         amplitude_contrast: float = 0.1) -> dict[str, RelionTomogram]:
    """RELION 5 tomogram descriptions of reconstructed tomograms, from their MRC headers.

    Args:
        files: ``{rlnTomoName: MRC file}`` (a CryoMine table's ``rlnTomoName`` and ``cmTomoFile``).
        tilt_series_pixel_size: Å per pixel of the tilt series (bin 1); default: the tomogram's
            voxel size (binning 1). The binning is the voxel size over this pixel size.
        hand, voltage_kv, cs_mm, amplitude_contrast: written as given (RELION's defaults otherwise).
    """
    from cryomine_core.io.mrc import read_mrc_header

    if tilt_series_pixel_size is not None and not tilt_series_pixel_size > 0:
        raise TableError(f"--tilt-series-pixel-size {tilt_series_pixel_size:g}: give Å per pixel (> 0).")
    if hand not in (-1.0, 1.0):
        raise TableError(f"--hand {hand:g}: RELION's handedness is -1 or 1.")
    out = {}
    for name, file in files.items():
        header = read_mrc_header(file)
        if len(header.shape) != 3:
            raise TableError(f"{file}: tomogram '{name}' is not a 3-D volume (shape {header.shape}).")
        pixel = tilt_series_pixel_size or header.voxel_size
        binning = header.voxel_size / pixel
        z, y, x = header.shape
        out[name] = RelionTomogram(name=name, size_bin1=tuple(float(round(s * binning)) for s in (x, y, z)),
                                   tilt_series_pixel_size=pixel, binning=binning, hand=hand, voltage_kv=voltage_kv,
                                   cs_mm=cs_mm, amplitude_contrast=amplitude_contrast,
                                   reconstruction=str(Path(file).resolve()))
    return out
