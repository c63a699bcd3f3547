"""Scipion transforms survive the particle table: SubTomogram -> STAR -> SubTomogram is exact."""

import numpy as np
import pandas as pd
import pytest
import torch

pytestmark = pytest.mark.scipion


def test_subtomogram_transform_round_trip_through_table(tmp_path):
    from pwem.objects import Transform
    from tomo.objects import SubTomogram

    from cryomine_core.geometry import pose_to_scipion_matrix, random_rotations, scipion_matrix_to_pose
    from cryomine_core.io import table as T
    from cryomine_core.io.poses import with_poses
    from cryomine_scipion.convert import setTransformFromTable, subtomoMatrix, tableTransforms

    rot = random_rotations(6, generator=3).double()
    rot = torch.linalg.qr(rot)[0] * torch.sign(torch.linalg.det(torch.linalg.qr(rot)[0]))[:, None, None]
    shift = torch.randn(6, 3, dtype=torch.float64) * 3
    matrices = pose_to_scipion_matrix(rot, shift).numpy()
    items = []
    for m in matrices:
        sub = SubTomogram()
        sub.setTransform(Transform(m))
        items.append(sub)
    got = np.stack([subtomoMatrix(s) for s in items])
    r2, t2 = scipion_matrix_to_pose(torch.as_tensor(got))
    df = with_poses(pd.DataFrame({T.IMAGE: [f"p{i}.mrc" for i in range(6)], T.VOXEL_SIZE: 7.5}), r2, t2)
    T.write_table(tmp_path / "p.star", df)
    back = tableTransforms(T.read_table(tmp_path / "p.star", resolve_paths=False))
    np.testing.assert_allclose(back, matrices, atol=1e-5)
    fresh = SubTomogram()
    setTransformFromTable(fresh, back[0])
    np.testing.assert_allclose(fresh.getTransform().getMatrix(), matrices[0], atol=1e-5)
    # and RELION sees the same pose: Scipion's own "relion" conversion equals ours
    relion_view = fresh.getTransform(convention="relion").getMatrix()
    np.testing.assert_allclose(relion_view[:3, :3], rot[0].numpy().T, atol=1e-5)


def test_stacked_subtomograms_keep_their_index_both_ways(tmp_path):
    """A Scipion subtomogram at (3, set.mrcs) is '3@set.mrcs' in the table, and back."""
    from tomo.objects import SetOfSubTomograms, SubTomogram, TomoAcquisition

    from cryomine_core.io import table as T
    from cryomine_scipion.convert import imageName, tableToSubtomograms

    stacked, single = SubTomogram(), SubTomogram()
    stacked.setLocation(3, str(tmp_path / "set.mrcs"))
    single.setLocation(str(tmp_path / "one.mrc"))
    assert imageName(stacked) == f"3@{tmp_path / 'set.mrcs'}"
    assert imageName(single) == str(tmp_path / "one.mrc")
    df = pd.DataFrame({T.IMAGE: [imageName(stacked), imageName(single)], T.VOXEL_SIZE: 10.0,
                       T.TILT_MIN: -60.0, T.TILT_MAX: 60.0})
    out = SetOfSubTomograms(filename=str(tmp_path / "subtomograms.sqlite"))
    acq = TomoAcquisition(angleMin=-60, angleMax=60)
    tableToSubtomograms(df, out, acq)
    items = [s.clone() for s in out]
    assert items[0].getLocation() == (3, str(tmp_path / "set.mrcs"))
    assert items[1].getFileName() == str(tmp_path / "one.mrc") and not items[1].getIndex()
