"""Output folders that are re-used: files of an earlier run that the new run does not write."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger("cryomine")

__all__ = ["remove_stale"]


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
