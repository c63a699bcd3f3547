"""The demo's report page: self-contained HTML with the targets, the pictures inline and the commands;
rendered by headless Chromium into a screenshot (skipped, with the reason, when Chromium is missing)."""

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from cryomine_scipion.demo_report import TARGETS, target_rows, write_report


def _png(path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 2))
    ax.imshow(np.random.default_rng(0).normal(size=(16, 16)), cmap="gray")
    fig.savefig(path, dpi=50)
    plt.close(fig)


@pytest.fixture
def page(tmp_path):
    _png(tmp_path / "slice.png")
    summary = {"segmentation_object_f1": 0.9, "classification_accuracy_extracted": 0.5,
               "fraction_lost_at_edges": 0.05, "data_note": "phantoms: the structure download failed"}
    return write_report(tmp_path, summary, [("slice.png", "a slice"), ("absent.png", "never made")],
                        {"reproduce": "./scripts/demo.sh", "open": "python -m pyworkflow.apps.pw_project X"})


def test_targets_are_judged_met_missed_or_not_measured():
    rows = {r["key"]: r for r in target_rows({"segmentation_object_f1": 0.85, "fraction_lost_at_edges": 0.2,
                                             "fsc_ratio_to_oracle": float("nan")})}
    assert set(rows) == set(TARGETS)
    assert rows["segmentation_object_f1"]["met"] is True  # >= 0.85 at the threshold
    assert rows["fraction_lost_at_edges"]["met"] is False  # <= 0.10 missed
    assert rows["fsc_ratio_to_oracle"]["met"] is None and rows["aligned_class_purity"]["met"] is None


def test_page_is_self_contained_with_every_target_and_picture(page):
    text = page.read_text()
    assert text.count("data:image/png;base64,") == 1
    assert "src=\"http" not in text and "src=\"/" not in text and "slice.png\" src=\"data:" in text
    assert "Not produced in this run: absent.png" in text
    assert "phantoms: the structure download failed" in text
    assert text.count("<tr class='met'>") == 2 and text.count("<tr class='missed'>") == 1
    assert text.count("<tr class='none'>") == len(TARGETS) - 3
    assert "./scripts/demo.sh" in text


def test_page_renders_in_headless_chromium(page):
    browser = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)),
                   None)
    if browser is None:
        pytest.skip("no Chromium: install Debian's package (apt-get install chromium; scripts/setup_env.sh does it "
                    "when run as root)")
    out = Path(os.environ["CRYOMINE_TEST_ARTIFACTS"]) / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    shot = out / "demo_report.png"
    shot.unlink(missing_ok=True)
    run = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                          f"--screenshot={shot}", "--window-size=1200,1600", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    from PIL import Image

    img = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert img.shape == (1600, 1200)
    assert img.std() > 5  # the page drew something: text, table and the picture, not a blank screen
