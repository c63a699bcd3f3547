"""Template-free subdivision: clustering, features, evaluation, the CLI and its errors (CPU, small data)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.spatial.transform import Rotation

from cryomine_core.cli import main
from cryomine_core.errors import CryomineError
from cryomine_core.io import table as T
from cryomine_core.io.mrc import write_mrc
from cryomine_core.models import build_model
from cryomine_core.subdivide import (
    cluster_features,
    clustering_scores,
    network_features,
    penultimate_layer,
    rif_features,
)
from cryomine_core.train import ArrayDataset

BOX, VOXEL = 16, 20.0


def _blobs(n_per: int, k: int, dim: int = 20, sep: float = 12.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim))
    centres *= sep / np.linalg.norm(centres, axis=1, keepdims=True)
    y = np.repeat(np.arange(k), n_per)
    x = centres[y] + rng.normal(size=(y.size, dim))
    order = rng.permutation(y.size)
    return x[order].astype(np.float32), y[order]


def _shape(kind: int, rng: np.random.Generator, box: int = BOX, noise: float = 0.3) -> np.ndarray:
    """A small synthetic particle in a random orientation: elongated rod, ball, or dumbbell."""
    g = np.stack(np.meshgrid(*(np.arange(box) - box // 2,) * 3, indexing="ij"), -1).reshape(-1, 3).astype(float)
    p = g @ Rotation.random(random_state=rng.integers(1 << 31)).as_matrix().T
    if kind == 0:
        r = np.sqrt((p[:, 0] / 5.5) ** 2 + (p[:, 1] / 1.8) ** 2 + (p[:, 2] / 1.8) ** 2)
    elif kind == 1:
        r = np.linalg.norm(p, axis=1) / 3.5
    else:
        r = np.minimum(np.linalg.norm(p - [3.5, 0, 0], axis=1), np.linalg.norm(p + [3.5, 0, 0], axis=1)) / 2.5
    vol = 1.0 / (1.0 + np.exp((r - 1.0) * 6.0))
    return (vol.reshape(box, box, box) + noise * rng.normal(size=(box,) * 3)).astype(np.float32)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """36 subtomograms of 3 shapes (12 each) written as MRC files + a labelled particle table."""
    root = tmp_path_factory.mktemp("subdivide")
    rng = np.random.default_rng(3)
    labels = rng.permutation(np.repeat(np.arange(3), 12))
    rows = []
    for i, c in enumerate(labels):
        rel = f"sub/p{i:03d}.mrc"
        write_mrc(root / rel, _shape(int(c), rng), VOXEL)
        rows.append({T.IMAGE: rel, T.CLASS: int(c) + 1, T.CLASS_NAME: ["rod", "ball", "dumbbell"][c],
                     T.VOXEL_SIZE: VOXEL, T.TILT_MIN: -60.0, T.TILT_MAX: 60.0})
    T.write_table(root / "particles.star", pd.DataFrame(rows))
    return root


# -- clustering ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["gmm", "kmeans"])
def test_planted_blobs_recovered_with_automatic_count(method):
    x, y = _blobs(40, 4)
    res = cluster_features(x, None, max_clusters=8, method=method, seed=1)
    assert res.n_clusters == 4
    assert clustering_scores(y, res.labels)["ari"] > 0.99
    assert min(res.criterion, key=res.criterion.get) == 4
    assert res.sizes == sorted(res.sizes, reverse=True)  # numbered by decreasing size
    assert ((res.scores >= 0) & (res.scores <= 1)).all()


def test_one_blob_gives_one_cluster_and_fixed_count_is_kept():
    x, _ = _blobs(150, 1)
    assert cluster_features(x, None, max_clusters=6, seed=0).n_clusters == 1
    x, y = _blobs(30, 3)
    res = cluster_features(x, 3, seed=0)
    assert res.n_clusters == 3 and res.criterion == {}
    assert clustering_scores(y, res.labels)["ari"] > 0.99


@pytest.mark.parametrize("method", ["gmm", "kmeans"])
def test_minibatch_path_recovers_blobs_from_a_memmap(tmp_path, method):
    x, y = _blobs(500, 5, dim=12, seed=4)
    mm = np.lib.format.open_memmap(tmp_path / "f.npy", mode="w+", dtype=np.float32, shape=x.shape)
    mm[:] = x
    res = cluster_features(mm, None, max_clusters=8, method=method, minibatch=True, chunk_size=300,
                           selection_sample=800, fit_sample=1500, seed=0)
    assert res.minibatch and res.n_clusters == 5
    assert clustering_scores(y, res.labels)["ari"] > 0.99


def test_clustering_input_errors():
    x, _ = _blobs(3, 2)
    with pytest.raises(CryomineError, match="only 6 subtomograms; at least 8"):
        cluster_features(x, 4)
    x[3, 2] = np.nan
    with pytest.raises(CryomineError, match="item 4"):
        cluster_features(x, 2)
    with pytest.raises(CryomineError, match="empty"):
        cluster_features(np.zeros((0, 4)), 2)


# -- evaluation ------------------------------------------------------------------------------------------

def test_clustering_scores_on_hand_made_labelings():
    s = clustering_scores([0, 0, 0, 1, 1, 1], [5, 5, 5, 2, 2, 2], names=["a", "b"])
    assert s["ari"] == pytest.approx(1.0) and s["nmi"] == pytest.approx(1.0)
    assert s["per_class"]["a"] == {"n": 3, "cluster": 5, "purity": 1.0, "recall": 1.0}
    # class b: 3 of 4 in cluster 1 (which also holds one a); class a: 2 of 3 in cluster 0
    s = clustering_scores([0, 0, 0, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1, 0])
    assert s["per_class"]["1"]["cluster"] == 1
    one, zero = s["per_class"]["1"], s["per_class"]["0"]
    assert one["purity"] == pytest.approx(3 / 4) and one["recall"] == pytest.approx(3 / 4)
    assert zero["purity"] == pytest.approx(2 / 3) and zero["recall"] == pytest.approx(2 / 3)
    assert s["overall_purity"] == pytest.approx(5 / 7)
    assert s["ari"] < 0.2
    assert clustering_scores([0, 1, 0, 1], [0, 0, 0, 0])["ari"] == pytest.approx(0.0)


# -- features --------------------------------------------------------------------------------------------

def test_network_features_stream_in_batches_equal_all_at_once():
    torch.manual_seed(0)
    model = build_model("compact3d", 3, BOX, width=0.25)
    with torch.no_grad():  # non-trivial batch-norm statistics, so eval mode matters
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 2.0)
    vols = torch.randn(11, BOX, BOX, BOX)
    ds = ArrayDataset(vols)
    a = network_features(model, ds, batch_size=3)
    b = network_features(model, ds, batch_size=11)
    assert a.shape == (11, penultimate_layer(model).in_features)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    model.eval()
    with torch.no_grad():
        direct = model.features(torch.stack([ds[i][0] for i in range(11)])).numpy()
    np.testing.assert_allclose(a, direct, rtol=1e-4, atol=1e-5)
    assert not np.allclose(a[0], a[1])


def test_rif_features_stream_in_batches_equal_all_at_once():
    ds = ArrayDataset(torch.randn(7, BOX, BOX, BOX))
    a = rif_features(ds, batch_size=2)
    b = rif_features(ds, batch_size=7)
    assert a.shape == (7, 144) and np.isfinite(a).all()
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


# -- the command line ------------------------------------------------------------------------------------

def test_cli_round_trip_recovers_shapes(shapes, capsys):
    out = shapes / "rif"
    assert main(["subdivide", "--in", str(shapes / "particles.star"), "--out", str(out), "--features", "rif",
                 "--clusters", "auto", "--max-clusters", "6", "--method", "kmeans", "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["n_clusters"] == 3
    df = T.read_table(out / "particles.star")
    assert sorted(df[T.CLASS].unique().tolist()) == [1, 2, 3]
    assert df["cmInputClassName"].tolist() == T.read_table(shapes / "particles.star")[T.CLASS_NAME].tolist()
    assert ((df[T.SCORE] >= 0) & (df[T.SCORE] <= 1)).all()
    m = json.loads((out / "metrics.json").read_text())
    assert m["n_clusters"] == 3 and m["vs_input_labels"]["ari"] > 0.99
    assert m["clustering"]["k_mode"] == "auto" and set(m["clustering"]["bic"]) >= {"1", "2", "3", "4"}
    assert m["averages"]["mode"] == "none"  # no poses and no --align-clusters
    for name in ("embedding.png", "sizes.png", "bic.png"):
        assert (out / name).stat().st_size > 0
    assert not list(out.glob("class_*.mrc"))


def test_cli_with_model_and_aligned_cluster_averages(shapes, tmp_path):
    from cryomine_core.classify import save_classifier
    from cryomine_core.io.mrc import read_mrc

    torch.manual_seed(0)
    model = build_model("compact3d", 2, BOX, width=0.25)
    path = save_classifier(tmp_path / "model.pt", model, voxel_size=VOXEL, class_names=["a", "b"],
                           class_numbers=[1, 2], temperature=1.0)
    out = tmp_path / "cnn"
    assert main(["subdivide", "--in", str(shapes / "particles.star"), "--out", str(out), "--model", str(path),
                 "--clusters", "2", "--align-clusters", "--align-iterations", "1", "--angular-step", "30",
                 "--device", "cpu", "--no-plots"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["features"]["source"] == "model" and m["features"]["dimension"] == penultimate_layer(model).in_features
    assert m["averages"]["mode"] == "align" and m["n_clusters"] == 2
    df = T.read_table(out / "particles.star")
    assert {"cmAlignScore", "cmAlignFailed", *T.ANGLES}.issubset(df.columns)
    for j in (1, 2):
        vol, vs = read_mrc(out / f"class_{j:03d}.mrc")
        assert vol.shape == (BOX,) * 3 and np.isfinite(vol).all() and vol.std() > 0 and vs == pytest.approx(VOXEL)


def test_cli_bad_inputs_give_clear_errors(shapes, tmp_path, capsys):
    src = T.read_table(shapes / "particles.star")

    def run(df, *extra) -> str:
        if len(df):
            T.write_table(tmp_path / "t.star", df)
        else:  # write_table refuses an empty set; another program may still write one
            (tmp_path / "t.star").write_text("data_particles\n\nloop_\n_rlnImageName #1\n")
        assert main(["subdivide", "--in", str(tmp_path / "t.star"), "--out", str(tmp_path / "o"), *extra]) == 2
        return capsys.readouterr().err

    err = run(src.iloc[:0], "--features", "rif")
    assert "t.star" in err and ("empty" in err or "no particles" in err)
    err = run(src.iloc[:5], "--features", "rif", "--clusters", "3")
    assert "--clusters 3" in err and "only 5" in err
    bad = src.copy()
    vol = _shape(0, np.random.default_rng(0))
    vol[2, 3, 4] = np.nan
    write_mrc(tmp_path / "nan.mrc", vol, VOXEL)
    bad.loc[7, T.IMAGE] = str(tmp_path / "nan.mrc")
    assert "nan.mrc" in run(bad, "--features", "rif")
    from cryomine_core.classify import save_classifier

    other = save_classifier(tmp_path / "m12.pt", build_model("compact3d", 2, 12, width=0.25), voxel_size=VOXEL,
                            class_names=["a", "b"], class_numbers=[1, 2], temperature=1.0)
    err = run(src, "--model", str(other))
    assert "box mismatch" in err and "12" in err
    assert "--align-clusters" in run(src, "--features", "rif", "--split")


# -- unsupervised mode and map agreement -----------------------------------------------------------------

def test_unsupervised_mode_keeps_planted_shapes_apart(shapes):
    from cryomine_core.subdivide import unsupervised_subdivision
    from cryomine_core.subdivide.features import table_dataset

    df = T.read_table(shapes / "particles.star")
    truth = df[T.CLASS].to_numpy()
    res = unsupervised_subdivision(table_dataset(df), BOX, rounds=1, epochs=3, width=0.25, method="kmeans",
                                   max_clusters=6, seed=0)
    assert [h["round"] for h in res.history] == [0, 1]
    last = res.history[-1]
    assert 0 <= last["fit_accuracy"] <= 1 and last["rejected"] == (last["fit_accuracy"] < 0.9)
    if not last["rejected"]:
        assert res.features.shape == (36, penultimate_layer(res.model).in_features)
    assert res.clustering.n_clusters == 3
    assert clustering_scores(truth, res.clustering.labels)["ari"] > 0.9
    # an impossible bar rejects every round: the first (rotation-invariant) clustering is kept
    kept = unsupervised_subdivision(table_dataset(df), BOX, rounds=1, epochs=1, width=0.25, method="kmeans",
                                    n_clusters=3, seed=0, min_fit_accuracy=1.01)
    assert kept.model is None and kept.history[-1]["rejected"] and kept.features.shape == (36, 144)
    assert clustering_scores(truth, kept.clustering.labels)["ari"] > 0.99


def test_map_agreement_finds_the_matching_map_in_any_pose():
    from cryomine_core.subdivide import map_agreement

    rng = np.random.default_rng(5)
    rod = torch.as_tensor(_shape(0, rng, noise=0.0))
    rod_again = torch.as_tensor(_shape(0, rng, noise=0.0))  # another random orientation
    ball = torch.as_tensor(_shape(2, rng, noise=0.0))
    same = map_agreement(rod, rod_again, VOXEL, resolution=45.0, angular_step=20.0, contrast="same")
    other = map_agreement(rod, ball, VOXEL, resolution=45.0, angular_step=20.0, contrast="same")
    assert same["correlation"] > 0.9 and not same["inverted"]
    assert other["correlation"] < same["correlation"] - 0.1
    dark = map_agreement(-rod, rod_again, VOXEL, resolution=45.0, angular_step=20.0)  # data dark, map bright
    assert dark["inverted"] and dark["correlation"] > 0.9


def test_cli_bounded_memory_path_streams_features_to_disk(shapes):
    out = shapes / "mm"
    assert main(["subdivide", "--in", str(shapes / "particles.star"), "--out", str(out), "--features", "rif",
                 "--clusters", "3", "--method", "kmeans", "--minibatch", "on", "--no-plots", "--batch-size", "5"]) == 0
    feats = np.load(out / "features.npy", mmap_mode="r")
    assert feats.shape == (36, 144) and np.isfinite(feats).all()
    m = json.loads((out / "metrics.json").read_text())
    assert m["clustering"]["minibatch"] and m["vs_input_labels"]["ari"] > 0.99


def test_merge_joins_agreeing_averages_and_split_cuts_poorly_aligned_clusters():
    from cryomine_core.subdivide import merge_similar, split_poorly_aligned

    rng = np.random.default_rng(8)
    vols = torch.stack([torch.as_tensor(_shape(k, rng, noise=0.0)) for k in (0, 2, 0)])
    mapping, pairs = merge_similar(vols, np.array([5, 5, 5]), VOXEL, threshold=0.9, resolution=45.0,
                                   angular_step=25.0)
    assert mapping.tolist() == [0, 1, 0] and len(pairs) == 3

    x, _ = _blobs(15, 2, dim=4, seed=2)
    emb = np.concatenate([rng.normal(size=(30, 4)) * 0.1, x, rng.normal(size=(30, 4)) * 0.1 + 5])
    labels = np.repeat([0, 1, 2], 30)
    new, done = split_poorly_aligned(labels, np.array([0.5, 0.2, 0.45]), emb, min_size=10)
    assert done == [1] and sorted(np.bincount(new).tolist()) == [15, 15, 30, 30]
    assert (new[:30] == 0).all() and (new[60:] == 2).all()
    same, none = split_poorly_aligned(labels, np.array([0.5, 0.45, 0.48]), emb, min_size=10)
    assert none == [] and (same == labels).all()


def test_reassignment_by_alignment_repairs_corrupted_clusters(shapes):
    """A third of each shape put in the wrong cluster: aligning against the averages moves them back."""
    from sklearn.metrics import adjusted_rand_score

    from cryomine_core.subdivide import cluster_averages, reassign_by_alignment
    from cryomine_core.subdivide.refine import default_settings

    df = T.read_table(shapes / "particles.star")
    df[T.IMAGE] = [str(shapes / p) for p in df[T.IMAGE]]
    truth = df[T.CLASS].to_numpy(int) - 1
    rng = np.random.default_rng(1)
    labels = truth.copy()
    wrong = rng.random(truth.size) < 0.34
    labels[wrong] = (truth[wrong] + rng.integers(1, 3, int(wrong.sum()))) % 3
    assert adjusted_rand_score(truth, labels) < 0.5
    settings = default_settings(BOX, iterations=1, angular_step=30.0)
    avg = cluster_averages(df, labels, 3, VOXEL, align=True, settings=settings)
    ra = reassign_by_alignment(df, labels, avg.volumes, VOXEL, settings, iterations=2)
    assert adjusted_rand_score(truth, ra.labels) > 0.9
    assert ra.n_clusters == 3 and ra.moved > 0.2 and len(ra.history) == 2
    assert ra.band_A == pytest.approx(VOXEL / 0.45)
    # each average on its own, the second round locally around the first round's poses: the same repair
    local = reassign_by_alignment(df, labels, avg.volumes, VOXEL, settings, iterations=2, local_radius_deg=30.0)
    assert adjusted_rand_score(truth, local.labels) > 0.9 and len(local.history) == 2
    with pytest.raises(CryomineError, match="at least 1 iteration"):
        reassign_by_alignment(df, labels, avg.volumes, VOXEL, settings, iterations=0)
    with pytest.raises(CryomineError, match="too coarse"):
        reassign_by_alignment(df, labels, avg.volumes, VOXEL, settings, resolution_A=1000.0)


@pytest.mark.slow
def test_cli_reassign_needs_cluster_averages_and_records_its_rounds(shapes, tmp_path, capsys):
    base = ["subdivide", "--in", str(shapes / "particles.star"), "--features", "rif", "--clusters", "4",
            "--device", "cpu", "--no-plots", "--reassign", "2"]
    assert main([*base, "--out", str(tmp_path / "a")]) != 0
    assert "--align-clusters" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "a"), "--align-clusters", "--reassign-local", "0"]) == 2
    assert "--reassign-local 0" in capsys.readouterr().err
    out = tmp_path / "b"
    assert main([*base, "--out", str(out), "--align-clusters", "--align-iterations", "1", "--angular-step", "30",
                 "--merge-threshold", "0.95", "--merge-resolution", "45"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["reassign"]["iterations"] == 2 and m["reassign"]["clusters_before"] == 4
    assert len(m["reassign"]["history"]) == 2
    assert m["vs_input_labels"]["ari"] > 0.9 and m["n_clusters"] == 3


def test_merge_uses_complete_linkage_and_does_not_chain(monkeypatch):
    """a~b and b~c agree, a and c do not: only one of the two pairs may be joined."""
    import cryomine_core.subdivide.evaluate as ev
    from cryomine_core.subdivide import merge_similar

    table = {(0, 1): 0.95, (1, 2): 0.85, (0, 2): 0.3}

    def fake(a, b, *args, **kwargs):
        i, j = int(a.flatten()[0]), int(b.flatten()[0])
        return {"correlation": table[(min(i, j), max(i, j))]}

    monkeypatch.setattr(ev, "map_agreement", fake)
    vols = torch.arange(3, dtype=torch.float32)[:, None, None, None].expand(3, 4, 4, 4)
    mapping, pairs = merge_similar(vols, np.array([5, 5, 5]), VOXEL, threshold=0.8)
    assert mapping.tolist() == [0, 0, 1] and len(pairs) == 3
    mapping, _ = merge_similar(vols, np.array([5, 5, 5]), VOXEL, threshold=0.2)
    assert mapping.tolist() == [0, 0, 0]
