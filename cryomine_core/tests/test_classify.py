"""``cryomine classify train/predict`` over particle tables: round trip, outputs, bad input, RIF-SVM."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from cryomine_core.classify import RifSvmClassifier, load_classifier, stratified_split, table_labels
from cryomine_core.classify.labels import check_labels
from cryomine_core.cli import main
from cryomine_core.errors import TableError
from cryomine_core.io import table as T
from cryomine_core.io.mrc import read_mrc, write_mrc
from cryomine_core.simulate.datasets import simulate_subtomogram_dataset

BOX, VOXEL = 16, 20.0
TRAIN_ARGS = ["--model", "compact3d", "--width", "0.5", "--batch-size", "8", "--lr", "0.01", "--log-interval", "1e6"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("classify")
    simulate_subtomogram_dataset(root / "data", ["phantom:0", "phantom:1", "phantom:2"], n_per_class=20, snr=5.0,
                                 box=BOX, voxel_size=VOXEL, max_shift=1.0, seed=1, n_snr_check=2)
    return root


@pytest.fixture(scope="module")
def trained(dataset):
    out = dataset / "run"
    rc = main(["classify", "train", "--in", str(dataset / "data" / "particles.star"), "--out", str(out),
               "--epochs", "3", "--patience", "0", *TRAIN_ARGS])
    assert rc == 0
    return out


def _write(df: pd.DataFrame, path) -> str:
    T.write_table(path, df)
    return str(path)


def _err(capsys) -> str:
    return capsys.readouterr().err


def test_train_outputs(trained):
    for f in ("model.pt", "checkpoint.pt", "metrics.json", "split.star", "training_curves.png", "confusion.png"):
        assert (trained / f).stat().st_size > 0, f
    m = json.loads((trained / "metrics.json").read_text())
    assert m["model"] == "compact3d" and m["box"] == [BOX] * 3 and m["voxel_size"] == pytest.approx(VOXEL)
    assert m["class_names"] == ["phantom0", "phantom1", "phantom2"]
    assert len(m["history"]) == 3 and m["epochs_run"] == 3
    assert set(m["history"][0]) >= {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr",
                                     "seconds"}
    assert m["n_split"] == {"train": 39, "val": 9, "test": 12}  # per class 20 -> 4 test, 3 val, 13 train
    assert m["n_per_class"] == {"phantom0": 20, "phantom1": 20, "phantom2": 20}
    cm = np.array(m["confusion_val"]["matrix"])
    assert cm.shape == (3, 3) and cm.sum() == 9 and m["confusion_val"]["class_names"] == m["class_names"]
    assert np.array(m["confusion_test"]["matrix"]).sum() == 12
    assert m["temperature"] > 0 and 0 <= m["test_accuracy"] <= 1
    split = T.read_table(trained / "split.star")
    assert split["cmSplit"].value_counts().to_dict() == {"train": 39, "test": 12, "val": 9}

    payload = torch.load(trained / "model.pt", weights_only=True)
    assert payload["architecture"] == "compact3d" and payload["box"] == [BOX] * 3
    assert payload["class_names"] == m["class_names"] and payload["class_numbers"] == [1, 2, 3]
    assert payload["voxel_size"] == pytest.approx(VOXEL) and payload["temperature"] == pytest.approx(m["temperature"])
    model, meta = load_classifier(trained / "model.pt")
    assert model.n_classes == 3 and meta["normalise"] == m["normalise"] == "zscore"  # the subtomo recipe's


def test_predict_columns_and_test_accuracy(trained, dataset):
    split = T.read_table(trained / "split.star")
    test_table = _write(split[split["cmSplit"] == "test"].drop(columns=["cmSplit", "cmLabel"]),
                        dataset / "test.star")
    out = dataset / "pred"
    assert main(["classify", "predict", "--in", test_table, "--model", str(trained / "model.pt"), "--out",
                 str(out), "--batch-size", "5"]) == 0
    df = T.read_table(out / "particles.star")
    m = json.loads((out / "metrics.json").read_text())
    names = m["class_names"]
    assert len(df) == 12 and set(df[T.CLASS]) <= {1, 2, 3}
    assert all(df[T.CLASS_NAME] == [names[c - 1] for c in df[T.CLASS]])
    probs = df[["cmProb1", "cmProb2", "cmProb3"]].to_numpy()
    assert np.allclose(probs.sum(1), 1.0, atol=1e-5)
    assert np.allclose(df[T.SCORE], probs.max(1)) and np.array_equal(df[T.CLASS] - 1, probs.argmax(1))
    assert "cmInputClassNumber" in df.columns and "cmInputClassName" in df.columns
    train_metrics = json.loads((trained / "metrics.json").read_text())
    assert m["accuracy_vs_input_labels"] == pytest.approx(train_metrics["test_accuracy"])
    assert sum(m["counts"].values()) == 12 and m["n_unknown"] == 0 and m["subtomograms_per_s"] > 0

    threshold = float(np.median(df[T.SCORE]))
    out2 = dataset / "pred_unknown"
    assert main(["classify", "predict", "--in", test_table, "--model", str(trained / "model.pt"), "--out",
                 str(out2), "--unknown-threshold", str(threshold)]) == 0
    df2 = T.read_table(out2 / "particles.star")
    low = df[T.SCORE].to_numpy() < threshold
    assert 0 < low.sum() < 12
    assert (df2[T.CLASS].to_numpy()[low] == 0).all() and (df2[T.CLASS_NAME].to_numpy()[low] == "unknown").all()
    assert (df2[T.CLASS].to_numpy()[~low] == df[T.CLASS].to_numpy()[~low]).all()
    assert json.loads((out2 / "metrics.json").read_text())["n_unknown"] == int(low.sum())


def test_resume_from_cli(trained, dataset, capsys, tmp_path):
    table = str(dataset / "data" / "particles.star")
    # the subtomo recipe's cosine schedule spans the planned epochs: more epochs on resume is refused
    rc = main(["classify", "train", "--in", table, "--out", str(trained), "--epochs", "4", "--patience", "0",
               "--resume", *TRAIN_ARGS])
    assert rc == 2 and "epochs" in _err(capsys)
    # the paper's recipe (inverse-time decay) can be extended
    out = tmp_path / "paper"
    assert main(["classify", "train", "--in", table, "--out", str(out), "--recipe", "paper", "--epochs", "2",
                 "--patience", "0", *TRAIN_ARGS]) == 0
    rc = main(["classify", "train", "--in", table, "--out", str(out), "--recipe", "paper", "--epochs", "3",
               "--patience", "0", "--resume", *TRAIN_ARGS])
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["resumed_from_epoch"] == 2 and m["epochs_run"] == 3 and m["recipe"] == "paper"


def test_bad_training_input(dataset, capsys, tmp_path):
    df = T.read_table(dataset / "data" / "particles.star")

    def train(table):
        rc = main(["classify", "train", "--in", table, "--out", str(tmp_path / "bad"), "--epochs", "1", *TRAIN_ARGS])
        return rc, _err(capsys)

    rc, err = train(_write(df[df[T.CLASS] == 1], tmp_path / "one.star"))
    assert rc == 2 and "only one class" in err and "phantom0" in err
    few = pd.concat([df[df[T.CLASS] == 1], df[df[T.CLASS] == 2].head(3)])
    rc, err = train(_write(few, tmp_path / "few.star"))
    assert rc == 2 and "too few examples" in err and "'phantom1' has 3" in err

    vol, vs = read_mrc(df[T.IMAGE].iloc[5])
    vol[2, 3, 4] = np.nan
    write_mrc(tmp_path / "nan.mrc", vol, vs)
    nan_df = df.copy()
    nan_df.loc[5, T.IMAGE] = str(tmp_path / "nan.mrc")
    rc, err = train(_write(nan_df, tmp_path / "nan.star"))
    assert rc == 2 and "nan.mrc" in err and "NaN" in err

    write_mrc(tmp_path / "big.mrc", np.zeros((18, 18, 18), np.float32) + np.arange(18)[:, None, None], vs)
    mixed = df.copy()
    mixed.loc[7, T.IMAGE] = str(tmp_path / "big.mrc")
    rc, err = train(_write(mixed, tmp_path / "mixed.star"))
    assert rc == 2 and "big.mrc" in err and "box" in err


def test_bad_prediction_input(trained, dataset, capsys, tmp_path):
    df = T.read_table(dataset / "data" / "particles.star").head(4)
    model = str(trained / "model.pt")

    def predict(table, model_path=model):
        rc = main(["classify", "predict", "--in", table, "--model", model_path, "--out", str(tmp_path / "p")])
        return rc, _err(capsys)

    paths = []
    for i in range(4):
        paths.append(str(tmp_path / f"b{i}.mrc"))
        write_mrc(paths[-1], np.random.default_rng(i).normal(size=(20, 20, 20)).astype(np.float32), VOXEL)
    rc, err = predict(_write(df.assign(**{T.IMAGE: paths}), tmp_path / "box.star"))
    assert rc == 2 and "box mismatch" in err and "16x16x16" in err and "--box 16" in err
    rc, err = predict(_write(df.assign(**{T.VOXEL_SIZE: 10.0}), tmp_path / "vs.star"))
    assert rc == 2 and "voxel-size mismatch" in err and "20.000" in err

    payload = torch.load(trained / "model.pt", weights_only=True)
    payload["architecture"] = "dsrf3d-v2"
    payload["build_args"].pop("dropout")
    torch.save(payload, tmp_path / "other.pt")
    rc, err = predict(_write(df, tmp_path / "ok.star"), str(tmp_path / "other.pt"))
    assert rc == 2 and "do not fit architecture 'dsrf3d-v2'" in err
    (tmp_path / "corrupt.pt").write_bytes(b"\x00garbage" * 100)
    rc, err = predict(str(tmp_path / "ok.star"), str(tmp_path / "corrupt.pt"))
    assert rc == 2 and "not a readable model file" in err
    rc, err = predict(str(tmp_path / "ok.star"), str(trained / "checkpoint.pt"))
    assert rc == 2 and "training checkpoint" in err


def test_labels_from_numbers_and_names():
    df = pd.DataFrame({T.CLASS: [3, 1, 3, 0], T.CLASS_NAME: ["b", "a", "b", ""]})
    labels, names, numbers = table_labels(df)
    assert labels.tolist() == [1, 0, 1, -1] and names == ["a", "b"] and numbers == [1, 3]
    labels, names, numbers = table_labels(pd.DataFrame({T.CLASS_NAME: ["z", "y", "z"]}))
    assert labels.tolist() == [1, 0, 1] and names == ["y", "z"] and numbers == [1, 2]
    labels, names, _ = table_labels(pd.DataFrame({T.CLASS: [2, 1]}))
    assert names == ["class1", "class2"]
    with pytest.raises(TableError, match="several names"):
        table_labels(pd.DataFrame({T.CLASS: [1, 1], T.CLASS_NAME: ["a", "b"]}))
    with pytest.raises(TableError, match="no labels"):
        table_labels(pd.DataFrame({T.IMAGE: ["x.mrc"]}))
    with pytest.raises(TableError, match="too few"):
        check_labels(np.array([0] * 12 + [1] * 4), ["a", "b"], min_per_class=5)


def test_stratified_split_fractions():
    labels = np.repeat([0, 1, 2], [100, 50, 10])
    split = stratified_split(labels, 0.2, 0.2, seed=0)
    for c, n in ((0, 100), (1, 50), (2, 10)):
        s = split[labels == c]
        assert (s == "test").sum() == round(0.2 * n)
        assert (s == "val").sum() == round(0.2 * (n - round(0.2 * n)))
    assert np.array_equal(split, stratified_split(labels, 0.2, 0.2, seed=0))


def test_rif_svm_beats_chance(dataset):
    df = T.read_table(dataset / "data" / "particles.star")
    x = np.stack([read_mrc(p)[0] for p in df[T.IMAGE]])
    y = df[T.CLASS].to_numpy() - 1
    split = stratified_split(y, 0.3, 0.0, seed=0)
    clf = RifSvmClassifier(l_max=6, n_shells=6).fit(x[split == "train"], y[split == "train"])
    acc = float((clf.predict(x[split == "test"]) == y[split == "test"]).mean())
    assert acc > 0.7  # chance: 1/3


def test_chance_level_training_is_flagged():
    from cryomine_core.classify.training import chance_warning

    labels = np.repeat([0, 1, 2], [10, 10, 20])  # the largest class is half the items
    assert "did not learn" in chance_warning("dsrf3d-v2", 0.52, labels)
    assert chance_warning("compact3d", 0.80, labels) is None
    assert chance_warning("compact3d", None, labels) is None


def test_a_new_run_killed_half_way_leaves_no_earlier_model_beside_its_checkpoint(trained, dataset, tmp_path,
                                                                                 monkeypatch, capsys):
    import shutil

    import cryomine_core.classify.training as training

    out = tmp_path / "run"
    shutil.copytree(trained, out)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "fit", killed)
    rc = main(["classify", "train", "--in", str(dataset / "data" / "particles.star"), "--out", str(out),
               "--epochs", "2", *TRAIN_ARGS])
    assert rc == 130 and "interrupted" in capsys.readouterr().err
    assert not (out / "model.pt").exists() and not (out / "metrics.json").exists()
    assert (out / "split.star").exists()  # written by the new run before training
    # bad input is refused before anything is removed
    shutil.copytree(trained, tmp_path / "kept")
    rc = main(["classify", "train", "--in", str(tmp_path / "missing.star"), "--out", str(tmp_path / "kept")])
    assert rc == 2 and (tmp_path / "kept" / "model.pt").exists()
