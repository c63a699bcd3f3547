"""``cryomine classify``: supervised CNN classification of subtomograms (Che et al. 2018).

    cryomine classify train   --in labelled.star --out DIR [--model dsrf3d-v2] [...]
    cryomine classify predict --in particles.star --model DIR/model.pt --out DIR2 [...]
    cryomine classify models  [--box 40] [--classes 23]
"""

from __future__ import annotations

import json

from cryomine_core.cli import add_device_argument


def _bool_mode(value: str):
    v = value.strip().lower()
    if v == "auto":
        return "auto"
    if v in ("on", "true", "1", "yes"):
        return True
    if v in ("off", "false", "0", "no"):
        return False
    raise ValueError(value)


def register(sub) -> None:
    from cryomine_core.classify.labels import MIN_PER_CLASS
    from cryomine_core.models import DEFAULT_MODEL, model_names
    from cryomine_core.train.augment import AUGMENT_GROUPS
    from cryomine_core.train.data import NORMALISATIONS
    from cryomine_core.train.loop import OPTIMIZERS, SCHEDULES
    from cryomine_core.train.recipes import DEFAULT_RECIPE, RECIPES

    p = sub.add_parser("classify", help="train / apply CNN classifiers of subtomograms", description=__doc__)
    csub = p.add_subparsers(dest="classify_command", metavar="ACTION")
    csub.required = True

    t = csub.add_parser("train", help="train a classifier on a labelled particle table",
                        description="Train a CNN on labelled subtomograms (labels: rlnClassNumber and/or "
                                    "cmClassName). Defaults follow Che et al. 2018. Writes model.pt, checkpoint.pt, "
                                    "metrics.json, split.star, training_curves.png, confusion.png.")
    t.add_argument("--in", dest="table", required=True, help="labelled particle table (STAR)")
    t.add_argument("--out", required=True, help="output folder")
    t.add_argument("--model", default=DEFAULT_MODEL, help=f"architecture: {', '.join(model_names())} "
                   f"(default: {DEFAULT_MODEL})")
    t.add_argument("--width", type=float, default=1.0,
                   help="channel/FC width multiplier (1 = published network; e.g. 0.25 for a fast narrow variant)")
    t.add_argument("--recipe", choices=list(RECIPES), default=DEFAULT_RECIPE,
                   help="training recipe: 'subtomo' (default: wedge-preserving augmentation, AdamW with warm-up and "
                        "cosine decay, label smoothing 0.1, test-time augmentation, 40 epochs, batch 32) or 'paper' "
                        "(Che et al. 2018: SGD with Nesterov momentum, lr 0.005, batch 64, 20 epochs, early stop after "
                        "5, no augmentation). The options below override single settings of the recipe.")
    t.add_argument("--epochs", type=int, default=None, help="most epochs (subtomo 40, paper 20)")
    t.add_argument("--batch-size", type=int, default=None, help="subtomograms per step (subtomo 32, paper 64)")
    t.add_argument("--lr", type=float, default=None, help="peak learning rate (subtomo 0.003, paper 0.005)")
    t.add_argument("--optimizer", choices=list(OPTIMIZERS), default=None, help="subtomo adamw, paper sgd")
    t.add_argument("--schedule", choices=list(SCHEDULES), default=None,
                   help="learning-rate schedule: cosine (subtomo; decays to 0 at the last epoch after --warmup-epochs) "
                        "or inverse-time (paper; lr/(1+decay*step))")
    t.add_argument("--warmup-epochs", type=float, default=None, help="linear warm-up of the cosine schedule (1)")
    t.add_argument("--label-smoothing", type=float, default=None, help="cross-entropy label smoothing (subtomo 0.1)")
    t.add_argument("--augment", choices=list(AUGMENT_GROUPS), default=None,
                   help="rotations of the augmentation: 'wedge' (subtomo default: the exact 180-degree rotations that "
                        "keep the missing wedge), 'z' (any angle about the beam axis, the particle's wedge "
                        "re-imposed, plus 'wedge'), 'so3' (any rotation, wedge re-imposed) or 'none' (paper: no "
                        "augmentation at all). Shifts of +-1 voxel and contrast/noise jitter come with any choice "
                        "but 'none'")
    t.add_argument("--tta", choices=["on", "off"], default=None,
                   help="test-time augmentation over the wedge-preserving rotations at validation and prediction: "
                        "on (subtomo) or off (paper)")
    t.add_argument("--tilt-range", type=float, nargs=2, metavar=("MIN", "MAX"), default=None,
                   help="tilt range (degrees) of the subtomograms' missing wedge for the augmentation, when the table "
                        "has no cmTiltMin/cmTiltMax columns (default -60 60)")
    t.add_argument("--normalise", choices=list(NORMALISATIONS), default=None,
                   help="input normalisation of every subtomogram, recorded in model.pt and repeated at prediction: "
                        "'zscore' (default: zero mean and unit variance), 'whiten' (flatten each subtomogram's radial "
                        "power spectrum first: less sensitive to the acquisition's noise spectrum (defocus, WBP or "
                        "Fourier reconstruction) at SNR ~0.1, but harmful at high SNR) or 'none'")
    t.add_argument("--momentum", type=float, default=None, help="SGD momentum (paper 0.9)")
    t.add_argument("--no-nesterov", dest="nesterov", action="store_false", default=None,
                   help="plain instead of Nesterov momentum (SGD)")
    t.add_argument("--lr-decay", type=float, default=None,
                   help="Keras-style learning-rate decay per step of the inverse-time schedule (paper 1e-7)")
    t.add_argument("--weight-decay", type=float, default=None, help="weight decay (subtomo 0.05 with AdamW; paper 0)")
    t.add_argument("--patience", type=int, default=None,
                   help="early stop after this many epochs without improvement of --monitor (0: off; subtomo 0, "
                        "paper 5)")
    t.add_argument("--grad-clip", type=float, default=None,
                   help="clip the gradient norm to this value (default: off)")
    t.add_argument("--monitor", choices=["val_loss", "val_accuracy"], default=None,
                   help="quantity for early stopping and the choice of the kept epoch (subtomo val_accuracy, paper "
                        "val_loss)")
    t.add_argument("--test-fraction", type=float, default=0.2, help="fraction per class held out for test (0.2)")
    t.add_argument("--val-fraction", type=float, default=0.2,
                   help="fraction of the remaining training items per class held for validation (0.2)")
    t.add_argument("--min-per-class", type=int, default=MIN_PER_CLASS,
                   help=f"refuse classes with fewer examples (default {MIN_PER_CLASS})")
    t.add_argument("--balance", nargs="?", const="loss", default=None, choices=["none", "loss", "sample"],
                   help="class balancing: 'loss' (inverse-frequency class weights; the default when the flag is "
                        "given alone), 'sample' (draw classes equally often) or 'none' (default)")
    t.add_argument("--seed", type=int, default=0, help="random seed (split, initialisation, sampling)")
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    t.add_argument("--workers", type=int, default=0, help="data-loading worker processes (default 0)")
    t.add_argument("--amp", type=_bool_mode, default="auto", help="mixed precision: auto (on with CUDA), on, off")
    t.add_argument("--channels-last", type=_bool_mode, default="auto",
                   help="channels-last memory layout: auto (on with CUDA), on, off")
    t.add_argument("--no-check-finite", dest="check_finite", action="store_false",
                   help="skip the NaN/inf scan of all volumes before training")
    t.add_argument("--log-interval", type=float, default=None, help="seconds between in-epoch progress lines (30)")
    add_device_argument(t)
    t.set_defaults(func=run_train)

    q = csub.add_parser("predict", help="classify a particle table with a trained model",
                        description="Writes OUT/particles.star (rlnClassNumber 1-based in the model's class order, "
                                    "0 = unknown; cmClassName; cmScore = calibrated confidence; cmProb1..cmProbC) "
                                    "and OUT/metrics.json.")
    q.add_argument("--in", dest="table", required=True, help="particle table (STAR) of subtomograms")
    q.add_argument("--model", required=True, help="model.pt written by 'cryomine classify train'")
    q.add_argument("--out", required=True, help="output folder")
    q.add_argument("--batch-size", type=int, default=256, help="subtomograms per batch (default 256)")
    q.add_argument("--unknown-threshold", type=float, default=None, metavar="P",
                   help="label items whose calibrated confidence is below P as class 0, 'unknown' (default: off)")
    q.add_argument("--workers", type=int, default=0, help="data-loading worker processes (default 0)")
    q.add_argument("--amp", type=_bool_mode, default="auto", help="mixed precision: auto (on with CUDA), on, off")
    add_device_argument(q)
    q.set_defaults(func=run_predict)

    m = csub.add_parser("models", help="list the architectures with their parameter counts")
    m.add_argument("--box", type=int, default=40, help="box edge (default 40)")
    m.add_argument("--classes", type=int, default=23, help="number of classes (default 23)")
    m.add_argument("--width", type=float, default=1.0, help="width multiplier (default 1)")
    m.set_defaults(func=run_models)


