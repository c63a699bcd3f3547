"""Headless Scipion workflow: simulate tomograms -> train segmenter -> segment -> coordinates.

Ground truth: the simulator's coordinates. Every predicted object centre that falls inside a
true particle (instance map) is a hit; recall and precision over the true particles must be high
on easy data (SNR 5), and the label masks must cover the true particles.
"""

import pytest

pytestmark = pytest.mark.scipion

from pyworkflow.tests import BaseTest, setupTestProject  # noqa: E402

from cryomine_core.io.mrc import read_mrc  # noqa: E402
from cryomine_scipion.tests.truth import coordinate_hits  # noqa: E402


class TestCryomineSegmentWorkflow(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)

    def test_simulate_train_segment(self):
        from cryomine_scipion.protocols import ProtCryomineSegment, ProtCryomineSimulate, ProtCryomineTrainSegmenter
        from cryomine_scipion.protocols.protocol_simulate import TOMOGRAMS

        sim = self.newProtocol(ProtCryomineSimulate, kind=TOMOGRAMS, structures="phantom:0", tomoSize="64 64 32",
                               nTomograms=2, occupancy=0.12, snr=5.0, voxelSize=12.0, tiltMin=-60.0, tiltMax=60.0,
                               tiltStep=3.0, seed=4)
        self.launchProtocol(sim)

        train = self.newProtocol(ProtCryomineTrainSegmenter, nBoxes=4, boxSize=32, patch=24, epochs=20,
                                 patchesPerEpoch=16, width=4, seed=0)
        train.inputMasks.set(sim)
        train.inputMasks.setExtended("labelMasks")
        self.launchProtocol(train)
        self.assertIn("phantom0", train.model.getClassNames())

        seg = self.newProtocol(ProtCryomineSegment, minVoxels=4, boxSize=20)
        seg.inputTomograms.set(sim)
        seg.inputTomograms.setExtended("tomograms")
        seg.inputModel.set(train)
        seg.inputModel.setExtended("model")
        self.launchProtocol(seg)

        self.assertEqual(seg.labelMasks.getSize(), 2)
        instances = {name: read_mrc(sim._getExtraPath("instances", f"{name}.mrc"))[0]
                     for name in ("tomo000", "tomo001")}
        hits, n_pred, n_true = coordinate_hits(seg.coordinates, instances)
        self.assertGreater(n_pred, 0)
        recall, precision = len(hits) / n_true, len(hits) / n_pred
        self.assertGreaterEqual(recall, 0.6, f"recall {recall:.2f} ({len(hits)}/{n_true})")
        self.assertGreaterEqual(precision, 0.6, f"precision {precision:.2f} ({len(hits)}/{n_pred})")
        self.assertTrue(hasattr(seg, "coordinates_phantom0"))

        # the viewer finds the label overlays the protocol drew and builds a plot of each
        from cryomine_scipion.viewers.viewer_plots import CryomineResultsViewer, existingPlots

        self.assertEqual(len(existingPlots(seg)), 2)
        views = CryomineResultsViewer(project=self.proj)._visualize(seg)
        self.assertEqual(len(views), 2)
        self.assertTrue(all(hasattr(v, "show") for v in views))
