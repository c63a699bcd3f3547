"""Cutting subtomograms out of tomograms around given coordinates.

Coordinates are xyz in voxels of the tomogram, with (0, 0, 0) the centre of the first voxel
(Scipion's ``BOTTOM_LEFT_CORNER`` convention): the voxel ``tomo[z, y, x]`` sits at (x, y, z).
A subtomogram of box ``b`` has the coordinate at its centre voxel index ``b // 2``. Coordinates
are rounded to the nearest voxel; the rounding residual (< 0.5 voxel per axis) is returned so a
caller can record it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from cryomine_core.resample import fourier_resize


@dataclass
class Extracted:
    """Result of :func:`extract_subtomograms` for one tomogram.

    Attributes:
        volumes: ``(m, b, b, b)`` float32 subtomograms, zyx.
        kept: ``(m,)`` indices into the input coordinates of the extracted particles.
        skipped: ``(k,)`` indices of particles skipped because their box crossed the edge.
        padded: ``(p,)`` indices of particles whose box crossed the edge and were padded.
        outside: ``(q,)`` indices of particles whose centre lies outside the tomogram (never
            extracted, whatever ``edge``: usually coordinates of another binning or unit).
        residual: ``(m, 3)`` xyz rounding residual in output voxels (true centre minus box centre).
    """

    volumes: np.ndarray
    kept: np.ndarray
    skipped: np.ndarray
    padded: np.ndarray
    residual: np.ndarray
    outside: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


def extract_subtomograms(
    tomogram: np.ndarray,
    centers_xyz: np.ndarray,
    box: int,
    *,
    scale: float = 1.0,
    edge: str = "skip",
    invert: bool = False,
    normalise: bool = True,
) -> Extracted:
    """Extract cubic subtomograms from one tomogram.

    Args:
        tomogram: ``(D, H, W)`` array, zyx (may be memory-mapped: only the boxes are read).
        centers_xyz: ``(n, 3)`` particle centres, xyz voxels of the tomogram.
        box: output box size in output voxels.
        scale: output voxel size divided by tomogram voxel size (2.0 = bin by 2). The region cut
            from the tomogram has ``round(box * scale)`` voxels per side and is Fourier-resized
            to ``box``.
        edge: ``"skip"`` drops particles whose region crosses the tomogram edge; ``"pad"`` fills
            the outside with the region's mean.
        invert: multiply by -1 (use when the tomogram has dark protein, so that density is
            positive).
        normalise: zero mean and unit standard deviation per subtomogram.
    """
    if edge not in ("skip", "pad"):
        raise ValueError(f"edge must be 'skip' or 'pad', got {edge!r}")
    centers = np.asarray(centers_xyz, dtype=np.float64).reshape(-1, 3)
    region = max(1, int(round(box * scale)))
    half = region // 2
    dims_xyz = np.array(tomogram.shape[::-1])
    vols, kept, skipped, padded, residual, outside = [], [], [], [], [], []
    for i, c in enumerate(centers):
        ic = np.rint(c).astype(int)
        if np.any(ic < 0) or np.any(ic >= dims_xyz):
            outside.append(i)
            continue
        lo, hi = ic - half, ic - half + region
        inside = bool(np.all(lo >= 0) and np.all(hi <= dims_xyz))
        if not inside and edge == "skip":
            skipped.append(i)
            continue
        clo, chi = np.maximum(lo, 0), np.minimum(hi, dims_xyz)
        crop = np.asarray(tomogram[clo[2]:chi[2], clo[1]:chi[1], clo[0]:chi[0]], dtype=np.float32)
        if not inside:
            sub = np.full((region,) * 3, float(crop.mean()), dtype=np.float32)
            o = clo - lo
            sub[o[2]:o[2] + crop.shape[0], o[1]:o[1] + crop.shape[1], o[0]:o[0] + crop.shape[2]] = crop
            crop = sub
            padded.append(i)
        vols.append(crop)
        kept.append(i)
        residual.append((c - ic) / scale)
    if vols:
        stack = torch.from_numpy(np.stack(vols))
        if region != box:
            stack = fourier_resize(stack, (box, box, box))
        if invert:
            stack = -stack
        if normalise:
            mean = stack.mean(dim=(-3, -2, -1), keepdim=True)
            std = stack.std(dim=(-3, -2, -1), keepdim=True).clamp_min(1e-12)
            stack = (stack - mean) / std
        out = stack.numpy().astype(np.float32)
    else:
        out = np.zeros((0, box, box, box), dtype=np.float32)
    as_idx = lambda xs: np.asarray(xs, dtype=np.int64)  # noqa: E731
    return Extracted(out, as_idx(kept), as_idx(skipped), as_idx(padded),
                     np.asarray(residual, dtype=np.float64).reshape(-1, 3), as_idx(outside))


def region_size(box: int, scale: float) -> int:
    """Side, in tomogram voxels, of the region cut for a box at the given scale."""
    return max(1, int(round(box * scale)))


def scale_for(tomogram_voxel_size: float, target_voxel_size: float | None) -> float:
    """Scale factor (output / input voxel size); 1.0 when no target voxel size is given."""
    if target_voxel_size is None or target_voxel_size <= 0 or math.isclose(target_voxel_size, tomogram_voxel_size):
        return 1.0
    return target_voxel_size / tomogram_voxel_size


def extract_table(coords_table: str, out_dir: str, box: int, *, voxel_size: float | None = None,
                  edge: str = "skip", invert: bool = False, normalise: bool = True) -> dict:
    """Extract every particle of a coordinate table; write MRC files and a particle table.

    The coordinate table needs ``cmTomoFile`` (tomogram MRC) and ``rlnCoordinateX/Y/Z``
    (voxels of that tomogram); other columns (``cmItemId``, ``cmTiltMin``/``cmTiltMax``,
    ``rlnTomoName``, angles, class) are carried over to the output rows. Writes
    ``out_dir/subtomograms/*.mrc``, ``out_dir/particles.star`` and ``out_dir/metrics.json``
    (counts of extracted, skipped and padded particles), all atomically. Returns the metrics.
    """
    import json
    import logging
    from pathlib import Path

    from cryomine_core.errors import CryomineError
    from cryomine_core.io import table as T
    from cryomine_core.io.atomic import atomic_write_text
    from cryomine_core.io.mrc import read_mrc, read_mrc_header, write_mrc

    if voxel_size is not None and not voxel_size > 0:
        raise CryomineError(f"--voxel-size {voxel_size:g}: give the output voxel size in Å (> 0), or leave it out to "
                            "keep the tomogram's.")

    log = logging.getLogger("cryomine")
    if box < 4:
        raise CryomineError(f"box size {box} is too small; give at least 4 voxels (typically 32-64).")
    df = T.read_table(coords_table, require=(T.TOMO_FILE, *T.COORDS), resolve_paths=False)
    base = Path(coords_table).resolve().parent
    out = Path(out_dir)
    (out / "subtomograms").mkdir(parents=True, exist_ok=True)
    rows, counts = [], {"n_input": int(len(df)), "n_extracted": 0, "n_skipped": 0, "n_padded": 0, "n_outside": 0}
    groups = list(df.groupby(T.TOMO_FILE, sort=False))
    paths = [Path(str(t)) if Path(str(t)).is_absolute() else base / str(t) for t, _ in groups]
    for path in paths:  # every tomogram is checked before anything is written
        header = read_mrc_header(path)
        if len(header.shape) != 3:
            raise CryomineError(f"{path}: expected a 3-D tomogram, found shape {header.shape}.")
        if not header.voxel_size > 0:
            raise CryomineError(f"{path}: the MRC header gives a voxel size of {header.voxel_size:g} Å. Write the true "
                                "voxel size into the header (e.g. IMOD's 'alterheader -del') and extract again.")
    for path, (_, group) in zip(paths, groups):
        tomo, tomo_vs = read_mrc(path, mmap=True, check_finite=False)
        scale = scale_for(tomo_vs, voxel_size)
        res = extract_subtomograms(tomo, group[list(T.COORDS)].to_numpy(float), box, scale=scale, edge=edge,
                                   invert=invert, normalise=normalise)
        if not np.isfinite(res.volumes).all():
            raise CryomineError(f"{path}: NaN or infinite values inside particle boxes; fix the tomogram.")
        out_vs = tomo_vs * scale
        stem = path.stem
        for k, vol in zip(res.kept, res.volumes):
            row = group.iloc[int(k)].to_dict()
            name = f"subtomograms/{stem}_{int(group.index[int(k)]):06d}.mrc"
            write_mrc(out / name, vol, out_vs)
            row[T.IMAGE] = name
            row[T.VOXEL_SIZE] = out_vs
            rows.append(row)
        counts["n_extracted"] += int(res.kept.size)
        counts["n_skipped"] += int(res.skipped.size)
        counts["n_padded"] += int(res.padded.size)
        counts["n_outside"] += int(res.outside.size)
        if res.outside.size:
            log.warning("%s: %d of %d coordinates lie outside the tomogram (%s voxels, xyz) and were not extracted; "
                        "check that the coordinates are in voxels of this tomogram (same binning)", path.name,
                        res.outside.size, len(group), "x".join(str(d) for d in tomo.shape[::-1]))
        log.info("%s: %d extracted, %d skipped at the edge, %d padded (box %d, %.3f Å/voxel)", path.name,
                 res.kept.size, res.skipped.size, res.padded.size, box, out_vs)
    if not rows:
        if counts["n_outside"]:
            raise CryomineError(f"{coords_table}: no particle could be extracted: {counts['n_outside']} of {len(df)} "
                                "coordinates lie outside their tomogram and the rest cross its edge. Check that the "
                                "coordinates are voxels of these tomograms (binning, Å vs voxels).")
        raise CryomineError(f"{coords_table}: no particle could be extracted (all {len(df)} boxes cross the "
                            "tomogram edge). Use --edge pad or a smaller box.")
    import pandas as pd

    T.write_table(out / "particles.star", pd.DataFrame(rows))
    atomic_write_text(out / "metrics.json", json.dumps(counts, indent=1))
    return counts
