"""Benchmark of the simulators: subtomograms/s, tomogram seconds, realised vs requested SNR.

    python benchmarks/simulate.py --small            # 2-core CPU: a few minutes
    python benchmarks/simulate.py                    # full mode
    python benchmarks/simulate.py --structures-dir /path/to/maps   # real maps when present

Measures (i) subtomograms per second at 40^3 with 61 tilts (+-60 by 2 degrees), in memory and
written to disk as a data set (MRC files + STAR table); (ii) seconds per crowded tomogram
(256 x 256 x 100 and the full 512 x 512 x 200, x y z); (iii) the realised SNR (two independent noise
realisations per particle, cc / (1 - cc)) against the requested 0.1, 0.05, 0.03, 0.01. Structures:
phantoms, or the MRC maps of ``--structures-dir`` that fit the box. Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import torch

from cryomine_core.device import select_device
from cryomine_core.errors import CryomineError  # noqa: E402
from cryomine_core.simulate.acquisition import AcquisitionParams
from cryomine_core.simulate.datasets import simulate_subtomogram_dataset
from cryomine_core.simulate.structures import check_fits, load_structure
from cryomine_core.simulate.subtomograms import SubtomogramSimulator
from cryomine_core.simulate.tomograms import simulate_tomogram

BOX, VOXEL, MAX_SHIFT = 40, 9.2, 2.0


def _specs(structures_dir: str | None, n_phantoms: int) -> list[str]:
    if structures_dir and Path(structures_dir).is_dir():
        specs = []
        for p in sorted(Path(structures_dir).glob("*.mrc")):
            try:
                check_fits(load_structure(str(p), VOXEL), BOX, MAX_SHIFT)
                specs.append(str(p))
            except CryomineError as exc:  # a map that does not fit the box (or cannot be read) is reported and skipped
                print(f"skip {p.name}: {str(exc).split(';')[0]}")
        if specs:
            return specs
        print(f"no usable map in {structures_dir}; using phantoms")
    return [f"phantom:{i}" for i in range(n_phantoms)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", action="store_true", help="sizes for a 2-core CPU")
    ap.add_argument("--structures-dir", default=None, help="folder of MRC maps to use instead of phantoms")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--skip-full-tomogram", action="store_true", help="skip the 512 x 512 x 200 tomogram")
    ap.add_argument("--gallery", default=None, help="also write the SNR/tilt gallery PNG here")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    device = select_device(args.device)
    n_sub = 500 if args.small else 5000
    n_pairs = 64 if args.small else 256
    specs = _specs(args.structures_dir, 5)
    structures = [load_structure(s, VOXEL, BOX) for s in specs]
    print(f"device {device}, {torch.get_num_threads()} threads; classes: {[s.name for s in structures]}")
    result: dict = {"device": str(device), "threads": torch.get_num_threads(), "classes": [s.name for s in structures],
                    "box": BOX, "n_tilts": 61}

    # (i) throughput
    sim = SubtomogramSimulator(structures, BOX, AcquisitionParams(), device, max_shift=MAX_SHIFT)
    gen = torch.Generator().manual_seed(args.seed)
    sigma = sim.dataset_sigma(0.1, torch.Generator().manual_seed(1))
    classes = torch.arange(n_sub) % len(structures)
    t0 = time.perf_counter()
    for _ in sim.batches(classes, gen, 0.1, sigma, batch_size=64):
        pass
    in_memory = n_sub / (time.perf_counter() - t0)
    print(f"subtomograms/s at {BOX}^3, {sim.model.n_tilts} tilts, in memory: {in_memory:.1f}")
    with tempfile.TemporaryDirectory(prefix="cryomine-bench-") as tmp:
        m = simulate_subtomogram_dataset(Path(tmp) / "set", specs, n_per_class=max(1, n_sub // len(specs)), snr=0.1,
                                         box=BOX, voxel_size=VOXEL, max_shift=MAX_SHIFT, include_empty=True,
                                         seed=args.seed, device=device, n_snr_check=16)
    print(f"subtomograms/s written as a data set (MRC + STAR): {m['subtomograms_per_s']:.1f} "
          f"({m['n_particles']} particles incl. empty class)")
    result.update(subtomograms_per_s=round(in_memory, 1), subtomograms_per_s_written=round(m["subtomograms_per_s"], 1))

    # (iii) realised SNR
    snr_rows = {}
    for snr in (0.1, 0.05, 0.03, 0.01):
        sigma = sim.dataset_sigma(snr, torch.Generator().manual_seed(11))
        per_class = []
        for c in range(len(structures)):
            pooled, _ = sim.measure_snr(torch.full((n_pairs // len(structures) + 1,), c),
                                        torch.Generator().manual_seed(100 + c), snr, sigma)
            per_class.append(pooled)
        realised = sum(per_class) / len(per_class)
        snr_rows[str(snr)] = round(realised, 5)
        print(f"SNR requested {snr:g}: realised {realised:.4f} ({100 * (realised / snr - 1):+.1f} %)")
    result["snr_realised"] = snr_rows

    # (ii) tomograms
    tomo_structures = [load_structure(s, VOXEL) for s in specs]
    shapes = [(100, 256, 256)] + ([] if args.skip_full_tomogram else [(200, 512, 512)])
    for shape in shapes:
        t0 = time.perf_counter()
        tomo = simulate_tomogram(tomo_structures, shape, occupancy=0.15, n_vesicles=2, snr=0.1, seed=args.seed,
                                 device=device)
        seconds = time.perf_counter() - t0
        key = "x".join(str(s) for s in shape[::-1])
        print(f"tomogram {key} (x y z): {seconds:.1f} s, {len(tomo['classes'])} particles, occupancy "
              f"{tomo['occupancy']:.3f}, SNR realised {tomo['snr_realised']:.4f} (requested 0.1)")
        result[f"tomogram_{key}_s"] = round(seconds, 1)
        result[f"tomogram_{key}_snr_realised"] = round(tomo["snr_realised"], 4)
        del tomo

    if args.gallery:
        from cryomine_core.simulate.gallery import make_gallery

        print(f"gallery: {make_gallery(args.gallery, specs[0], device=device)}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
