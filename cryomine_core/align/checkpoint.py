"""Checkpoints of an iterative alignment job: the state after each finished iteration, and its resumption.

A job (``align refine``) saves, after every iteration, everything the next iteration reads
(references, coverages, poses, scores, half sets, band, history) with a *fingerprint* of what
determines the result (particle count and box, a digest of the particles, the settings). Resuming
loads the state only when the fingerprint matches, so a resumed run gives the uninterrupted run's
result; a checkpoint of other inputs or settings is refused with the fix. Files are written
atomically (a kill -9 leaves the previous checkpoint or the new one, never half of one) and removed
when the job has written its results.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from cryomine_core.errors import CryomineError, InputFileError
from cryomine_core.io.atomic import atomic_path
from cryomine_core.io.torch_file import load_torch_file

__all__ = ["particles_digest", "save_checkpoint", "load_checkpoint", "resume_state"]

KIND = "cryomine iteration checkpoint"


def particles_digest(particles: torch.Tensor) -> list[float]:
    """A cheap fingerprint of a particle stack ``(B, N, N, N)``: per-moment sums over all voxels (float64)."""
    x = particles.detach().to(torch.float64)
    return [float(x.sum()), float((x * x).sum()), float(x[:, 0].sum()), float(x[-1].abs().sum())]


def save_checkpoint(path: str | os.PathLike, job: str, fingerprint: dict, iteration: int, state: dict) -> None:
    """Write the state after ``iteration`` of ``job`` (tensors are stored on the CPU), atomically."""
    cpu = {k: (v.detach().cpu() if isinstance(v, torch.Tensor) else v) for k, v in state.items()}
    with atomic_path(Path(path)) as tmp:
        torch.save({"kind": KIND, "job": job, "fingerprint": fingerprint, "iteration": int(iteration),
                    "state": cpu}, tmp)


def _same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and abs(a - b) <= 1e-9 * max(1.0, abs(a))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def load_checkpoint(path: str | os.PathLike, job: str, fingerprint: dict, device=None) -> tuple[int, dict]:
    """``(iteration, state)`` of a checkpoint of ``job`` made with the same ``fingerprint``.

    Raises:
        InputFileError: no checkpoint, or not a readable one.
        CryomineError: a checkpoint of another job, inputs or settings (the message names what differs).
    """
    path = Path(path)
    fix = f"Run `{job}` without --resume to start again."
    if not path.exists():
        raise InputFileError(f"{path}: no checkpoint to resume from (the run finished, or never got through one "
                             f"iteration). {fix}")
    payload = load_torch_file(path, "checkpoint", fix)
    if not isinstance(payload, dict) or payload.get("kind") != KIND or payload.get("job") != job:
        raise InputFileError(f"{path}: not a checkpoint of `{job}`. {fix}")
    saved = payload.get("fingerprint", {})
    differ = sorted(k for k in set(saved) | set(fingerprint) if not _same(saved.get(k), fingerprint.get(k)))
    if differ:
        raise CryomineError(f"{path}: the checkpoint was made with other inputs or settings ({', '.join(differ)} "
                            f"differ); resume with the same ones. {fix}")
    state = {k: (v.to(device) if isinstance(v, torch.Tensor) and device is not None else v)
             for k, v in payload["state"].items()}
    return int(payload["iteration"]), state


def resume_state(path, job: str, fingerprint: dict, iterations: int, device=None) -> tuple[int, dict]:
    """``(iteration, state)`` to continue ``job`` from its checkpoint ``path`` towards ``iterations``
    (:func:`load_checkpoint`); refuses no checkpoint file, or one already at or past ``iterations``."""
    if path is None:
        raise CryomineError("resume asked for but no checkpoint file given.")
    done, state = load_checkpoint(path, job, fingerprint, device)
    if done >= iterations:
        raise CryomineError(f"{path}: the checkpoint is after iteration {done}, the run asks for {iterations}; ask "
                            "for more --iterations or run without --resume.")
    return done, state
