"""Headless Scipion workflow: simulate subtomograms -> align and average, checked against the truth.

A reference-free alignment can only recover poses up to one global rotation G (the average may
come out rotated): with particle_i(x) = ref(R_iᵀ x), an average ref(Gᵀ x) gives R_est_i = R_i Gᵀ.
So R_true_iᵀ R_est_i must be the same G for every particle; the test measures each particle's
angular distance from the consensus G, and the shifts after removing the consensus offset.
"""

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.scipion

from pyworkflow.tests import BaseTest, setupTestProject  # noqa: E402

from cryomine_core.geometry import scipion_matrix_to_pose  # noqa: E402
from cryomine_core.io.mrc import read_mrc  # noqa: E402

N_PER_CLASS = 24


def _consensus_errors(r_true, r_est):
    """Rotation error (deg) of each particle once the one global rotation is removed (core's pose_errors)."""
    from cryomine_core.align.evaluate import pose_errors

    zeros = torch.zeros(r_true.shape[0], 3, dtype=r_true.dtype)
    return pose_errors(r_est, zeros, r_true, zeros)[0]


class TestCryomineAlignWorkflow(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)

    def test_simulate_then_align_recovers_poses(self):
        from cryomine_core.geometry import relion_angstrom_to_pose
        from cryomine_scipion.convert import TRUE_ANGLES
        from cryomine_scipion.protocols import ProtCryomineAlign, ProtCryomineSimulate
        from cryomine_scipion.protocols.protocol_simulate import SUBTOMOGRAMS

        sim = self.newProtocol(ProtCryomineSimulate, kind=SUBTOMOGRAMS, structures="phantom:0", nPerClass=N_PER_CLASS,
                               boxSize=24, voxelSize=12.0, maxShift=1.5, snr=1.0, tiltMin=-60.0, tiltMax=60.0,
                               tiltStep=3.0, seed=5)
        self.launchProtocol(sim)

        align = self.newProtocol(ProtCryomineAlign, iterations=3, angularStep=20.0, maxShift=3.0, seed=1)
        align.inputSubtomos.set(sim)
        align.inputSubtomos.setExtended("subtomograms")
        self.launchProtocol(align)

        aligned = align.subtomograms
        self.assertEqual(aligned.getSize(), N_PER_CLASS)
        truth = {s.getObjId(): [getattr(s, a).get() for a in TRUE_ANGLES] for s in sim.subtomograms.iterItems()}
        ids = sorted(truth)
        est = {s.getObjId(): s.getTransform().getMatrix() for s in aligned.iterItems()}
        r_true, _ = relion_angstrom_to_pose(torch.tensor([truth[i] for i in ids], dtype=torch.float64),
                                            torch.zeros(len(ids), 3, dtype=torch.float64), 12.0)
        r_est, _ = scipion_matrix_to_pose(torch.tensor(np.stack([est[i] for i in ids]), dtype=torch.float64))
        errors = _consensus_errors(r_true, r_est)
        median = float(errors.median())
        self.assertLess(median, 5.0, f"median rotation error {median:.1f} deg (errors {errors.round().tolist()})")

        average = align.average
        vol, voxel = read_mrc(average.getFileName())
        self.assertEqual(vol.shape, (24, 24, 24))
        halves = average.getHalfMaps().split(",")
        self.assertEqual(len(halves), 2)
        for half in halves:
            self.assertEqual(read_mrc(half)[0].shape, (24, 24, 24))
        self.assertIn("FSC", " ".join(align.summary()))
        from cryomine_scipion.viewers.viewer_plots import existingPlots

        self.assertEqual([t for t, _ in existingPlots(align)], [t for t, _ in align.resultPlots()],
                         "the viewer's figures (FSC, slices, orientations) must all exist")

    def test_simulate_then_multi_reference_classification_separates_structures(self):
        from cryomine_scipion.protocols import ProtCryomineMultiRefClassify, ProtCryomineSimulate
        from cryomine_scipion.protocols.protocol_simulate import SUBTOMOGRAMS

        sim = self.newProtocol(ProtCryomineSimulate, kind=SUBTOMOGRAMS, structures="phantom:0 phantom:1",
                               nPerClass=12, boxSize=24, voxelSize=12.0, maxShift=1.0, snr=1.0, tiltMin=-60.0,
                               tiltMax=60.0, tiltStep=3.0, seed=8)
        self.launchProtocol(sim)
        truth = {s.getObjId(): s.getClassId() for s in sim.subtomograms.iterItems()}

        mra = self.newProtocol(ProtCryomineMultiRefClassify, numberOfClasses=2, iterations=3, angularStep=20.0,
                               maxShift=3.0, seed=2)
        mra.inputSubtomos.set(sim)
        mra.inputSubtomos.setExtended("subtomograms")
        self.launchProtocol(mra)

        classes = mra.classes
        self.assertEqual(classes.getSize(), 2)
        # each predicted class is dominated by one true class, and the two are different
        majority, pure = set(), 0
        for cls in classes.iterItems():
            members = [truth[item.getObjId()] for item in cls.iterItems()]
            top = max(set(members), key=members.count)
            majority.add(top)
            pure += members.count(top)
            self.assertEqual(read_mrc(cls.getRepresentative().getFileName())[0].shape, (24, 24, 24))
        self.assertEqual(len(majority), 2, "both predicted classes are dominated by the same structure")
        self.assertGreaterEqual(pure / len(truth), 0.9)
