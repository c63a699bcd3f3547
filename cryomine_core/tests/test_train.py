"""The shared training loop: learning on easy data, resume == uninterrupted, sampler, calibration."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cryomine_core.errors import CryomineError, InputFileError
from cryomine_core.io.mrc import write_mrc
from cryomine_core.models import build_model
from cryomine_core.train import (
    ArrayDataset,
    EpochSampler,
    TrainConfig,
    VolumeDataset,
    expected_calibration_error,
    fit,
    fit_temperature,
    load_checkpoint,
    nll,
    predict_logits,
)
from cryomine_core.train.recipes import recipe_config

BOX = 12


def _shapes(n: int, noise: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three centred shapes (ball, cube, rod along z) plus Gaussian noise; labels 0, 1, 2."""
    rng = np.random.default_rng(seed)
    g = np.stack(np.meshgrid(*(np.arange(BOX) - BOX // 2,) * 3, indexing="ij")).astype(np.float32)
    r = np.sqrt((g**2).sum(0))
    shapes = [(r < 3.5), (np.abs(g).max(0) < 2.5), (np.abs(g[0]) < 5) & (np.sqrt(g[1] ** 2 + g[2] ** 2) < 1.6)]
    y = np.arange(n) % 3
    x = np.stack([shapes[c].astype(np.float32) for c in y]) + rng.normal(0, noise, (n, BOX, BOX, BOX))
    return x.astype(np.float32), y


@pytest.fixture(scope="module")
def easy():
    x, y = _shapes(96, 0.3)
    return ArrayDataset(x[:72], y[:72]), ArrayDataset(x[72:], y[72:])


def _cfg(**kw):
    base = dict(epochs=8, batch_size=8, lr=0.005, patience=0, log_interval_s=1e9)
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("name", ["dsrf3d-v2", "compact3d"])
def test_loss_falls_and_accuracy_beats_chance(easy, name):
    train, val = easy
    torch.manual_seed(0)
    # narrow variant, less dropout than published and He initialisation: the published Glorot start
    # (the default, see test_models) needs thousands of steps, not the 40 of a unit test
    net = build_model(name, 3, BOX, width=0.25, dropout=0.3, init="he")
    res = fit(net, train, val, _cfg())
    losses = [h["train_loss"] for h in res.history]
    assert min(losses[-3:]) < 0.5 * losses[0]
    logits, y = predict_logits(net, val)
    acc = float((logits.argmax(1).numpy() == y).mean())
    assert acc >= 0.8  # chance is 1/3
    assert res.best_epoch >= 1 and len(res.history) == 8


def _state_equal(a, b) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a) and a.keys() == b.keys()


def _recipe_cfg(recipe: str, **kw):
    return _cfg(**kw) if recipe == "paper" else recipe_config(recipe, log_interval_s=1e9, **kw)


@pytest.mark.parametrize("recipe", ["paper", "subtomo"])  # subtomo: augmentation and TTA draw random numbers too
def test_resume_equals_uninterrupted(easy, tmp_path, recipe):
    train, val = easy
    cfg = _recipe_cfg(recipe, epochs=4, batch_size=16, lr=0.01, balance="sample", seed=3)

    torch.manual_seed(1)
    full = build_model("compact3d", 3, BOX, width=0.25)   # batch norm + dropout: uses RNG and buffers
    ref = fit(full, train, val, cfg, checkpoint_path=tmp_path / "a.pt")

    class Stop(Exception):
        pass

    def interrupt(record):
        if record["epoch"] == 2:
            raise Stop

    torch.manual_seed(1)
    part = build_model("compact3d", 3, BOX, width=0.25)
    with pytest.raises(Stop):
        fit(part, train, val, cfg, checkpoint_path=tmp_path / "b.pt", on_epoch_end=interrupt)
    assert load_checkpoint(tmp_path / "b.pt")["epoch"] == 2
    torch.manual_seed(999)  # a different global RNG state: resume must restore its own
    resumed_net = build_model("compact3d", 3, BOX, width=0.25)
    res = fit(resumed_net, train, val, cfg, checkpoint_path=tmp_path / "b.pt", resume=True)
    assert res.resumed_from_epoch == 2
    assert _state_equal(full.state_dict(), resumed_net.state_dict())

    def strip(h):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in h]

    assert strip(ref.history) == strip(res.history)
    assert (ref.best_epoch, ref.stopped_early) == (res.best_epoch, res.stopped_early)

    with pytest.raises(CryomineError, match="other settings"):
        fit(build_model("compact3d", 3, BOX, width=0.25), train, val,
            _recipe_cfg(recipe, epochs=4, batch_size=16, lr=0.02, balance="sample", seed=3),
            checkpoint_path=tmp_path / "b.pt", resume=True)
    with pytest.raises(CryomineError, match="another architecture"):
        fit(build_model("dsrf3d-v2", 3, BOX, width=0.25), train, val, cfg, checkpoint_path=tmp_path / "b.pt",
            resume=True)


def test_early_stopping_keeps_best_epoch(easy):
    train, val = easy
    torch.manual_seed(0)
    net = build_model("compact3d", 3, BOX, width=0.25)
    res = fit(net, train, val, _cfg(epochs=30, patience=2, lr=0.05))
    assert res.stopped_early and len(res.history) < 30
    best = min(res.history, key=lambda h: h["val_loss"])
    assert res.best_epoch == best["epoch"]
    logits, y = predict_logits(net, val)
    assert nll(logits, y) == pytest.approx(best["val_loss"], rel=1e-4)  # the best weights were restored


def test_sampler_deterministic_and_balanced():
    labels = np.array([0] * 90 + [1] * 10)
    s = EpochSampler(labels, seed=5)
    s.set_epoch(3)
    a = s.indices()
    s.set_epoch(4)
    assert s.indices() != a
    s.set_epoch(3)
    assert s.indices() == a and sorted(a) == list(range(100))
    b = EpochSampler(labels, seed=5, balance=True)
    draws = np.concatenate([labels[(b.set_epoch(e), b.indices())[1]] for e in range(20)])
    assert 0.4 < draws.mean() < 0.6  # the 10 % class is drawn half of the time


def test_temperature_scaling_lowers_heldout_nll():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 1.5, (4000, 5))
    p = np.exp(true_logits) / np.exp(true_logits).sum(1, keepdims=True)
    y = np.array([rng.choice(5, p=row) for row in p])
    over = 4.0 * true_logits  # an overconfident network
    t = fit_temperature(over[:2000], y[:2000])
    assert 3.0 < t < 5.0
    assert nll(over[2000:], y[2000:], t) < nll(over[2000:], y[2000:]) - 0.1
    calib = torch.softmax(torch.as_tensor(over[2000:]) / t, 1)
    raw = torch.softmax(torch.as_tensor(over[2000:]), 1)
    assert expected_calibration_error(calib, y[2000:]) < expected_calibration_error(raw, y[2000:])


