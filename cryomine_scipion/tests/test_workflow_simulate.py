"""Headless Scipion workflow: CryoMine's "simulate" protocol and its ground truth.

Subtomograms: per-item tilt range, true classes and maps, true poses kept beside identity
transforms. Tomograms: every true coordinate lands on its own class in the label mask and on its
own instance in the instance mask; tomograms carry their acquisition.
"""

import numpy as np
import pytest

pytestmark = pytest.mark.scipion

from pyworkflow.tests import BaseTest, setupTestProject  # noqa: E402

from cryomine_core.io import table as T  # noqa: E402
from cryomine_core.io.mrc import read_mrc  # noqa: E402

COMMON = dict(voxelSize=12.0, snr=0.5, tiltMin=-50.0, tiltMax=60.0, tiltStep=5.0, seed=3)


class TestCryomineSimulateWorkflow(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)

    def test_simulate_subtomograms(self):
        from cryomine_scipion.convert import TRUE_ANGLES, TRUE_SHIFTS
        from cryomine_scipion.protocols import ProtCryomineSimulate
        from cryomine_scipion.protocols.protocol_simulate import SUBTOMOGRAMS

        prot = self.newProtocol(ProtCryomineSimulate, kind=SUBTOMOGRAMS, structures="phantom:0 phantom:1",
                                nPerClass=4, boxSize=24, emptyClass=True, **COMMON)
        self.launchProtocol(prot)

        subtomos = prot.subtomograms
        self.assertEqual(subtomos.getSize(), 12)
        self.assertAlmostEqual(subtomos.getSamplingRate(), 12.0)
        truth = T.read_table(prot._getExtraPath("particles.star")).set_index(T.IMAGE)
        for sub in subtomos.iterSubtomos():
            vol, voxel = read_mrc(sub.getFileName())
            self.assertEqual(vol.shape, (24, 24, 24))
            self.assertAlmostEqual(voxel, 12.0, places=3)
            acq = sub.getAcquisition()
            self.assertEqual((acq.getAngleMin(), acq.getAngleMax()), (-50.0, 60.0))
            self.assertTrue(np.allclose(sub.getTransform().getMatrix(), np.eye(4)),
                            "simulated subtomograms must not carry the answer as their transform")
            row = truth.loc[sub.getFileName()]
            self.assertEqual(sub.getClassId(), int(row[T.CLASS]))
            angles = [getattr(sub, name).get() for name in TRUE_ANGLES]
            self.assertTrue(np.allclose(angles, row[list(T.ANGLES)].to_numpy(float), atol=1e-4))
            shifts = [getattr(sub, name).get() for name in TRUE_SHIFTS]
            self.assertTrue(np.allclose(shifts, -row[list(T.ORIGINS)].to_numpy(float), atol=1e-4))

        classes = prot.classes
        self.assertEqual(classes.getSize(), 3)
        labels = {}
        for cls in classes.iterItems():
            labels[cls.getObjLabel()] = cls.getSize()
            if cls.getObjLabel() != "empty":
                rep, _ = read_mrc(cls.getRepresentative().getFileName())
                self.assertEqual(rep.shape, (24, 24, 24))
                self.assertGreater(float(rep.std()), 0.0)
        self.assertEqual(labels, {"phantom0": 4, "phantom1": 4, "empty": 4})
        self.assertIn("realised", " ".join(prot.summary()))

    def test_simulate_tomograms(self):
        from tomo.constants import BOTTOM_LEFT_CORNER

        from cryomine_scipion.protocols import ProtCryomineSimulate
        from cryomine_scipion.protocols.protocol_simulate import TOMOGRAMS

        prot = self.newProtocol(ProtCryomineSimulate, kind=TOMOGRAMS, structures="phantom:0 phantom:2",
                                tomoSize="72 64 40", nTomograms=2, occupancy=0.1, boxSize=20, **COMMON)
        self.launchProtocol(prot)

        tomos = prot.tomograms
        self.assertEqual(tomos.getSize(), 2)
        for tomo in tomos.iterItems():
            vol, _ = read_mrc(tomo.getFileName())
            self.assertEqual(vol.shape, (40, 64, 72))
            self.assertEqual((tomo.getAcquisition().getAngleMin(), tomo.getAcquisition().getAngleMax()),
                             (-50.0, 60.0))
        labelMaps = {m.getTsId(): read_mrc(m.getFileName())[0] for m in prot.labelMasks.iterItems()}
        instanceMaps = {name: read_mrc(prot._getExtraPath("instances", f"{name}.mrc"))[0] for name in labelMaps}
        self.assertEqual(set(labelMaps), {t.getTsId() for t in tomos.iterItems()})
        for mask in prot.labelMasks.iterItems():
            self.assertTrue(mask.getVolName().endswith(f"{mask.getTsId()}.mrc"))

        coords = prot.coordinates
        truth = T.read_table(prot._getExtraPath("particles.star"), require=(T.TOMO, *T.COORDS))
        self.assertEqual(coords.getSize(), len(truth))
        self.assertGreater(coords.getSize(), 4)
        self.assertEqual(coords.getBoxSize(), 20)
        for coord in coords.iterCoordinates():
            x, y, z = (int(round(v)) for v in coord.getPosition(BOTTOM_LEFT_CORNER))
            self.assertEqual(int(labelMaps[coord.getTomoId()][z, y, x]), coord.getGroupId())
            self.assertEqual(int(instanceMaps[coord.getTomoId()][z, y, x]), coord._cmInstanceId.get())
            matrix = coord.getMatrix()
            self.assertTrue(np.allclose(matrix[:3, :3] @ matrix[:3, :3].T, np.eye(3), atol=1e-5))
