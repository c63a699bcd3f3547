"""Classification networks: published sizes at 40^3, other boxes, narrow variants, registry."""

from __future__ import annotations

import pytest
import torch

from cryomine_core.errors import CryomineError
from cryomine_core.models import MODELS, build_model, canonical_name, count_parameters, model_names

PAPER = ("dsrf3d", "dsrf3d-v2", "rb3d", "cb3d")


def _meta(name, n_classes, box, **kw):
    with torch.device("meta"):
        net = build_model(name, n_classes, box, **kw)
        out = net(torch.zeros(3, 1, *((box,) * 3 if isinstance(box, int) else box)))
    return net, out


@pytest.mark.parametrize("name", list(MODELS))
def test_builds_at_40_output_shape(name):
    net, out = _meta(name, 23, 40)
    assert tuple(out.shape) == (3, 23)
    assert net.box == (40, 40, 40) and net.arch == name


def test_published_parameter_counts_at_40():
    counts = {n: count_parameters(_meta(n, 23, 40)[0]) for n in PAPER}
    assert 17.5e6 < counts["dsrf3d-v2"] < 19.0e6          # ~18 M (Che et al. 2018)
    assert 60.0e6 < counts["cb3d"] < 62.5e6               # ~61 M
    rb3d, _ = _meta("rb3d", 23, 40)
    first_fc = next(m for m in rb3d.classifier if isinstance(m, torch.nn.Linear))
    assert first_fc.weight.numel() == 32 * 20**3 * 1024   # ~262 M weights in the first FC at 40^3
    assert rb3d.feature_shape == (32, 20, 20, 20)
    assert _meta("dsrf3d-v2", 23, 40)[0].feature_shape == (128, 5, 5, 5)
    assert _meta("cb3d", 23, 40)[0].feature_shape == (512, 2, 2, 2)
    assert _meta("dsrf3d", 23, 40)[0].feature_shape == (64, 10, 10, 10)


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("box", [24, 32, (16, 24, 32)])
def test_other_boxes_only_first_fc_changes(name, box):
    net40, _ = _meta(name, 5, 40)
    net, out = _meta(name, 5, box)
    assert tuple(out.shape) == (3, 5)
    conv40 = [p.shape for n, p in net40.named_parameters() if n.startswith("features")]
    conv = [p.shape for n, p in net.named_parameters() if n.startswith("features")]
    assert conv == conv40  # the convolutional layers do not depend on the box


@pytest.mark.parametrize("name", list(MODELS))
def test_narrow_variant_runs_forward_backward_on_cpu(name):
    torch.manual_seed(0)
    net = build_model(name, 3, 16, width=0.25)
    x = torch.randn(4, 1, 16, 16, 16)
    out = net(x)
    assert out.shape == (4, 3) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    rebuilt = build_model(name, **net.build_args)
    assert [p.shape for p in rebuilt.parameters()] == [p.shape for p in net.parameters()]
    with pytest.raises(ValueError, match="built for box"):
        net(torch.randn(1, 1, 20, 16, 16))


def test_box_too_small_and_unknown_names():
    with pytest.raises(CryomineError, match="too small"):
        build_model("cb3d", 3, 12)
    with pytest.raises(CryomineError, match="too small"):
        build_model("dsrf3d-v2", 3, 6)
    with pytest.raises(CryomineError, match="unknown model"):
        build_model("resnet50", 3, 40)
    assert canonical_name("DSRF3D_v2") == "dsrf3d-v2"
    # the paper networks start from Keras' Glorot initialisation (He diverged at lr 0.005 on 40^3 data)
    assert all(build_model(n, 3, 16, width=0.25).build_args["init"] == "glorot" for n in PAPER)
    assert build_model("compact3d", 3, 16, width=0.25).build_args["init"] == "he"
    assert model_names()[0] == "dsrf3d-v2"


def test_hybrid3d_invariant_branch_ignores_a_turn():
    """The invariant branch of hybrid3d sees the same features for a particle turned by a grid-exact
    rotation (90 degrees about z, then x, about voxel N // 2: an index permutation), unlike its
    convolutional branch."""
    from cryomine_core.geometry import rotate_volume, rotation_x, rotation_z

    torch.manual_seed(0)
    net = build_model("hybrid3d", 4, 16, width=0.25).eval()
    x = torch.nn.functional.avg_pool3d(torch.randn(2, 1, 20, 20, 20), 5, stride=1, padding=2)[..., 2:18, 2:18, 2:18]
    z, y, w = torch.meshgrid(*(torch.arange(16.0) - 8,) * 3, indexing="ij")
    x = x * ((z**2 + y**2 + w**2) <= 36)  # a particle inside the box: the rotation moves no voxel out
    rot = rotation_z(90.0) @ rotation_x(90.0)
    turned = torch.stack([rotate_volume(v[0], rot) for v in x]).unsqueeze(1)
    inv, inv_turned = net.invariants(x), net.invariants(turned)
    assert inv.shape == (2, 2 * (7 * 9 + 9 * 21))
    assert float((inv - inv_turned).norm() / inv.norm()) < 0.04  # trilinear sampling on the turned grid
    cnn = net.features(x)
    assert float((cnn - net.features(turned)).norm() / cnn.norm()) > 3 * float((inv - inv_turned).norm() / inv.norm())
    assert net.feature_shape == (scaled_width(128, 0.25) + scaled_width(128, 0.25),)


def scaled_width(channels, width):
    from cryomine_core.models.common import scaled
    return scaled(channels, width)
