"""Crowded tomograms with ground truth: density, tilt series, reconstruction, label and instance maps.

A tomogram of shape ``(D, H, W)`` (default ``(200, 512, 512)``: x = 512, y = 512, z = 200 voxels) is
filled with particles of several classes at uniformly random rotations and non-overlapping
positions (:mod:`.placement`) and, optionally, membrane vesicles. The noise-free density is the
sum of the rotated class maps (trilinear interpolation, sub-voxel positions) and of the vesicle
shells (a Gaussian profile across the membrane, peak ``membrane_density``). Imaging and
reconstruction follow :mod:`.acquisition` (the volume is periodic laterally, like a specimen
extending beyond the field of view): the noise is drawn as white noise in every tilt image and
gridded back by direct Fourier inversion (or WBP); the noise-free signal goes through the exact
linear equivalent of "project, CTF, MTF, grid, normalise" (:meth:`.TiltModel.signal_transfer`),
which avoids the interpolation error of slicing an unpadded transform of this size. The noise
level makes the reconstructed tomogram's SNR the requested one (variance over the whole volume;
:mod:`.noise`); a second, independent noise reconstruction measures the realised SNR as
``cc / (1 - cc)``.

Ground truth: a class label map (0 background, ``1..C`` the classes in the given order,
``C + 1`` membrane) and an instance map (0 background, ``i`` the particle of table row ``i``),
both from the class map above ``label_threshold`` times its maximum; and per particle its
coordinate (xyz voxels, 0-based array indices of the reference centre) and RELION angles.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cryomine_core.errors import CryomineError
from cryomine_core.geometry import pose_to_relion, random_rotations, rotate_volume
from cryomine_core.io import table as T
from cryomine_core.io.atomic import atomic_write_text
from cryomine_core.io.columns import INSTANCE
from cryomine_core.io.mrc import write_mrc
from cryomine_core.simulate import noise as snr_tools
from cryomine_core.simulate.acquisition import AcquisitionParams, TiltModel
from cryomine_core.simulate.placement import Vesicle, place_particles, place_vesicles
from cryomine_core.simulate.structures import Structure, load_structure

__all__ = ["render_scene", "simulate_tomogram", "simulate_tomogram_dataset", "INSTANCE"]

log = logging.getLogger("cryomine")



def _paste(target: torch.Tensor, box: torch.Tensor, corner_zyx: Sequence[int], mask: torch.Tensor | None = None,
           value: int | None = None) -> None:
    """Add ``box`` into ``target`` at ``corner_zyx`` (clipped); or, with ``mask``, write ``value`` there."""
    src, dst = [], []
    for c, n, size in zip(corner_zyx, box.shape, target.shape):
        lo, hi = max(c, 0), min(c + n, size)
        src.append(slice(lo - c, hi - c))
        dst.append(slice(lo, hi))
    if mask is None:
        target[tuple(dst)] += box[tuple(src)]
    else:
        target[tuple(dst)][mask[tuple(src)]] = value


def render_scene(structures: Sequence[Structure], shape_zyx, classes: np.ndarray, centres: np.ndarray,
                 rotations: torch.Tensor, vesicles: Sequence[Vesicle] = (), membrane_density: float = 0.5,
                 label_threshold: float = 0.2, device=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Noise-free density ``(D, H, W)`` float32, label map (int16) and instance map (int32).

    Args:
        structures: class maps (cubic, max 1).
        shape_zyx: volume shape.
        classes: ``(n,)`` class index of each particle.
        centres: ``(n, 3)`` xyz voxel coordinates of the particles' reference centres.
        rotations: ``(n, 3, 3)`` canonical rotations.
        vesicles: membranes.
        membrane_density: peak density of a membrane (class maps peak at 1).
        label_threshold: fraction of a class map's maximum above which voxels are labelled.
        device: compute device (the scene is returned on it).
    """
    d, h, w = shape_zyx
    density = torch.zeros((d, h, w), dtype=torch.float32, device=device)
    labels = torch.zeros((d, h, w), dtype=torch.int16, device=device)
    instances = torch.zeros((d, h, w), dtype=torch.int32, device=device)
    for ves in vesicles:
        half = int(math.ceil(ves.radius + 2 * ves.thickness))
        c = np.round(ves.centre).astype(int)
        axis = torch.arange(-half, half + 1, dtype=torch.float32, device=device)
        zz, yy, xx = torch.meshgrid(axis, axis, axis, indexing="ij")
        frac = torch.tensor(np.array(ves.centre) - c, dtype=torch.float32, device=device)
        dist = torch.sqrt((xx - frac[0]) ** 2 + (yy - frac[1]) ** 2 + (zz - frac[2]) ** 2) - ves.radius
        sigma = ves.thickness / 2.355
        corner = (c[2] - half, c[1] - half, c[0] - half)
        _paste(density, membrane_density * torch.exp(-0.5 * (dist / sigma) ** 2), corner)
        _paste(labels, dist, corner, dist.abs() <= ves.thickness / 2, len(structures) + 1)
    base = np.floor(centres + 0.5).astype(int)  # integer position of each box centre, xyz
    frac = torch.as_tensor(centres - base, dtype=torch.float32)
    for c, s in enumerate(structures):
        idx = np.flatnonzero(classes == c)
        ref = s.volume.to(device)
        n = ref.shape[-1]
        for start in range(0, idx.size, 32):
            chunk = idx[start:start + 32]
            boxes = rotate_volume(ref, rotations[chunk].to(device), frac[chunk].to(device))
            for j, i in enumerate(chunk):
                corner = (base[i, 2] - n // 2, base[i, 1] - n // 2, base[i, 0] - n // 2)
                _paste(density, boxes[j], corner)
                mask = boxes[j] > label_threshold
                _paste(labels, boxes[j], corner, mask, c + 1)
                _paste(instances, boxes[j], corner, mask, int(i) + 1)
    return density, labels, instances


def simulate_tomogram(structures: Sequence[Structure], shape_zyx=(200, 512, 512), *, occupancy: float = 0.15,
                      n_vesicles: int = 0, membrane_thickness_angstrom: float = 40.0, snr: float = 0.1,
                      params: AcquisitionParams | None = None, seed: int = 0, device=None,
                      model: TiltModel | None = None) -> dict:
    """Simulate one tomogram; returns a dict of tensors (CPU) and ground truth.

    Keys: ``tomogram`` (noisy reconstruction), ``clean`` (noise-free reconstruction), ``density``,
    ``labels``, ``instances`` (``(D, H, W)`` each), ``classes`` ``(n,)``, ``coordinates`` ``(n, 3)``
    xyz voxels, ``rotations`` ``(n, 3, 3)``, ``vesicles``, ``sigma``, ``snr_realised``, ``occupancy``.
    """
    params = params or AcquisitionParams()
    if not snr > 0:
        raise CryomineError(f"SNR {snr} is invalid: give --snr > 0.")
    vs = structures[0].voxel_size
    shape_zyx = tuple(int(s) for s in shape_zyx)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(int(seed))
    thickness = membrane_thickness_angstrom / vs
    vesicles = place_vesicles(n_vesicles, shape_zyx, (200.0 / vs, min(500.0 / vs, min(shape_zyx) / 2)), thickness,
                              rng)
    radii = np.array([s.radius for s in structures])
    classes, centres = place_particles(radii, shape_zyx, occupancy, rng, vesicles)
    rotations = random_rotations(len(classes), generator=gen)
    density, labels, instances = render_scene(structures, shape_zyx, classes, centres, rotations, vesicles,
                                              device=device)
    model = model or TiltModel(params, shape_zyx, vs, device)
    noise = model.reconstruct(model.noise_slices(2, gen))  # two independent noise reconstructions
    transfer = model.signal_transfer()
    clean = torch.fft.irfftn(torch.fft.rfftn(density) * transfer, s=shape_zyx)
    del transfer
    var_s, var_n = snr_tools.variance(clean), snr_tools.variance(noise[0])
    sigma = float(torch.sqrt(var_s / (snr * var_n)))
    tomogram = clean + sigma * noise[0]
    realised, _ = snr_tools.snr_from_pairs(tomogram[None], (clean + sigma * noise[1])[None])
    volume = float(np.prod(shape_zyx))
    filled = float(sum(4.0 / 3.0 * math.pi * radii[c] ** 3 for c in classes)) / volume
    return {"tomogram": tomogram.cpu(), "clean": clean.cpu(), "density": density.cpu(), "labels": labels.cpu(),
            "instances": instances.cpu(), "classes": classes, "coordinates": centres, "rotations": rotations,
            "vesicles": vesicles, "sigma": sigma, "snr_realised": realised, "occupancy": filled}


def simulate_tomogram_dataset(out_dir: str | Path, specs: Sequence[str], shape=(200, 512, 512), *,
                              n_tomograms: int = 1, occupancy: float = 0.15, n_vesicles: int = 0,
                              membrane_thickness_angstrom: float = 40.0, snr: float = 0.1, voxel_size: float = 9.2,
                              params: AcquisitionParams | None = None, seed: int = 0, device=None,
                              save_density: bool = False) -> dict:
    """Simulate tomograms into ``out_dir``: ``tomograms/``, ``labels/``, ``instances/`` (and ``density/``)
    ``tomoNNN.mrc``, ``particles.star`` (block ``particles``: rlnTomoName, rlnCoordinateX/Y/Z, RELION
    angles, rlnClassNumber, cmClassName, cmInstanceId), ``classes.json`` and ``metrics.json``.
    Read the table with ``read_table(path, require=(TOMO, *COORDS))``."""
    params = params or AcquisitionParams()
    params.validate()
    if not specs:
        raise CryomineError("the class list is empty: give at least one structure with --structures.")
    if not (isinstance(snr, (int, float)) and snr > 0):
        raise CryomineError(f"SNR {snr} is invalid: give --snr > 0.")
    if not 0 < occupancy < 0.5:
        raise CryomineError(f"occupancy {occupancy} is invalid: give --occupancy in (0, 0.5), e.g. 0.15.")
    if n_tomograms < 1 or n_vesicles < 0:
        raise CryomineError("give --n-tomograms >= 1 and --vesicles >= 0.")
    shape = tuple(int(s) for s in shape)
    structures = [load_structure(s, voxel_size) for s in specs]
    for s in structures:
        if 2 * s.radius + 2 >= min(shape):
            raise CryomineError(f"structure {s.name} ({2 * s.radius:.0f} voxels across) does not fit a tomogram of "
                                f"{shape[::-1]} (x, y, z) voxels; give a larger --size or --voxel-size.")
    names = [s.name for s in structures]
    if len(set(names)) != len(names):
        raise CryomineError(f"class names {names} repeat; name them with NAME=SPEC.")
    out_dir = Path(out_dir)
    model = TiltModel(params, shape, voxel_size, device)
    rows, per_tomo = [], []
    for k in range(n_tomograms):
        t0 = time.perf_counter()
        name = f"tomo{k:03d}"
        sim = simulate_tomogram(structures, shape, occupancy=occupancy, n_vesicles=n_vesicles,
                                membrane_thickness_angstrom=membrane_thickness_angstrom, snr=snr, params=params,
                                seed=seed + k, device=device, model=model)
        seconds = time.perf_counter() - t0
        write_mrc(out_dir / "tomograms" / f"{name}.mrc", sim["tomogram"].numpy(), voxel_size)
        write_mrc(out_dir / "labels" / f"{name}.mrc", sim["labels"].numpy(), voxel_size, dtype=np.int16)
        # MRC has no 32-bit integer mode: int16 while ids fit, float32 (exact to 2^24) beyond
        inst_dtype = np.int16 if len(sim["classes"]) < 32767 else np.float32
        write_mrc(out_dir / "instances" / f"{name}.mrc", sim["instances"].numpy(), voxel_size, dtype=inst_dtype)
        if save_density:
            write_mrc(out_dir / "density" / f"{name}.mrc", sim["density"].numpy(), voxel_size)
        eulers, _ = pose_to_relion(sim["rotations"])
        for i, c in enumerate(sim["classes"]):
            rows.append({T.TOMO: f"tomograms/{name}.mrc", **dict(zip(T.COORDS, sim["coordinates"][i].tolist())),
                         **dict(zip(T.ANGLES, eulers[i].tolist())), T.CLASS: int(c) + 1, T.CLASS_NAME: names[c],
                         INSTANCE: i + 1, T.VOXEL_SIZE: voxel_size, T.TILT_MIN: params.tilt_min_deg,
                         T.TILT_MAX: params.tilt_max_deg, T.SNR: snr})
        per_tomo.append({"name": name, "n_particles": int(len(sim["classes"])), "occupancy": sim["occupancy"],
                         "n_vesicles": len(sim["vesicles"]), "sigma": sim["sigma"],
                         "snr_realised": sim["snr_realised"], "seconds": seconds})
        log.info("%s: %d particles, occupancy %.3f, SNR realised %.4g, %.1f s", name, len(sim["classes"]),
                 sim["occupancy"], sim["snr_realised"], seconds)
    T.write_table(out_dir / "particles.star", pd.DataFrame(rows), require=(T.TOMO, *T.COORDS))
    classes = {"0": "background", **{str(i + 1): n for i, n in enumerate(names)}, str(len(names) + 1): "membrane"}
    atomic_write_text(out_dir / "classes.json", json.dumps(classes, indent=2))
    metrics = {"n_tomograms": n_tomograms, "n_particles": len(rows), "classes": names, "shape_zyx": list(shape),
               "voxel_size": voxel_size, "snr_requested": snr,
               "snr_realised": float(np.mean([t["snr_realised"] for t in per_tomo])),
               "seconds_per_tomogram": float(np.mean([t["seconds"] for t in per_tomo])), "tomograms": per_tomo,
               "acquisition": params.as_dict(), "seed": seed, "device": str(model.device)}
    atomic_write_text(out_dir / "metrics.json", json.dumps(metrics, indent=2))
    return metrics
