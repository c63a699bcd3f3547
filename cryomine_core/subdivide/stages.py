"""Finished stages of one ``subdivide`` run, kept on disk so an interrupted run can continue.

``subdivide`` runs in stages (features, clustering, cluster averages, split, re-assignment,
merge); after each one :class:`StageCheckpoint` saves what the stage produced together with the
random-number generators' states, in one file written atomically (:mod:`cryomine_core.align.checkpoint`:
a kill -9 leaves the previous checkpoint or the new one). ``--resume`` takes the finished stages
from it, restores the generators as they were after the last one and runs the rest, so the result
equals the uninterrupted run's. The fingerprint (the table's and the model's bytes, the settings)
refuses a checkpoint of other inputs.

Stage outputs are numpy arrays, tensors, the result dataclasses of clustering and averaging and
plain values; they are stored as tensors and plain containers, so the file loads with
``weights_only`` (no pickled code).
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import logging
import os
import random
from pathlib import Path

import numpy as np
import torch

from cryomine_core.align.checkpoint import load_checkpoint, save_checkpoint
from cryomine_core.subdivide.cluster import ClusterResult
from cryomine_core.subdivide.refine import ClusterAverages

__all__ = ["CHECKPOINT_FILE", "StageCheckpoint", "file_digest"]

log = logging.getLogger("cryomine")

JOB = "cryomine subdivide"
#: the checkpoint in the output folder (removed once the results are written)
CHECKPOINT_FILE = "checkpoint.pt"
_DATACLASSES = {cls.__name__: cls for cls in (ClusterResult, ClusterAverages)}


def file_digest(path: str | os.PathLike | None) -> str | None:
    """SHA-256 of a file's bytes (None for no file)."""
    if path is None:
        return None
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _store(obj):
    """``obj`` as tensors and plain containers (what ``torch.load(weights_only=True)`` reads back)."""
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": torch.from_numpy(np.ascontiguousarray(obj))}
    if isinstance(obj, np.generic):
        return obj.item()
    if dataclasses.is_dataclass(obj) and type(obj).__name__ in _DATACLASSES:
        return {"__dataclass__": type(obj).__name__,
                "fields": {f.name: _store(getattr(obj, f.name)) for f in dataclasses.fields(obj)}}
    if isinstance(obj, dict):
        return {"__dict__": [(_store(k), _store(v)) for k, v in obj.items()]}  # keeps int keys
    if isinstance(obj, (list, tuple)):
        return {"__seq__": [_store(v) for v in obj], "tuple": isinstance(obj, tuple)}
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot keep a {type(obj).__name__} in a subdivide checkpoint")


def _restore(obj):
    if isinstance(obj, dict):
        if "__ndarray__" in obj:
            return obj["__ndarray__"].numpy()
        if "__dataclass__" in obj:
            return _DATACLASSES[obj["__dataclass__"]](**{k: _restore(v) for k, v in obj["fields"].items()})
        if "__dict__" in obj:
            return {_restore(k): _restore(v) for k, v in obj["__dict__"]}
        if "__seq__" in obj:
            items = [_restore(v) for v in obj["__seq__"]]
            return tuple(items) if obj["tuple"] else items
    return obj


def _rng_state() -> dict:
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "numpy_rest": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
            "python": repr(random.getstate())}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    name, pos, has_gauss, cached = state["numpy_rest"]
    np.random.set_state((name, state["numpy_keys"].numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(ast.literal_eval(state["python"]))


class StageCheckpoint:
    """Saved outputs of the finished stages of one run (``path``), for ``fingerprint``'s inputs.

    ``resume=True`` loads the stages a previous run finished (refusing a checkpoint of other
    inputs or settings, or none); otherwise the run starts from nothing and overwrites the file.
    """

    def __init__(self, path: str | os.PathLike, fingerprint: dict, resume: bool = False):
        self.path, self.fingerprint = Path(path), fingerprint
        self.stages: dict = {}
        self.order: list[str] = []
        if resume:
            _, state = load_checkpoint(self.path, JOB, fingerprint)
            self.order = list(state["order"])
            self.stages = dict(state["stages"])
            log.info("resuming from %s: stages done: %s", self.path, ", ".join(self.order) or "none")

    def run(self, name: str, compute):
        """The output of stage ``name``: from the checkpoint if that stage finished there, else
        ``compute()``, saved before it is returned."""
        if name in self.stages:
            saved = self.stages[name]
            _set_rng_state(saved["rng"])
            log.info("stage %s: taken from the checkpoint", name)
            return _restore(saved["value"])
        value = compute()
        self.stages[name] = {"value": _store(value), "rng": _rng_state()}
        self.order.append(name)
        save_checkpoint(self.path, JOB, self.fingerprint, len(self.order), {"order": self.order, "stages": self.stages})
        return value

    def remove(self) -> None:
        """Delete the file (the results are written: nothing left to resume)."""
        self.path.unlink(missing_ok=True)