def run_train(args) -> int:
    from cryomine_core.classify import train_classifier

    overrides = {k: getattr(args, k) for k in (
        "epochs", "batch_size", "lr", "momentum", "nesterov", "lr_decay", "weight_decay", "patience", "monitor",
        "balance", "seed", "workers", "amp", "channels_last", "grad_clip", "optimizer", "schedule", "warmup_epochs",
        "label_smoothing", "tta")}
    overrides["log_interval_s"] = args.log_interval
    overrides["tta"] = None if args.tta is None else args.tta == "on"
    metrics = train_classifier(args.table, args.out, model=args.model, recipe=args.recipe, overrides=overrides,
                               augment=args.augment, tilt_range=args.tilt_range, normalise=args.normalise,
                               width=args.width,
                               test_fraction=args.test_fraction, val_fraction=args.val_fraction,
                               min_per_class=args.min_per_class, device=args.device, resume=args.resume,
                               check_finite=args.check_finite)
    from cryomine_core.distributed import is_writer

    if not is_writer():  # under torchrun only rank 0 reports (and writes)
        return 0
    print(json.dumps({k: metrics[k] for k in ("model", "recipe", "box", "voxel_size", "class_names", "epochs_run",
                                              "best_epoch", "val_accuracy", "test_accuracy", "temperature")}))
    return 0


def run_predict(args) -> int:
    from cryomine_core.classify import predict_table

    metrics = predict_table(args.table, args.model, args.out, batch_size=args.batch_size,
                            unknown_threshold=args.unknown_threshold, device=args.device, workers=args.workers,
                            amp=args.amp)
    if "counts" in metrics:  # under torchrun only rank 0 has the result
        print(json.dumps({k: metrics[k] for k in ("n", "counts", "n_unknown", "subtomograms_per_s")}))
    return 0


def run_models(args) -> int:
    import torch

    from cryomine_core.models import build_model, count_parameters, model_names

    rows = []
    for name in model_names():
        with torch.device("meta"):
            net = build_model(name, args.classes, args.box, width=args.width)
        rows.append({"model": name, "parameters": count_parameters(net), "min_box": net.min_box,
                     "feature_shape": list(net.feature_shape)})
        print(f"{name:10s} {count_parameters(net) / 1e6:9.2f} M parameters  features {tuple(net.feature_shape)}")
    print(json.dumps(rows))
    return 0
