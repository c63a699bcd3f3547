"""Set the environment that lets Scipion run headless (tests, the demo) without scipion-app.

Scipion reads these variables when pyworkflow is first imported, so call
:func:`configure_headless_scipion` before any ``pyworkflow``/``pwem``/``tomo`` import. Nothing
here imports Scipion.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# A stand-in queue ("submitting" runs the generated job script here and now, after printing a job
# id as sbatch would), so the queue path of the protocols is tested headlessly; protocols use it
# only when "Use a queue engine" is set. The README ("Large data sets and clusters") gives the Slurm version.
HOSTS_CONF = """[localhost]
PARALLEL_COMMAND = mpirun -np %_(JOB_NODES)d --map-by node %_(COMMAND)s
NAME = SCIPION_DEFAULT
ADDRESS = localhost
MPI_COMMAND = mpirun -np %_(JOB_NODES)d %_(COMMAND)s
SUBMIT_PREFIX = cryomine
SUBMIT_COMMAND = bash %_(JOB_SCRIPT)s
CHECK_COMMAND = true %_(JOB_ID)s
CANCEL_COMMAND = true %_(JOB_ID)s
SUBMIT_TEMPLATE = #!/bin/bash
    ## stand-in for sbatch: print a job id, then run the job in place
    echo "Submitted batch job 4242"
    export CRYOMINE_QUEUE_JOB=%_(JOB_NAME)s
    %_(JOB_COMMAND)s > %_(JOB_LOGS)s.out 2> %_(JOB_LOGS)s.err
QUEUES = {"local": [["JOB_MEMORY", "4096", "Memory (MB)", "Memory of the job, in MB"],
    ["JOB_TIME", "1", "Time (hours)", "Time limit of the job"]]}
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


def _main(argv=None) -> int:
    """``python cryomine_scipion/headless.py --scratch DIR -- COMMAND ...``: run COMMAND headless.

    Run as a file (not ``-m``): importing the ``cryomine_scipion`` package imports Scipion, which
    must not happen before the environment is set.
    """
    import argparse

    parser = argparse.ArgumentParser(description=_main.__doc__)
    parser.add_argument("--scratch", required=True, help="folder for SCIPION_HOME and SCIPION_USER_DATA")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command to run (after --)")
    args = parser.parse_args(argv)
    command = [c for c in args.command if c != "--"] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give a command after --")
    configure_headless_scipion(args.scratch)
    os.execvp(command[0], command)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(_main())
