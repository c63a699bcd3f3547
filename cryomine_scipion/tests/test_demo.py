"""The demo, shortened (small tomograms of phantoms, 2 classifier epochs): every step runs in a headless
Scipion project, summary.json holds every figure the report judges, and report/index.html shows them."""

import json
import os
import subprocess
import sys

import pytest

from cryomine_scipion.demo_report import TARGETS

pytestmark = [pytest.mark.scipion, pytest.mark.slow]


def test_quick_demo_writes_the_summary_and_the_report(tmp_path):
    run = subprocess.run([sys.executable, "-m", "cryomine_scipion.demo", "--out", str(tmp_path / "demo"), "--quick",
                          "--phantoms", "--epochs", "2"], env=dict(os.environ), capture_output=True, text=True,
                         timeout=1500)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = tmp_path / "demo" / "report"
    summary = json.loads((report / "summary.json").read_text())
    for key in (*TARGETS, "particles_planted", "subtomograms_extracted", "classification_n_known",
                "structures_trained", "structure_held_out", "subdivision_ari", "wall_time_s", "data_note"):
        assert key in summary, key
    assert summary["subtomograms_extracted"] == summary["particles_planted"]  # padded at the edges: none lost
    assert summary["fraction_lost_at_edges"] == 0.0
    assert "phantoms" in summary["data_note"].lower()
    assert summary["structure_held_out"].startswith("spliceosome")
    # the average was compared with its true map and with the oracle average of the same particles
    assert summary["fsc_ratio_to_oracle"] == pytest.approx(summary["fsc05_vs_true_map_A"]
                                                           / summary["oracle_fsc05_vs_true_map_A"], abs=0.01)
    assert -1.0 <= summary["oracle_correlation_with_true_map"] <= 1.0
    for picture in ("visual_proteomics.png", "average_vs_truth.png"):
        assert (report / picture).stat().st_size > 1000, picture
    page = (report / "index.html").read_text()
    assert page.count("data:image/png;base64,") >= 5  # the pictures are inline
    assert "Procedural phantoms" in page and "./scripts/demo.sh" in page
