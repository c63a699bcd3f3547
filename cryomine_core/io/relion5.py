"""RELION 5 tomography particle files (and optimisation sets) <-> CryoMine particle tables.

RELION 5 is the exchange format of today's subtomogram-averaging tools (Warp/M, AreTomo, pytom,
scipion-em-reliontomo). A particle file has an ``optics`` block and a ``particles`` block:

- position: ``rlnCenteredCoordinate{X,Y,Z}Angst``, Å from the tomogram centre (RELION 5), or
  ``rlnCoordinate{X,Y,Z}``, bin-1 pixels (RELION 4 files, which RELION 5 still reads);
- orientation: ``rlnAngle{Rot,Tilt,Psi}`` and, optionally, ``rlnTomoSubtomogram{Rot,Tilt,Psi}`` (the
  rotation applied when the pseudo-subtomogram was extracted, e.g. a filament frame);
- shift: ``rlnOrigin{X,Y,Z}Angst``, in the frame of the subtomogram orientation;
- ``rlnTomoName`` (the tomogram, a row of ``tomograms.star``), ``rlnClassNumber``,
  ``rlnRandomSubset``, ``rlnOpticsGroup``; the optics block gives ``rlnTomoTiltSeriesPixelSize``.

An optimisation set (``optimisation_set.star``) names the particle file
(``rlnTomoParticlesFile``) and the tomograms file (``rlnTomoTomogramsFile``); it can be read
wherever a particle file is expected.

Conventions, as RELION 5's ``ParticleSet`` applies them (``getMatrix3x3``, ``getPosition``,
``getParticleCoordDecenteredPixel``) and as pinned by this module's round-trip tests:

- the particle's rotation is ``A_sub @ A_part`` (RELION's ``Euler_angles2matrix`` of the subtomogram
  angles times that of the particle angles); CryoMine's canonical ``R`` is RELION's ``A``
  (:mod:`cryomine_core.geometry`), so ``R = A_sub @ A_part``;
- the particle sits at ``coordinate - A_sub @ origin / pixel_size`` (bin-1 pixels), so CryoMine's
  origin in the tomogram frame is ``A_sub @ origin`` (Å);
- ``coordinate = centred_Å / tilt_series_pixel_size + size_bin1 / 2`` (see
  :mod:`cryomine_core.io.relion_tomograms`), and a bin-1 coordinate ``x1`` is ``x1 / b`` in a
  tomogram binned ``b`` times.

The CryoMine table has coordinates in voxels of the tomogram the particles are extracted from:
by default the reconstructed tomogram of ``tomograms.star`` (``rlnTomoTomogramBinning``), or the
voxel size the caller gives. Written files carry the pose either as oriented picks (subtomogram
angles, shift folded into the position; the default) or as a refined set (``rlnAngle*`` and
origins), see :func:`write_relion5_particles`, and both coordinate forms on request.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import starfile
import torch

from cryomine_core.errors import InputFileError, TableError
from cryomine_core.geometry import relion_eulers_to_rotation, rotation_to_relion_eulers
from cryomine_core.io import table as T
from cryomine_core.io.atomic import atomic_path
from cryomine_core.io.columns import (
    AMPLITUDE_CONTRAST,
    BLOCK,
    CENTERED,
    CS,
    DIMENSIONALITY,
    OPTICS_BLOCK,
    OPTICS_GROUP,
    OPTICS_GROUP_NAME,
    OPTIMISATION_BLOCK,
    PARTICLE_NAME,
    PARTICLES_FILE,
    RANDOM_SUBSET,
    SUBTOMOGRAM_ANGLES,
    TOMOGRAMS_FILE,
    TS_PIXEL_SIZE,
    VOLTAGE,
)
from cryomine_core.io.relion_tomograms import RelionTomogram, read_tomograms_star

log = logging.getLogger("cryomine")

PARTICLES_BLOCK = BLOCK

__all__ = ["ORIENTATIONS", "read_relion5_particles", "write_relion5_particles", "read_optimisation_set",
           "write_optimisation_set", "is_optimisation_set"]


def _read_blocks(path: Path) -> dict[str, pd.DataFrame]:
    if not path.exists():
        raise InputFileError(f"{path}: RELION 5 file not found.")
    try:
        data = starfile.read(path, always_dict=True)
    except Exception as exc:  # starfile raises many kinds of parse errors
        raise InputFileError(f"{path}: not a readable STAR file ({exc}).") from exc
    return {name: (df if isinstance(df, pd.DataFrame) else pd.DataFrame([df])) for name, df in data.items()}


def is_optimisation_set(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a RELION 5 optimisation set (it names a particle file)."""
    return any(PARTICLES_FILE in df.columns for df in _read_blocks(Path(path)).values())


