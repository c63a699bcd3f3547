"""Training shared by CryoMine's networks: datasets, the loop, checkpoints, calibration, figures.

- :mod:`.data`: :class:`VolumeDataset` (memory-mapped MRC files), :class:`ArrayDataset`,
  :class:`EpochSampler` (resumable order, optional class balancing).
- :mod:`.loop`: :class:`TrainConfig` (Che et al. 2018 defaults), :func:`fit`, :func:`predict_logits`
  (optionally with test-time augmentation), :func:`recalibrate_batchnorm`.
- :mod:`.augment`: augmentation that keeps the missing wedge; the wedge-preserving rotations.
- :mod:`.recipes`: named settings, ``subtomo`` (CryoMine's default for classifiers) and ``paper``.
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
