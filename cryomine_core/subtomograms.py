"""The one loader of subtomograms for the alignment engine: files -> a z-scored ``(B, n, n, n)`` stack.

Used by ``align`` (refinement, MRA, averaging) and by subdivision's cluster averages and
re-assignment. Every volume is read once (memory-mapped header checks are the caller's, see
:func:`cryomine_core.validate.check_subtomograms`), refused with its file and row named when it is
unreadable, not cubic, NaN/infinite or constant, and normalised to zero mean and unit standard
deviation (population, over the box).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from cryomine_core.errors import InputFileError
from cryomine_core.io.mrc import read_mrc
from cryomine_core.validate import check_volume_array

__all__ = ["load_subtomograms"]


def load_subtomograms(paths: Sequence[str], *, rows: Sequence[int] | None = None, device=None) -> torch.Tensor:
    """Z-scored volumes ``(B, n, n, n)`` float32 of ``paths`` on ``device``.

    Args:
        paths: MRC files, one per subtomogram.
        rows: the table row of each path (0-based), for the messages (default ``0..B-1``).
        device: where the stack goes (default CPU).
    """
    rows = list(range(len(paths))) if rows is None else list(rows)
    vols = []
    for row, path in zip(rows, paths):
        data, _ = read_mrc(path, check_finite=False)
        if data.ndim != 3 or len(set(data.shape)) != 1:
            raise InputFileError(f"{path} (row {row + 1}): subtomograms must be cubic volumes to be aligned, got "
                                 f"shape {data.shape}.")
        check_volume_array(data, f"{path} (row {row + 1})")
        vols.append((data - data.mean()) / float(data.std()))
    dev = torch.device(device) if device is not None else torch.device("cpu")
    return torch.as_tensor(np.stack(vols), dtype=torch.float32, device=dev)
