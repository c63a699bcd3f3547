"""Several processes on one or several machines: ``torchrun`` ranks, each rank's share, summed results.

A ``cryomine`` command started by ``torchrun --nproc-per-node N`` (or on several nodes with
``--nnodes``) runs as N processes that each see ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` in the
environment. :func:`setup` joins them into one process group (NCCL between GPUs, gloo on CPUs);
a command then works on its :func:`share` of the particles, adds its partial sums into everyone's
with :func:`sum_`, and only the :func:`is_writer` rank writes the results. One process (no
``torchrun``) is the same code with a world of one: nothing is started and the sums are its own.
Each rank takes the GPU of its ``LOCAL_RANK`` (:func:`cryomine_core.device.select_device`).
"""

from __future__ import annotations

import logging
import os

import numpy as np
import torch
import torch.distributed as dist

__all__ = ["broadcast_", "is_writer", "rank", "setup", "share", "sum_", "teardown", "world_size"]

log = logging.getLogger("cryomine")


def world_size() -> int:
    """Number of processes of the command (1 without ``torchrun``)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This process's rank, 0 .. world_size - 1."""
    return int(os.environ.get("RANK", "0"))


def is_writer() -> bool:
    """True on the one rank that writes the results (rank 0)."""
    return rank() == 0


def setup(device: torch.device) -> None:
    """Join the process group when started by ``torchrun`` (once; NCCL for CUDA devices, gloo otherwise)."""
    if world_size() == 1 or (dist.is_available() and dist.is_initialized()):
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend)
    log.info("rank %d of %d (%s, %s)", rank(), world_size(), backend, device)


def share(n: int, block: int = 1) -> np.ndarray:
    """Rows ``0 .. n-1`` of this rank: a contiguous run of whole ``block``-row blocks (the last may be
    shorter), the runs of all ranks covering every row once. With ``block`` the batch size, a batch
    never straddles two ranks, so the batches (and their float arithmetic) do not depend on the
    number of processes."""
    blocks = np.array_split(np.arange(-(-n // block)), world_size())[rank()]
    if blocks.size == 0:
        return np.zeros(0, dtype=np.int64)
    return np.arange(int(blocks[0]) * block, min(n, (int(blocks[-1]) + 1) * block))


def sum_(*tensors: torch.Tensor) -> None:
    """Sum each tensor over the ranks, in place (complex ones as their real and imaginary parts)."""
    if world_size() == 1:
        return
    nccl = dist.get_backend() == "nccl"
    for t in tensors:
        work = t.cuda() if nccl and t.device.type == "cpu" else t  # NCCL reduces GPU tensors only
        dist.all_reduce(torch.view_as_real(work) if work.is_complex() else work, op=dist.ReduceOp.SUM)
        if work is not t:
            t.copy_(work.cpu())


def broadcast_(*tensors: torch.Tensor) -> None:
    """Give every rank rank 0's values of each tensor, in place (a decision all ranks must share)."""
    if world_size() == 1:
        return
    nccl = dist.get_backend() == "nccl"
    for t in tensors:
        work = t.cuda() if nccl and t.device.type == "cpu" else t
        dist.broadcast(torch.view_as_real(work) if work.is_complex() else work, src=0)
        if work is not t:
            t.copy_(work.cpu())


def teardown() -> None:
    """Leave the process group (after every rank got here), so no process exits while another still
    talks to it; nothing without ``torchrun``."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
