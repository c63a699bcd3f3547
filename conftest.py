"""Repository-wide pytest setup: a headless, throw-away Scipion environment for every test run.

Scipion reads its configuration when pyworkflow is first imported, so this runs before any test
module is collected. Projects go to a fresh temporary folder (removed at the end unless
CRYOMINE_KEEP_TEST_DATA=1); GUI screenshots go to test-artifacts/screenshots/ (override with
CRYOMINE_TEST_ARTIFACTS).
"""

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

# Load headless.py by path: importing the cryomine_scipion package would import Scipion too early.
_spec = importlib.util.spec_from_file_location("_cryomine_headless",
                                               Path(__file__).parent / "cryomine_scipion" / "headless.py")
_headless = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_headless)
configure_headless_scipion = _headless.configure_headless_scipion

_SCRATCH = Path(tempfile.mkdtemp(prefix="cryomine-tests-"))
configure_headless_scipion(_SCRATCH)
os.environ.setdefault("CRYOMINE_TEST_ARTIFACTS", str(Path(__file__).parent / "test-artifacts"))
os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_sessionfinish(session, exitstatus):
    if os.environ.get("CRYOMINE_KEEP_TEST_DATA") != "1":
        shutil.rmtree(_SCRATCH, ignore_errors=True)
    else:
        print(f"\nScipion test projects kept in {_SCRATCH}")
