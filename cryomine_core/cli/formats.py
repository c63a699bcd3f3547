"""``cryomine formats convert``: particle tables <-> RELION STAR, Dynamo .tbl, IMOD .mod.

Conventions (see :mod:`cryomine_core.io.formats` and :mod:`cryomine_core.io.relion`): poses go
through CryoMine's canonical pose; IMOD points are shifted by (0.5, 0.5, 0) voxels; Dynamo
positions count voxels from 1 unless ``--dynamo-index-base 0`` (scipion-em-dynamo's files).
"""

from __future__ import annotations


def register(sub) -> None:
    from cryomine_core.io.convert import FORMATS, WRITABLE

    p = sub.add_parser("formats", help="convert particle tables between CryoMine, RELION, Dynamo and IMOD",
                       description=__doc__)
    fsub = p.add_subparsers(dest="formats_command", metavar="ACTION")
    fsub.required = True
    c = fsub.add_parser("convert", help="convert one particle file to another format")
    c.add_argument("input", help="input file (.star, .tbl or .mod)")
    c.add_argument("--from", dest="source", required=True, choices=FORMATS, help="format of the input")
    c.add_argument("--to", dest="target", required=True, choices=WRITABLE,
                   help="format of the output (IMOD models are read only)")
    c.add_argument("--out", required=True, help="output file")
    c.add_argument("--voxel-size", type=float, default=None,
                   help="Å per voxel; required for Dynamo and IMOD input (they do not store it), overrides the "
                        "pixel size of a RELION or CryoMine table")
    c.add_argument("--tomo-name", default=None,
                   help="tomogram name (rlnTomoName) given to every particle (any input format)")
    c.add_argument("--dynamo-index-base", type=int, choices=(0, 1), default=1,
                   help="Dynamo positions count voxels from 1 (Dynamo, default) or 0 (scipion-em-dynamo)")
    c.set_defaults(func=run_convert, out_kind="file")


def run_convert(args) -> int:
    from cryomine_core.io.convert import convert_particles

    convert_particles(args.input, args.source, args.out, args.target, voxel_size=args.voxel_size,
                      tomo_name=args.tomo_name, dynamo_index_base=args.dynamo_index_base)
    return 0
