"""Several processes (torchrun, gloo on CPUs): the same command gives one process's result."""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from cryomine_core.cli import main
from cryomine_core.distributed import share
from cryomine_core.geometry import rotation_angle_deg
from cryomine_core.io import table as T
from cryomine_core.io.columns import ALIGN_FAILED
from cryomine_core.io.mrc import read_mrc, write_mrc
from cryomine_core.io.poses import table_poses

pytestmark = pytest.mark.slow  # starts two processes


def _run(*args: str, processes: int = 2, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run --nproc-per-node N ARGS`` (``processes=1``: ``python ARGS``), one thread each,
    outside any torchrun of the test session itself."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    launcher = [] if processes == 1 else ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                                          str(processes)]
    return subprocess.run([sys.executable, *launcher, *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_shares_cover_every_row_once(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    rows = []
    for r in range(3):
        monkeypatch.setenv("RANK", str(r))
        rows.append(share(10))
    assert np.array_equal(np.concatenate(rows), np.arange(10))
    assert [len(x) for x in rows] == [4, 3, 3]
    blocks = []
    for r in range(3):  # in whole blocks of 4: a batch never straddles two ranks
        monkeypatch.setenv("RANK", str(r))
        blocks.append(share(10, block=4))
    assert [x.tolist() for x in blocks] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_align_average_under_torchrun_equals_one_process(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(30):
        write_mrc(tmp_path / f"p{i}.mrc", rng.normal(size=(12, 12, 12)).astype(np.float32), 15.0)
        rows.append({T.IMAGE: f"p{i}.mrc", T.VOXEL_SIZE: 15.0, T.TILT_MIN: -60.0, T.TILT_MAX: 60.0,
                     T.CLASS: 1 + i % 3, "rlnAngleRot": 12.0 * i, "rlnAngleTilt": 5.0 * i, "rlnAnglePsi": -7.0 * i})
    T.write_table(tmp_path / "p.star", pd.DataFrame(rows), relative_to_table=True)
    assert main(["align", "average", "--in", str(tmp_path / "p.star"), "--out", str(tmp_path / "one"),
                 "--by-class", "--device", "cpu", "--chunk", "4"]) == 0
    run = _run("-m", "cryomine_core", "align", "average", "--in", str(tmp_path / "p.star"), "--out",
               str(tmp_path / "two"), "--by-class", "--device", "cpu", "--chunk", "4")
    assert run.returncode == 0, run.stderr
    assert run.stdout.count('"command": "align average"') == 1  # one summary: rank 0's
    assert "rank 1 of 2" in run.stderr
    for name in ("average.mrc", "half1.mrc", "half2.mrc", "class_001.mrc", "class_003.mrc"):
        a, b = read_mrc(tmp_path / "one" / name)[0], read_mrc(tmp_path / "two" / name)[0]
        assert np.allclose(a, b, atol=1e-5 * np.abs(a).max()), name


def test_classify_predict_under_torchrun_equals_one_process(tmp_path):
    assert main(["simulate", "subtomograms", "--out", str(tmp_path / "sim"), "--structures", "phantom:0", "phantom:1",
                 "--n-per-class", "9", "--snr", "1", "--box", "20", "--voxel-size", "16", "--seed", "2"]) == 0
    table = str(tmp_path / "sim" / "particles.star")
    assert main(["classify", "train", "--in", table, "--out", str(tmp_path / "m"), "--epochs", "1", "--model",
                 "compact3d", "--width", "0.25", "--min-per-class", "2"]) == 0
    model = str(tmp_path / "m" / "model.pt")
    assert main(["classify", "predict", "--in", table, "--model", model, "--out", str(tmp_path / "one"),
                 "--device", "cpu"]) == 0
    run = _run("-m", "cryomine_core", "classify", "predict", "--in", table, "--model", model, "--out",
               str(tmp_path / "two"), "--device", "cpu")
    assert run.returncode == 0, run.stderr
    assert run.stdout.count('"counts"') == 1
    a, b = T.read_table(tmp_path / "one" / "particles.star"), T.read_table(tmp_path / "two" / "particles.star")
    assert (a[T.CLASS].to_numpy() == b[T.CLASS].to_numpy()).all()
    assert np.allclose(a["cmProb1"].to_numpy(float), b["cmProb1"].to_numpy(float), atol=1e-5)


def test_align_refine_under_torchrun_equals_one_process(tmp_path):
    """Each process aligns its share (whole batches of 32 of each half), read in chunks; half-map sums and poses
    are added over the processes."""
    assert main(["simulate", "subtomograms", "--out", str(tmp_path / "sim"), "--structures", "phantom:0",
                 "--n-per-class", "80", "--snr", "1", "--box", "20", "--voxel-size", "16", "--seed", "2"]) == 0
    table = str(tmp_path / "sim" / "particles.star")
    args = ["align", "refine", "--in", table, "--iterations", "2", "--angular-step", "20", "--device", "cpu",
            "--chunk", "5"]
    assert main(args + ["--out", str(tmp_path / "one")]) == 0
    run = _run("-m", "cryomine_core", *args, "--out", str(tmp_path / "two"))
    assert run.returncode == 0, run.stderr
    assert run.stdout.count('"command": "align refine"') == 1  # one summary: rank 0's
    a, b = T.read_table(tmp_path / "one" / "particles.star"), T.read_table(tmp_path / "two" / "particles.star")
    ra, sa = table_poses(a)
    rb, sb = table_poses(b)
    assert float(rotation_angle_deg(ra.transpose(-1, -2) @ rb).max()) < 0.1
    assert float((sa - sb).abs().max()) < 0.01
    assert (a[T.HALF_SET].to_numpy() == b[T.HALF_SET].to_numpy()).all()
    assert (a[ALIGN_FAILED].to_numpy() == b[ALIGN_FAILED].to_numpy()).all()
    for name in ("average.mrc", "half1.mrc", "half2.mrc"):
        x, y = read_mrc(tmp_path / "one" / name)[0], read_mrc(tmp_path / "two" / name)[0]
        assert np.corrcoef(x.ravel(), y.ravel())[0, 1] >= 0.9999, name
    assert json.loads((tmp_path / "two" / "metrics.json").read_text())["processes"] == 2


def test_align_mra_under_torchrun_equals_one_process(tmp_path):
    """Each process aligns its share to the K references; class sums, poses and classes are added over the
    processes and the k-means seeding is rank 0's (72 particles: rank 0 aligns 64, rank 1 8)."""
    assert main(["simulate", "subtomograms", "--out", str(tmp_path / "sim"), "--structures", "phantom:0", "phantom:1",
                 "phantom:2", "--n-per-class", "24", "--snr", "1", "--box", "20", "--voxel-size", "16", "--seed",
                 "4"]) == 0
    table = str(tmp_path / "sim" / "particles.star")
    args = ["align", "mra", "--in", table, "--classes", "3", "--iterations", "2", "--angular-step", "20",
            "--device", "cpu", "--chunk", "7"]
    assert main(args + ["--out", str(tmp_path / "one")]) == 0
    run = _run("-m", "cryomine_core", *args, "--out", str(tmp_path / "two"))
    assert run.returncode == 0, run.stderr
    assert run.stdout.count('"command": "align mra"') == 1
    a, b = T.read_table(tmp_path / "one" / "particles.star"), T.read_table(tmp_path / "two" / "particles.star")
    assert (a[T.CLASS].to_numpy() == b[T.CLASS].to_numpy()).all()
    ra, _ = table_poses(a)
    rb, _ = table_poses(b)
    assert float(rotation_angle_deg(ra.transpose(-1, -2) @ rb).max()) < 0.1
    for k in (1, 2, 3):
        x, y = read_mrc(tmp_path / "one" / f"class_00{k}.mrc")[0], read_mrc(tmp_path / "two" / f"class_00{k}.mrc")[0]
        assert np.corrcoef(x.ravel(), y.ravel())[0, 1] >= 0.9999


FIT_SCRIPT = """
import logging
import sys
import numpy as np
import torch
from torch import nn
from cryomine_core import distributed
from cryomine_core.train.data import ArrayDataset
from cryomine_core.train.loop import TrainConfig, fit

logging.basicConfig(level=logging.INFO)
distributed.setup(torch.device("cpu"))
rng = np.random.default_rng(0)
x = rng.standard_normal((50, 8, 8, 8)).astype(np.float32)
y = (x[:, :4].mean(axis=(1, 2, 3)) > x[:, 4:].mean(axis=(1, 2, 3))).astype(int)
torch.manual_seed(0)
model = nn.Sequential(nn.Flatten(), nn.Linear(512, 2))
result = fit(model, ArrayDataset(x, y), None, TrainConfig(epochs=3, batch_size=8, lr=0.05, patience=0), device="cpu")
if distributed.is_writer():
    torch.save({"state": model.state_dict(), "history": result.history}, sys.argv[1])
distributed.teardown()
"""


def test_training_under_torchrun_takes_the_one_process_steps(tmp_path):
    """DistributedDataParallel: each process trains on its part of every batch of 8 (the last, of 2, split 1 + 1),
    the losses are weighted by the part's share and the gradients averaged, so 2 processes end with the weights
    and epoch figures of 1 process (a model without batch norm; with it, CPU processes normalise apart)."""
    script = tmp_path / "fit.py"
    script.write_text(FIT_SCRIPT)
    one = _run(str(script), str(tmp_path / "one.pt"), processes=1)
    assert one.returncode == 0, one.stderr
    two = _run(str(script), str(tmp_path / "two.pt"))
    assert two.returncode == 0, two.stderr
    assert "training on 2 CPU processes" in two.stderr
    import torch

    a, b = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    for name, value in a["state"].items():
        assert torch.allclose(value, b["state"][name], atol=1e-5), name
    torch.manual_seed(0)
    initial = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(512, 2)).state_dict()
    assert float((a["state"]["1.weight"] - initial["1.weight"]).abs().max()) > 1e-3  # the steps moved the weights
    for ra, rb in zip(a["history"], b["history"], strict=True):
        assert abs(ra["train_loss"] - rb["train_loss"]) < 1e-5 and ra["train_accuracy"] == rb["train_accuracy"]


def test_classify_train_under_torchrun_writes_one_model(tmp_path):
    """The command under torchrun: rank 0 alone reports and writes model.pt, whose metrics say 2 processes; the
    processes end with the same weights (checked by the loop itself) and the model still learns the set."""
    assert main(["simulate", "subtomograms", "--out", str(tmp_path / "sim"), "--structures", "phantom:0", "phantom:2",
                 "--n-per-class", "24", "--snr", "2", "--box", "20", "--voxel-size", "16", "--seed", "3"]) == 0
    run = _run("-m", "cryomine_core", "classify", "train", "--in", str(tmp_path / "sim" / "particles.star"), "--out",
               str(tmp_path / "m"), "--model", "compact3d", "--width", "0.25", "--epochs", "4", "--min-per-class", "2",
               "--device", "cpu", timeout=600)
    assert run.returncode == 0, run.stderr
    assert run.stdout.count('"test_accuracy"') == 1
    m = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert m["processes"] == 2 and (tmp_path / "m" / "model.pt").stat().st_size > 0
    assert m["epochs_run"] >= 1 and m["test_accuracy"] is not None
