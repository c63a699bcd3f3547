"""Wedge-respecting augmentation, test-time augmentation and the subtomogram training recipe."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cryomine_core.errors import CryomineError
from cryomine_core.fourier.wedge import missing_wedge_mask
from cryomine_core.models import build_model
from cryomine_core.train import ArrayDataset, fit, predict_logits
from cryomine_core.train.augment import AugmentConfig, augment_batch, group_transforms, reverse_axes, wedge_group
from cryomine_core.train.recipes import recipe_config

BOX = 16


def _wedged_noise(n: int, tilt: tuple[float, float], seed: int = 0) -> torch.Tensor:
    """White noise with the wedge of ``tilt`` imposed: its Fourier support is exactly the observed region."""
    x = torch.randn((n, 1, BOX, BOX, BOX), generator=torch.Generator().manual_seed(seed))
    mask = missing_wedge_mask((BOX,) * 3, *tilt)
    return torch.fft.irfftn(torch.fft.rfftn(x, dim=(-3, -2, -1)) * mask, s=(BOX,) * 3, dim=(-3, -2, -1))


def _support(x: torch.Tensor) -> torch.Tensor:
    """Fourier voxels carrying power, ``(..., D, H, W // 2 + 1)`` bool."""
    p = torch.fft.rfftn(x, dim=(-3, -2, -1)).abs() ** 2
    return p > 1e-6 * p.amax(dim=(-3, -2, -1), keepdim=True)


@pytest.mark.parametrize("tilt", [(-60.0, 60.0), (-40.0, 40.0), (-50.0, 60.0)])
def test_wedge_group_keeps_the_missing_wedge(tilt):
    x = _wedged_noise(2, tilt)
    mask = missing_wedge_mask((BOX,) * 3, *tilt).bool()
    assert torch.equal(_support(x[0, 0]), mask)
    group = wedge_group(tilt)
    assert len(group) == (4 if tilt[0] == -tilt[1] else 2)
    for axes in group:
        y = reverse_axes(x, axes)
        assert torch.equal(_support(y[0, 0]), mask), f"{axes} changed the wedge of {tilt}"
    # a rotation that is not in the group (90 degrees about z) does change it
    turned = torch.rot90(x, 1, dims=(-2, -1))
    assert not torch.equal(_support(turned[0, 0]), mask)


def test_reverse_axes_is_a_rotation_about_the_box_centre():
    x = torch.zeros((1, 1, BOX, BOX, BOX))
    c = BOX // 2
    x[0, 0, c + 2, c - 1, c + 3] = 1.0           # z, y, x offsets (+2, -1, +3) from the centre
    y = reverse_axes(x, (-3, -1))                 # 180 degrees about y: z -> -z, x -> -x
    assert y[0, 0, c - 2, c - 1, c - 3] == 1.0
    assert y.sum() == 1.0
    assert torch.equal(reverse_axes(y, (-3, -1)), x)  # an involution


@pytest.mark.parametrize("group", ["wedge", "z", "so3"])
def test_augmented_particle_keeps_at_least_its_wedge(group):
    tilt = (-60.0, 60.0)
    x = _wedged_noise(4, tilt, seed=1)
    cfg = AugmentConfig(group=group, max_shift=1, contrast=0.1, noise=0.3, tilt_range=tilt)
    out = augment_batch(x, cfg, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    missing = ~missing_wedge_mask((BOX,) * 3, *tilt).bool()
    spectrum = torch.fft.rfftn(out[:, 0], dim=(-3, -2, -1)).abs() ** 2
    leaked = spectrum[:, missing].sum() / spectrum.sum()
    assert leaked < 1e-8, f"{group}: {float(leaked):.2e} of the power lies in the missing wedge"
    # normalised and actually changed
    assert torch.allclose(out.mean(dim=(-3, -2, -1)), torch.zeros(4, 1), atol=1e-4)
    assert not torch.allclose(out, (x - x.mean()) / x.std(), atol=1e-2)


def test_wedge_group_augmentation_keeps_the_wedge_exactly():
    tilt = (-45.0, 45.0)
    x = _wedged_noise(6, tilt, seed=2)
    cfg = AugmentConfig(group="wedge", max_shift=2, contrast=0.0, noise=0.0, tilt_range=tilt)
    out = augment_batch(x, cfg, torch.Generator().manual_seed(3))
    mask = missing_wedge_mask((BOX,) * 3, *tilt).bool()
    mask[0, 0, 0] = False  # the output is normalised to zero mean: no DC
    for i in range(6):
        assert torch.equal(_support(out[i, 0]), mask)


def test_augmentation_is_reproducible_and_validated():
    x = _wedged_noise(3, (-60.0, 60.0))
    cfg = AugmentConfig(group="so3")
    a = augment_batch(x, cfg, torch.Generator().manual_seed(5))
    b = augment_batch(x, cfg, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    with pytest.raises(CryomineError, match="augmentation group"):
        recipe_config("subtomo", augment=AugmentConfig(group="spin")).validate()
    with pytest.raises(CryomineError, match="recipe"):
        recipe_config("fancy")


def test_tta_averages_the_group():
    torch.manual_seed(0)
    net = build_model("compact3d", 3, BOX, width=0.25).eval()
    x = torch.randn(5, BOX, BOX, BOX)
    ds = ArrayDataset(x.numpy())
    plain, _ = predict_logits(net, ds)
    tta, _ = predict_logits(net, ds, tta_range=(-60.0, 60.0))
    views = group_transforms(ds.volumes.unsqueeze(1), (-60.0, 60.0))
    with torch.no_grad():
        expect = torch.stack([torch.log_softmax(net(v), 1) for v in views]).mean(0)
    assert torch.allclose(tta, expect, atol=1e-5)
    assert not torch.allclose(torch.log_softmax(plain, 1), tta, atol=1e-4)


def _planted(n_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A ball, a rod and a dumbbell at random 90-degree-grid orientations, noise added, wedge imposed."""
    rng = np.random.default_rng(seed)
    g = np.stack(np.meshgrid(*(np.arange(BOX) - BOX // 2,) * 3, indexing="ij")).astype(np.float32)
    blob = lambda c, s: np.exp(-((g - np.array(c, np.float32)[:, None, None, None]) ** 2).sum(0) / (2 * s * s))  # noqa: E731
    rod = sum(blob((0, 0, s), 1.2) for s in range(-5, 6))
    shapes = [blob((0, 0, 0), 3.0), rod / rod.max(), blob((0, 0, -4), 1.8) + blob((0, 0, 4), 1.8)]
    xs, ys = [], []
    mask = missing_wedge_mask((BOX,) * 3, -60.0, 60.0).numpy()
    for c, s in enumerate(shapes):
        for _ in range(n_per_class):
            v = np.rot90(s, rng.integers(4), axes=tuple(rng.permutation(3)[:2]))
            v = v + rng.normal(0, 0.3, v.shape)
            v = np.fft.irfftn(np.fft.rfftn(v) * mask, s=v.shape)
            xs.append(v.astype(np.float32))
            ys.append(c)
    return np.stack(xs), np.array(ys)


@pytest.mark.slow
def test_recipe_learns_a_planted_set_from_30_per_class():
    x, y = _planted(30, seed=0)
    xv, yv = _planted(20, seed=1)
    torch.manual_seed(0)
    net = build_model("compact3d", 3, BOX, width=0.25)
    cfg = recipe_config("subtomo", epochs=12, batch_size=8, log_interval_s=1e9)  # the recipe, shorter
    res = fit(net, ArrayDataset(x, y), ArrayDataset(xv, yv), cfg)
    logits, yt = predict_logits(net, ArrayDataset(xv, yv), tta_range=(-60.0, 60.0))
    assert float((logits.argmax(1).numpy() == yt).mean()) >= 0.9
    # the kept model is the best epoch's
    best = max(h["val_accuracy"] for h in res.history)
    assert res.history[res.best_epoch - 1]["val_accuracy"] == best
