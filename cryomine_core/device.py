"""Compute device selection and seeding.

``select_device("auto")`` takes the first visible CUDA device when one is present (it honours
``CUDA_VISIBLE_DEVICES``, which Scipion sets per step from its GPU list) and the CPU otherwise,
and says which in the log; a process started by ``torchrun`` takes the GPU of its ``LOCAL_RANK``.
Asking explicitly for ``cuda`` when none is usable is an error, never a silent fallback to the CPU.
"""

from __future__ import annotations

import logging
import os
import random

import numpy as np
import torch

from cryomine_core.errors import DeviceError

log = logging.getLogger("cryomine")


def select_device(request: str = "auto") -> torch.device:
    """Resolve a device request: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

    Raises:
        DeviceError: ``cuda``/``cuda:N`` asked for but no usable CUDA device (or N out of range).
    """
    request = (request or "auto").strip().lower()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    local = os.environ.get("LOCAL_RANK")  # set by torchrun: one GPU per process
    if local is not None and request in ("auto", "cuda") and torch.cuda.is_available():
        request = f"cuda:{int(local) % torch.cuda.device_count()}"
    if request == "auto":
        if torch.cuda.is_available():
            dev = torch.device("cuda:0")
            log.info("device: %s (%s; CUDA_VISIBLE_DEVICES=%s)", dev, torch.cuda.get_device_name(dev), visible)
            return dev
        log.info("device: cpu (no CUDA device available; %d threads)", torch.get_num_threads())
        return torch.device("cpu")
    if request == "cpu":
        log.info("device: cpu (%d threads)", torch.get_num_threads())
        return torch.device("cpu")
    if request.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device '{request}' was asked for but no CUDA device is usable (torch {torch.__version__}, "
                f"CUDA build: {torch.version.cuda}, CUDA_VISIBLE_DEVICES={visible}). Install a CUDA build of "
                "torch (see README), check the GPU list, or use --device cpu."
            )
        dev = torch.device(request if ":" in request else "cuda:0")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"device '{request}': only {torch.cuda.device_count()} CUDA device(s) visible.")
        log.info("device: %s (%s)", dev, torch.cuda.get_device_name(dev))
        return dev
    raise DeviceError(f"unknown device '{request}'; use auto, cpu, cuda or cuda:N.")


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python, numpy and torch (all devices); return a numpy Generator for local use."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return np.random.default_rng(seed)
