"""Safe reading of CryoMine's torch files (model files, training checkpoints).

One reader for all of them: ``torch.load`` with ``weights_only=True`` (tensors and plain
containers only, nothing executed), and one error line when the file cannot be read. Torch's own
messages for a corrupt or foreign file run over many lines and advise ``weights_only=False``,
which would execute whatever the file holds: CryoMine never passes that advice on.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from cryomine_core.errors import InputFileError

__all__ = ["load_torch_file"]


def load_torch_file(path: str | os.PathLike, what: str, fix: str) -> object:
    """The payload of ``path`` (a file written by ``torch.save``), loaded on the CPU.

    Args:
        what: what the file should be, for the message (e.g. ``"model file"``).
        fix: what the user should do when it cannot be read (one sentence).

    Raises InputFileError (one line naming the file, the kind of failure and ``fix``) when the file
    is missing, truncated, corrupt, not a torch file, or holds objects other than tensors and plain
    containers.
    """
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: {what} not found. {fix}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises zip, pickle, EOF and unpickler errors of many kinds
        raise InputFileError(f"{path}: not a readable {what} ({type(exc).__name__}; the file is truncated, corrupt "
                             f"or not written by CryoMine). {fix}") from exc
