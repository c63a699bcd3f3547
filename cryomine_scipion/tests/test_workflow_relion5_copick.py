"""Headless Scipion workflow: RELION 5 and copick particles in, a CryoMine protocol on them, RELION 5 and copick out.

A RELION 5 project is written by CryoMine's core (optimisation set, particles with centred Å
coordinates and subtomogram angles, tomograms.star at a tilt-series pixel size 4 times finer than
the tomograms); "import particles from RELION 5" puts them on the imported tomograms (positions and
matrices checked item by item), CryoMine's extraction cuts subtomograms at those coordinates, and the
export writes RELION 5 files that read back to the same positions. The same particles as copick
picks of a project built in the test folder are imported onto the tomograms, and the extracted
subtomograms are exported back into the project as another user's picks.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

pytestmark = pytest.mark.scipion

from pyworkflow.tests import BaseTest, setupTestProject  # noqa: E402

from cryomine_core.geometry import pose_to_scipion_matrix, random_rotations, rotation_to_relion_eulers  # noqa: E402
from cryomine_core.io import table as T  # noqa: E402
from cryomine_core.io.copick_project import read_copick_picks, write_copick_picks  # noqa: E402
from cryomine_core.io.mrc import write_mrc  # noqa: E402
from cryomine_core.io.relion5 import (  # noqa: E402
    read_relion5_particles,
    write_optimisation_set,
    write_relion5_particles,
)
from cryomine_core.io.relion_tomograms import tomograms_from_files, write_tomograms_star  # noqa: E402

VOXEL = 10.0
TS_PIXEL = 2.5
N = 6
BOX = 12


def _project(folder: Path):
    """Two tomograms and a RELION 5 particle set on them; returns the table of true positions and poses."""
    rng = np.random.default_rng(5)
    files = {}
    for name in ("ts_a", "ts_b"):
        files[name] = str(write_mrc(folder / f"{name}.mrc", rng.normal(size=(30, 48, 48)).astype(np.float32), VOXEL))
    rot = random_rotations(N, generator=6, dtype=torch.float64)
    eulers = rotation_to_relion_eulers(rot).numpy()
    df = pd.DataFrame({T.TOMO: ["ts_a"] * 4 + ["ts_b"] * 2, T.VOXEL_SIZE: VOXEL, T.CLASS: [1, 2, 1, 2, 1, 2]})
    for i in range(3):
        df[T.COORDS[i]] = rng.uniform(8, [40, 40, 22][i], N).round(3)
        df[T.ANGLES[i]] = eulers[:, i]
    relion = folder / "relion"
    tomos = tomograms_from_files(files, tilt_series_pixel_size=TS_PIXEL)
    particles = write_relion5_particles(relion / "Refine3D" / "particles.star", df, tomos)
    tomo_file = write_tomograms_star(relion / "Tomograms" / "tomograms.star", tomos)
    write_optimisation_set(relion / "Refine3D" / "optimisation_set.star", particles, tomo_file)
    config = folder / "copick.json"
    config.write_text(json.dumps({
        "config_type": "filesystem", "overlay_root": f"local://{folder / 'copick'}",
        "overlay_fs_args": {"auto_mkdir": True},
        "pickable_objects": [{"name": "alpha", "is_particle": True, "label": 1, "radius": 60.0},
                             {"name": "beta", "is_particle": True, "label": 2, "radius": 80.0}]}))
    write_copick_picks(config, df, user_id="picker", session_id="1")
    return df, pose_to_scipion_matrix(rot, torch.zeros(N, 3, dtype=torch.float64)).numpy()


class TestCryomineRelion5(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)

    def test_relion5_import_extract_export(self):
        import tomo.protocols as tp
        from tomo.constants import BOTTOM_LEFT_CORNER

        from cryomine_scipion.protocols import (
            ProtCryomineExportParticles,
            ProtCryomineExtract,
            ProtCryomineImportCopick,
            ProtCryomineImportRelion5,
        )

        data = Path(self.proj.getPath("inputdata"))
        data.mkdir(parents=True, exist_ok=True)
        truth, matrices = _project(data)
        importTomos = self.newProtocol(tp.ProtImportTomograms, filesPath=str(data), filesPattern="ts_*.mrc",
                                       samplingRate=VOXEL, acquisitionAngleMin=-60.0, acquisitionAngleMax=60.0)
        self.launchProtocol(importTomos)

        imp = self.newProtocol(ProtCryomineImportRelion5, boxSize=BOX,
                               starFile=str(data / "relion" / "Refine3D" / "optimisation_set.star"))
        imp.inputTomograms.set(importTomos)
        imp.inputTomograms.setExtended("Tomograms")
        self.launchProtocol(imp)
        coords = [c.clone() for c in imp.coordinates.iterCoordinates()]
        self.assertEqual(len(coords), N)
        positions = truth[list(T.COORDS)].to_numpy(float)
        for coord in coords:  # matched to the truth by position (the set iterates tomogram by tomogram)
            i = int(np.argmin(np.abs(positions - np.asarray(coord.getPosition(BOTTOM_LEFT_CORNER))).sum(axis=1)))
            self.assertTrue(np.allclose(coord.getPosition(BOTTOM_LEFT_CORNER), positions[i], atol=1e-3),
                            f"particle {i}")
            self.assertEqual(coord.getTomoId(), truth[T.TOMO].iloc[i])
            self.assertTrue(np.allclose(coord.getMatrix()[:3, :3], matrices[i][:3, :3], atol=1e-6), f"particle {i}")
            self.assertEqual(coord.getGroupId(), truth[T.CLASS].iloc[i])

        picks = self.newProtocol(ProtCryomineImportCopick, configFile=str(data / "copick.json"), userId="picker",
                                 boxSize=BOX)
        picks.inputTomograms.set(importTomos)
        picks.inputTomograms.setExtended("Tomograms")
        self.launchProtocol(picks)
        got = sorted((c.getTomoId(), c.getGroupId(), *np.round(c.getPosition(BOTTOM_LEFT_CORNER), 3))
                     for c in picks.coordinates.iterCoordinates())
        want = sorted((r[T.TOMO], r[T.CLASS], *np.round(r[list(T.COORDS)].to_numpy(float), 3))
                      for _, r in truth.iterrows())
        self.assertEqual(len(got), N)
        for g, w in zip(got, want):
            self.assertEqual(g[:2], w[:2])
            self.assertTrue(np.allclose(g[2:], w[2:], atol=2e-3), f"{g} != {w}")

        extract = self.newProtocol(ProtCryomineExtract, boxSize=BOX, edgeMode=1)
        extract.inputCoordinates.set(imp)
        extract.inputCoordinates.setExtended("coordinates")
        self.launchProtocol(extract)
        subtomos = extract.subtomograms
        self.assertEqual(subtomos.getSize(), N)

        export = self.newProtocol(ProtCryomineExportParticles, writeRelion=False, writeDynamo=False,
                                  writeRelion5=True, tiltSeriesPixelSize=TS_PIXEL, writeCopick=True,
                                  copickConfig=str(data / "copick.json"), copickUser="cryomine", copickSession="2",
                                  copickObject="beta")
        export.inputParticles.set(extract)
        export.inputParticles.setExtended("subtomograms")
        self.launchProtocol(export)
        back = read_relion5_particles(export._getExtraPath("relion5", "particles_optimisation_set.star"))
        self.assertEqual(len(back), N)
        self.assertTrue(np.allclose(back[T.VOXEL_SIZE], VOXEL))
        got = sorted(map(tuple, np.round(back[list(T.COORDS)].to_numpy(float), 2)))
        expected = sorted(map(tuple, np.round(truth[list(T.COORDS)].to_numpy(float), 2)))
        self.assertTrue(np.allclose(got, expected, atol=0.02), f"{got} != {expected}")
        exported = read_copick_picks(data / "copick.json", voxel_size=VOXEL, user_id="cryomine")
        self.assertEqual(set(exported[T.CLASS_NAME]), {"beta"})  # extraction keeps no class: all filed as 'beta'
        got = sorted(map(tuple, np.round(exported[list(T.COORDS)].to_numpy(float), 2)))
        self.assertTrue(np.allclose(got, expected, atol=0.02), f"copick: {got} != {expected}")
