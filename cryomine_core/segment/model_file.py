"""The trained-segmenter file (``model.pt``): a ``torch.save`` dict of plain values and tensors
(loaded with ``weights_only=True``).

=====================  =============================================================
key                    value
=====================  =============================================================
``format``             ``"cryomine-segmenter"``
``format_version``     ``1``
``architecture``       ``"unet3d"``
``build_args``         ``n_classes``, ``base``, ``depth``, ``convs``
``class_values``       label-map value of each network class (index 0 = background 0)
``class_names``        name of each network class
``object_classes``     network class indices that form objects (the others, e.g. membrane, are
                       segmented but not grouped)
``expected_voxels``    typical object volume (voxels) per object class, from the training labels
``voxel_size``         Å per voxel of the training tomograms
``state_dict``         the weights
``training``           summary (epochs, Dice on the validation boxes, settings)
=====================  =============================================================
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from cryomine_core.errors import InputFileError
from cryomine_core.io.atomic import atomic_path
from cryomine_core.io.torch_file import load_torch_file
from cryomine_core.segment.network import UNet3D, build_unet

FORMAT = "cryomine-segmenter"
FORMAT_VERSION = 1
_REQUIRED = ("architecture", "build_args", "class_values", "class_names", "object_classes", "voxel_size",
             "state_dict")


def save_segmenter(path: str | os.PathLike, model: UNet3D, *, class_values: list[int], class_names: list[str],
                   object_classes: list[int], expected_voxels: dict, voxel_size: float,
                   training: dict | None = None) -> Path:
    """Write ``model.pt`` atomically."""
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "architecture": model.arch,
               "build_args": dict(model.build_args), "class_values": [int(v) for v in class_values],
               "class_names": [str(n) for n in class_names], "object_classes": [int(c) for c in object_classes],
               "expected_voxels": {str(k): float(v) for k, v in expected_voxels.items()},
               "voxel_size": float(voxel_size),
               "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
               "training": training or {}}
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_segmenter(path: str | os.PathLike, device: torch.device | str = "cpu") -> tuple[UNet3D, dict]:
    """Rebuild the network of ``model.pt``; returns ``(model in eval mode, metadata without weights)``."""
    path = Path(path)
    payload = load_torch_file(path, "model file", "Give the model.pt written by 'cryomine segment train' (copy it "
                              "again or retrain).")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise InputFileError(f"{path}: not a CryoMine segmenter file. Give the model.pt written by 'cryomine segment "
                             "train' (not a checkpoint.pt or a classifier).")
    if int(payload.get("format_version", 0)) > FORMAT_VERSION:
        raise InputFileError(f"{path}: segmenter file version {payload.get('format_version')} is newer than this "
                             "CryoMine reads; update CryoMine.")
    missing = [k for k in _REQUIRED if k not in payload]
    if missing:
        raise InputFileError(f"{path}: model file lacks {missing}; it is incomplete or corrupt. Retrain.")
    args = dict(payload["build_args"])
    try:
        model = build_unet(args.pop("n_classes"), **args)
        model.load_state_dict(payload["state_dict"])
    except (RuntimeError, KeyError, TypeError, ValueError) as exc:
        raise InputFileError(f"{path}: the weights do not fit the stored architecture ({str(exc).splitlines()[0]}); "
                             "the file is corrupt. Retrain.") from exc
    model.to(device).eval()
    meta = {k: v for k, v in payload.items() if k != "state_dict"}
    meta["expected_voxels"] = {int(k): float(v) for k, v in meta.get("expected_voxels", {}).items()}
    return model, meta
