"""One interface to the structures CryoMine simulates: maps, atomic models, phantoms, cached names.

A *structure spec* is one of

- ``phantom:<seed>`` or ``phantom:<seed>:<radius Å>``: a procedural asymmetric phantom
  (:mod:`.phantoms`); needs no file and no network;
- a path to an MRC map (``.mrc``, ``.map``, ``.rec``): resampled to the target voxel size;
- a path to an atomic model (``.pdb``, ``.cif``, ``.ent``, ``.mmcif``, optionally ``.gz``):
  converted to density (:mod:`.atomic`);
- the name of a catalog model fetched with ``cryomine structures fetch`` (e.g. ``6zu5``).

Any spec may be prefixed by ``NAME=`` to name the class (``ribo=maps/ribosome.mrc``); otherwise
the name is the phantom (``phantom0``), the file stem or the catalog name.

Every structure is returned **normalised** (background 0 from the median of the input's border,
maximum 1, density positive = protein), **centred**: its centre of mass (of the positive
density) sits at voxel ``box // 2``, and sampled at the requested voxel size in a cubic box.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cryomine_core.errors import CryomineError, InputFileError

__all__ = ["Structure", "load_structure", "support_radius", "structure_name"]

_MAP_SUFFIXES = (".mrc", ".map", ".rec")
_MODEL_SUFFIXES = (".pdb", ".cif", ".ent", ".mmcif")
_PHANTOM = re.compile(r"^phantom:(\d+)(?::(\d+(?:\.\d*)?))?$")
_NAMED = re.compile(r"^([A-Za-z0-9][\w.-]*)=(.+)$")  # NAME=SPEC; PDB ids start with a digit
# Density (fraction of the maximum) above which a voxel belongs to the structure's support.
SUPPORT_THRESHOLD = 0.05


@dataclass
class Structure:
    """A density map ready for simulation.

    Attributes:
        name: class name.
        spec: the spec it was loaded from.
        volume: ``(box, box, box)`` float32 CPU tensor (zyx), max 1, centre of mass at ``box // 2``.
        voxel_size: Å per voxel.
        radius: radius in voxels of the support (density > 5 % of the maximum) around the box
            centre, measured before any cropping to the requested box.
    """

    name: str
    spec: str
    volume: torch.Tensor
    voxel_size: float
    radius: float

    @property
    def box(self) -> int:
        return int(self.volume.shape[-1])


def structure_name(spec: str) -> str:
    """Class name a spec gets when it carries no ``NAME=`` prefix."""
    m = _NAMED.match(spec)
    if m and not os.path.exists(spec):
        return m.group(1)
    p = _PHANTOM.match(spec)
    if p:
        return f"phantom{p.group(1)}"
    base = Path(spec).name
    for suffix in (".gz", *_MAP_SUFFIXES, *_MODEL_SUFFIXES):
        if base.lower().endswith(suffix):
            base = base[: -len(suffix)]
    return base


def support_radius(volume: torch.Tensor, threshold: float = SUPPORT_THRESHOLD) -> float:
    """Largest distance (voxels) from the box centre of a voxel above ``threshold * max``."""
    n = volume.shape[-1]
    mask = volume > threshold * volume.max()
    idx = torch.nonzero(mask).to(torch.float32)
    if idx.numel() == 0:
        return 0.0
    centre = torch.tensor([volume.shape[0] // 2, volume.shape[1] // 2, n // 2], dtype=torch.float32)
    return float(torch.linalg.vector_norm(idx - centre, dim=-1).max())


def _centre_of_mass_xyz(volume: np.ndarray) -> np.ndarray:
    pos = np.clip(volume, 0, None).astype(np.float64)
    total = pos.sum()
    if total <= 0:
        raise InputFileError("the map has no positive density (all values at or below the border median); "
                             "check the sign/contrast of the map.")
    zz, yy, xx = np.indices(volume.shape, dtype=np.float64)
    return np.array([(xx * pos).sum(), (yy * pos).sum(), (zz * pos).sum()]) / total


def _resample(volume: np.ndarray, voxel_in: float, voxel_out: float, box: int, centre_xyz: np.ndarray) -> torch.Tensor:
    """Sample ``volume`` (voxel ``voxel_in``) on a ``box``^3 grid of ``voxel_out`` centred at ``centre_xyz``."""
    from scipy.ndimage import gaussian_filter

    factor = voxel_out / voxel_in
    src = volume.astype(np.float32)
    if factor > 1.01:  # anti-alias before downsampling
        src = gaussian_filter(src, sigma=0.5 * factor, mode="constant")
    axis = (torch.arange(box, dtype=torch.float64) - box // 2) * factor
    zz, yy, xx = torch.meshgrid(axis, axis, axis, indexing="ij")
    xyz = torch.stack([xx, yy, zz], dim=-1) + torch.as_tensor(centre_xyz, dtype=torch.float64)
    sizes = torch.tensor([src.shape[2], src.shape[1], src.shape[0]], dtype=torch.float64)
    grid = (2.0 * xyz / (sizes - 1) - 1.0).to(torch.float32)[None]
    out = F.grid_sample(torch.from_numpy(src)[None, None], grid, mode="bilinear", padding_mode="zeros",
                        align_corners=True)
    return out[0, 0]


def _natural_box(radius_voxels: float) -> int:
    return int(2 * np.ceil(radius_voxels + 3))


def _from_array(name: str, spec: str, data: np.ndarray, voxel_in: float, voxel_out: float,
                box: int | None, subtract_border: bool) -> Structure:
    data = np.asarray(data, dtype=np.float32)
    if subtract_border:
        border = np.concatenate([data[[0, -1]].ravel(), data[:, [0, -1]].ravel(), data[:, :, [0, -1]].ravel()])
        data = data - np.median(border)
    com = _centre_of_mass_xyz(data)
    # natural box: the whole input extent around the centre of mass, at the output voxel size
    extent = max(np.max(np.abs(com - 0)), np.max(np.abs(np.array(data.shape[::-1]) - 1 - com))) * voxel_in / voxel_out
    natural = _natural_box(extent)
    vol = _resample(data, voxel_in, voxel_out, natural, com)
    peak = float(vol.max())
    if not peak > 0:
        raise InputFileError(f"structure {name} ({spec}): no positive density after resampling to {voxel_out} Å.")
    vol = vol / peak
    radius = support_radius(vol)
    tight = _natural_box(radius)
    vol = fit_box(vol, tight if box is None else box)
    return Structure(name=name, spec=spec, volume=vol.contiguous(), voxel_size=float(voxel_out), radius=radius)


def fit_box(vol: torch.Tensor, box: int) -> torch.Tensor:
    """Centre-crop or zero-pad a cubic volume to ``box`` keeping voxel ``n // 2`` at ``box // 2``."""
    n = vol.shape[-1]
    if n == box:
        return vol
    out = torch.zeros((box, box, box), dtype=vol.dtype)
    lo_in = max(0, n // 2 - box // 2)
    lo_out = max(0, box // 2 - n // 2)
    size = min(n - lo_in, box - lo_out)
    sl_in = slice(lo_in, lo_in + size)
    sl_out = slice(lo_out, lo_out + size)
    out[sl_out, sl_out, sl_out] = vol[sl_in, sl_in, sl_in]
    return out


def load_structure(
    spec: str,
    voxel_size_angstrom: float,
    box: int | None = None,
    *,
    name: str | None = None,
    chain_prefix: str | None = None,
    resolution_angstrom: float | None = None,
    cache: Path | None = None,
) -> Structure:
    """Load a structure spec (module docstring) as a normalised, centred density.

    Args:
        spec: the structure spec.
        voxel_size_angstrom: target voxel size, Å.
        box: cubic box edge in voxels (default: the smallest even box holding the support
            with a 3-voxel margin). Cropping is allowed here; callers check ``radius``
            against their box (see :func:`check_fits`).
        name: class name (default :func:`structure_name`).
        chain_prefix: for atomic models, keep only these chains (see :func:`.atomic.read_atoms`).
        resolution_angstrom: for atomic models, the Gaussian-kernel resolution (sigma = half).
        cache: structure cache folder (default :func:`.catalog.cache_dir`).

    Raises:
        CryomineError: unknown spec, unreadable file, non-positive voxel size.
    """
    from cryomine_core.simulate import catalog

    if not voxel_size_angstrom > 0:
        raise CryomineError(f"voxel size must be positive, got {voxel_size_angstrom} Å; give e.g. --voxel-size 9.2.")
    if box is not None and box < 8:
        raise CryomineError(f"box {box} is too small; give --box >= 8 voxels (default 40).")
    spec = str(spec).strip()
    label = name or structure_name(spec)
    named = _NAMED.match(spec)
    if named and not os.path.exists(spec):
        spec = named.group(2)
    phantom = _PHANTOM.match(spec)
    if phantom:
        from cryomine_core.simulate.phantoms import phantom_radius_angstrom, phantom_volume

        seed = int(phantom.group(1))
        radius_a = float(phantom.group(2)) if phantom.group(2) else None
        extent = 1.9 * phantom_radius_angstrom(seed, radius_a) / voxel_size_angstrom
        data = phantom_volume(seed, _natural_box(extent), voxel_size_angstrom, radius_a).numpy()
        return _from_array(label, spec, data, voxel_size_angstrom, voxel_size_angstrom, box, subtract_border=False)
    path = Path(spec).expanduser()
    lower = path.name.lower().removesuffix(".gz")
    if path.exists() and lower.endswith(_MAP_SUFFIXES):
        from cryomine_core.io.mrc import read_mrc

        data, voxel_in = read_mrc(path)
        if data.ndim != 3:
            raise InputFileError(f"{path}: expected a 3-D map, got shape {data.shape}.")
        if not voxel_in > 0:
            raise InputFileError(f"{path}: the header has no voxel size; set it (e.g. with `cryomine` tools or "
                                 "IMOD's alterheader) before using the map.")
        return _from_array(label, spec, data, voxel_in, voxel_size_angstrom, box, subtract_border=True)
    if path.exists() and lower.endswith(_MODEL_SUFFIXES):
        from cryomine_core.simulate.atomic import density_from_atoms, read_atoms

        xyz, weights = read_atoms(path, chain_prefix=chain_prefix)
        data = density_from_atoms(xyz, weights, voxel_size_angstrom, resolution_angstrom).numpy()
        return _from_array(label, spec, data, voxel_size_angstrom, voxel_size_angstrom, box, subtract_border=False)
    entry = catalog.CATALOG.get(spec.lower())
    if entry is not None:
        cached_map = catalog.map_cache_path(entry.name, voxel_size_angstrom, cache)
        if cached_map.exists():
            return load_structure(str(cached_map), voxel_size_angstrom, box, name=label)
        model = catalog.cached_model(entry.name, cache)
        if model is None:
            raise CryomineError(f"structure '{spec}' ({entry.description}) is not in the cache "
                                f"({catalog.cache_dir() if cache is None else cache}); run "
                                f"`cryomine structures fetch {entry.name}` first.")
        return load_structure(str(model), voxel_size_angstrom, box, name=label, chain_prefix=entry.chain_prefix,
                              resolution_angstrom=resolution_angstrom)
    if path.suffix and not path.exists():
        raise InputFileError(f"structure '{spec}': file not found. Give an existing MRC map or PDB/mmCIF model, "
                             "a phantom (phantom:0, phantom:1, ...) or a fetched catalog name.")
    raise CryomineError(f"unknown structure '{spec}'. Give an MRC map ({', '.join(_MAP_SUFFIXES)}), an atomic "
                        f"model ({', '.join(_MODEL_SUFFIXES)}), a phantom (phantom:0, phantom:1, ...) or one of "
                        f"the catalog names {sorted(catalog.CATALOG)} (fetch them with `cryomine structures fetch`).")


def check_fits(structure: Structure, box: int, max_shift: float = 0.0) -> None:
    """Raise CryomineError if ``structure`` (shifted by up to ``max_shift`` voxels) leaves ``box``."""
    need = structure.radius + max_shift * np.sqrt(3.0)
    if need > box / 2 - 1:
        min_box = int(2 * np.ceil(need + 1))
        raise CryomineError(
            f"structure {structure.name} ({structure.spec}) is {2 * structure.radius * structure.voxel_size:.0f} Å "
            f"across ({2 * structure.radius:.1f} voxels at {structure.voxel_size} Å) and does not fit a box of {box} "
            f"voxels with shifts up to {max_shift} voxels; use --box {min_box} or more, a larger --voxel-size, "
            "or a smaller --max-shift.")
