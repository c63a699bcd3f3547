"""The trained-classifier file (``model.pt``): everything needed to predict, nothing of the trainer.

A ``torch.save`` dict of plain values and tensors (loaded with ``weights_only=True``, so no code
runs on load):

====================  ==============================================================
key                   value
====================  ==============================================================
``format``            ``"cryomine-classifier"``
``format_version``    ``1``
``architecture``      registry name (``dsrf3d-v2``, ``dsrf3d``, ``rb3d``, ``cb3d``, ``compact3d``)
``build_args``        arguments of :func:`~cryomine_core.models.build_model` (n_classes, box, width, ...)
``box``               ``[z, y, x]`` voxels of the training subtomograms
``voxel_size``        Å per voxel of the training subtomograms
``class_names``       class names in model order
``class_numbers``     the training table's ``rlnClassNumber`` of each class (model order)
``temperature``       temperature-scaling factor (calibrated probabilities: softmax(logits / T))
``normalise``         per-volume input normalisation (``"zscore"``)
``tta_range``         ``[tilt_min, tilt_max]`` degrees: predict with test-time augmentation over the
                      wedge-preserving rotations of that range; absent or None: plain prediction
``state_dict``        the network's weights
``training``          summary: epochs, best epoch, accuracies, settings, dates
====================  ==============================================================
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from cryomine_core.errors import InputFileError
from cryomine_core.io.atomic import atomic_path
from cryomine_core.io.torch_file import load_torch_file
from cryomine_core.models import MODELS, build_model, canonical_name
from cryomine_core.models.common import SubtomogramNet

FORMAT = "cryomine-classifier"
FORMAT_VERSION = 1
_REQUIRED = ("architecture", "build_args", "box", "voxel_size", "class_names", "temperature", "state_dict")


def save_classifier(path: str | os.PathLike, model: SubtomogramNet, *, voxel_size: float, class_names: list[str],
                    class_numbers: list[int], temperature: float, normalise: str = "zscore",
                    tta_range: tuple[float, float] | None = None, training: dict | None = None) -> Path:
    """Write ``model.pt`` atomically."""
    payload = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "architecture": model.arch,
        "build_args": dict(model.build_args), "box": list(model.box), "voxel_size": float(voxel_size),
        "class_names": [str(c) for c in class_names], "class_numbers": [int(n) for n in class_numbers],
        "temperature": float(temperature), "normalise": normalise,
        "tta_range": None if tta_range is None else [float(tta_range[0]), float(tta_range[1])],
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "training": training or {},
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def read_classifier_file(path: str | os.PathLike) -> dict:
    """Read and check a ``model.pt`` (without building the network)."""
    path = Path(path)
    payload = load_torch_file(path, "model file", "Give the model.pt written by 'cryomine classify train' (copy it "
                              "again or retrain).")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        hint = " (this is a training checkpoint; give model.pt from the same folder)" if isinstance(payload, dict) \
            and str(payload.get("format", "")).startswith("cryomine-checkpoint") else ""
        raise InputFileError(f"{path}: not a CryoMine classifier file{hint}. Give the model.pt written by "
                             "'cryomine classify train'.")
    if int(payload.get("format_version", 0)) > FORMAT_VERSION:
        raise InputFileError(f"{path}: model file version {payload.get('format_version')} is newer than this CryoMine "
                             f"reads ({FORMAT_VERSION}); update CryoMine.")
    missing = [k for k in _REQUIRED if k not in payload]
    if missing:
        raise InputFileError(f"{path}: model file lacks {missing}; it is incomplete or corrupt. Retrain.")
    return payload


def load_classifier(path: str | os.PathLike, device: torch.device | str = "cpu") -> tuple[SubtomogramNet, dict]:
    """Rebuild the network of ``model.pt`` with its weights; return ``(model in eval mode, metadata)``."""
    payload = read_classifier_file(path)
    arch = str(payload["architecture"])
    if arch.lower().replace("_", "-") not in MODELS:
        raise InputFileError(f"{path}: architecture '{arch}' is unknown to this CryoMine ({', '.join(MODELS)}).")
    args = dict(payload["build_args"])
    n_classes, box = args.pop("n_classes"), args.pop("box")
    if int(n_classes) != len(payload["class_names"]):
        raise InputFileError(f"{path}: {n_classes} network outputs but {len(payload['class_names'])} class names; "
                             "the file is inconsistent. Retrain.")
    try:
        model = build_model(canonical_name(arch), n_classes, box, **args)
        model.load_state_dict(payload["state_dict"])
    except (RuntimeError, KeyError, TypeError) as exc:
        raise InputFileError(f"{path}: the weights do not fit architecture '{arch}' (box {box}, {n_classes} classes): "
                             f"{str(exc).splitlines()[0]} The file was written for another architecture or is corrupt; "
                             "retrain or give the matching model.pt.") from exc
    model.to(device).eval()
    meta = {k: v for k, v in payload.items() if k != "state_dict"}
    return model, meta
