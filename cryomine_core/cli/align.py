"""``cryomine align``: subtomogram alignment and averaging (refine, mra, average)."""

from __future__ import annotations

import json

from cryomine_core.align.defaults import DEFAULT_ANGULAR_STEP, DEFAULT_CHUNK, DEFAULT_ITERATIONS, DEFAULT_MAX_SHIFT


def _common(p, search: bool = True) -> None:
    from cryomine_core.cli import add_device_argument

    p.add_argument("--in", dest="table", required=True,
                   help="particle table (STAR): rlnImageName, cmTiltMin/cmTiltMax (or --tilt-range), cmVoxelSize")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--mask", default=None, help="real-space mask MRC (values 0..1, particle box and voxel size)")
    p.add_argument("--symmetry", default="C1", help="point group of the structure: C1, Cn or Dn (default C1)")
    p.add_argument("--tilt-range", nargs=2, type=float, metavar=("MIN", "MAX"), default=None,
                   help="tilt range in degrees for every particle; required if the table has no cmTiltMin/cmTiltMax "
                        "(replaces the table's ranges when given)")
    p.add_argument("--seed", type=int, default=0, help="random seed (half sets, reference-free start)")
    add_device_argument(p)
    if search:
        p.add_argument("--reference", default=None,
                       help="starting reference MRC (particle box and voxel size); default: reference-free start")
        p.add_argument("--invert-reference", action="store_true",
                       help="multiply the reference by -1 first (logged): for a map whose density has the opposite "
                            "sign of the particles', e.g. a bright map against the dark density of raw tomograms "
                            "(the maps of 'cryomine simulate subtomograms' with its default CTF)")
        p.add_argument("--contrast", choices=("check", "auto", "off"), default="check",
                       help="with --reference, before refining: search up to 64 particles (low band, coarse grid) "
                            "with the reference and with its negative and compare the best scores. check (default): "
                            "stop with an error naming --invert-reference when the negative clearly wins; auto: "
                            "invert the reference instead (logged); off: skip the check. The outcome is "
                            "'contrast_check' in metrics.json")
        p.add_argument("--iterations", type=int, default=DEFAULT_ITERATIONS,
                       help=f"refinement iterations (default {DEFAULT_ITERATIONS})")
        p.add_argument("--angular-step", type=float, default=DEFAULT_ANGULAR_STEP,
                       help=f"step of the global rotation grid in degrees (default {DEFAULT_ANGULAR_STEP:g}; refined "
                            "locally to < 0.5)")
        p.add_argument("--max-shift", type=float, default=DEFAULT_MAX_SHIFT,
                       help=f"largest shift from the box centre, voxels (default {DEFAULT_MAX_SHIFT:g})")
        p.add_argument("--lowpass-angstrom", type=float, default=None,
                       help="never align on detail finer than this (Å); default: follow the FSC")


def _chunk_option(p) -> None:
    p.add_argument("--chunk", type=int, default=DEFAULT_CHUNK,
                   help=f"subtomograms read from disk at a time in each pass (default {DEFAULT_CHUNK}): memory depends "
                        "on this and the box, not on the number of particles; the result does not. Under torchrun "
                        "each process reads its own share")


def register(sub) -> None:
    p = sub.add_parser("align", help="subtomogram alignment and averaging",
                       description="Subtomogram alignment and averaging: gold-standard refinement, multi-reference "
                                   "alignment and plain averaging over particle tables.")
    cmds = p.add_subparsers(dest="align_command", metavar="SUBCOMMAND")
    cmds.required = True

    r = cmds.add_parser("refine", help="align and average (gold-standard half sets, FSC)",
                        description="Iterative refinement with independent half sets; writes particles.star, "
                                    "average.mrc, half1.mrc, half2.mrc, metrics.json, fsc.png, slices.png, "
                                    "orientations.png.")
    _common(r)
    r.add_argument("--resume", action="store_true",
                   help="continue from OUT/checkpoint.pt (written after each iteration, removed when the results are "
                        "written) with the same inputs and settings; gives the uninterrupted run's result")
    _chunk_option(r)
    r.set_defaults(func=_run_refine)

    m = cmds.add_parser("mra", help="multi-reference alignment (classification by alignment)",
                        description="Align every particle to K references, assign it to the best one, re-average; "
                                    "writes particles.star (rlnClassNumber 1..K), class_001.mrc ..., metrics.json, "
                                    "gallery.png.")
    _common(m)
    m.add_argument("--classes", type=int, required=True, help="number of classes K (>= 1)")
    m.add_argument("--resume", action="store_true",
                   help="continue from OUT/checkpoint.pt (written after each iteration, removed when the results are "
                        "written) with the same inputs and settings; gives the uninterrupted run's result")
    _chunk_option(m)
    m.set_defaults(func=_run_mra)

    a = cmds.add_parser("average", help="average with the table's poses (no search)",
                        description="Wedge-compensated average (and half maps, FSC) with the poses in the table; "
                                    "--by-class also writes one average per rlnClassNumber.")
    _common(a, search=False)
    a.add_argument("--by-class", action="store_true", help="also average each rlnClassNumber separately")
    _chunk_option(a)
    a.set_defaults(func=_run_average)


def _search_kwargs(args) -> dict:
    return dict(reference=args.reference, mask=args.mask, symmetry=args.symmetry, iterations=args.iterations,
                angular_step=args.angular_step, max_shift=args.max_shift, lowpass_angstrom=args.lowpass_angstrom,
                tilt_range=tuple(args.tilt_range) if args.tilt_range else None, device=args.device, seed=args.seed,
                invert_reference=args.invert_reference, contrast=args.contrast)


def _summary(metrics: dict) -> None:
    from cryomine_core.distributed import is_writer

    if not is_writer():  # under torchrun only rank 0 reports (and writes)
        return
    keys = ("command", "n_particles", "n_failed", "resolution_0143_A", "resolution_05_A", "class_sizes", "seconds")
    print(json.dumps({k: metrics[k] for k in keys if k in metrics}))


def _run_refine(args) -> int:
    from cryomine_core.align.jobs import run_refine

    _summary(run_refine(args.table, args.out, resume=args.resume, chunk=args.chunk, **_search_kwargs(args)))
    return 0


def _run_mra(args) -> int:
    from cryomine_core.align.mra import run_mra_job as run_mra

    _summary(run_mra(args.table, args.out, classes=args.classes, resume=args.resume, chunk=args.chunk,
                     **_search_kwargs(args)))
    return 0


def _run_average(args) -> int:
    from cryomine_core.align.jobs import run_average

    _summary(run_average(args.table, args.out, mask=args.mask, symmetry=args.symmetry,
                         tilt_range=tuple(args.tilt_range) if args.tilt_range else None, device=args.device,
                         seed=args.seed, by_class=args.by_class, chunk=args.chunk))
    return 0
