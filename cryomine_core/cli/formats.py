"""``cryomine formats convert``: particle tables <-> RELION 3/4 and 5 STAR, Dynamo .tbl, IMOD .mod, copick picks.

Conventions (see :mod:`cryomine_core.io.formats` and :mod:`cryomine_core.io.relion`): poses go
through CryoMine's canonical pose; IMOD points are shifted by (0.5, 0.5, 0) voxels; Dynamo
positions count voxels from 1 unless ``--dynamo-index-base 0`` (scipion-em-dynamo's files);
RELION 5 positions are Å from the tomogram centre (:mod:`cryomine_core.io.relion5`), so they need
the tomograms' sizes: ``--tomograms tomograms.star`` (or an optimisation set) when reading, and the
same or the table's ``cmTomoFile`` headers when writing. copick picks are located in Å
(:mod:`cryomine_core.io.copick_project`): reading needs ``--voxel-size``, writing files them under
``--copick-user`` / ``--copick-session``.
"""

from __future__ import annotations


def register(sub) -> None:
    from cryomine_core.io.convert import FORMATS, WRITABLE
    from cryomine_core.io.relion5 import ORIENTATIONS

    p = sub.add_parser("formats", help="convert particle tables between CryoMine, RELION, Dynamo, IMOD and copick",
                       description=__doc__)
    fsub = p.add_subparsers(dest="formats_command", metavar="ACTION")
    fsub.required = True
    c = fsub.add_parser("convert", help="convert one particle file to another format")
    c.add_argument("input", help="input file (.star, .tbl or .mod; for RELION 5 the particles file or the "
                                 "optimisation set; for copick the project's configuration .json)")
    c.add_argument("--from", dest="source", required=True, choices=FORMATS, help="format of the input")
    c.add_argument("--to", dest="target", required=True, choices=WRITABLE,
                   help="format of the output (IMOD models are read only)")
    c.add_argument("--out", required=True,
                   help="output file (RELION 5: the particles file; <name>_tomograms.star and "
                        "<name>_optimisation_set.star are written beside it)")
    c.add_argument("--voxel-size", type=float, default=None,
                   help="Å per voxel; required for Dynamo, IMOD and copick input (the voxel size the coordinates "
                        "refer to), overrides the pixel size of a RELION or CryoMine table")
    c.add_argument("--tomo-name", default=None,
                   help="tomogram name (rlnTomoName) given to every particle (any input format)")
    c.add_argument("--dynamo-index-base", type=int, choices=(0, 1), default=1,
                   help="Dynamo positions count voxels from 1 (Dynamo, default) or 0 (scipion-em-dynamo)")
    r5 = c.add_argument_group("RELION 5")
    r5.add_argument("--tomograms", default=None,
                    help="RELION 5 tomograms.star: the tomograms' sizes and pixel sizes (reading RELION 5 "
                         "without an optimisation set that names it; writing RELION 5 for a table without "
                         "cmTomoFile)")
    r5.add_argument("--tilt-series-pixel-size", type=float, default=None,
                    help="writing RELION 5 from tomogram headers: Å per pixel of the unbinned tilt series "
                         "(default: the tomogram's voxel size, binning 1)")
    r5.add_argument("--hand", type=float, choices=(-1.0, 1.0), default=-1.0,
                    help="writing RELION 5 from tomogram headers: rlnTomoHand (defocus slope sign; it does not "
                         "move particles)")
    r5.add_argument("--relion5-orientation", choices=ORIENTATIONS, default="subtomogram",
                    help="writing RELION 5: 'subtomogram' puts the pose in rlnTomoSubtomogram* with the shift in "
                         "the position (oriented picks, what scipion-em-reliontomo imports); 'particle' puts it "
                         "in rlnAngle* and rlnOrigin*Angst (a refined set)")
    r5.add_argument("--pixel-coordinates", action="store_true",
                    help="writing RELION 5: also write rlnCoordinateX/Y/Z in bin-1 pixels (RELION 4 readers)")
    cp = c.add_argument_group("copick (input or --out: the project's configuration file)")
    cp.add_argument("--copick-user", default=None,
                    help="reading: only this user's (or tool's) picks; writing: the user id of the picks (required)")
    cp.add_argument("--copick-session", default=None,
                    help="reading: only this session's picks; writing: the session id of the picks (required)")
    cp.add_argument("--copick-objects", nargs="+", default=None,
                    help="reading: only these pickable objects (default: every particle object); writing: the one "
                         "object every particle is filed under (default: each particle's class)")
    cp.add_argument("--copick-runs", nargs="+", default=None, help="reading: only these runs (default: all)")
    c.set_defaults(func=run_convert, out_kind="file")


def run_convert(args) -> int:
    from cryomine_core.io.convert import CopickOptions, Relion5Options, convert_particles

    relion5 = Relion5Options(tilt_series_pixel_size=args.tilt_series_pixel_size, hand=args.hand,
                             orientation=args.relion5_orientation, pixel_coordinates=args.pixel_coordinates)
    convert_particles(args.input, args.source, args.out, args.target, voxel_size=args.voxel_size,
                      tomo_name=args.tomo_name, dynamo_index_base=args.dynamo_index_base, tomograms=args.tomograms,
                      relion5=relion5, copick=CopickOptions(
                          user_id=args.copick_user, session_id=args.copick_session,
                          objects=tuple(args.copick_objects) if args.copick_objects else None,
                          runs=tuple(args.copick_runs) if args.copick_runs else None))
    return 0
