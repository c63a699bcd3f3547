"""Training shared by CryoMine's networks: datasets, the loop, checkpoints, calibration, figures.

- :mod:`.data`: :class:`VolumeDataset` (memory-mapped MRC files), :class:`ArrayDataset`,
  :class:`EpochSampler` (resumable order, optional class balancing).
- :mod:`.loop`: :class:`TrainConfig` (Che et al. 2018 defaults), :func:`fit`, :func:`predict_logits`.
- :mod:`.calibration`: temperature scaling.
- :mod:`.metrics`, :mod:`.plots`: confusion matrices, training curves.
"""

from cryomine_core.train.calibration import expected_calibration_error, fit_temperature, nll
from cryomine_core.train.data import ArrayDataset, EpochSampler, VolumeDataset, normalise_volume
from cryomine_core.train.loop import FitResult, TrainConfig, fit, load_checkpoint, predict_logits, recalibrate_batchnorm
from cryomine_core.train.metrics import accuracy, confusion_matrix, confusion_summary

__all__ = ["ArrayDataset", "EpochSampler", "FitResult", "TrainConfig", "VolumeDataset", "accuracy",
           "confusion_matrix", "confusion_summary", "expected_calibration_error", "fit", "fit_temperature",
           "load_checkpoint", "nll", "normalise_volume", "predict_logits", "recalibrate_batchnorm"]
