"""Training under ``torchrun``: each process takes its part of every batch, DistributedDataParallel
averages the gradients, so N processes take the steps one process takes with the whole batch.

- :class:`RankBatches`: the epoch's order (:class:`~cryomine_core.train.data.EpochSampler`, the same
  on every process) cut into global batches of ``batch_size``; this process gets its part of each
  (:func:`numpy.array_split`). A last global batch with fewer items than processes is left out of
  that epoch (logged; the order changes every epoch).
- :func:`loss_weight`: DDP averages the processes' gradients; weighting each process's mean loss by
  ``N * n_rank / n_global`` makes that average the gradient of the global batch's mean loss, also
  when the parts differ in size.
- :func:`wrap`: the model inside :class:`~torch.nn.parallel.DistributedDataParallel` (on GPUs, batch
  normalisation is synchronised over the processes; on CPUs torch cannot, so each process normalises
  with its own part of the batch and the result differs from one process's by more than float order).
- :func:`check_in_sync`: every process must end with the same weights; a difference is an error.

One process (no ``torchrun``) uses none of this.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn
from torch.utils.data import Sampler

from cryomine_core import distributed
from cryomine_core.errors import CryomineError

__all__ = ["RankBatches", "check_in_sync", "loss_weight", "wrap"]

log = logging.getLogger("cryomine")


class RankBatches(Sampler[list[int]]):
    """This process's part of each global batch of ``batch_size`` items of ``sampler``'s epoch order.

    ``global_sizes`` holds the size of each global batch of the epoch being iterated.
    """

    def __init__(self, sampler, batch_size: int, rank: int, world: int):
        self.sampler, self.batch_size, self.rank, self.world = sampler, int(batch_size), int(rank), int(world)
        self.global_sizes: list[int] = []

    def _batches(self) -> list[np.ndarray]:
        order = np.asarray(self.sampler.indices(), dtype=np.int64)
        batches = [order[i:i + self.batch_size] for i in range(0, order.size, self.batch_size)]
        if batches and batches[-1].size < self.world:
            log.info("last batch of %d item(s) left out of this epoch: fewer than the %d processes",
                     batches[-1].size, self.world)
            batches = batches[:-1]
        return batches

    def __len__(self) -> int:
        n = len(self.sampler)
        full, rest = divmod(n, self.batch_size)
        return full + (1 if rest >= self.world else 0)

    def __iter__(self):
        batches = self._batches()
        self.global_sizes = [int(b.size) for b in batches]
        for b in batches:
            yield np.array_split(b, self.world)[self.rank].tolist()


def loss_weight(n_rank: int, n_global: int) -> float:
    """Factor on this process's mean loss so that DDP's average of the gradients is the global batch's."""
    return distributed.world_size() * n_rank / n_global


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` in DistributedDataParallel (batch norms synchronised on GPUs); returns the wrapper."""
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        log.info("training on %d processes (DistributedDataParallel, NCCL; batch norms synchronised)",
                 distributed.world_size())
        return DistributedDataParallel(model, device_ids=[device.index] if device.index is not None else None)
    if any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)) for m in model.modules()):
        log.warning("training on %d CPU processes (DistributedDataParallel, gloo): batch norms use each process's "
                    "part of the batch (torch synchronises them on GPUs only), so the result differs from one "
                    "process's", distributed.world_size())
    else:
        log.info("training on %d CPU processes (DistributedDataParallel, gloo)", distributed.world_size())
    return DistributedDataParallel(model)


def check_in_sync(model: nn.Module) -> None:
    """Raise CryomineError unless every process holds the same weights (within float rounding)."""
    flat = torch.cat([p.detach().double().flatten().cpu() for p in model.parameters()])
    mine = torch.stack([flat.sum(), flat.abs().sum()])
    first = mine.clone()
    distributed.broadcast_(first)
    if not torch.allclose(mine, first, rtol=1e-9, atol=1e-9):
        raise CryomineError(f"process {distributed.rank()} ended training with other weights than process 0 "
                            f"({mine.tolist()} vs {first.tolist()}); the processes fell out of step.")
