"""Set the environment that lets Scipion run headless (tests, the demo) without scipion-app.

Scipion reads these variables when pyworkflow is first imported, so call
:func:`configure_headless_scipion` before any ``pyworkflow``/``pwem``/``tomo`` import. Nothing
here imports Scipion.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HOSTS_CONF = """[localhost]
PARALLEL_COMMAND = mpirun -np %_(JOB_NODES)d --map-by node %_(COMMAND)s
NAME = SCIPION_DEFAULT
ADDRESS = localhost
MPI_COMMAND = mpirun -np %_(JOB_NODES)d %_(COMMAND)s
QUEUE_SYSTEM = False
"""


def configure_headless_scipion(scratch: str | os.PathLike, python: str | None = None) -> dict[str, str]:
    """Write ``scratch/scipion-home/config/hosts.conf`` and set Scipion's variables.

    Sets ``SCIPION_DOMAIN=pwem``, ``SCIPION_HOME`` (holding the hosts.conf), ``SCIPION_PYTHON``
    (the Python that runs protocols, default: this one), ``SCIPION_USER_DATA`` (projects are
    created in ``scratch/user-data``), ``SCIPION_TEST_NOSYNC=1`` (no test-data download),
    ``SCIPION_NOTIFY=False`` and ``SCIPION_PRIORITY_PACKAGE_LIST="pwem tomo"`` (tomo's tree
    sections first). Returns the variables it set.
    """
    scratch = Path(scratch).resolve()
    home = scratch / "scipion-home"
    (home / "config").mkdir(parents=True, exist_ok=True)
    (home / "config" / "hosts.conf").write_text(HOSTS_CONF)
    user_data = scratch / "user-data"
    user_data.mkdir(parents=True, exist_ok=True)
    env = {
        "SCIPION_DOMAIN": "pwem",
        "SCIPION_HOME": str(home),
        "SCIPION_HOSTS": str(home / "config" / "hosts.conf"),
        "SCIPION_PYTHON": python or sys.executable,
        "SCIPION_USER_DATA": str(user_data),
        "SCIPION_TEST_NOSYNC": "1",
        "SCIPION_NOTIFY": "False",
        "SCIPION_PRIORITY_PACKAGE_LIST": "pwem tomo",
        "SCIPION_TESTS_CMD": "cryomine-tests",
    }
    os.environ.update(env)
    return env
