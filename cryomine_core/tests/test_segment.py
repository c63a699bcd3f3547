"""Segmentation: network, tiling, grouping, evaluation, training, CLI and input errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from cryomine_core.errors import CryomineError, InputFileError
from cryomine_core.io import table as T
from cryomine_core.io.mrc import read_mrc, write_mrc
from cryomine_core.segment.evaluate import dice_per_class, fill_cavities, match_objects
from cryomine_core.segment.grouping import group_objects, solidity
from cryomine_core.segment.network import UNet3D
from cryomine_core.segment.tiling import predict_probabilities, tile_starts


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One torch thread: on a shared 2-core machine, OpenMP threads that wait for each other are far slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _grid(shape):
    return np.mgrid[: shape[0], : shape[1], : shape[2]]


def _ball(shape, centre_xyz, r):
    z, y, x = _grid(shape)
    return (x - centre_xyz[0]) ** 2 + (y - centre_xyz[1]) ** 2 + (z - centre_xyz[2]) ** 2 <= r * r


def _dumbbell(shape, a_xyz, b_xyz, r, neck):
    z, y, x = _grid(shape)
    rod = ((y - a_xyz[1]) ** 2 + (z - a_xyz[2]) ** 2 <= neck**2) & (x >= a_xyz[0]) & (x <= b_xyz[0])
    return _ball(shape, a_xyz, r) | _ball(shape, b_xyz, r) | rod


# -- grouping --------------------------------------------------------------------------------------------

def test_convex_object_is_one_and_dumbbell_is_two():
    shape = (40, 40, 64)
    z, y, x = _grid(shape)
    labels = np.zeros(shape, dtype=np.int64)
    labels[((x - 14) / 9.0) ** 2 + ((y - 20) / 5.0) ** 2 + ((z - 20) / 6.0) ** 2 <= 1] = 1  # convex ellipsoid
    labels[_dumbbell(shape, (38, 20, 20), (54, 20, 20), 6, 2)] = 2
    labels[2:4, 2:4, 2:4] = 1  # 8 voxels: below the size filter
    _, objs = group_objects(labels, [1, 2], params=None)
    objs = [o for o in objs if o["voxels"] >= 9]
    ones = [o for o in objs if o["class_index"] == 1]
    twos = sorted([o for o in objs if o["class_index"] == 2], key=lambda o: o["x"])
    assert len(ones) == 1 and not ones[0]["split"]
    assert abs(ones[0]["x"] - 14) < 0.5 and abs(ones[0]["y"] - 20) < 0.5
    assert len(twos) == 2 and all(o["split"] for o in twos)
    assert abs(twos[0]["x"] - 38) < 1.5 and abs(twos[1]["x"] - 54) < 1.5


def test_size_filter_and_solidity():
    shape = (20, 20, 20)
    labels = np.zeros(shape, dtype=np.int64)
    labels[_ball(shape, (10, 10, 10), 4)] = 1
    labels[1:3, 1:3, 1:3] = 1  # 8 voxels, separate
    from cryomine_core.segment.grouping import GroupingParams

    _, objs = group_objects(labels, [1], params=GroupingParams(min_voxels=20))
    assert len(objs) == 1 and objs[0]["voxels"] == int(_ball(shape, (10, 10, 10), 4).sum())
    assert solidity(_ball(shape, (10, 10, 10), 5)) > 0.97
    assert solidity(_dumbbell((30, 30, 50), (12, 15, 15), (34, 15, 15), 7, 2)) < 0.8


def test_probability_vote_gives_class_and_confidence():
    shape = (16, 16, 16)
    labels = np.zeros(shape, dtype=np.int64)
    ball = _ball(shape, (8, 8, 8), 4)
    labels[ball] = 1
    prob = np.zeros((3, *shape), dtype=np.float32)
    prob[0] = 1.0
    prob[:, ball] = np.array([0.1, 0.3, 0.6])[:, None]  # class 2 wins the mean although labels say 1
    _, objs = group_objects(labels, [1, 2], probabilities=prob)
    assert len(objs) == 1 and objs[0]["class_index"] == 2 and abs(objs[0]["confidence"] - 0.6) < 1e-6


# -- network and tiling ----------------------------------------------------------------------------------

def _random_eval_net(depth: int, n_classes: int = 3, base: int = 4) -> UNet3D:
    torch.manual_seed(depth)
    net = UNet3D(n_classes, base=base, depth=depth)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return net.eval()


def test_network_keeps_any_shape():
    net = _random_eval_net(2)
    with torch.no_grad():
        out = net(torch.randn(1, 1, 13, 22, 7))
    assert out.shape == (1, 3, 13, 22, 7)


@pytest.mark.parametrize("depth,tile", [(1, 32), (2, 80)])
def test_tiled_inference_equals_whole_volume(depth, tile):
    net = _random_eval_net(depth, base=2)
    vol = np.random.default_rng(0).normal(size=(20, 45, 107)).astype(np.float32)
    whole = predict_probabilities(net, vol, tile=1000)
    tiled = predict_probabilities(net, vol, tile=tile, blend=4)
    spans = tile_starts(107, tile, net.receptive_radius, 4, net.multiple)
    assert len(spans) >= 3 and spans[0][2] == 0  # really tiled along x
    np.testing.assert_allclose(tiled, whole, atol=2e-5)
    # a short margin is not exact, but blending keeps it close
    short = predict_probabilities(net, vol, tile=32, margin=4)
    assert np.abs(short - whole).max() > 1e-4
    assert (short.argmax(0) == whole.argmax(0)).mean() > 0.95


def test_flip_averaged_probabilities_are_flip_equivariant():
    from cryomine_core.segment.predicting import flip_averaged_probabilities

    net = _random_eval_net(2)
    vol = np.random.default_rng(0).standard_normal((12, 20, 24)).astype(np.float32)
    p = flip_averaged_probabilities(net, vol, tile=32)
    assert p.shape == (3, 12, 20, 24) and np.allclose(p.sum(0), 1.0, atol=1e-5)
    plain = predict_probabilities(net, vol, tile=32)
    assert not np.allclose(p, plain, atol=1e-4)  # the flips do change a random network's output
    for axes in ((2,), (1,), (1, 2)):  # flipping the input flips the averaged output, exactly
        q = flip_averaged_probabilities(net, np.ascontiguousarray(np.flip(vol, axes)), tile=32)
        assert np.allclose(np.flip(q, tuple(a + 1 for a in axes)), p, atol=1e-5)


@pytest.mark.parametrize("size", [5, 64, 100, 161, 333])
def test_tile_starts_cover_and_align(size):
    spans = tile_starts(size, 64, 12, 8, 4)
    assert spans[0][2] == 0 and spans[-1][3] == size
    for (_s0, e0, _k0, h0), (s1, _e1, k1, h1) in zip(spans, spans[1:]):
        assert s1 % 4 == 0 and k1 <= h0 - 8 and h1 > h0 and k1 >= s1 + 12 and h0 <= e0 - 12


# -- evaluation ------------------------------------------------------------------------------------------

def _truth():
    shape = (20, 20, 60)
    inst = np.zeros(shape, dtype=np.int64)
    centres = [(10, 10, 10), (30, 10, 10), (50, 10, 10)]
    for i, c in enumerate(centres, start=1):
        inst[_ball(shape, c, 4)] = i
    return inst, np.array(centres, dtype=float), {1: 1, 2: 2, 3: 1}


def test_object_metrics_perfect():
    inst, centres, tc = _truth()
    ev = match_objects(centres, [1, 2, 1], [0.9, 0.8, 0.7], inst, tc, {1: "a", 2: "b"})
    assert ev["localisation"]["f1"] == 1.0 and ev["overall"]["f1"] == 1.0
    assert ev["per_class"]["a"]["f1"] == 1.0 and ev["classification_accuracy"] == 1.0


def test_object_metrics_shifted_missing_duplicate_wrong_class():
    inst, centres, tc = _truth()
    pred = np.array([centres[0] + [1.0, 1.0, 0.0],  # inside particle 1
                     centres[0] + [-2.0, 0.0, 0.0],  # duplicate in particle 1 (lower score) -> FP
                     centres[1] + [6.0, 0.0, 0.0]])  # shifted out of particle 2 -> FP; particle 3 missing
    ev = match_objects(pred, [1, 1, 2], [0.9, 0.5, 0.8], inst, tc, {1: "a", 2: "b"})
    loc = ev["localisation"]
    assert (loc["tp"], loc["fp"], loc["fn"]) == (1, 2, 2)
    assert loc["precision"] == pytest.approx(1 / 3) and loc["recall"] == pytest.approx(1 / 3)
    assert ev["per_class"]["b"]["tp"] == 0 and ev["per_class"]["b"]["fn"] == 1
    # a dilated occupancy catches the shifted one (6 voxels from a radius-4 ball, dilate 2)
    ev2 = match_objects(pred, [1, 1, 2], [0.9, 0.5, 0.8], inst, tc, {1: "a", 2: "b"}, dilate=2)
    assert ev2["localisation"]["tp"] == 2 and ev2["per_class"]["b"]["f1"] == 1.0
    # right place, wrong class: localisation counts it, the class figures do not
    ev3 = match_objects(centres[:1], [2], [1.0], inst, tc, {1: "a", 2: "b"})
    assert ev3["localisation"]["tp"] == 1 and ev3["overall"]["tp"] == 0 and ev3["classification_accuracy"] == 0.0


def test_hollow_particle_centre_hits_its_filled_occupancy():
    shape = (24, 24, 48)
    inst = np.zeros(shape, dtype=np.int64)
    shell = _ball(shape, (12, 12, 12), 8) & ~_ball(shape, (12, 12, 12), 4)  # enclosed cavity of radius 4
    inst[shell] = 1
    tube = _ball(shape, (34, 12, 12), 8)
    z, y, x = _grid(shape)
    tube &= (y - 12) ** 2 + (z - 12) ** 2 > 9  # a channel open at both ends: not a cavity
    inst[tube] = 2
    inst[12, 12, 12] = 0
    filled = fill_cavities(inst)
    assert filled[12, 12, 12] == 1 and np.all(filled[_ball(shape, (12, 12, 12), 8)] == 1)
    assert filled[12, 12, 34] == 0 and np.array_equal(filled == 2, inst == 2)
    centres, tc = np.array([[12.0, 12.0, 12.0], [34.0, 12.0, 12.0]]), {1: 1, 2: 1}
    old = match_objects(centres, [1, 1], [1.0, 0.9], inst, tc, {1: "a"}, fill=False)
    assert old["localisation"]["tp"] == 0  # the true centres miss their own (hollow) particles
    new = match_objects(centres, [1, 1], [1.0, 0.9], inst, tc, {1: "a"})
    assert new["localisation"]["tp"] == 1 and new["fill_cavities"] is True  # the open channel still misses


def test_specks_smaller_than_a_fraction_of_the_class_volume_are_dropped():
    from cryomine_core.segment.grouping import GroupingParams

    shape = (24, 24, 48)
    labels = np.zeros(shape, dtype=np.int64)
    labels[_ball(shape, (12, 12, 12), 7)] = 1  # ~1400 voxels, a whole large complex
    labels[_ball(shape, (34, 12, 12), 2)] = 1  # 33-voxel speck voted into the same class
    labels[_ball(shape, (34, 4, 4), 2)] = 2  # same size, but a typical object of small class 2
    expected = {1: float((labels == 1).sum()), 2: 40.0}
    _, kept = group_objects(labels, [1, 2], expected_voxels=expected, params=GroupingParams(min_size_fraction=0.0))
    assert len(kept) == 3  # 0 turns it off
    _, kept = group_objects(labels, [1, 2], expected_voxels=expected)  # default 0.1
    assert sorted((o["class_index"], o["voxels"] > 100) for o in kept) == [(1, True), (2, False)]


def test_recall_by_orientation_separates_caps_from_walls():
    from cryomine_core.segment.evaluate import recall_by_orientation

    shape = (40, 40, 40)
    z, y, x = _grid(shape)
    r = np.sqrt((x - 20.0) ** 2 + (y - 20.0) ** 2 + (z - 20.0) ** 2)
    shell = np.abs(r - 14) <= 2
    cosz = np.abs(z - 20.0) / np.maximum(r, 1e-9)
    walls = shell & (cosz < 0.5)  # a prediction that finds only the membrane seen edge-on
    rows = recall_by_orientation(walls, shell)
    assert [round(sum(q["fraction"] for q in rows), 6)] == [1.0]
    assert rows[0]["recall"] > 0.95 and rows[2]["recall"] < 0.05  # caps (normal along z) missed
    assert recall_by_orientation(shell, shell)[2]["recall"] == 1.0


def test_dice():
    a = np.array([0, 1, 1, 2, 2, 0])
    b = np.array([0, 1, 0, 2, 2, 2])
    d = dice_per_class(a, b, {1: "x", 2: "y", 3: "z"})
    assert d["x"] == pytest.approx(2 / 3) and d["y"] == pytest.approx(0.8) and d["z"] is None
    assert dice_per_class(b, b, {1: "x", 2: "y"}) == {"x": 1.0, "y": 1.0}


# -- training, CLI, errors -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    from cryomine_core.simulate import simulate_tomogram_dataset

    out = tmp_path_factory.mktemp("segsim")
    simulate_tomogram_dataset(out, ["phantom:0"], shape=(32, 64, 64), n_tomograms=1, occupancy=0.12, snr=5.0,
                              seed=3)
    return out


@pytest.mark.slow
def test_segmenter_learns_easy_tomogram(sim, tmp_path):
    from cryomine_core.segment.training import read_class_names, train_segmenter

    m = train_segmenter([sim / "tomograms/tomo000.mrc"], [sim / "labels/tomo000.mrc"], tmp_path, boxes=4,
                        box_size=32, patch=24, epochs=5, patches_per_epoch=8, batch_size=2, lr=0.05, base=4,
                        val_boxes=0, class_names=read_class_names(sim / "classes.json"), device="cpu", plots=False)
    losses = [h["train_loss"] for h in m["history"]]
    assert min(losses[-2:]) < 0.6 * losses[0]
    # chance: a random labelling with the true object fraction f (~0.1) scores Dice ~f, all-object ~2f/(1+f)
    assert m["dice"]["phantom0"] > 0.4
    assert (tmp_path / "model.pt").exists() and (tmp_path / "checkpoint.pt").exists()


@pytest.mark.slow
def test_cli_round_trip(sim, tmp_path, capsys, caplog):
    from cryomine_core.cli import main

    tomo, lab = str(sim / "tomograms/tomo000.mrc"), str(sim / "labels/tomo000.mrc")
    rc = main(["segment", "train", "--tomograms", tomo, "--labels", lab, "--out", str(tmp_path / "m"), "--boxes", "4",
               "--box-size", "32", "--patch", "24", "--epochs", "2", "--patches-per-epoch", "8", "--width", "4",
               "--classes", str(sim / "classes.json"), "--device", "cpu"])
    assert rc == 0
    boxes = T.read_table(tmp_path / "m/boxes.star", require=(T.TOMO, *T.COORDS))
    assert len(boxes) == 4 and set(boxes["cmSplit"]) == {"train", "val"}
    rc = main(["segment", "predict", "--model", str(tmp_path / "m/model.pt"), "--tomograms", tomo, "--out",
               str(tmp_path / "p"), "--tile", "64", "--device", "cpu"])
    assert rc == 0
    prob, _ = read_mrc(tmp_path / "p/probabilities/tomo000.mrc")
    labels, _ = read_mrc(tmp_path / "p/labels/tomo000.mrc")
    assert prob.shape == (2, 32, 64, 64) and labels.shape == (32, 64, 64)
    np.testing.assert_allclose(prob.sum(0), 1.0, atol=2e-3)
    info = json.loads((tmp_path / "p/segmenter.json").read_text())
    assert info["class_names"] == ["background", "phantom0"]
    # contrast: recorded at training, checked at prediction; the inverted tomogram is said to differ
    same = json.loads((tmp_path / "p/metrics.json").read_text())["tomograms"][0]["contrast"]
    assert same["matches_training"] is True and same["contrast"] == same["training"] != "unclear"
    vol, vs = read_mrc(tomo)
    write_mrc(tmp_path / "inverted.mrc", -vol, vs)
    capsys.readouterr()
    assert main(["segment", "predict", "--model", str(tmp_path / "m/model.pt"), "--tomograms",
                 str(tmp_path / "inverted.mrc"), "--out", str(tmp_path / "pi"), "--tile", "64", "--device", "cpu"]) == 0
    other = json.loads((tmp_path / "pi/metrics.json").read_text())["tomograms"][0]["contrast"]
    assert other["matches_training"] is False and other["contrast"] != same["contrast"]
    assert any("segmentation is not reliable" in r.getMessage() for r in caplog.records)
    truncated = tmp_path / "truncated.mrc"  # a bad second tomogram is found before the first one's maps are written
    truncated.write_bytes((sim / "tomograms/tomo000.mrc").read_bytes()[:5000])
    rc = main(["segment", "predict", "--model", str(tmp_path / "m/model.pt"), "--tomograms", tomo, str(truncated),
               "--out", str(tmp_path / "p2"), "--tile", "64", "--device", "cpu"])
    assert rc == 2 and "truncated.mrc" in capsys.readouterr().err and not (tmp_path / "p2" / "labels").exists()
    rc = main(["segment", "objects", "--probabilities", str(tmp_path / "p/probabilities/tomo000.mrc"), "--classes",
               str(tmp_path / "p/segmenter.json"), "--tomograms", tomo, "--out", str(tmp_path / "o"),
               "--truth-table", str(sim / "particles.star"), "--truth-instances", str(sim / "instances/tomo000.mrc"),
               "--truth-labels", lab])
    assert rc == 0
    for f in ("instances/tomo000.mrc", "classes/tomo000.mrc", "counts.csv", "counts.json", "metrics.json"):
        assert (tmp_path / "o" / f).exists(), f
    metrics = json.loads((tmp_path / "o/metrics.json").read_text())
    assert set(metrics["objects"]) >= {"localisation", "per_class", "overall", "classification_accuracy"}
    assert "phantom0" in metrics["dice"]
    counts = pd.read_csv(tmp_path / "o/counts.csv")
    assert list(counts.columns) == ["tomogram", "class", "count"]
    if metrics["n_objects"]:
        objs = T.read_table(tmp_path / "o/objects.star", require=(T.TOMO, *T.COORDS, T.CLASS, T.SCORE))
        assert len(objs) == metrics["n_objects"] == counts["count"].sum()
        inst, _ = read_mrc(tmp_path / "o/instances/tomo000.mrc")
        assert int(inst.max()) == len(objs)


def test_bad_inputs_name_the_file_and_the_fix(sim, tmp_path):
    from cryomine_core.segment.training import train_segmenter

    tomo, lab = sim / "tomograms/tomo000.mrc", sim / "labels/tomo000.mrc"
    small = tmp_path / "small_labels.mrc"
    write_mrc(small, np.zeros((16, 64, 64), dtype=np.int16), 9.2, dtype=np.int16)
    with pytest.raises(InputFileError, match=r"small_labels\.mrc.*does not match.*same size"):
        train_segmenter([tomo], [small], tmp_path / "a", boxes=2, box_size=16, patch=16, device="cpu")
    empty = tmp_path / "empty_labels.mrc"
    write_mrc(empty, np.zeros((32, 64, 64), dtype=np.int16), 9.2, dtype=np.int16)
    with pytest.raises(CryomineError, match=r"empty_labels\.mrc.*no object voxel.*Annotate"):
        train_segmenter([tomo], [empty], tmp_path / "b", boxes=2, box_size=16, patch=16, device="cpu")
    vol, vs = read_mrc(tomo)
    vol[3, 4, 5] = np.nan
    nan_tomo = tmp_path / "nan_tomo.mrc"
    write_mrc(nan_tomo, vol, vs)
    with pytest.raises(InputFileError, match=r"nan_tomo\.mrc.*NaN.*Fix"):
        train_segmenter([nan_tomo], [lab], tmp_path / "c", boxes=2, box_size=16, patch=16, device="cpu")
    with pytest.raises(CryomineError, match="one label map per tomogram"):
        train_segmenter([tomo, tomo], [lab], tmp_path / "d", device="cpu")