def read_optimisation_set(path: str | os.PathLike) -> tuple[Path, Path | None]:
    """The particle file and the tomograms file (or None) an optimisation set names, as paths.

    Relative names are resolved against the set's folder, then the two folders above it (RELION
    writes them relative to its project folder).
    """
    path = Path(path)
    rows = [df for df in _read_blocks(path).values() if PARTICLES_FILE in df.columns]
    if not rows:
        raise TableError(f"{path}: not an optimisation set (no {PARTICLES_FILE}).")
    row = rows[0].iloc[0]

    def resolve(value: str, what: str) -> Path:
        candidate = Path(str(value))
        bases = [Path("/")] if candidate.is_absolute() else [path.parent, path.parent.parent,
                                                               path.parent.parent.parent]
        for base in bases:
            if (base / candidate).exists():
                return (base / candidate).resolve()
        raise InputFileError(f"{path}: the {what} file it names, {value}, was not found next to it or in the two "
                             "folders above (RELION's project folder); run from the RELION project or fix the path.")

    particles = resolve(row[PARTICLES_FILE], "particle")
    tomograms = resolve(row[TOMOGRAMS_FILE], "tomograms") if TOMOGRAMS_FILE in row.index and \
        isinstance(row[TOMOGRAMS_FILE], str) and row[TOMOGRAMS_FILE] else None
    return particles, tomograms


def write_optimisation_set(path: str | os.PathLike, particles: str | os.PathLike,
                           tomograms: str | os.PathLike) -> Path:
    """Write an optimisation set naming ``particles`` and ``tomograms`` (relative to its folder), atomically."""
    path = Path(path)
    rel = {PARTICLES_FILE: os.path.relpath(Path(particles).resolve(), path.resolve().parent),
           TOMOGRAMS_FILE: os.path.relpath(Path(tomograms).resolve(), path.resolve().parent)}
    with atomic_path(path) as tmp:
        starfile.write({OPTIMISATION_BLOCK: rel}, tmp, overwrite=True)
    return path


def _optics_pixel_sizes(path: Path, df: pd.DataFrame, optics: pd.DataFrame | None) -> np.ndarray | None:
    if optics is None or TS_PIXEL_SIZE not in optics.columns:
        return None
    if OPTICS_GROUP in optics.columns and OPTICS_GROUP in df.columns:
        by_group = dict(zip(optics[OPTICS_GROUP].astype(int), optics[TS_PIXEL_SIZE].astype(float)))
        missing = sorted(set(df[OPTICS_GROUP].astype(int)) - set(by_group))
        if missing:
            raise TableError(f"{path}: particles refer to optics group(s) {missing} that the optics block does not "
                             "define.")
        return df[OPTICS_GROUP].astype(int).map(by_group).to_numpy(float)
    return np.full(len(df), float(optics[TS_PIXEL_SIZE].iloc[0]))


def _columns(df: pd.DataFrame, names, path: Path) -> np.ndarray:
    values = np.array(df[list(names)].apply(pd.to_numeric, errors="coerce"), dtype=float)
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise TableError(f"{path}: row {row + 1} has a non-numeric value in {', '.join(names)}.")
    return values


