"""Output folders that are re-used: files of an earlier run that the new run does not write."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from cryomine_core.errors import CryomineError

log = logging.getLogger("cryomine")

__all__ = ["remove_stale", "remove_results", "check_output_path", "MIN_FREE_BYTES"]

#: free space below which an output location is refused before any work (bytes)
MIN_FREE_BYTES = 64 * 1024**2


def check_output_path(path: str | os.PathLike, kind: str = "folder") -> None:
    """Refuse, before any work and without creating anything, an output ``path`` that cannot be
    written: a folder that is a file (``kind='folder'``) or a file that is a folder (``'file'``), a
    location under a file, a nearest existing folder that is not writable, or one with less than
    :data:`MIN_FREE_BYTES` free. Raises CryomineError with one line naming the path and the fix.
    """
    if kind not in ("folder", "file"):
        raise ValueError(f"kind must be 'folder' or 'file', got {kind!r}")
    path = Path(path)
    if kind == "folder" and path.exists() and not path.is_dir():
        raise CryomineError(f"--out {path} is a file, not a folder: give a folder (it is created when missing).")
    if kind == "file" and path.is_dir():
        raise CryomineError(f"--out {path} is a folder: give the name of the file to write.")
    anchor = path if kind == "folder" else path.parent
    while not anchor.exists() and anchor != anchor.parent:
        anchor = anchor.parent
    if not anchor.is_dir():
        raise CryomineError(f"--out {path}: {anchor} is a file, so nothing can be created below it; choose another "
                            "location.")
    if not os.access(anchor, os.W_OK | os.X_OK):
        raise CryomineError(f"--out {path}: the folder {anchor} is not writable by you; choose another location or "
                            "ask for write permission.")
    free = shutil.disk_usage(anchor).free
    if free < MIN_FREE_BYTES:
        raise CryomineError(f"--out {path}: only {free / 1024**2:.0f} MB free on the disk of {anchor}; free some space "
                            "or choose another disk.")


def remove_stale(folder: str | os.PathLike, pattern: str, keep: Iterable[str]) -> list[str]:
    """Delete the files of ``folder`` matching ``pattern`` (a glob, e.g. ``"class_*.mrc"``) whose names
    are not in ``keep``; return their names (logged). A re-run with fewer classes would otherwise leave
    the old ``class_003.mrc`` beside the new results, looking like one of them."""
    keep = set(keep)
    removed = []
    for path in sorted(Path(folder).glob(pattern)):
        if path.is_file() and path.name not in keep:
            path.unlink()
            removed.append(path.name)
    if removed:
        log.info("removed %d file(s) of an earlier run not produced by this one: %s", len(removed), ", ".join(removed))
    return removed


def remove_results(folder: str | os.PathLike, patterns: Iterable[str]) -> list[str]:
    """Delete an earlier run's results (files matching any of ``patterns``) from ``folder`` when a new
    run starts there, once its input has been checked: if the new run is then killed, no earlier
    result is left beside its partial outputs looking like one of them. Returns the names deleted."""
    removed = []
    for pattern in patterns:
        removed += remove_stale(folder, pattern, ())
    return removed
