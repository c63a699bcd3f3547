"""copick projects (the layout of the CZ cryoET data portal and the CZII picking challenge) <-> particle tables.

A copick project is a JSON configuration naming its storage (here a local filesystem,
``"config_type": "filesystem"``, ``"overlay_root": "local:///..."``) and its pickable objects (name,
label, radius in Å). Each run (a tomogram) holds sets of picks, one per object, user and session.
CryoMine reads and writes them with the ``copick`` library.

Conventions (pinned by the round-trip tests):

- run name = ``rlnTomoName``;
- a point's ``location`` is in Å, measured like CryoMine's coordinates times the voxel size:
  voxel ``i`` (0-based, its centre) is at ``i * voxel_size`` Å;
- a point's ``transformation`` maps object space into tomogram space (copick's definition):
  its rotation block is CryoMine's canonical ``R`` (``x = R p + t``); its translation, in Å, is
  added to the location (CryoMine writes it as zero, with the shift folded into the location);
- the pick's object is ``cmClassName``; its ``label`` is ``rlnClassNumber``; a point's score is
  ``cmScore``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cryomine_core.errors import InputFileError, TableError
from cryomine_core.geometry import relion_eulers_to_rotation, rotation_to_relion_eulers
from cryomine_core.io import table as T

log = logging.getLogger("cryomine")

__all__ = ["open_project", "read_copick_picks", "write_copick_picks"]


def _import_copick_open():
    """``copick.ops.open.from_file``, imported without losing the caller's logging.

    copick's modules call ``logging.basicConfig(force=True)`` when imported, which closes and removes
    the root logger's handlers (a Scipion step then dies writing its log: "I/O operation on closed
    file"). The handlers are taken off before the import and put back after, in place of copick's.
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    for handler in handlers:
        root.removeHandler(handler)
    try:
        from copick.ops.open import from_file
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
    return from_file


def open_project(config: str | os.PathLike):
    """The copick root of a configuration file (``copick.ops.open.from_file``), with a clear error."""
    from_file = _import_copick_open()
    config = Path(config)
    if not config.exists():
        raise InputFileError(f"{config}: copick configuration not found.")
    try:
        return from_file(str(config))
    except (ValueError, TypeError, KeyError) as exc:  # json and pydantic errors
        raise InputFileError(f"{config}: not a copick configuration ({str(exc).splitlines()[0]}).") from exc


def read_copick_picks(config: str | os.PathLike, *, voxel_size: float, user_id: str | None = None,
                      session_id: str | None = None, objects: list[str] | None = None,
                      runs: list[str] | None = None) -> pd.DataFrame:
    """The picks of a copick project as a CryoMine table (coordinates in voxels of ``voxel_size`` Å).

    Args:
        config: the project's JSON configuration.
        voxel_size: Å per voxel of the tomograms the coordinates should refer to.
        user_id, session_id: only the picks of this user / session (default: all).
        objects: only these pickable objects (default: all particle objects).
        runs: only these runs (default: all).

    Raises:
        InputFileError, TableError: the message names the project, the object or run, and the fix.
    """
    if not voxel_size > 0:
        raise TableError(f"--voxel-size {voxel_size:g}: give the voxel size in Å (> 0).")
    root = open_project(config)
    known = {o.name: o for o in root.pickable_objects}
    unknown = sorted(set(objects or []) - set(known))
    if unknown:
        raise TableError(f"{config}: no pickable object {unknown}; the project has {sorted(known)}.")
    wanted = set(objects) if objects else {n for n, o in known.items() if o.is_particle}
    run_names = [r.name for r in root.runs]
    missing = sorted(set(runs or []) - set(run_names))
    if missing:
        raise TableError(f"{config}: no run {missing}; the project has {run_names[:10]}.")
    rows = []
    for run in root.runs:
        if runs and run.name not in runs:
            continue
        for picks in run.picks:
            if picks.pickable_object_name not in wanted or (user_id and picks.user_id != user_id) \
                    or (session_id and picks.session_id != session_id):
                continue
            if not picks.points:
                continue
            locations, transforms = picks.numpy()
            obj = known.get(picks.pickable_object_name)
            for location, transform, point in zip(locations, transforms, picks.points):
                rows.append({"run": run.name, "object": picks.pickable_object_name,
                             "label": obj.label if obj is not None else 0, "position": location + transform[:3, 3],
                             "rotation": transform[:3, :3], "score": point.score, "user": picks.user_id,
                             "session": picks.session_id})
    if not rows:
        raise TableError(f"{config}: no picks of {sorted(wanted)}" + (f" by user '{user_id}'" if user_id else "")
                         + (f" in session '{session_id}'" if session_id else "") + "; check the names with "
                         "`copick browse` or choose other objects.")
    positions = np.stack([r["position"] for r in rows]) / voxel_size
    eulers = rotation_to_relion_eulers(torch.as_tensor(np.stack([r["rotation"] for r in rows]),
                                                       dtype=torch.float64)).numpy()
    df = pd.DataFrame({T.TOMO: [r["run"] for r in rows], T.CLASS_NAME: [r["object"] for r in rows],
                       T.CLASS: [int(r["label"] or 0) for r in rows],
                       T.SCORE: [float(r["score"]) if r["score"] is not None else 1.0 for r in rows],
                       T.VOXEL_SIZE: float(voxel_size)})
    for i in range(3):
        df[T.COORDS[i]] = positions[:, i]
        df[T.ANGLES[i]] = eulers[:, i]
    log.info("%s: %d picks of %d run(s), objects %s", config, len(df), df[T.TOMO].nunique(),
             sorted(set(df[T.CLASS_NAME])))
    return df


