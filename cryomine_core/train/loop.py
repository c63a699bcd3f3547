"""The one training loop of CryoMine's networks (classifiers now; segmentation and subdivision later).

Default recipe: Che et al. 2018 -- SGD with Nesterov momentum 0.9, learning rate 0.005, Keras-style
learning-rate decay 1e-7 (``lr / (1 + decay * iteration)``: the paper's "decay" is this Keras
argument, not a weight decay), batch 64, 20 epochs, early stop after 5 epochs without improvement
of the validation loss, keeping the weights of the best epoch. Everything is a field of
:class:`TrainConfig`.

On CUDA the loop uses automatic mixed precision (bfloat16 where supported, else float16 with a
gradient scaler) and the channels-last (NDHWC) memory layout; on the CPU it runs in float32.

Resumable: after every epoch an atomic checkpoint holds the weights, optimizer, scheduler, scaler,
the best weights so far, the history, the early-stopping counter and every RNG state (Python,
numpy, torch CPU and CUDA). The sampler's order is a pure function of (seed, epoch)
(:class:`~cryomine_core.train.data.EpochSampler`), so ``fit(..., resume=True)`` after an
interruption reproduces the weights and metrics of an uninterrupted run (same device, same
thread count; timings differ).

Under ``torchrun`` each process trains on its part of every batch and DistributedDataParallel
averages the gradients (:mod:`.ranks`); every process validates on the whole validation set, so
all take the same decisions, and only rank 0 writes the checkpoint.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from cryomine_core import distributed
from cryomine_core.errors import CryomineError, InputFileError
from cryomine_core.io.atomic import atomic_path
from cryomine_core.io.torch_file import load_torch_file
from cryomine_core.memory import release_free_memory
from cryomine_core.train import ranks
from cryomine_core.train.augment import AugmentConfig, augment_batch, group_transforms
from cryomine_core.train.data import EpochSampler, dataset_labels
from cryomine_core.train.ranks import RankBatches

log = logging.getLogger("cryomine")

BALANCE_MODES = ("none", "loss", "sample")
CHECKPOINT_FORMAT = "cryomine-checkpoint-1"
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("inverse-time", "cosine")


@dataclass
class TrainConfig:
    """Training settings (defaults: Che et al. 2018).

    Attributes:
        epochs: most epochs.
        batch_size: items per SGD step.
        lr: initial learning rate.
        momentum, nesterov: SGD momentum.
        lr_decay: Keras inverse-time decay per iteration (``lr / (1 + lr_decay * it)``).
        weight_decay: L2 penalty of the SGD optimizer.
        patience: stop after this many epochs without improvement of ``monitor`` (0: never).
        monitor: ``'val_loss'`` (default) or ``'val_accuracy'``; the best epoch's weights are kept.
        balance: ``'none'``, ``'loss'`` (class weights ``n / (C n_c)`` in the loss) or
            ``'sample'`` (every class drawn equally often).
        seed: seed of initialisation, sampling and dropout.
        workers: DataLoader worker processes (0: load in the main process).
        amp: mixed precision ``'auto'`` (on CUDA), ``True`` or ``False``.
        channels_last: NDHWC layout ``'auto'`` (on CUDA), ``True`` or ``False``.
        eval_batch_size: batch for validation/prediction (default: 2 x batch_size).
        restore_best: end with the best epoch's weights (else the last epoch's).
        bn_recalibrate: after every epoch, recompute the batch-normalisation statistics of the
            model from the (unaugmented) training set with the epoch's final weights ("precise BN";
            at most ``BN_RECALIBRATION_ITEMS`` = 1024 items, evenly spaced over the set).
            The running averages otherwise lag the weights: on 6 complexes with 150 per class
            (24^3, SNR 0.1) compact3d's validation accuracy with the running averages was exactly
            chance (0.167) in 5 of 20 epochs and at most 0.20 in 12
            (loss up to 26), while with recomputed statistics it rose steadily to 0.66
            (``benchmarks/classification.py --learning-curve --diagnose-bn`` measures it on other
            complexes).
        optimizer: ``'sgd'`` (the paper's) or ``'adamw'`` (no decay on biases and norms).
        schedule: ``'inverse-time'`` (Keras decay, the paper's) or ``'cosine'`` (to zero at the last
            epoch, after a linear warm-up of ``warmup_epochs``, at most half of the run).
        label_smoothing: cross-entropy label smoothing.
        augment: :class:`~cryomine_core.train.augment.AugmentConfig` or None (no augmentation).
        tta: validate with test-time augmentation over the wedge-preserving group.
        recipe: the name of the recipe these settings came from (:mod:`.recipes`), for the record.
        log_interval_s: seconds between in-epoch progress lines.
        grad_clip: clip the gradient's global L2 norm to this value (None: off, the paper's
            recipe). An option against the occasional early divergence of the plain networks.
    """

    epochs: int = 20
    batch_size: int = 64
    lr: float = 0.005
    momentum: float = 0.9
    nesterov: bool = True
    lr_decay: float = 1e-7
    weight_decay: float = 0.0
    patience: int = 5
    monitor: str = "val_loss"
    balance: str = "none"
    seed: int = 0
    workers: int = 0
    amp: str | bool = "auto"
    channels_last: str | bool = "auto"
    eval_batch_size: int | None = None
    restore_best: bool = True
    log_interval_s: float = 30.0
    grad_clip: float | None = None
    optimizer: str = "sgd"
    schedule: str = "inverse-time"
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    augment: AugmentConfig | None = None
    tta: bool = False
    recipe: str = "paper"
    bn_recalibrate: bool = True

    def validate(self) -> None:
        checks = [
            (self.epochs >= 1, f"epochs {self.epochs}: give at least 1"),
            (self.batch_size >= 1, f"batch size {self.batch_size}: give at least 1"),
            (self.lr > 0 and math.isfinite(self.lr), f"learning rate {self.lr}: give a positive number"),
            (0 <= self.momentum < 1, f"momentum {self.momentum}: give a value in [0, 1)"),
            (self.lr_decay >= 0, f"lr decay {self.lr_decay}: give a value >= 0"),
            (self.weight_decay >= 0, f"weight decay {self.weight_decay}: give a value >= 0"),
            (self.patience >= 0, f"patience {self.patience}: give a value >= 0 (0 disables early stopping)"),
            (self.monitor in ("val_loss", "val_accuracy"), f"monitor '{self.monitor}': use val_loss or val_accuracy"),
            (self.balance in BALANCE_MODES, f"balance '{self.balance}': use one of {', '.join(BALANCE_MODES)}"),
            (self.workers >= 0, f"workers {self.workers}: give a value >= 0"),
            (self.grad_clip is None or self.grad_clip > 0, f"gradient clip {self.grad_clip}: give a value > 0"),
            (self.optimizer in OPTIMIZERS, f"optimizer '{self.optimizer}': use one of {', '.join(OPTIMIZERS)}"),
            (self.schedule in SCHEDULES, f"schedule '{self.schedule}': use one of {', '.join(SCHEDULES)}"),
            (self.warmup_epochs >= 0, f"warm-up {self.warmup_epochs} epochs: give a value >= 0"),
            (0 <= self.label_smoothing < 1, f"label smoothing {self.label_smoothing}: give a value in [0, 1)"),
        ]
        for ok, msg in checks:
            if not ok:
                raise CryomineError(f"training setting {msg}.")
        if self.optimizer == "sgd" and self.nesterov and self.momentum == 0:
            raise CryomineError("Nesterov momentum needs --momentum > 0 (or turn Nesterov off).")
        if self.augment is not None:
            self.augment.validate()

    def as_dict(self) -> dict:
        return asdict(self)

    def tta_range(self) -> tuple[float, float] | None:
        """The tilt range of test-time augmentation (the augmentation's wedge), None when ``tta`` is off."""
        if not self.tta:
            return None
        if self.augment is None:
            raise CryomineError("test-time augmentation needs the data's tilt range: give an augmentation setting "
                                "(AugmentConfig(group='none', ...) keeps augmentation off).")
        return (float(self.augment.tilt_range[0]), float(self.augment.tilt_range[1]))


@dataclass
class FitResult:
    """What :func:`fit` returns: per-epoch history and the chosen epoch."""

    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_score: float = float("nan")
    stopped_early: bool = False
    epochs_run: int = 0
    seconds: float = 0.0
    monitor: str = "val_loss"
    resumed_from_epoch: int = 0


# -- device helpers --------------------------------------------------------------------------------------

def _flag(value, device: torch.device) -> bool:
    if isinstance(value, str):
        if value == "auto":
            return device.type == "cuda"
        return value.lower() in ("1", "true", "yes", "on")
    return bool(value)


def amp_dtype(device: torch.device) -> torch.dtype:
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16 if device.type == "cuda" else torch.bfloat16


def prepare_input(x: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    return x


def _loader(dataset: Dataset, batch_size: int, sampler, workers: int, device: torch.device, seed: int) -> DataLoader:
    if isinstance(sampler, RankBatches):  # under torchrun: this process's part of each global batch
        return DataLoader(dataset, batch_sampler=sampler, num_workers=workers, pin_memory=device.type == "cuda",
                          persistent_workers=False, generator=torch.Generator().manual_seed(seed))
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      pin_memory=device.type == "cuda", persistent_workers=False,
                      generator=torch.Generator().manual_seed(seed), drop_last=False)


@contextlib.contextmanager
def flush_denormals(device: torch.device):
    """On the CPU, flush denormal floats to zero while training/predicting: tiny activations
    (e.g. after Glorot initialisation) otherwise slow x86 arithmetic down by 10x or more."""
    if device.type != "cpu":
        yield
        return
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


@torch.no_grad()
def predict_logits(model: nn.Module, dataset: Dataset, *, device: torch.device | str = "cpu", batch_size: int = 128,
                   workers: int = 0, amp: str | bool = "auto", channels_last: str | bool = "auto",
                   tta_range: tuple[float, float] | None = None) -> tuple[torch.Tensor, np.ndarray]:
    """Logits ``(N, C)`` (CPU float32) of every item of ``dataset`` and its labels, in dataset order.

    With ``tta_range`` (a tilt range in degrees) each item is also classified under every element of
    the wedge-preserving group of that range (:func:`~cryomine_core.train.augment.wedge_group`) and
    the mean of the log-softmax outputs is returned (test-time augmentation; usable as logits).
    """
    device = torch.device(device)
    with flush_denormals(device):
        return _predict_logits(model, dataset, device, batch_size, workers, _flag(amp, device),
                               _flag(channels_last, device), tta_range)


def _forward(model, x, device, use_amp, use_cl, tta_range):
    views = group_transforms(x, tta_range) if tta_range is not None else [x]
    outs = []
    for v in views:
        v = prepare_input(v, device, use_cl)
        with torch.autocast(device.type, dtype=amp_dtype(device), enabled=use_amp):
            out = model(v)
        outs.append(out.float())
    if len(outs) == 1:
        return outs[0]
    return torch.stack([torch.log_softmax(o, dim=1) for o in outs]).mean(0)


def _predict_logits(model, dataset, device, batch_size, workers, use_amp, use_cl, tta_range=None):
    model.eval()
    if use_cl:
        model.to(memory_format=torch.channels_last_3d)
    outs, labels = [], []
    loader = _loader(dataset, batch_size, None, workers, device, 0)
    for x, y, _ in loader:
        outs.append(_forward(model, x, device, use_amp, use_cl, tta_range).cpu())
        labels.append(np.asarray(y))
        release_free_memory()  # memory stays flat over 10^5 items (cryomine_core.memory)
    if not outs:
        return torch.zeros((0, getattr(model, "n_classes", 0))), np.zeros(0, dtype=np.int64)
    return torch.cat(outs), np.concatenate(labels)


_BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
#: most training items read to recompute batch-norm statistics
BN_RECALIBRATION_ITEMS = 1024


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, dataset: Dataset, *, device: torch.device | str = "cpu",
                          batch_size: int = 128, workers: int = 0, amp: str | bool = "auto",
                          channels_last: str | bool = "auto", max_items: int = BN_RECALIBRATION_ITEMS) -> bool:
    """Recompute every batch-norm layer's running mean and variance as the plain average over
    ``max_items`` items of ``dataset`` (evenly spaced over it, all when it is smaller) with the current
    weights; returns False (and changes nothing) when the model has no batch norm. The model is left
    in eval mode."""
    device = torch.device(device)
    layers = [m for m in model.modules() if isinstance(m, _BN_TYPES) and m.track_running_stats]
    if not layers or len(dataset) == 0:
        return False
    momenta = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches seen
    use_amp, use_cl = _flag(amp, device), _flag(channels_last, device)
    model.eval()
    for m in layers:
        m.train()
    n = min(len(dataset), int(max_items))
    picks = np.linspace(0, len(dataset) - 1, n).round().astype(int).tolist()
    subset = dataset if n == len(dataset) else torch.utils.data.Subset(dataset, picks)
    try:
        for x, _, _ in _loader(subset, batch_size, None, workers, device, 0):
            x = prepare_input(x, device, use_cl)
            with torch.autocast(device.type, dtype=amp_dtype(device), enabled=use_amp):
                model(x)
    finally:
        for m, mom in zip(layers, momenta):
            m.momentum = mom
        model.eval()
    return True


