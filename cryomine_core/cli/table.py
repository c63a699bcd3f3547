"""``cryomine table check``: validate a particle table and the MRC files it lists."""

from __future__ import annotations

import json
import logging

log = logging.getLogger("cryomine")


def register(sub) -> None:
    p = sub.add_parser("table", help="inspect and validate particle tables", description=__doc__)
    tsub = p.add_subparsers(dest="table_command", metavar="ACTION")
    tsub.required = True
    c = tsub.add_parser("check", help="check a particle table and every subtomogram it lists",
                        description="Checks the table's columns, every subtomogram's header (one box, one voxel "
                                    "size agreeing with cmVoxelSize), every voxel (no NaN/inf, no constant "
                                    "volume) and the tilt ranges when present, and reports the set's contrast (dark "
                                    "or bright protein, from the box centre against its edge in up to 200 "
                                    "subtomograms; 'unclear' for noise or off-centre particles). Prints a JSON "
                                    "summary.")
    c.add_argument("table", help="particle table (STAR)")
    c.add_argument("--require", nargs="*", default=[], metavar="COLUMN",
                   help="columns that must be present besides rlnImageName (e.g. rlnClassNumber cmTiltMin)")
    c.set_defaults(func=run_check)
    st = tsub.add_parser("stack", help="write a set as one volume stack (one file instead of one per subtomogram)",
                         description="Copies every subtomogram of TABLE, in table order, into OUT/subtomograms.mrcs "
                                     "(one memory-mappable MRC volume stack) and writes OUT/particles.star pointing "
                                     "into it (rlnImageName k@subtomograms.mrcs, RELION's convention, k from 1); "
                                     "every other column is kept. For sets of 10^5 subtomograms and more, where one "
                                     "file per subtomogram strains the file system. Only one volume is held in "
                                     "memory at a time. Commands that take a particle table read either form.")
    st.add_argument("table", help="particle table (STAR) of the set")
    st.add_argument("--out", required=True, help="output folder")
    st.set_defaults(func=run_stack)


def run_check(args) -> int:
    from cryomine_core.io import table
    from cryomine_core.validate import check_subtomograms, check_volume_values

    df = table.read_table(args.table, require=(table.IMAGE, *args.require))
    summary = check_subtomograms(df)
    check_volume_values(df[table.IMAGE])
    if table.TILT_MIN in df.columns or table.TILT_MAX in df.columns:
        table.tilt_ranges(df, source=args.table)  # refuses missing, swapped or out-of-range tilt ranges
        summary["tilt_ranges"] = sorted({(float(a), float(b)) for a, b in df[[table.TILT_MIN, table.TILT_MAX]]
                                         .to_numpy(float)})
    summary["contrast"] = _contrast(df[table.IMAGE])
    log.info("%s: %d particles, box %s, voxel size %.3f Å", args.table, len(df), summary["box"], summary["voxel_size"])
    c = summary["contrast"]
    log.info("contrast: %s (the box centre brighter than its edge in %d of %d subtomograms, sign test p %.2g)%s",
             c["contrast"], c["centre_brighter"], c["n"], c["p_value"],
             "" if c["contrast"] != "unclear" else ": noise, particles off-centre, or boxes full of protein")
    print(json.dumps(summary))
    return 0


def _contrast(paths, sample: int = 200) -> dict:
    """:func:`~cryomine_core.polarity.set_polarity` of up to ``sample`` subtomograms spread over the table."""
    import numpy as np

    from cryomine_core.io.mrc import read_mrc
    from cryomine_core.polarity import set_polarity

    paths = list(paths)
    pick = np.unique(np.linspace(0, len(paths) - 1, min(sample, len(paths))).round().astype(int))
    return set_polarity([read_mrc(paths[i])[0] for i in pick])


def run_stack(args) -> int:
    from pathlib import Path

    from cryomine_core.io import table
    from cryomine_core.io.mrc import read_mrc, write_volume_stack
    from cryomine_core.validate import check_subtomograms

    df = table.read_table(args.table, require=(table.IMAGE,))
    info = check_subtomograms(df)  # one box, one voxel size, readable headers: before anything is written
    out = Path(args.out)
    stack = out / "subtomograms.mrcs"
    paths = list(df[table.IMAGE])
    volumes = (read_mrc(p)[0] for p in paths)
    write_volume_stack(stack, volumes, len(paths), tuple(info["box"]), info["voxel_size"])
    stacked = df.copy()
    stacked[table.IMAGE] = [f"{k}@{stack.resolve()}" for k in range(1, len(df) + 1)]
    table.write_table(out / "particles.star", stacked, relative_to_table=True)  # the folder can move
    log.info("%s: %d subtomograms -> %s (%.1f MB), table %s", args.table, len(df), stack, stack.stat().st_size / 1e6,
             out / "particles.star")
    print(json.dumps({"n": len(df), "stack": str(stack), "table": str(out / "particles.star")}))
    return 0
