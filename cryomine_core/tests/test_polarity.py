"""The contrast of a set of subtomograms: bright, dark or unclear, with no reference."""

import json

import numpy as np
import pytest
import torch

from cryomine_core.cli import main
from cryomine_core.polarity import BRIGHT, DARK, UNCLEAR, set_polarity


def _blobs(n: int, sign: float, noise: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    z, y, x = torch.meshgrid(*(torch.arange(24.0) - 12,) * 3, indexing="ij")
    out = []
    for _ in range(n):
        c = torch.randn(3, generator=g)  # up to a voxel or two off-centre
        r2 = ((z - c[0]) / 5) ** 2 + ((y - c[1]) / 4) ** 2 + ((x - c[2]) / 3.5) ** 2
        out.append(sign * torch.exp(-r2) + noise * torch.randn(24, 24, 24, generator=g))
    return torch.stack(out)


@pytest.mark.parametrize("sign, expected", [(1.0, BRIGHT), (-1.0, DARK)])
def test_bright_and_dark_particles_at_low_snr(sign, expected):
    # noise sd 1.2 against a peak of 1: per-voxel SNR far below 0.1 over the box
    res = set_polarity(_blobs(40, sign, 1.2))
    assert res["contrast"] == expected and res["fraction"] >= 0.7 and res["p_value"] <= 0.01
    assert np.sign(res["median_difference"]) == sign


def test_noise_is_unclear():
    res = set_polarity(_blobs(60, 0.0, 1.0, seed=3))
    assert res["contrast"] == UNCLEAR and res["p_value"] > 0.01


def test_table_check_reports_the_simulators_dark_particles(tmp_path, capsys):
    assert main(["simulate", "subtomograms", "--out", str(tmp_path / "sim"), "--structures", "phantom:0",
                 "--n-per-class", "16", "--snr", "0.1", "--box", "20", "--voxel-size", "16", "--seed", "2"]) == 0
    capsys.readouterr()
    assert main(["table", "check", str(tmp_path / "sim" / "particles.star")]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["contrast"]["contrast"] == DARK  # CTF-affected, not inverted: dark protein