# -- RNG state -------------------------------------------------------------------------------------------

def _rng_state() -> dict:
    np_state = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": [np_state[0], torch.as_tensor(np_state[1].astype(np.int64)), int(np_state[2]), int(np_state[3]),
                       float(np_state[4])]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(tuple(x if not isinstance(x, list) else tuple(x) for x in state["python"]))
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.int64).astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _fmt_seconds(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{(s % 3600) // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _save_checkpoint(path: Path, payload: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a training checkpoint written by :func:`fit` (safe loading: tensors and plain containers)."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: no checkpoint to resume from. Run without --resume to start training.")
    ckpt = load_torch_file(path, "training checkpoint", "Delete it and train again without --resume.")
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise InputFileError(f"{path}: not a CryoMine training checkpoint. Delete it or run without --resume.")
    return ckpt


_RESUME_KEYS = ("batch_size", "lr", "momentum", "nesterov", "lr_decay", "weight_decay", "monitor", "balance", "seed",
                "grad_clip", "optimizer", "schedule", "warmup_epochs", "label_smoothing", "augment")


def _plain(value):
    """Tuples as lists, recursively (a config read back from a checkpoint may hold either)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# -- optimiser and schedule -----------------------------------------------------------------------------

def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adamw":
        # no weight decay on biases and normalisation parameters (1-D tensors)
        decay = [p for p in model.parameters() if p.dim() > 1]
        rest = [p for p in model.parameters() if p.dim() <= 1]
        return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                  {"params": rest, "weight_decay": 0.0}], lr=cfg.lr)
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                           weight_decay=cfg.weight_decay)


def _lr_factor(cfg: TrainConfig, n_batches: int) -> Callable[[int], float]:
    """Multiplier of the base learning rate at optimiser step ``it``."""
    if cfg.schedule == "inverse-time":
        return lambda it: 1.0 / (1.0 + cfg.lr_decay * it)
    total = max(1, cfg.epochs * n_batches)
    warm = min(int(round(cfg.warmup_epochs * n_batches)), total // 2)  # at most half of a short run

    def cosine(it: int) -> float:
        if it < warm:
            return (it + 1) / warm
        progress = min(1.0, (it - warm) / max(1, total - warm))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return cosine


# -- the loop --------------------------------------------------------------------------------------------

def fit(model: nn.Module, train_set: Dataset, val_set: Dataset | None, config: TrainConfig | None = None, *,
        device: torch.device | str = "cpu", checkpoint_path: str | os.PathLike | None = None, resume: bool = False,
        n_classes: int | None = None, extra_checkpoint: dict | None = None,
        on_epoch_end: Callable[[dict], None] | None = None) -> FitResult:
    """Train ``model`` (in place) on ``train_set``, validating on ``val_set`` after each epoch.

    Datasets return ``(volume (1, Z, Y, X), label, index)``. The model ends with the best epoch's
    weights (``config.restore_best``). ``checkpoint_path`` gets a checkpoint after every epoch;
    with ``resume`` the run continues from it (settings that change the result must match).
    ``extra_checkpoint`` is stored in the checkpoint as is (e.g. the architecture).
    ``on_epoch_end(record)`` is called with each epoch's history record.
    """
    cfg = config or TrainConfig()
    cfg.validate()
    device = torch.device(device)
    with flush_denormals(device):
        return _fit(model, train_set, val_set, cfg, device, checkpoint_path, resume, n_classes, extra_checkpoint,
                    on_epoch_end)


def _fit(model, train_set, val_set, cfg, device, checkpoint_path, resume, n_classes, extra_checkpoint, on_epoch_end):
    if len(train_set) == 0:
        raise CryomineError("the training split is empty; give more labelled subtomograms.")
    use_amp, use_cl = _flag(cfg.amp, device), _flag(cfg.channels_last, device)
    dtype = amp_dtype(device)
    train_labels = dataset_labels(train_set)
    n_classes = int(n_classes or getattr(model, "n_classes", 0) or int(train_labels.max()) + 1)
    has_val = val_set is not None and len(val_set) > 0
    monitor = cfg.monitor if has_val else "train_loss"
    eval_bs = cfg.eval_batch_size or 2 * cfg.batch_size

    model.to(device)
    if use_cl:
        model.to(memory_format=torch.channels_last_3d)
    world, rank = distributed.world_size(), distributed.rank()
    sampler = EpochSampler(train_labels, cfg.seed, shuffle=True, balance=cfg.balance == "sample")
    batches = RankBatches(sampler, cfg.batch_size, rank, world) if world > 1 else sampler
    stepper = ranks.wrap(model, device) if world > 1 else model  # the module that takes the training steps
    n_batches = len(batches) if world > 1 else math.ceil(len(train_set) / cfg.batch_size)
    optimizer = _optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_factor(cfg, n_batches))
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp and dtype == torch.float16)
    weights = None
    if cfg.balance == "loss":
        counts = np.bincount(train_labels, minlength=n_classes).astype(np.float64)
        w = np.where(counts > 0, counts.sum() / (n_classes * np.maximum(counts, 1)), 0.0)
        weights = torch.as_tensor(w, dtype=torch.float32, device=device)
    criterion = nn.CrossEntropyLoss(weight=weights, label_smoothing=cfg.label_smoothing)
    augment = cfg.augment if cfg.augment is not None and cfg.augment.active else None
    tta_range = cfg.tta_range()

    result = FitResult(monitor=monitor)
    best_state = None
    bad_epochs = 0
    start_epoch = 0
    ckpt_path = Path(checkpoint_path) if checkpoint_path else None
    if resume:
        if ckpt_path is None:
            raise CryomineError("resume asked for but no checkpoint path given.")
        ckpt = load_checkpoint(ckpt_path)
        old = ckpt["config"]
        new, default = cfg.as_dict(), TrainConfig().as_dict()
        keys = _RESUME_KEYS + (("epochs",) if cfg.schedule == "cosine" else ())  # the cosine spans all epochs
        changed = [k for k in keys if _plain(old.get(k, default.get(k))) != _plain(new[k])]
        if changed:
            raise CryomineError(f"{ckpt_path}: the checkpoint was made with other settings ({', '.join(changed)}: "
                                f"{[old.get(k) for k in changed]} vs {[new[k] for k in changed]}). "
                                "Resume with the same settings, or train again without --resume.")
        try:
            model.load_state_dict(ckpt["model"])
        except RuntimeError as exc:
            raise CryomineError(f"{ckpt_path}: the checkpoint holds another architecture or box ({exc}). Resume "
                                "with the same --model, box and classes, or train again without --resume.") from exc
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        best_state = ckpt["best_state"]
        result.history = list(ckpt["history"])
        result.best_epoch = int(ckpt["best_epoch"])
        result.best_score = float(ckpt["best_score"])
        bad_epochs = int(ckpt["bad_epochs"])
        start_epoch = int(ckpt["epoch"])
        result.stopped_early = bool(ckpt["stopped_early"])
        result.resumed_from_epoch = start_epoch
        _set_rng_state(ckpt["rng"])
        log.info("resuming from %s after epoch %d", ckpt_path, start_epoch)

    t_run = time.perf_counter()
    epoch_times = [h["seconds"] for h in result.history]
    for epoch in range(start_epoch, cfg.epochs):
        if result.stopped_early:
            break
        t0 = time.perf_counter()
        model.train()
        sampler.set_epoch(epoch)
        loader = _loader(train_set, cfg.batch_size, batches, cfg.workers, device, cfg.seed * 7 + epoch)
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        labelled = torch.zeros((), dtype=torch.int64, device=device)  # targets counted by the accuracy
        seen = 0
        t_log = time.perf_counter()
        for b, (x, y, _) in enumerate(loader):
            if augment is not None:
                gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch * 10_007 + b + rank * 1_000_000_007)
                x = augment_batch(x.to(device), augment, gen)
            x = prepare_input(x, device, use_cl)
            y = y.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=dtype, enabled=use_amp):
                logits = stepper(x)
            loss = criterion(logits.float(), y)
            if not torch.isfinite(loss.detach()):
                raise CryomineError(f"the training loss became {loss.item()} at epoch {epoch + 1}, batch {b + 1}; "
                                    "lower --lr or check the input volumes.")
            optimizer.zero_grad(set_to_none=True)
            weight = ranks.loss_weight(int(y.shape[0]), batches.global_sizes[b]) if world > 1 else 1.0
            scaler.scale(loss * weight).backward()
            if cfg.grad_clip:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            loss_sum += loss.detach().double() * y.shape[0]
            counted = y != criterion.ignore_index  # one per item; one per kept voxel for segmentation
            correct += ((logits.detach().argmax(1) == y) & counted).sum()
            labelled += counted.sum()
            seen += int(y.shape[0])
            now = time.perf_counter()
            if now - t_log >= cfg.log_interval_s and b + 1 < n_batches:
                rate = seen / (now - t0)
                log.info("epoch %d/%d batch %d/%d loss %.4f acc %.3f (%.1f subtomograms/s, epoch ETA %s)",
                         epoch + 1, cfg.epochs, b + 1, n_batches, float(loss_sum) / seen,
                         int(correct) / max(int(labelled), 1), rate,
                         _fmt_seconds((len(train_set) - seen) / max(rate, 1e-9)))
                t_log = now
        if world > 1:  # the epoch's figures over every process's part
            totals = torch.stack([loss_sum.cpu(), correct.double().cpu(), labelled.double().cpu(),
                                  torch.tensor(float(seen), dtype=torch.float64)])
            distributed.sum_(totals)
            loss_sum, correct, labelled, seen = totals[0], int(totals[1]), int(totals[2]), int(totals[3])
        train_loss = float(loss_sum) / max(seen, 1)
        train_acc = int(correct) / max(int(labelled), 1)
        record = {"epoch": epoch + 1, "train_loss": train_loss, "train_accuracy": train_acc,
                  "lr": float(optimizer.param_groups[0]["lr"])}
        if cfg.bn_recalibrate:
            recalibrate_batchnorm(model, train_set, device=device, batch_size=eval_bs, workers=cfg.workers,
                                  amp=use_amp, channels_last=use_cl)
        if has_val:
            logits, labels = predict_logits(model, val_set, device=device, batch_size=eval_bs, workers=cfg.workers,
                                            amp=use_amp, channels_last=use_cl, tta_range=tta_range)
            y_val = torch.as_tensor(labels)
            record["val_loss"] = float(nn.functional.cross_entropy(logits, y_val))
            counted = y_val != criterion.ignore_index
            record["val_accuracy"] = float(((logits.argmax(1) == y_val) & counted).sum() / counted.sum().clamp_min(1))
        else:
            record["val_loss"] = float("nan")
            record["val_accuracy"] = float("nan")
        record["seconds"] = time.perf_counter() - t0
        epoch_times.append(record["seconds"])
        result.history.append(record)

        key = {"val_loss": "val_loss", "val_accuracy": "val_accuracy", "train_loss": "train_loss"}[monitor]
        score = record[key] if key != "val_accuracy" else -record[key]
        if not math.isfinite(result.best_score) or score < result.best_score - 1e-12:
            result.best_score, result.best_epoch, bad_epochs = score, epoch + 1, 0
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        else:
            bad_epochs += 1
        if cfg.patience and bad_epochs >= cfg.patience and epoch + 1 < cfg.epochs:
            result.stopped_early = True
        eta = np.mean(epoch_times) * (cfg.epochs - epoch - 1) if not result.stopped_early else 0.0
        log.info("epoch %d/%d loss %.4f acc %.3f | val loss %.4f acc %.3f | lr %.3g | %.1f s | ETA %s%s",
                 epoch + 1, cfg.epochs, train_loss, train_acc, record["val_loss"], record["val_accuracy"],
                 record["lr"], record["seconds"], _fmt_seconds(eta),
                 f" | early stop: no improvement of {monitor} for {bad_epochs} epochs" if result.stopped_early else "")
        if ckpt_path is not None and distributed.is_writer():
            _save_checkpoint(ckpt_path, {
                "format": CHECKPOINT_FORMAT, "epoch": epoch + 1, "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(), "best_state": best_state, "best_epoch": result.best_epoch,
                "best_score": result.best_score, "bad_epochs": bad_epochs, "stopped_early": result.stopped_early,
                "history": result.history, "config": cfg.as_dict(), "rng": _rng_state(),
                "extra": copy.deepcopy(extra_checkpoint) if extra_checkpoint else {},
            })
        if on_epoch_end is not None:
            on_epoch_end(record)

    if world > 1:
        ranks.check_in_sync(model)
    result.epochs_run = len(result.history)
    result.seconds = float(sum(h["seconds"] for h in result.history))
    if cfg.restore_best and best_state is not None:
        model.load_state_dict(best_state)
    log.info("training done: %d epochs in %s (this run %s); best epoch %d (%s %.4f)", result.epochs_run,
             _fmt_seconds(result.seconds), _fmt_seconds(time.perf_counter() - t_run), result.best_epoch, monitor,
             abs(result.best_score) if math.isfinite(result.best_score) else float("nan"))
    with contextlib.suppress(AttributeError):
        model.to(memory_format=torch.contiguous_format)
    return result
