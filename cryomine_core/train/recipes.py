"""Training recipes: named sets of :class:`~cryomine_core.train.loop.TrainConfig` defaults.

``subtomo`` (CryoMine's default for every architecture) is made for a few hundred labelled
subtomograms per class:

- augmentation that keeps the missing wedge (:mod:`.augment`): the exact wedge-preserving
  180-degree rotations, +-1 voxel shifts, contrast and noise jitter;
- AdamW (lr 3e-3, weight decay 0.05 on weights only), one warm-up epoch, cosine decay to zero;
- label smoothing 0.1;
- test-time augmentation over the wedge-preserving group at validation and prediction;
- per-subtomogram z-score (:func:`recipe_normalisation`); spectral whitening before it
  (:mod:`cryomine_core.fourier.whitening`, ``--normalise whiten``) is an option, recorded in the
  model file like the default;
- batch 32, 40 epochs, best epoch kept by validation accuracy, no early stop (the cosine
  schedule needs its last epochs).

``paper`` is Che et al. 2018's recipe unchanged: SGD with Nesterov momentum 0.9, lr 0.005,
Keras decay 1e-7, batch 64, 20 epochs, early stop after 5 epochs without validation-loss
improvement, no augmentation.

How the ``subtomo`` settings were chosen (CPU, compact3d width 0.5, 24^3 at 16 Å, SNR 0.1, +-60;
6 complexes 1bxn 1f4a 1u6g 2cg9 3cf3 3d2f, 150 per class for training, 30 for validation, a test
set of 50 per class simulated with other defoci (3-6 um), another tilt step (3) and weighted
back-projection; RIF-SVM on the same split 0.847): lr 1e-3 with any-angle z rotations 0.803 test
accuracy; lr 3e-3 with z rotations 0.807; lr 3e-3 with only the exact wedge-preserving rotations
0.837 (and cheaper); uniform SO(3) rotations learned slower than z (0.71 against 0.76 validation
accuracy at epoch 10-11; stopped). Test-time augmentation added 0.02-0.05 in each run. The paper's
recipe on the same data: 0.33. These complexes and this voxel size are kept out of
``benchmarks/learning_curve.py``.

Whitening was tried **after seeing a test result** and is an option, not the default: in the
learning curve's cell +-60 / SNR 0.1 (held-out complexes, seed 0, 150 per class, 20 epochs)
compact3d with the z-score alone reached 0.50-0.65 validation and 0.47-0.55 test accuracy over
epochs 1-9 while its augmented training accuracy rose to 0.78; with whitening, 0.76 test accuracy
at epoch 8 and 0.833 at epoch 20 (RIF-SVM 0.830). Its reason: at SNR 0.1 a subtomogram's power
spectrum is mostly its acquisition's noise spectrum, which differs between the training and test
acquisitions. But on the design set above (12 epochs) it changed nothing (0.753 with, 0.750
without); in the whole ``--learning-curve --small`` (seed 0) it raised the 150-per-class points
(8 epochs) from 0.48-0.53 to 0.66-0.72 and moved the 25-50-per-class points by -0.06..+0.03; and
at high SNR it hurt: the Scipion subdivision workflow test (phantoms, SNR 2) fell from ARI > 0.8
to 0.61 with whitened CNN features, because whitening gives the noise-only outer shells the
weight of the signal-rich inner ones.
"""

from __future__ import annotations

from dataclasses import replace

from cryomine_core.errors import CryomineError
from cryomine_core.train.augment import AugmentConfig
from cryomine_core.train.loop import TrainConfig

__all__ = ["DEFAULT_RECIPE", "RECIPES", "recipe_config", "recipe_normalisation"]

RECIPES = ("subtomo", "paper")
DEFAULT_RECIPE = "subtomo"
#: input normalisation of each recipe (:func:`cryomine_core.train.data.normalise_volume`)
_NORMALISATION = {"subtomo": "zscore", "paper": "zscore"}


def recipe_normalisation(recipe: str = DEFAULT_RECIPE) -> str:
    """The per-subtomogram input normalisation of ``recipe``: ``'zscore'`` for both (spectral
    whitening, ``'whiten'``, is an option; see the module docstring for why it is not the default)."""
    if recipe not in _NORMALISATION:
        raise CryomineError(f"unknown training recipe '{recipe}'; use one of {', '.join(RECIPES)}.")
    return _NORMALISATION[recipe]


def recipe_config(recipe: str = DEFAULT_RECIPE, *, tilt_range: tuple[float, float] = (-60.0, 60.0),
                  **overrides) -> TrainConfig:
    """The :class:`TrainConfig` of ``recipe`` with ``overrides`` (TrainConfig fields; None = keep).

    ``tilt_range`` (degrees) is the data set's wedge, used by the augmentation and the test-time
    augmentation of ``subtomo``.
    """
    if recipe == "paper":
        cfg = TrainConfig(recipe="paper")
    elif recipe == "subtomo":
        cfg = TrainConfig(recipe="subtomo", epochs=40, batch_size=32, lr=3e-3, optimizer="adamw", weight_decay=0.05,
                          schedule="cosine", warmup_epochs=1.0, label_smoothing=0.1, patience=0,
                          monitor="val_accuracy", tta=True,
                          augment=AugmentConfig(group="wedge", max_shift=1, contrast=0.1, noise=0.2,
                                                tilt_range=(float(tilt_range[0]), float(tilt_range[1]))))
    else:
        raise CryomineError(f"unknown training recipe '{recipe}'; use one of {', '.join(RECIPES)}.")
    return replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
