"""Scipion's queue submission: a CryoMine protocol sent to a (stand-in) queue runs its job script and
finishes with its outputs.

The headless hosts.conf (cryomine_scipion/headless.py) defines a queue whose submit command runs
the generated job script in place after printing a job id, as sbatch would; the README ("Large
sets") gives the Slurm version of the same file.
"""

import glob
import os

import pytest

pytestmark = pytest.mark.scipion

from pyworkflow.tests import BaseTest, setupTestProject  # noqa: E402


class TestCryomineQueue(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)

    def test_simulate_through_the_queue(self):
        from cryomine_scipion.protocols import ProtCryomineSimulate
        from cryomine_scipion.protocols.protocol_simulate import SUBTOMOGRAMS

        prot = self.newProtocol(ProtCryomineSimulate, kind=SUBTOMOGRAMS, structures="phantom:0", nPerClass=3,
                                boxSize=20, voxelSize=16.0, snr=1.0, tiltMin=-60.0, tiltMax=60.0, tiltStep=10.0,
                                seed=1)
        prot._useQueue.set(True)
        prot._queueParams.set('["local", {"JOB_MEMORY": "2048", "JOB_TIME": "1"}]')
        self.launchProtocol(prot)
        self.assertEqual(prot.getJobIds(), ["4242"])
        scripts = glob.glob(os.path.join(prot._getLogsPath(), "cryomine*.job"))
        self.assertEqual(len(scripts), 1, "the protocol was not submitted through the queue's job script")
        with open(scripts[0]) as fh:
            self.assertIn("pw_protocol_run.py", fh.read())
        self.assertEqual(prot.subtomograms.getSize(), 3)
