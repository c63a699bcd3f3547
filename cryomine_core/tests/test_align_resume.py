"""kill -9 of `align refine` and `classify train`, then --resume: the uninterrupted run's result, nothing half-written.

The runs are subprocesses (one torch thread each, so sums are reproducible). A run is killed with
SIGKILL at a chosen moment by a wrapper around the checkpoint writer: right after the checkpoint of
iteration 2 is written, or in the middle of writing it (then the file of iteration 1 must still be
the one on disk).
"""

import json
import os
import signal
import subprocess
import sys

import mrcfile
import numpy as np
import pytest
import starfile

from cryomine_core.cli import main

pytestmark = pytest.mark.slow  # subprocess runs: about a minute in all

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
ARGS = ["--iterations", "4", "--angular-step", "30", "--seed", "5"]

KILLER = """
import importlib, os, signal, sys, torch
refine = importlib.import_module("cryomine_core.align.refine")  # the package exports a function of that name
real = refine.save_checkpoint
def save(path, job, fingerprint, iteration, state):
    if iteration == 2 and {mid}:
        real_save = torch.save
        def half_save(obj, f):
            with open(f, "wb") as fh:
                fh.write(b"PK\\x03\\x04 half a checkpoint")
            os.kill(os.getpid(), signal.SIGKILL)
        torch.save = half_save
    real(path, job, fingerprint, iteration, state)
    if iteration == 2:
        os.kill(os.getpid(), signal.SIGKILL)
refine.save_checkpoint = save
from cryomine_core.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _kill_after(module: str, function: str, when: str) -> str:
    """Code that runs the CLI with the checkpoint writer ``module.function`` wrapped so the process is
    killed (SIGKILL) right after the call whose positional ``args`` make ``when`` true."""
    return f"""
import importlib, os, signal, sys
m = importlib.import_module({module!r})
real = m.{function}
def save(*args):
    real(*args)
    if {when}:
        os.kill(os.getpid(), signal.SIGKILL)
m.{function} = save
from cryomine_core.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _cli(argv, code=None):
    cmd = [sys.executable, "-c", code, *argv] if code else [sys.executable, "-m", "cryomine_core", *argv]
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    assert main(["simulate", "subtomograms", "--out", str(root / "sim"), "--structures", "phantom:0",
                 "--n-per-class", "24", "--snr", "2", "--box", "20", "--voxel-size", "16", "--seed", "3"]) == 0
    table = str(root / "sim" / "particles.star")
    done = _cli(["align", "refine", "--in", table, "--out", str(root / "full"), *ARGS])
    assert done.returncode == 0, done.stderr
    return root, table


def _same_result(a, b):
    ta, tb = starfile.read(a / "particles.star"), starfile.read(b / "particles.star")
    angles = ["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi", "rlnOriginXAngst", "rlnOriginYAngst", "rlnOriginZAngst"]
    assert np.allclose(ta[angles].to_numpy(float), tb[angles].to_numpy(float), atol=1e-4)
    assert np.allclose(mrcfile.read(a / "average.mrc"), mrcfile.read(b / "average.mrc"), atol=1e-5)
    ma, mb = json.loads((a / "metrics.json").read_text()), json.loads((b / "metrics.json").read_text())
    assert ma["resolution_0143_A"] == pytest.approx(mb["resolution_0143_A"])
    assert [h["mean_score"] for h in ma["history"]] == pytest.approx([h["mean_score"] for h in mb["history"]])


@pytest.mark.parametrize("moment", ["after the checkpoint", "while writing the checkpoint"])
def test_kill_9_then_resume_gives_the_uninterrupted_result(data, tmp_path, moment):
    root, table = data
    out = tmp_path / "run"
    killed = _cli(["align", "refine", "--in", table, "--out", str(out), *ARGS],
                  code=KILLER.format(mid=moment == "while writing the checkpoint"))
    assert killed.returncode == -signal.SIGKILL
    assert (out / "checkpoint.pt").exists()
    assert not any((out / name).exists() for name in ("particles.star", "average.mrc", "metrics.json"))
    resumed = _cli(["align", "refine", "--in", table, "--out", str(out), *ARGS, "--resume"])
    assert resumed.returncode == 0, resumed.stderr
    expected_from = "2" if moment == "after the checkpoint" else "1"
    assert f"resuming from {out / 'checkpoint.pt'} after iteration {expected_from} of 4" in resumed.stderr
    _same_result(out, root / "full")
    assert not (out / "checkpoint.pt").exists()


