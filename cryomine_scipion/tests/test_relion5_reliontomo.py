"""scipion-em-reliontomo's RELION 5 reader (``convert50_tomo``) reads CryoMine's RELION 5 files item by item.

reliontomo imports RELION 5 coordinates from ``rlnCoordinate{X,Y,Z}`` (bin-1 pixels, scaled by the
tilt-series pixel size over the tomogram's) and takes their orientation from the subtomogram angles
(``getCoordsTransformMatrixFromRow``): CryoMine's default "oriented picks" form, written with the
pixel coordinates, must give every particle at the same voxel and with the same Scipion matrix as
CryoMine's own table. No Scipion project is needed.
"""

import numpy as np
import pandas as pd
import pytest
import starfile
import torch

convert50 = pytest.importorskip("reliontomo.convert.convert50_tomo")
tomo_objects = pytest.importorskip("tomo.objects")
tomo_constants = pytest.importorskip("tomo.constants")

from cryomine_core.geometry import (  # noqa: E402
    pose_to_scipion_matrix,
    random_rotations,
    relion_eulers_to_rotation,
    rotation_to_relion_eulers,
)
from cryomine_core.io import table as T  # noqa: E402
from cryomine_core.io.mrc import write_mrc  # noqa: E402
from cryomine_core.io.relion5 import read_relion5_particles, write_relion5_particles  # noqa: E402
from cryomine_core.io.relion_tomograms import tomograms_from_files, write_tomograms_star  # noqa: E402


@pytest.mark.parametrize("binning", [1.0, 4.0])
def test_reliontomo_reads_our_relion5_coordinates(tmp_path, binning):
    ts_pixel, shape = 1.35, (30, 40, 50)  # (z, y, x) of the binned tomogram
    voxel = ts_pixel * binning
    write_mrc(tmp_path / "TS_01.mrc", np.zeros(shape, np.float32), voxel_size=voxel)
    tomos = tomograms_from_files({"TS_01": str(tmp_path / "TS_01.mrc")}, tilt_series_pixel_size=ts_pixel)
    n = 12
    rng = np.random.default_rng(3)
    rotations = random_rotations(n, generator=4, dtype=torch.float64)
    df = pd.DataFrame({T.TOMO: ["TS_01"] * n, T.VOXEL_SIZE: voxel})
    coords = rng.uniform(2, 28, (n, 3))
    origins = rng.normal(0, 3, (n, 3))
    eulers = rotation_to_relion_eulers(rotations).numpy()
    for i in range(3):
        df[T.COORDS[i]], df[T.ORIGINS[i]], df[T.ANGLES[i]] = coords[:, i], origins[:, i], eulers[:, i]
    star = write_relion5_particles(tmp_path / "particles.star", df, tomos, pixel_coordinates=True)

    tomogram = tomo_objects.Tomogram()
    tomogram.setFileName(str(tmp_path / "TS_01.mrc"))
    tomogram.setSamplingRate(voxel)
    tomogram.setTsId("TS_01")
    rows = starfile.read(star)["particles"].to_dict("records")
    positions = coords - origins / voxel  # where the particles are, voxels of the tomogram
    for row, position, rotation in zip(rows, positions, rotations):
        coord, name = convert50.Reader.gen3dCoordFromStarRow(row, voxel, {"TS_01": tomogram},
                                                             factor=ts_pixel / voxel)
        assert name == "TS_01"
        theirs = [coord.getX(tomo_constants.BOTTOM_LEFT_CORNER), coord.getY(tomo_constants.BOTTOM_LEFT_CORNER),
                  coord.getZ(tomo_constants.BOTTOM_LEFT_CORNER)]
        assert np.allclose(theirs, position, atol=1e-6)
        ours = pose_to_scipion_matrix(rotation, torch.zeros(3, dtype=torch.float64)).numpy()
        assert np.allclose(coord.getMatrix()[:3, :3], ours[:3, :3], atol=1e-9)

    # and CryoMine reads its own file back to the same poses (through the tomograms' sizes)
    back = read_relion5_particles(star, write_tomograms_star(tmp_path / "tomograms.star", tomos))
    assert np.allclose(back[list(T.COORDS)].to_numpy(), positions, atol=1e-6)
    r_back = relion_eulers_to_rotation(torch.as_tensor(back[list(T.ANGLES)].to_numpy()))
    assert torch.allclose(r_back, rotations, atol=1e-9)