def test_volume_dataset_streams_mrc_and_refuses_nan(tmp_path):
    x, y = _shapes(4, 0.1)
    paths = []
    for i, v in enumerate(x):
        paths.append(tmp_path / f"v{i}.mrc")
        write_mrc(paths[-1], v * 5 + 2, 10.0)
    ds = VolumeDataset(paths, y, box=(BOX,) * 3)
    vol, label, idx = ds[1]
    assert vol.shape == (1, BOX, BOX, BOX) and label == y[1] and idx == 1
    assert abs(float(vol.mean())) < 1e-4 and float(vol.std()) == pytest.approx(1.0, rel=1e-3)
    bad = x[0].copy()
    bad[3, 3, 3] = np.nan
    write_mrc(tmp_path / "nan.mrc", bad, 10.0)
    with pytest.raises(InputFileError, match="nan.mrc.*NaN"):
        VolumeDataset([tmp_path / "nan.mrc"])[0]
    with pytest.raises(InputFileError, match="box"):
        VolumeDataset(paths, box=(16, 16, 16))[0]


def test_gradient_clipping_limits_the_step(easy):
    train, _ = easy
    moved = {}
    for clip in (None, 1e-6):
        torch.manual_seed(0)
        net = build_model("dsrf3d-v2", 3, BOX, width=0.25)
        before = torch.cat([p.detach().flatten().clone() for p in net.parameters()])
        fit(net, train, None, _cfg(epochs=1, grad_clip=clip, momentum=0.0, nesterov=False, restore_best=False))
        moved[clip] = float((torch.cat([p.detach().flatten() for p in net.parameters()]) - before).norm())
    steps = -(-len(train) // 8)
    assert moved[1e-6] <= 0.005 * 1e-6 * steps * 1.01  # lr x clip per step, at most
    assert moved[None] > 100 * moved[1e-6]


def test_config_validation():
    with pytest.raises(CryomineError, match="batch size"):
        TrainConfig(batch_size=0).validate()
    with pytest.raises(CryomineError, match="balance"):
        TrainConfig(balance="oversample").validate()
    d = TrainConfig()
    assert (d.lr, d.momentum, d.nesterov, d.lr_decay, d.batch_size, d.epochs, d.patience) == \
        (0.005, 0.9, True, 1e-7, 64, 20, 5)


def test_voxel_accuracy_counts_labelled_voxels_only():
    """Dense targets (segmentation): accuracy is a fraction of the kept voxels, never above 1."""
    from torch import nn

    from cryomine_core.train import TrainConfig, fit

    class Dense(torch.utils.data.Dataset):
        labels = np.zeros(8, dtype=np.int64)  # per-item labels for the sampler, as segmentation's datasets have

        def __len__(self):
            return 8

        def __getitem__(self, i):
            x = torch.zeros(1, 4, 4, 4)
            y = torch.full((4, 4, 4), -100, dtype=torch.int64)
            y[:2] = i % 2
            return x, y, i

    net = nn.Sequential(nn.Conv3d(1, 2, 1))
    res = fit(net, Dense(), Dense(), TrainConfig(epochs=1, batch_size=4, log_interval_s=1e9, bn_recalibrate=False),
              n_classes=2)
    for key in ("train_accuracy", "val_accuracy"):
        assert 0.0 <= res.history[0][key] <= 1.0
    # a constant prediction is right on exactly half of the labelled voxels (the two classes are equal)
    assert res.history[0]["val_accuracy"] == pytest.approx(0.5)
