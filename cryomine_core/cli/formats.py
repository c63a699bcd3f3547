"""``cryomine formats convert``: particle tables <-> RELION STAR, Dynamo .tbl, IMOD .mod.

Conventions (see :mod:`cryomine_core.io.formats` and :mod:`cryomine_core.io.relion`): poses go
through CryoMine's canonical pose; IMOD points are shifted by (0.5, 0.5, 0) voxels; Dynamo
positions count voxels from 1 unless ``--dynamo-index-base 0`` (scipion-em-dynamo's files).
"""

from __future__ import annotations

import logging

log = logging.getLogger("cryomine")

FORMATS = ("cryomine", "relion", "dynamo", "imod")


def register(sub) -> None:
    p = sub.add_parser("formats", help="convert particle tables between CryoMine, RELION, Dynamo and IMOD",
                       description=__doc__)
    fsub = p.add_subparsers(dest="formats_command", metavar="ACTION")
    fsub.required = True
    c = fsub.add_parser("convert", help="convert one particle file to another format")
    c.add_argument("input", help="input file (.star, .tbl or .mod)")
    c.add_argument("--from", dest="source", required=True, choices=FORMATS, help="format of the input")
    c.add_argument("--to", dest="target", required=True, choices=FORMATS[:3],
                   help="format of the output (IMOD models are read only)")
    c.add_argument("--out", required=True, help="output file")
    c.add_argument("--voxel-size", type=float, default=None,
                   help="Å per voxel; required for Dynamo and IMOD input (they do not store it), overrides a STAR "
                        "file's pixel size")
    c.add_argument("--tomo-name", default=None,
                   help="tomogram name (rlnTomoName) for IMOD input, or for every row of a Dynamo table")
    c.add_argument("--dynamo-index-base", type=int, choices=(0, 1), default=1,
                   help="Dynamo positions count voxels from 1 (Dynamo, default) or 0 (scipion-em-dynamo)")
    c.set_defaults(func=run_convert, out_kind="file")


def _read(args):
    import pandas as pd

    from cryomine_core.errors import TableError
    from cryomine_core.io import table as T
    from cryomine_core.io.dynamo import read_dynamo_table
    from cryomine_core.io.formats import dynamo_to_table, read_imod_coordinates
    from cryomine_core.io.relion import read_relion_star

    if args.source == "cryomine":
        return T.read_table(args.input, require=())
    if args.source == "relion":
        return read_relion_star(args.input, voxel_size=args.voxel_size)
    if args.voxel_size is None:
        raise TableError(f"{args.input}: --voxel-size is required for {args.source} input (the file does not "
                         "store it).")
    if args.source == "dynamo":
        df = dynamo_to_table(read_dynamo_table(args.input), voxel_size=args.voxel_size,
                             index_base=args.dynamo_index_base, source=args.input)
        if args.tomo_name:
            df[T.TOMO] = args.tomo_name
        return df
    points = read_imod_coordinates(args.input)
    df = pd.DataFrame({c: points[c] for c in T.COORDS})
    df[T.VOXEL_SIZE] = args.voxel_size
    df[T.CLASS] = points["object_id"].astype(int)
    if args.tomo_name:
        df[T.TOMO] = args.tomo_name
    return df


def run_convert(args) -> int:
    from cryomine_core.io import table as T
    from cryomine_core.io.dynamo import write_dynamo_table
    from cryomine_core.io.formats import table_to_dynamo
    from cryomine_core.io.relion import write_relion_star

    df = _read(args)
    if args.target == "cryomine":
        T.write_table(args.out, df, require=())
    elif args.target == "relion":
        write_relion_star(args.out, df)
    else:
        write_dynamo_table(args.out, table_to_dynamo(df, index_base=args.dynamo_index_base))
    log.info("%s (%s) -> %s (%s): %d particles", args.input, args.source, args.out, args.target, len(df))
    return 0