def test_resume_refuses_other_settings_or_no_checkpoint(data, tmp_path):
    root, table = data
    out = tmp_path / "run"
    killed = _cli(["align", "refine", "--in", table, "--out", str(out), *ARGS], code=KILLER.format(mid=False))
    assert killed.returncode == -signal.SIGKILL
    other = _cli(["align", "refine", "--in", table, "--out", str(out), "--iterations", "4", "--angular-step", "20",
                  "--seed", "5", "--resume"])
    assert other.returncode == 2
    assert "search differ" in other.stderr and len(other.stderr.strip().splitlines()[-1]) > 0
    none = _cli(["align", "refine", "--in", table, "--out", str(tmp_path / "new"), *ARGS, "--resume"])
    assert none.returncode == 2 and "no checkpoint to resume from" in none.stderr


CLASSIFY_KILLER = _kill_after("cryomine_core.train.loop", "_save_checkpoint", "args[1].get('epoch') == 2")


def test_classify_train_kill_9_then_resume_gives_the_uninterrupted_history(tmp_path):
    assert main(["simulate", "subtomograms", "--out", str(tmp_path / "sim"), "--structures", "phantom:0", "phantom:1",
                 "--n-per-class", "30", "--snr", "1", "--box", "20", "--voxel-size", "16", "--seed", "4"]) == 0
    table = str(tmp_path / "sim" / "particles.star")
    args = ["--model", "compact3d", "--width", "0.25", "--epochs", "4", "--batch-size", "8", "--patience", "10",
            "--seed", "2"]
    full = _cli(["classify", "train", "--in", table, "--out", str(tmp_path / "full"), *args])
    assert full.returncode == 0, full.stderr
    killed = _cli(["classify", "train", "--in", table, "--out", str(tmp_path / "run"), *args], code=CLASSIFY_KILLER)
    assert killed.returncode == -signal.SIGKILL
    assert not (tmp_path / "run" / "model.pt").exists()
    resumed = _cli(["classify", "train", "--in", table, "--out", str(tmp_path / "run"), *args, "--resume"])
    assert resumed.returncode == 0, resumed.stderr
    a = json.loads((tmp_path / "full" / "metrics.json").read_text())
    b = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert [h["val_loss"] for h in a["history"]] == pytest.approx([h["val_loss"] for h in b["history"]], abs=1e-6)
    assert a["test_accuracy"] == b["test_accuracy"]


MRA_KILLER = _kill_after("cryomine_core.align.mra", "save_checkpoint", "args[3] == 2")


