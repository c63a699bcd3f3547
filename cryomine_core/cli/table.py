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
