"""Write a simulated subtomogram data set: MRC files, ground-truth particle table, metrics.

Layout of ``out_dir``::

    particles.star          ground truth (one row per particle, image paths relative)
    subtomograms/sub_000001.mrc ...   one noisy reconstruction per particle (names carry no class)
    maps/<class>.mrc        noise-free reference of each class in the box (no file for 'empty'); its
                            density is bright (positive), while with the CTF (the default) the
                            particles show it dark: the maps then have the opposite contrast of the
                            particles (``cryomine align ... --invert-reference``); see :func:`map_contrast_note`
    metrics.json            settings, requested and realised SNR, timings

Table columns (see :mod:`cryomine_core.io.table`): ``rlnImageName``, ``rlnClassNumber`` (1-based,
the empty class last), ``cmClassName``, ``rlnAngleRot/Tilt/Psi`` and ``rlnOriginX/Y/ZAngst`` of
the true pose (RELION conventions, :mod:`cryomine_core.geometry`), ``cmVoxelSize``,
``cmTiltMin``/``cmTiltMax``, ``cmSnr`` (requested SNR).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from cryomine_core.errors import CryomineError
from cryomine_core.geometry import pose_to_relion_angstrom
from cryomine_core.io import table as T
from cryomine_core.io.atomic import atomic_write_text
from cryomine_core.io.mrc import write_mrc
from cryomine_core.simulate.acquisition import AcquisitionParams
from cryomine_core.simulate.structures import load_structure
from cryomine_core.simulate.subtomograms import EMPTY, SubtomogramSimulator, validate_request

__all__ = ["simulate_subtomogram_dataset", "map_contrast_note"]

log = logging.getLogger("cryomine")


def map_contrast_note(params: AcquisitionParams) -> str:
    """One line on the contrast of ``maps/<class>.mrc`` relative to the subtomograms.

    The maps are the structures' noise-free density (bright, positive). The CTF at underfocus
    (uncorrected, as in raw tomograms) makes the particles' low-resolution density dark, so the
    maps then have the opposite contrast of the particles; without the CTF both are bright. At
    zero or over-focus the sign is the CTF's business: the note says so.
    """
    if not params.apply_ctf:
        return "maps/*.mrc and the subtomograms have the same contrast (bright density; no CTF)"
    if params.defocus_um > 0:
        return ("maps/*.mrc have the opposite contrast of the subtomograms (bright density in the maps, dark in the "
                "CTF-affected particles): pass --invert-reference to use a map as an alignment reference")
    return (f"maps/*.mrc hold bright density; at defocus {params.defocus_um:g} um (not underfocus) the CTF sets the "
            "subtomograms' contrast: the contrast check of 'cryomine align' tells which way a map must go")


def simulate_subtomogram_dataset(
    out_dir: str | Path,
    specs: Sequence[str],
    n_per_class: int = 100,
    snr: float = 0.1,
    *,
    box: int = 40,
    voxel_size: float = 9.2,
    max_shift: float = 2.0,
    include_empty: bool = False,
    params: AcquisitionParams | None = None,
    seed: int = 0,
    device=None,
    batch_size: int = 64,
    snr_scope: str = "dataset",
    n_snr_check: int = 32,
) -> dict:
    """Simulate ``n_per_class`` particles of each structure (and of the empty class) into ``out_dir``.

    Args:
        out_dir: output folder (created).
        specs: structure specs (:func:`~cryomine_core.simulate.structures.load_structure`).
        n_per_class: particles per class.
        snr: requested SNR (:mod:`.noise`).
        box, voxel_size, max_shift: box edge (voxels), Å per voxel, largest shift per axis (voxels).
        include_empty: add a background-only class named ``empty``.
        params: acquisition settings (default: Che et al. 2018).
        seed: random seed (same seed, same data).
        device: compute device.
        batch_size: particles per batch.
        snr_scope: ``dataset`` (one noise level) or ``particle``.
        n_snr_check: particles (per class) simulated twice with independent noise to measure the
            realised SNR; they are not written.

    Returns:
        the metrics dict (also written to ``metrics.json``).

    Raises:
        CryomineError: bad settings, unknown structure, a structure larger than the box; all
            checked before anything is simulated or written.
    """
    params = params or AcquisitionParams()
    validate_request(snr, n_per_class, box, voxel_size, max_shift, specs, include_empty, params)
    if snr_scope not in ("dataset", "particle"):
        raise CryomineError(f"SNR scope '{snr_scope}' is unknown; use dataset or particle.")
    structures = [load_structure(s, voxel_size, box) for s in specs]
    names = [s.name for s in structures] + (["empty"] if include_empty else [])
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise CryomineError(f"class name(s) {dupes} used twice; name them with NAME=SPEC (e.g. a=phantom:0).")
    sim = SubtomogramSimulator(structures, box, params, device, max_shift=max_shift)
    out_dir = Path(out_dir)
    t0 = time.perf_counter()

    rng = np.random.default_rng(seed)
    n_classes = len(structures)
    labels = np.repeat(np.arange(n_classes + int(include_empty)), int(n_per_class))
    labels = rng.permutation(labels)
    classes = torch.as_tensor(np.where(labels == n_classes, EMPTY, labels), dtype=torch.long)
    gen = torch.Generator().manual_seed(int(seed))
    calib_gen = torch.Generator().manual_seed(int(seed) + 1_000_003)
    sigma = sim.dataset_sigma(snr, calib_gen)

    for s, ref in zip(structures, sim.references):
        write_mrc(out_dir / "maps" / f"{s.name}.mrc", ref.numpy(), voxel_size)
    log.info(map_contrast_note(params))
    rows = []
    written = 0
    progress = tqdm(total=int(classes.numel()), desc="subtomograms", unit="particle", disable=None)
    for batch in sim.batches(classes, gen, snr, sigma, batch_size, snr_scope):
        eulers, origins = pose_to_relion_angstrom(batch.rotations, batch.shifts, voxel_size)
        for i in range(batch.volumes.shape[0]):
            written += 1
            rel = f"subtomograms/sub_{written:06d}.mrc"
            write_mrc(out_dir / rel, batch.volumes[i].numpy(), voxel_size)
            c = int(batch.classes[i])
            rows.append({T.IMAGE: rel, T.CLASS: (n_classes + 1) if c == EMPTY else c + 1,
                         T.CLASS_NAME: names[c], **dict(zip(T.ANGLES, eulers[i].tolist())),
                         **dict(zip(T.ORIGINS, origins[i].tolist())), T.VOXEL_SIZE: voxel_size,
                         T.TILT_MIN: params.tilt_min_deg, T.TILT_MAX: params.tilt_max_deg, T.SNR: snr})
        progress.update(batch.volumes.shape[0])
    progress.close()
    sim_seconds = time.perf_counter() - t0
    T.write_table(out_dir / "particles.star", pd.DataFrame(rows))

    # realised SNR on fresh particles, from pairs of independent noise realisations
    check_gen = torch.Generator().manual_seed(int(seed) + 2_000_003)
    # With one noise level, the mean over classes of var_s / var_n is mean(var_s) / var_n, the
    # quantity the calibration targets; with per-particle levels every class is at the target.
    per_class = {}
    for c, s in enumerate(structures):
        pooled, _ = sim.measure_snr(torch.full((int(n_snr_check),), c), check_gen, snr, sigma, snr_scope)
        per_class[s.name] = pooled
    realised = float(np.mean(list(per_class.values())))
    metrics = {
        "n_particles": int(classes.numel()), "classes": names, "n_per_class": int(n_per_class),
        "snr_requested": float(snr), "snr_realised": realised, "snr_realised_per_class": per_class,
        "snr_scope": snr_scope, "noise_sigma_per_pixel": sigma, "n_tilts": sim.model.n_tilts,
        "box": int(box), "voxel_size": float(voxel_size), "max_shift": float(max_shift), "seed": int(seed),
        "device": str(sim.device), "seconds": sim_seconds,
        "subtomograms_per_s": classes.numel() / max(sim_seconds, 1e-9), "acquisition": params.as_dict(),
        "snr_definition": "var(noise-free reconstruction) / var(noise-only reconstruction) over the box; realised "
                          "value measured as cc/(1-cc) between two reconstructions with independent noise",
    }
    atomic_write_text(out_dir / "metrics.json", json.dumps(metrics, indent=2))
    log.info("wrote %d subtomograms to %s (%.1f/s); SNR requested %g, realised %.4g", classes.numel(), out_dir,
             metrics["subtomograms_per_s"], snr, realised)
    return metrics