def read_relion5_particles(path: str | os.PathLike, tomograms: str | os.PathLike | None = None, *,
                           voxel_size: float | None = None) -> pd.DataFrame:
    """Read a RELION 5 particle file (or optimisation set) as a CryoMine particle table.

    Args:
        path: ``particles.star`` or ``optimisation_set.star``.
        tomograms: ``tomograms.star`` (default: the one the optimisation set names). Required for
            centred coordinates, and for ``rlnCoordinate*`` files whose optics block has no tilt-series
            pixel size.
        voxel_size: Å per voxel of the tomogram the coordinates should refer to (default: each
            tomogram's reconstruction, tilt-series pixel size times ``rlnTomoTomogramBinning``).

    Returns:
        A table with ``rlnTomoName``, ``rlnCoordinateX/Y/Z`` (voxels of that tomogram),
        ``cmVoxelSize``, angles and Å origins of the composed pose, ``cmHalfSet`` from
        ``rlnRandomSubset``, ``cmTiltMin/Max`` where the tomograms file gives the tilt series,
        ``cmTomoFile`` where it names the reconstruction; other columns are kept.
    """
    path = Path(path)
    if voxel_size is not None and not voxel_size > 0:
        raise TableError(f"--voxel-size {voxel_size:g}: give the voxel size in Å (> 0).")
    if is_optimisation_set(path):
        particles, named = read_optimisation_set(path)
        path, tomograms = particles, tomograms if tomograms is not None else named
    blocks = _read_blocks(path)
    if PARTICLES_BLOCK not in blocks:
        raise TableError(f"{path}: no 'data_{PARTICLES_BLOCK}' block; is this a RELION 5 particle file?")
    df = blocks[PARTICLES_BLOCK].copy()
    if len(df) == 0:
        raise TableError(f"{path}: the particle block has no rows.")
    if T.TOMO not in df.columns:
        raise TableError(f"{path}: no {T.TOMO} column; RELION 5 particles name their tomogram.")
    df[T.TOMO] = df[T.TOMO].astype(str)
    tomos = read_tomograms_star(tomograms) if tomograms is not None else {}
    centred = all(c in df.columns for c in CENTERED)
    if not centred and not all(c in df.columns for c in T.COORDS):
        raise TableError(f"{path}: no particle positions: neither {', '.join(CENTERED)} nor "
                         f"{', '.join(T.COORDS)}.")
    if tomos:
        unknown = sorted(set(df[T.TOMO]) - set(tomos))
        if unknown:
            raise TableError(f"{path}: particles of tomogram(s) {unknown[:5]} that {tomograms} does not list; give "
                             "the tomograms file of this particle set.")
    elif centred:
        raise TableError(f"{path}: positions are centred on the tomogram (RELION 5), so the tomogram sizes are "
                         "needed: give the tomograms file (--tomograms tomograms.star, or read the optimisation "
                         "set).")
    ts_pixel = _optics_pixel_sizes(path, df, blocks.get(OPTICS_BLOCK))
    if tomos:
        ts_pixel = df[T.TOMO].map({n: t.tilt_series_pixel_size for n, t in tomos.items()}).to_numpy(float)
    if ts_pixel is None:
        raise TableError(f"{path}: no tilt-series pixel size ({TS_PIXEL_SIZE} in the optics block) and no "
                         "tomograms file; give --tomograms tomograms.star.")
    if voxel_size is not None:
        out_voxel = np.full(len(df), float(voxel_size))
    elif tomos:
        out_voxel = df[T.TOMO].map({n: t.voxel_size for n, t in tomos.items()}).to_numpy(float)
    else:
        out_voxel = ts_pixel
    if centred:
        centre = np.stack([df[T.TOMO].map({n: t.centre_bin1[i] for n, t in tomos.items()}).to_numpy(float)
                           for i in range(3)], axis=1)
        bin1 = _columns(df, CENTERED, path) / ts_pixel[:, None] + centre
    else:
        bin1 = _columns(df, T.COORDS, path)
    coords = bin1 * (ts_pixel / out_voxel)[:, None]

    n = len(df)
    part = _columns(df, T.ANGLES, path) if all(c in df.columns for c in T.ANGLES) else np.zeros((n, 3))
    origins = _columns(df, T.ORIGINS, path) if all(c in df.columns for c in T.ORIGINS) else np.zeros((n, 3))
    rotation = relion_eulers_to_rotation(torch.as_tensor(part, dtype=torch.float64))
    if all(c in df.columns for c in SUBTOMOGRAM_ANGLES):
        a_sub = relion_eulers_to_rotation(torch.as_tensor(_columns(df, SUBTOMOGRAM_ANGLES, path),
                                                          dtype=torch.float64))
        rotation = a_sub @ rotation
        origins = (a_sub @ torch.as_tensor(origins, dtype=torch.float64)[..., None])[..., 0].numpy()
        df = df.drop(columns=list(SUBTOMOGRAM_ANGLES))
    eulers = rotation_to_relion_eulers(rotation).numpy()

    df = df.drop(columns=[c for c in CENTERED if c in df.columns])
    for i, c in enumerate(T.COORDS):
        df[c] = coords[:, i]
    for i, c in enumerate(T.ANGLES):
        df[c] = eulers[:, i]
    for i, c in enumerate(T.ORIGINS):
        df[c] = origins[:, i]
    df[T.VOXEL_SIZE] = out_voxel
    if RANDOM_SUBSET in df.columns:
        df[T.HALF_SET] = pd.to_numeric(df[RANDOM_SUBSET], errors="coerce")
    optics = blocks.get(OPTICS_BLOCK)
    if T.IMAGE in df.columns and optics is not None and DIMENSIONALITY in optics.columns \
            and int(optics[DIMENSIONALITY].iloc[0]) == 2:
        log.info("%s: rlnImageName lists 2-D pseudo-subtomogram stacks, which CryoMine does not read; the "
                 "particles are read as coordinates (extract them from the tomograms)", path)
        df = df.drop(columns=[T.IMAGE])
    known = {n: t.tilt_range for n, t in tomos.items() if t.tilt_range is not None}
    if known and set(df[T.TOMO]) <= set(known):
        df[T.TILT_MIN] = df[T.TOMO].map({n: r[0] for n, r in known.items()}).to_numpy(float)
        df[T.TILT_MAX] = df[T.TOMO].map({n: r[1] for n, r in known.items()}).to_numpy(float)
    files = {n: t.reconstruction for n, t in tomos.items() if t.reconstruction}
    if files and T.TOMO_FILE not in df.columns and set(df[T.TOMO]) <= set(files):
        df[T.TOMO_FILE] = df[T.TOMO].map(files)
    if T.IMAGE in df.columns:
        base = path.resolve().parent
        df[T.IMAGE] = [str(p) if os.path.isabs(str(p)) else str((base / str(p)).resolve()) for p in df[T.IMAGE]]
    T.validate_table(df, require=(), source=str(path))
    return df.reset_index(drop=True)