def test_mra_kill_9_then_resume_gives_the_uninterrupted_result(tmp_path):
    assert main(["simulate", "subtomograms", "--out", str(tmp_path / "sim"), "--structures", "phantom:0", "phantom:1",
                 "--n-per-class", "12", "--snr", "2", "--box", "20", "--voxel-size", "16", "--seed", "6"]) == 0
    table = str(tmp_path / "sim" / "particles.star")
    args = ["--classes", "2", "--iterations", "3", "--angular-step", "30", "--seed", "1"]
    full = _cli(["align", "mra", "--in", table, "--out", str(tmp_path / "full"), *args])
    assert full.returncode == 0, full.stderr
    out = tmp_path / "run"
    killed = _cli(["align", "mra", "--in", table, "--out", str(out), *args], code=MRA_KILLER)
    assert killed.returncode == -signal.SIGKILL
    assert (out / "checkpoint.pt").exists() and not (out / "particles.star").exists()
    resumed = _cli(["align", "mra", "--in", table, "--out", str(out), *args, "--resume"])
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming from {out / 'checkpoint.pt'} after MRA iteration 2 of 3" in resumed.stderr
    ta, tb = starfile.read(tmp_path / "full" / "particles.star"), starfile.read(out / "particles.star")
    assert (ta["rlnClassNumber"].to_numpy() == tb["rlnClassNumber"].to_numpy()).all()
    assert np.allclose(ta[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy(float),
                       tb[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy(float), atol=1e-4)
    for k in (1, 2):
        assert np.allclose(mrcfile.read(tmp_path / "full" / f"class_00{k}.mrc"), mrcfile.read(out / f"class_00{k}.mrc"),
                           atol=1e-5)
    ha = json.loads((tmp_path / "full" / "metrics.json").read_text())["history"]
    hb = json.loads((out / "metrics.json").read_text())["history"]
    assert [h["mean_score"] for h in ha] == pytest.approx([h["mean_score"] for h in hb])
    assert not (out / "checkpoint.pt").exists()
    other = _cli(["align", "mra", "--in", table, "--out", str(tmp_path / "new"), *args, "--resume"])
    assert other.returncode == 2 and "no checkpoint to resume from" in other.stderr


# killed after features, clustering and cluster averages; re-assignment and merge to come
SUBDIVIDE_KILLER = _kill_after("cryomine_core.subdivide.stages", "save_checkpoint", "args[3] == 3")


def test_subdivide_kill_9_then_resume_gives_the_uninterrupted_result(tmp_path):
    assert main(["simulate", "subtomograms", "--out", str(tmp_path / "sim"), "--structures", "phantom:0", "phantom:1",
                 "--n-per-class", "12", "--snr", "2", "--box", "20", "--voxel-size", "16", "--seed", "7"]) == 0
    table = str(tmp_path / "sim" / "particles.star")
    args = ["--features", "rif", "--clusters", "3", "--align-clusters", "--align-iterations", "1", "--angular-step",
            "30", "--reassign", "2", "--merge-threshold", "0.95", "--merge-resolution", "45", "--no-plots",
            "--device", "cpu"]
    full = _cli(["subdivide", "--in", table, "--out", str(tmp_path / "full"), *args])
    assert full.returncode == 0, full.stderr
    out = tmp_path / "run"
    killed = _cli(["subdivide", "--in", table, "--out", str(out), *args], code=SUBDIVIDE_KILLER)
    assert killed.returncode == -signal.SIGKILL
    assert (out / "checkpoint.pt").exists() and not (out / "particles.star").exists()
    resumed = _cli(["subdivide", "--in", table, "--out", str(out), *args, "--resume"])
    assert resumed.returncode == 0, resumed.stderr
    assert "stages done: features, clustering, averages" in resumed.stderr
    ta, tb = starfile.read(tmp_path / "full" / "particles.star"), starfile.read(out / "particles.star")
    assert (ta["rlnClassNumber"].to_numpy() == tb["rlnClassNumber"].to_numpy()).all()
    poses = ["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi", "rlnOriginXAngst", "rlnOriginYAngst", "rlnOriginZAngst"]
    assert np.allclose(ta[poses].to_numpy(float), tb[poses].to_numpy(float), atol=1e-4)
    ma = json.loads((tmp_path / "full" / "metrics.json").read_text())
    mb = json.loads((out / "metrics.json").read_text())
    assert ma["n_clusters"] == mb["n_clusters"]
    ha, hb = ma["reassign"]["history"], mb["reassign"]["history"]
    assert [h["class_sizes"] for h in ha] == [h["class_sizes"] for h in hb]
    assert [h["mean_score"] for h in ha] == pytest.approx([h["mean_score"] for h in hb])
    for name in ma["averages"]["files"].values():
        assert np.allclose(mrcfile.read(tmp_path / "full" / name), mrcfile.read(out / name), atol=1e-5)
    assert not (out / "checkpoint.pt").exists()
    again = _cli(["subdivide", "--in", table, "--out", str(out), *args, "--resume"])  # finished: nothing to resume
    assert again.returncode == 2 and "no checkpoint to resume from" in again.stderr
