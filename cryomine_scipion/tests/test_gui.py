"""GUI under Xvfb: the Tomography tree lists CryoMine's protocols and each protocol form opens.

Screenshots are saved (PNG) to $CRYOMINE_TEST_ARTIFACTS/screenshots (default
test-artifacts/screenshots). Skipped, with the reason, only when no X server can be started.
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cryomine_scipion.tests.test_discovery import _cryomine_protocol_classes

pytestmark = [pytest.mark.gui, pytest.mark.scipion]


@pytest.fixture(scope="module")
def display():
    if shutil.which("Xvfb") is None:
        if os.environ.get("DISPLAY"):
            yield os.environ["DISPLAY"]
            return
        pytest.skip("no X server: Xvfb is not installed and DISPLAY is unset (install it: apt-get install xvfb)")
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1600x1000x24", "-nolisten", "tcp"],
                            pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    number = b""
    deadline = time.time() + 20
    while time.time() < deadline and not number.endswith(b"\n"):
        chunk = os.read(read_fd, 16)
        if not chunk:
            break
        number += chunk
    os.close(read_fd)
    if not number.strip():
        proc.kill()
        pytest.skip("Xvfb did not start (no display number reported within 20 s)")
    yield f":{number.decode().strip()}"
    proc.terminate()
    proc.wait(timeout=10)


def test_tree_and_forms_screenshots(display):
    classes = sorted(_cryomine_protocol_classes())
    out = Path(os.environ["CRYOMINE_TEST_ARTIFACTS"]) / "screenshots"
    env = dict(os.environ, DISPLAY=display)
    script = Path(__file__).with_name("gui_screenshots.py")
    res = subprocess.run([sys.executable, "-O", str(script), str(out), *classes], env=env, capture_output=True,
                         text=True, timeout=300)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    assert res.returncode == 0 and lines, (f"GUI script failed ({res.returncode}):\n{res.stdout[-3000:]}\n"
                                           f"{res.stderr[-3000:]}")
    report = json.loads(lines[-1])
    assert report["view"] == "Tomography"
    assert sorted(set(report["tree_items"])) == classes, report
    assert sorted(report["forms"]) == classes, report
    assert report.get("viewers") == ["ProtCryomineAlign"], report  # the results viewer opened on real outputs
    for shot in report["screenshots"]:
        assert Path(shot).stat().st_size > 10_000, f"{shot} looks empty"
