"""The demo's measurements against the truth: the oracle table keeps the particles and half sets and
holds the planted poses; the oracle comparison tells an average of the right map from a wrong one; the
pictures are written."""

import numpy as np
import pandas as pd
import pytest
import torch

from cryomine_core.io import columns as C
from cryomine_core.io import table as T
from cryomine_scipion.demo_truth import (
    average_against_truth,
    heldout_cluster,
    maps_figure,
    oracle_table,
    proteomics_figure,
)


def test_oracle_table_holds_the_planted_poses_and_keeps_halves(tmp_path):
    df = pd.DataFrame({C.IMAGE: [str(tmp_path / f"p{i}.mrc") for i in range(3)], C.ITEM_ID: [7, 3, 9],
                       C.VOXEL_SIZE: 10.0, C.HALF_SET: [1, 2, 1], C.ALIGN_FAILED: [0, 1, 0],
                       C.ANGLES[0]: 5.0, C.ANGLES[1]: 6.0, C.ANGLES[2]: 7.0,
                       C.ORIGINS[0]: 1.5, C.ORIGINS[1]: -2.0, C.ORIGINS[2]: 0.5})
    T.write_table(tmp_path / "aligned.star", df)
    truth = {3: (10.0, 20.0, 30.0), 7: (40.0, 50.0, 60.0), 9: (70.0, 80.0, 90.0), 11: (0.0, 0.0, 0.0)}
    out = T.read_table(oracle_table(tmp_path / "aligned.star", truth, tmp_path / "oracle.star"))
    assert out[C.ITEM_ID].tolist() == [7, 3, 9] and out[C.HALF_SET].tolist() == [1, 2, 1]
    assert np.allclose(out[list(C.ANGLES)].to_numpy(float), [truth[7], truth[3], truth[9]])
    assert np.allclose(out[list(C.ORIGINS)].to_numpy(float), 0.0)
    assert out[C.ALIGN_FAILED].tolist() == [0, 0, 0]  # the oracle knows every pose


def _blob(n, centres):
    z, y, x = np.mgrid[:n, :n, :n].astype(np.float32)
    return sum(np.exp(-((z - a) ** 2 + (y - b) ** 2 + (x - c) ** 2) / 4.0) for a, b, c in centres)


def test_average_against_truth_ratio_tells_a_wrong_average():
    truth = _blob(20, [(10, 10, 6), (10, 10, 14), (6, 12, 10)])
    rng = np.random.default_rng(0)
    oracle = truth + rng.normal(0, 0.02, truth.shape).astype(np.float32)
    good = np.ascontiguousarray(np.flip(truth, 2)) + rng.normal(0, 0.02, truth.shape).astype(np.float32)
    wrong = _blob(20, [(10, 10, 10)]) + rng.normal(0, 0.02, truth.shape).astype(np.float32)
    same = average_against_truth(good, oracle, truth, 10.0)
    other = average_against_truth(wrong, oracle, truth, 10.0)
    assert same["fsc_ratio_to_oracle"] <= 1.3  # a flipped copy is the same map in another pose
    assert other["fsc_ratio_to_oracle"] > same["fsc_ratio_to_oracle"]
    assert other["correlation_with_true_map"] < same["correlation_with_true_map"]
    assert set(same["maps"]) == {"found", "true map (aligned to it)", "oracle", "true map (aligned to the oracle)"}


def test_heldout_cluster_purity_and_recall():
    clusters = {1: "a", 2: "a", 3: "a", 4: "b", 5: "b"}
    true_class = {1: "new", 2: "new", 3: "old", 4: "new", 5: "old"}
    assert heldout_cluster(clusters, true_class, "new") == {"cluster": "a", "purity": 0.667, "recall": 0.667}
    assert heldout_cluster(clusters, true_class, "absent")["purity"] is None


def test_pictures_are_written(tmp_path):
    tomo = np.random.default_rng(1).normal(size=(20, 40, 40)).astype(np.float32)
    pos = np.array([[5.0, 5.0, 10.0], [30.0, 20.0, 11.0], [20.0, 20.0, 0.0]])
    proteomics_figure(tomo, pos, [("truth", ["a", "b", "a"]), ("found", ["x", "x", "y"])], tmp_path / "vp.png")
    maps_figure({"one": tomo[:16, :16, :16], "two": tomo[:16, 16:32, :16]}, tmp_path / "maps.png")
    for name in ("vp.png", "maps.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("bad", [torch.zeros(4, 4)])
def test_average_against_truth_refuses_a_non_volume(bad):
    from cryomine_core.errors import CryomineError

    with pytest.raises(CryomineError):
        average_against_truth(bad.numpy(), bad.numpy(), bad.numpy(), 10.0)


def test_cluster_maps_name_each_cluster_by_its_dominant_structure():
    from cryomine_scipion.demo_truth import cluster_maps

    rod = _blob(20, [(10, 10, 5), (10, 10, 10), (10, 10, 15)])
    ball = _blob(20, [(10, 10, 10)])
    rows, maps = cluster_maps({"cluster 1": np.ascontiguousarray(np.flip(rod, 2)), "cluster 2": ball},
                              {"cluster 1": ["rod", "rod", "ball"], "cluster 2": ["ball"] * 4},
                              {"rod": rod, "ball": ball}, 10.0, negate=False)
    assert [(r["cluster"], r["dominant_structure"], r["purity"], r["size"]) for r in rows] == [
        ("cluster 1", "rod", 0.667, 3), ("cluster 2", "ball", 1.0, 4)]
    assert rows[0]["correlation"] > 0.9 and rows[1]["correlation"] > 0.9
    assert list(maps) == ["cluster 1 (rod)", "true rod", "cluster 2 (ball)", "true ball"]
