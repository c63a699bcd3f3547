"""``cryomine extract``: cut subtomograms out of tomograms at given coordinates."""

from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("extract", help="extract subtomograms at coordinates", description=__doc__)
    p.add_argument("--coords", required=True,
                   help="coordinate table (STAR) with cmTomoFile and rlnCoordinateX/Y/Z in tomogram voxels")
    p.add_argument("--out", required=True, help="output folder (particles.star, subtomograms/, metrics.json)")
    p.add_argument("--box", type=int, required=True, help="box size of the subtomograms, in output voxels")
    p.add_argument("--voxel-size", type=float, default=None,
                   help="output voxel size in Å (default: the tomogram's); e.g. twice it to bin by 2")
    p.add_argument("--edge", choices=["skip", "pad"], default="skip",
                   help="particles whose box crosses the tomogram edge: skip them or pad with the mean")
    p.add_argument("--invert", action="store_true", help="invert contrast (dark protein -> bright)")
    p.add_argument("--no-normalise", dest="normalise", action="store_false",
                   help="keep raw values instead of zero mean / unit std per subtomogram")
    p.set_defaults(func=run)


def run(args) -> int:
    from cryomine_core.extract import extract_table

    counts = extract_table(args.coords, args.out, args.box, voxel_size=args.voxel_size, edge=args.edge,
                           invert=args.invert, normalise=args.normalise)
    print(json.dumps(counts))
    return 0
