"""Benchmark of subtomogram alignment and averaging on simulated data with ground-truth poses.

    python benchmarks/alignment.py --small            # 2-core CPU: well under 30 minutes
    python benchmarks/alignment.py                    # full mode
    python benchmarks/alignment.py --throughput       # alignments/s only (e.g. on a GPU)
    python benchmarks/alignment.py --structures-dir /path/to/maps --structure 3d2f

Measures, at 40^3 and 9.2 Å/voxel (CTF 5 um underfocus and MTF, tilt step 2 degrees):
(i) reference-based alignment of noisy subtomograms to the noise-free, CTF-filtered structure
(full Fourier coverage): median and 90th-percentile rotation error (degrees) and translation
error (voxels) at SNR 0.1 / 0.05 / 0.03 and tilt +-60 / +-40, and the time per
subtomogram-reference alignment; (ii) reference-free gold-standard refinement at SNR 0.1, +-60:
pose errors up to the global pose of the average, and the FSC-0.143 resolution of its half maps
versus the oracle average built from the true poses with the same half sets. If RELION's
``relion_refine`` is on PATH it is noted (running it is not automated here); otherwise the
comparison is reported as skipped. The structure is a map from ``--structures-dir`` when present
(default: the ``shared/data/structures`` folder beside the repository), else a procedural phantom.
Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

import torch

from cryomine_core.align import RefineSettings, SearchReference, SearchSettings, align_particles, pose_errors, refine
from cryomine_core.align.average import average_particles
from cryomine_core.align.refine import half_map_fsc
from cryomine_core.device import select_device
from cryomine_core.simulate import AcquisitionParams, SubtomogramSimulator, check_fits, load_structure

BOX, VOXEL, MAX_SHIFT = 40, 9.2, 2.0
_CPU_SECONDS: list = []  # process CPU time of each _align call (all threads): a load-independent cost figure


def _structure(structures_dir: str | None, name: str):
    candidates = [Path(structures_dir)] if structures_dir else [Path(__file__).resolve().parents[2] / "shared" / "data"
                                                                / "structures"]
    for folder in candidates:
        path = folder / f"{name}.mrc"
        if path.is_file():
            st = load_structure(str(path), VOXEL, BOX)
            check_fits(st, BOX, MAX_SHIFT)
            return st
    print(f"structure {name} not found in {[str(c) for c in candidates]}; using phantom:0")
    return load_structure("phantom:0", VOXEL, BOX)


def _simulate(structure, snr: float, tilt: float, n: int, seed: int, device):
    """Noisy particles with true poses, and the noise-free full-coverage template (CTF and MTF applied)."""
    params = AcquisitionParams(tilt_min_deg=-tilt, tilt_max_deg=tilt)
    sim = SubtomogramSimulator([structure], BOX, params, device, max_shift=MAX_SHIFT)
    gen = torch.Generator().manual_seed(seed)
    sigma = sim.dataset_sigma(snr, torch.Generator().manual_seed(seed + 1))
    classes = torch.zeros(n, dtype=torch.long)
    rot, shift = sim.random_poses(classes, gen)
    vols = torch.cat([sim.simulate(classes[i:i + 64], rot[i:i + 64], shift[i:i + 64], gen, snr, sigma).volumes
                      for i in range(0, n, 64)])
    return vols.to(device), rot, shift


def _template(structure, device) -> torch.Tensor:
    full = SubtomogramSimulator([structure], BOX, AcquisitionParams(tilt_min_deg=-90, tilt_max_deg=90,
                                                                    tilt_step_deg=1.0), device)
    one = torch.zeros(1, dtype=torch.long)
    _, clean = full.simulate(one, torch.eye(3)[None], torch.zeros(1, 3), torch.Generator().manual_seed(0), 1.0, 1.0,
                             clean=True)
    return clean[0].to(device)


def _stats(rot_err: torch.Tensor, shift_err: torch.Tensor) -> dict:
    return {"rot_median_deg": round(float(rot_err.median()), 2), "rot_p90_deg": round(float(rot_err.quantile(0.9)), 2),
            "shift_median_vox": round(float(shift_err.median()), 3),
            "shift_p90_vox": round(float(shift_err.quantile(0.9)), 3)}


def _align(vols, tilt, template, settings, device) -> tuple:
    tr = torch.tensor([[-tilt, tilt]], device=device).expand(vols.shape[0], 2)
    ref = SearchReference(template)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0, c0 = time.perf_counter(), time.process_time()
    res = align_particles(vols, tr, ref, settings, batch_size=256 if device.type == "cuda" else 32)
    if device.type == "cuda":
        torch.cuda.synchronize()
    _CPU_SECONDS.append(time.process_time() - c0)
    return res, time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", action="store_true", help="sizes for a 2-core CPU")
    ap.add_argument("--throughput", action="store_true", help="only measure alignments/s (reference-based)")
    ap.add_argument("--structures-dir", default=None, help="folder of MRC maps (default: shared/data/structures)")
    ap.add_argument("--structure", default="3d2f", help="map name in that folder (default 3d2f, asymmetric)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    device = select_device(args.device)
    structure = _structure(args.structures_dir, args.structure)
    settings = SearchSettings(max_shift_voxels=4.0, memory_mb=4096.0 if device.type == "cuda" else 256.0)
    result: dict = {"device": str(device), "threads": torch.get_num_threads(), "structure": structure.name,
                    "box": BOX, "voxel_size_A": VOXEL, "angular_step_deg": settings.angular_step_deg,
                    "f_max": settings.f_max, "mode": "throughput" if args.throughput else
                    ("small" if args.small else "full")}
    print(f"device {device}, {torch.get_num_threads()} threads; structure {structure.name}; box {BOX}^3")
    template = _template(structure, device)

    if args.throughput:
        n = 2048 if device.type == "cuda" else 64
        vols, rot, shift = _simulate(structure, 0.1, 60.0, n, args.seed, device)
        _align(vols[:8], 60.0, template, settings, device)  # warm-up
        res, seconds = _align(vols, 60.0, template, settings, device)
        rot_err, _ = pose_errors(res.rotations.cpu(), res.shifts.cpu(), rot, shift, up_to_global=False)
        result.update(n_alignments=n, alignments_per_s=round(n / seconds, 2), seconds_per_alignment=seconds / n,
                      cpu_seconds_per_alignment=_CPU_SECONDS[-1] / n,
                      rot_median_deg=round(float(rot_err.median()), 2))
        print(f"{n} alignments in {seconds:.1f} s: {n / seconds:.2f} alignments/s "
              f"({1000 * seconds / n:.1f} ms each); median rotation error {float(rot_err.median()):.2f} deg")
        print(json.dumps(result))
        return 0

    # (i) reference-based alignment
    n_ref = 48 if args.small else 200
    table = {}
    total_t, total_n = 0.0, 0
    for tilt in (60.0, 40.0):
        for snr in (0.1, 0.05, 0.03):
            vols, rot, shift = _simulate(structure, snr, tilt, n_ref, args.seed, device)
            res, seconds = _align(vols, tilt, template, settings, device)
            rot_err, shift_err = pose_errors(res.rotations.cpu(), res.shifts.cpu(), rot, shift, up_to_global=False)
            row = {**_stats(rot_err, shift_err), "seconds_per_alignment": round(seconds / n_ref, 4),
                   "cpu_seconds_per_alignment": round(_CPU_SECONDS[-1] / n_ref, 4),
                   "n_failed": int(res.failed.sum()), "n": n_ref}
            table[f"snr{snr}_tilt{int(tilt)}"] = row
            total_t += seconds
            total_n += n_ref
            print(f"reference-based, tilt +-{tilt:g}, SNR {snr:g}: rotation median {row['rot_median_deg']:.2f} p90 "
                  f"{row['rot_p90_deg']:.2f} deg; translation median {row['shift_median_vox']:.2f} p90 "
                  f"{row['shift_p90_vox']:.2f} voxels; {row['seconds_per_alignment']:.3f} s/alignment (wall), "
                  f"{row['cpu_seconds_per_alignment']:.3f} CPU s/alignment over all threads")
    result["reference_based"] = table
    result["seconds_per_alignment"] = round(total_t / total_n, 4)
    result["cpu_seconds_per_alignment"] = round(sum(_CPU_SECONDS[-6:]) / total_n, 4)
    try:
        result["load_average_1min"] = round(os.getloadavg()[0], 2)  # other processes share the CPU
    except OSError:
        pass

    # (ii) reference-free refinement vs the oracle average
    n_free = 100 if args.small else 400
    iters = 3 if args.small else 5
    vols, rot, shift = _simulate(structure, 0.1, 60.0, n_free, args.seed + 7, device)
    tr = torch.tensor([[-60.0, 60.0]], device=device).expand(n_free, 2)
    t0 = time.perf_counter()
    res = refine(vols, tr, VOXEL, settings=RefineSettings(iterations=iters, search=settings, seed=args.seed))
    seconds = time.perf_counter() - t0
    rot_err, shift_err = pose_errors(res.rotations.cpu(), res.shifts.cpu(), rot, shift)
    oracle, _ = average_particles(vols, rot.to(device), shift.to(device), tr, classes=res.half_sets - 1, n_classes=2)
    _, _, oracle_143, oracle_05 = half_map_fsc(oracle, VOXEL, res.mask)
    free = {**_stats(rot_err, shift_err), "n": n_free, "iterations": iters, "seconds": round(seconds, 1),
            "seconds_per_particle_iteration": round(seconds / (n_free * iters), 4),
            "resolution_0143_A": round(res.resolution_0143, 2), "resolution_05_A": round(res.resolution_05, 2),
            "oracle_resolution_0143_A": round(oracle_143, 2), "oracle_resolution_05_A": round(oracle_05, 2),
            "resolution_ratio_to_oracle": round(res.resolution_0143 / oracle_143, 3),
            "fraction_rot_err_over_20deg": round(float((rot_err > 20).float().mean()), 3)}
    result["reference_free"] = free
    print(f"reference-free refinement ({n_free} particles, SNR 0.1, +-60, {iters} iterations, {seconds:.0f} s): "
          f"rotation median {free['rot_median_deg']:.2f} p90 {free['rot_p90_deg']:.2f} deg (up to the global pose), "
          f"translation median {free['shift_median_vox']:.2f} voxels; FSC 0.143 {res.resolution_0143:.1f} Å vs oracle "
          f"{oracle_143:.1f} Å (ratio {free['resolution_ratio_to_oracle']:.2f})")

    relion = shutil.which("relion_refine")
    if relion is None:
        print("RELION comparison skipped: relion_refine is not on PATH (Debian package 'relion' not installed)")
        result["relion"] = "skipped: relion_refine not on PATH"
    else:
        print(f"RELION found at {relion}, but this benchmark does not drive it yet; comparison not run")
        result["relion"] = f"found at {relion}; not run by this benchmark"
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