ORIENTATIONS = ("subtomogram", "particle")


def write_relion5_particles(path: str | os.PathLike, df: pd.DataFrame, tomograms: dict[str, RelionTomogram], *,
                            orientation: str = "subtomogram", pixel_coordinates: bool = False) -> Path:
    """Write a particle table as a RELION 5 particle file, atomically.

    Args:
        path: the particle STAR file.
        df: CryoMine table with ``rlnTomoName``, ``rlnCoordinateX/Y/Z`` and ``cmVoxelSize`` (the
            voxel size the coordinates refer to).
        tomograms: every tomogram the particles name (sizes, tilt-series pixel size, optics).
        orientation: where the pose goes. ``"subtomogram"`` (default): the rotation in
            ``rlnTomoSubtomogram{Rot,Tilt,Psi}``, ``rlnAngle*`` zero and the shift folded into the
            position (origins zero): oriented picks, as scipion-em-reliontomo writes coordinates and
            reads them back (it takes a coordinate's orientation from the subtomogram angles only).
            ``"particle"``: the rotation in ``rlnAngle*`` and the shift in ``rlnOrigin*Angst``, the
            subtomogram angles zero: a refined particle set. RELION 5 composes both to the same pose.
        pixel_coordinates: also write ``rlnCoordinate{X,Y,Z}`` in bin-1 pixels (the RELION 4 form;
            RELION 5 itself drops them when it rewrites a file).
    """
    path = Path(path)
    if len(df) == 0:
        raise TableError(f"writing {path}: no particles to write.")
    missing = [c for c in (T.TOMO, *T.COORDS, T.VOXEL_SIZE) if c not in df.columns]
    if missing:
        raise TableError(f"writing {path}: RELION 5 particles need their tomogram and position; the table has no "
                         f"{', '.join(missing)}. Convert a table with coordinates (picking or extraction).")
    names = df[T.TOMO].astype(str)
    unknown = sorted(set(names) - set(tomograms))
    if unknown:
        raise TableError(f"writing {path}: no size or pixel size known for tomogram(s) {unknown[:5]}; give "
                         "--tomograms tomograms.star, or a table whose cmTomoFile names the tomograms.")
    if orientation not in ORIENTATIONS:
        raise TableError(f"writing {path}: orientation '{orientation}'; use one of {', '.join(ORIENTATIONS)}.")
    ts_pixel = names.map({n: t.tilt_series_pixel_size for n, t in tomograms.items()}).to_numpy(float)
    centre = np.stack([names.map({n: t.centre_bin1[i] for n, t in tomograms.items()}).to_numpy(float)
                       for i in range(3)], axis=1)
    voxel = df[T.VOXEL_SIZE].to_numpy(float)
    coords = df[list(T.COORDS)].to_numpy(float)
    origins = df[list(T.ORIGINS)].to_numpy(float) if all(c in df.columns for c in T.ORIGINS) \
        else np.zeros_like(coords)
    eulers = df[list(T.ANGLES)].to_numpy(float) if all(c in df.columns for c in T.ANGLES) \
        else np.zeros_like(coords)
    if orientation == "subtomogram":
        coords = coords - origins / voxel[:, None]  # the particle's position: coordinate - origin
        origins = np.zeros_like(origins)
    bin1 = coords * (voxel / ts_pixel)[:, None]
    centred = (bin1 - centre) * ts_pixel[:, None]

    out = pd.DataFrame({T.TOMO: names.to_numpy()})
    for i, c in enumerate(CENTERED):
        out[c] = centred[:, i]
    if pixel_coordinates:
        for i, c in enumerate(T.COORDS):
            out[c] = bin1[:, i]
    zeros = np.zeros_like(eulers)
    sub, part = (eulers, zeros) if orientation == "subtomogram" else (zeros, eulers)
    for i, c in enumerate(SUBTOMOGRAM_ANGLES):
        out[c] = sub[:, i]
    for i, c in enumerate(T.ANGLES):
        out[c] = part[:, i]
    for i, c in enumerate(T.ORIGINS):
        out[c] = origins[:, i]
    if T.CLASS in df.columns:
        out[T.CLASS] = df[T.CLASS].astype(int).to_numpy()
    if T.HALF_SET in df.columns:
        out[RANDOM_SUBSET] = df[T.HALF_SET].astype(int).to_numpy()
    order = {n: i for i, n in enumerate(tomograms)}
    out[OPTICS_GROUP] = names.map(order).to_numpy() + 1
    out[PARTICLE_NAME] = [f"{n}/{i + 1}" for i, n in enumerate(names)]
    optics = pd.DataFrame([{OPTICS_GROUP: order[n] + 1, OPTICS_GROUP_NAME: f"optics{order[n] + 1}",
                            CS: t.cs_mm, VOLTAGE: t.voltage_kv,
                            AMPLITUDE_CONTRAST: t.amplitude_contrast, TS_PIXEL_SIZE: t.tilt_series_pixel_size}
                           for n, t in tomograms.items()])
    with atomic_path(path) as tmp:
        starfile.write({OPTICS_BLOCK: optics, PARTICLES_BLOCK: out}, tmp, overwrite=True)
    return path
