"""Headless Scipion workflow: import tomograms and coordinates with tomo's protocols, extract with CryoMine.

Ground truth: Gaussian blobs planted at the coordinates must sit at the centre of every
extracted subtomogram; the tilt range and coordinates must be carried over.
"""

import numpy as np
import pytest

pytestmark = pytest.mark.scipion

from pyworkflow.tests import BaseTest, setupTestProject  # noqa: E402

from cryomine_core.io.mrc import read_mrc, write_mrc  # noqa: E402

BOX = 16
TOMO_SHAPE = (40, 64, 72)  # z, y, x
CENTERS = {  # tomogram -> xyz voxel centres (the last one of t1 crosses the edge)
    "t1": [(20, 30, 20), (50, 20, 25), (3, 30, 20)],
    "t2": [(36, 32, 18), (15, 45, 22)],
}


def _make_data(folder):
    z, y, x = np.meshgrid(*[np.arange(n) for n in TOMO_SHAPE], indexing="ij")
    for name, centers in CENTERS.items():
        tomo = np.random.default_rng(0).normal(0, 0.05, TOMO_SHAPE).astype(np.float32)
        for cx, cy, cz in centers:
            tomo += np.exp(-((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) / 4.5).astype(np.float32)
        write_mrc(folder / f"{name}.mrc", tomo, 10.0)
        (folder / f"{name}.txt").write_text("".join(f"{cx} {cy} {cz}\n" for cx, cy, cz in centers))


class TestCryomineExtractWorkflow(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)

    def test_import_then_extract(self):
        from pathlib import Path

        import tomo.protocols as tp

        from cryomine_scipion.protocols import ProtCryomineExtract

        data = Path(self.proj.getPath("inputdata"))
        data.mkdir(parents=True, exist_ok=True)
        _make_data(data)
        importTomos = self.newProtocol(tp.ProtImportTomograms, filesPath=str(data), filesPattern="*.mrc",
                                       samplingRate=10.0, acquisitionAngleMin=-55.0, acquisitionAngleMax=60.0)
        self.launchProtocol(importTomos)
        tomos = importTomos.Tomograms
        self.assertEqual(tomos.getSize(), 2)

        importCoords = self.newProtocol(tp.ProtImportCoordinates3D, filesPath=str(data), filesPattern="*.txt",
                                        importTomograms=tomos, boxSize=BOX, samplingRate=10.0)
        self.launchProtocol(importCoords)
        coords = importCoords.outputCoordinates
        self.assertEqual(coords.getSize(), 5)

        extract = self.newProtocol(ProtCryomineExtract, boxSize=BOX, edgeMode=0)
        extract.inputCoordinates.set(importCoords)
        extract.inputCoordinates.setExtended("outputCoordinates")
        self.launchProtocol(extract)

        subtomos = extract.subtomograms
        self.assertEqual(subtomos.getSize(), 4, "the particle whose box crosses the edge must be skipped")
        self.assertAlmostEqual(subtomos.getSamplingRate(), 10.0)
        self.assertIn("1 skipped", " ".join(extract.summary()))
        planted = {(name, c) for name, cs in CENTERS.items() for c in cs}
        for sub in subtomos.iterSubtomos():
            vol, _ = read_mrc(sub.getFileName())
            self.assertEqual(vol.shape, (BOX, BOX, BOX))
            self.assertEqual(np.unravel_index(np.argmax(vol), vol.shape), (BOX // 2,) * 3)
            acq = sub.getAcquisition()
            self.assertEqual((acq.getAngleMin(), acq.getAngleMax()), (-55.0, 60.0))
            coord = sub.getCoordinate3D()
            from tomo.constants import BOTTOM_LEFT_CORNER
            xyz = tuple(int(round(v)) for v in coord.getPosition(BOTTOM_LEFT_CORNER))
            self.assertIn((coord.getTomoId(), xyz), planted)