def write_copick_picks(config: str | os.PathLike, df: pd.DataFrame, *, user_id: str, session_id: str,
                       object_name: str | None = None) -> int:
    """Write a table's particles as copick picks of ``user_id`` / ``session_id``; return the count.

    One pick set per run (``rlnTomoName``) and object (``object_name`` for every particle when given,
    else ``cmClassName``, else the object whose ``label`` is ``rlnClassNumber``); a run the project
    lacks is created; an existing set of the same object, user and session is replaced. Positions
    (coordinate - origin, in Å) and rotations are written; translations are zero.
    """
    missing = [c for c in (T.TOMO, *T.COORDS, T.VOXEL_SIZE) if c not in df.columns]
    if missing:
        raise TableError(f"writing copick picks: the table has no {', '.join(missing)}; copick picks need their "
                         "run (rlnTomoName) and position.")
    if not user_id or not session_id:
        raise TableError("writing copick picks: give --copick-user and --copick-session (whose picks these are).")
    root = open_project(config)
    objects = {o.name: o for o in root.pickable_objects}
    if object_name:
        names = pd.Series(object_name, index=df.index)
    elif T.CLASS_NAME in df.columns:
        names = df[T.CLASS_NAME].astype(str)
    elif T.CLASS in df.columns:
        by_label = {int(o.label): o.name for o in root.pickable_objects if o.label is not None}
        names = df[T.CLASS].astype(int).map(by_label)
        if names.isna().any():
            bad = int(df[T.CLASS].astype(int)[names.isna()].iloc[0])
            raise TableError(f"{config}: class {bad} matches no pickable object's label ({by_label}); add the "
                             "object to the project or give cmClassName.")
    else:
        raise TableError("writing copick picks: the table has no class (cmClassName or rlnClassNumber), so no "
                         "copick object to file the picks under: name one (--copick-objects NAME).")
    unknown = sorted(set(names) - set(objects))
    if unknown:
        raise TableError(f"{config}: objects {unknown} are not pickable objects of the project ({sorted(objects)}); "
                         "add them to its configuration.")
    voxel = df[T.VOXEL_SIZE].to_numpy(float)[:, None]
    positions = df[list(T.COORDS)].to_numpy(float)
    if all(c in df.columns for c in T.ORIGINS):
        positions = positions - df[list(T.ORIGINS)].to_numpy(float) / voxel
    positions = positions * voxel
    eulers = df[list(T.ANGLES)].to_numpy(float) if all(c in df.columns for c in T.ANGLES) \
        else np.zeros((len(df), 3))
    transforms = np.tile(np.eye(4), (len(df), 1, 1))
    transforms[:, :3, :3] = relion_eulers_to_rotation(torch.as_tensor(eulers, dtype=torch.float64)).numpy()
    runs = {r.name: r for r in root.runs}
    written = 0
    for (run_name, obj), index in df.groupby([df[T.TOMO].astype(str), names]).groups.items():
        run = runs.get(run_name) or root.new_run(run_name)
        runs[run_name] = run
        existing = run.get_picks(object_name=obj, user_id=user_id, session_id=session_id)
        picks = existing[0] if existing else run.new_picks(obj, session_id, user_id)
        rows = df.index.get_indexer(index)
        picks.from_numpy(positions[rows], transforms[rows])
        picks.store()
        written += len(rows)
    log.info("%s: %d picks written as user '%s', session '%s'", config, written, user_id, session_id)
    return written
