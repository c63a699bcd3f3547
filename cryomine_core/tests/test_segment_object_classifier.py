"""The segmentation object classifier trains with the classifier's recipe and predicts the same way."""

import numpy as np
import pandas as pd
import pytest
import torch

from cryomine_core.classify.model_file import load_classifier
from cryomine_core.io import table as T
from cryomine_core.io.mrc import write_mrc
from cryomine_core.segment.object_classifier import classify_objects, train_object_classifier

SHAPE = (16, 72, 72)


def _tomogram(seed: int):
    """Balls (class 0) and rods along x (class 1) on a grid, in white noise; (volume, centres xyz, labels)."""
    rng = np.random.default_rng(seed)
    vol = rng.normal(0.0, 0.6, SHAPE).astype(np.float32)
    z, y, x = np.mgrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    centres, labels = [], []
    for cy in range(6, SHAPE[1] - 5, 12):
        for cx in range(6, SHAPE[2] - 5, 12):
            k = int(rng.integers(2))
            cz = SHAPE[0] // 2
            if k == 0:
                body = (z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2 <= 9
            else:
                body = ((z - cz) ** 2 + (y - cy) ** 2 <= 2) & (np.abs(x - cx) <= 4)
            vol[body] += 2.0
            centres.append((cx, cy, cz))
            labels.append(k)
    return vol, np.array(centres, dtype=float), np.array(labels)


@pytest.mark.slow
def test_object_classifier_recipe_round_trip(tmp_path):
    torch.manual_seed(0)
    train = [_tomogram(seed) for seed in (0, 2, 3)]
    out = tmp_path / "clf.pt"
    summary = train_object_classifier(*([t[i] for t in train] for i in range(3)), ["ball", "rod"], out, box=12,
                                      voxel_size=10.0, epochs=10, width=0.25, seed=0)
    assert summary["recipe"] == "subtomo" and summary["val_accuracy"] is not None
    _, meta = load_classifier(out)
    assert meta["normalise"] == "zscore" and list(meta["tta_range"]) == [-60.0, 60.0]

    test_vol, test_centres, test_labels = _tomogram(1)  # new noise and a new class layout
    path = write_mrc(tmp_path / "t1.mrc", test_vol, 10.0)
    table = pd.DataFrame({T.TOMO_FILE: str(path), T.CLASS_NAME: "object", T.CLASS: 1,
                          **{c: test_centres[:, i] for i, c in enumerate(T.COORDS)}})
    done = classify_objects(table, out, device="cpu")
    predicted = done[T.CLASS_NAME].map({"ball": 0, "rod": 1}).to_numpy()
    assert (predicted == test_labels).mean() >= 0.9
    assert (done["cmVoxelClassName"] == "object").all() and done["cmScore"].between(0, 1).all()
