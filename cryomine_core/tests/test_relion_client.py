"""RELION itself reads CryoMine's RELION export: relion_reconstruct of exported subtomograms gives the true map.

Uses Debian's ``relion`` package (RELION 3.1; ``scripts/setup_env.sh`` installs it when run as
root); skipped, with the reason, when ``relion_reconstruct`` is not on the PATH. Simulated
subtomograms with known poses (no CTF, full tilt range, high SNR) are exported with
``cryomine formats convert --to relion``; RELION's reconstruction must match the true map and
CryoMine's own average, and a file with the angles negated (a convention error) must not.
"""

import shutil
import subprocess

import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile

from cryomine_core.cli import main

RELION = shutil.which("relion_reconstruct")
pytestmark = pytest.mark.skipif(RELION is None, reason="relion_reconstruct not found (Debian: apt-get install relion)")


def _corr(a, b):
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def _reconstruct(star, out):
    done = subprocess.run([RELION, "--i", str(star), "--o", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return mrcfile.read(out)


@pytest.mark.slow
def test_relion_reconstructs_our_export_to_the_true_map(tmp_path):
    assert main(["simulate", "subtomograms", "--out", str(tmp_path / "sim"), "--structures", "phantom:0",
                 "--n-per-class", "60", "--snr", "10", "--box", "24", "--voxel-size", "12", "--no-ctf",
                 "--tilt-range", "-90", "90", "--seed", "1"]) == 0
    assert main(["formats", "convert", str(tmp_path / "sim/particles.star"), "--from", "cryomine", "--to", "relion",
                 "--out", str(tmp_path / "particles.star")]) == 0
    assert main(["align", "average", "--in", str(tmp_path / "sim/particles.star"), "--out", str(tmp_path / "avg")]) \
        == 0
    truth = mrcfile.read(tmp_path / "sim/maps/phantom0.mrc")
    ours = mrcfile.read(tmp_path / "avg/average.mrc")
    relion = _reconstruct(tmp_path / "particles.star", tmp_path / "relion.mrc")
    assert _corr(relion, truth) > 0.98
    assert _corr(relion, ours) > 0.98

    blocks = starfile.read(tmp_path / "particles.star", always_dict=True)
    wrong = blocks["particles"].copy()
    for c in ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"):
        wrong[c] = -wrong[c]
    starfile.write({"optics": blocks["optics"], "particles": pd.DataFrame(wrong)}, tmp_path / "wrong.star")
    control = _reconstruct(tmp_path / "wrong.star", tmp_path / "wrong.mrc")
    assert _corr(control, truth) < _corr(relion, truth) - 0.05
