"""MRC, particle table, Dynamo and IMOD I/O: round trips, validation and atomic writes."""

import os
import stat

import numpy as np
import pandas as pd
import pytest

from cryomine_core.errors import InputFileError, TableError
from cryomine_core.io import table as T
from cryomine_core.io.atomic import atomic_path, atomic_write_text
from cryomine_core.io.dynamo import read_dynamo_table, write_dynamo_table
from cryomine_core.io.imod import read_imod_points, write_imod_points
from cryomine_core.io.mrc import read_mrc, read_mrc_header, write_mrc


def test_mrc_round_trip_keeps_values_axis_order_and_voxel_size(tmp_path):
    vol = np.random.default_rng(0).normal(size=(6, 7, 8)).astype(np.float32)  # z, y, x
    write_mrc(tmp_path / "v.mrc", vol, 9.2)
    data, vs = read_mrc(tmp_path / "v.mrc")
    assert data.shape == (6, 7, 8)
    np.testing.assert_array_equal(data, vol)
    assert vs == pytest.approx(9.2, rel=1e-5)
    header = read_mrc_header(tmp_path / "v.mrc")
    assert header.shape == (6, 7, 8) and header.voxel_size == pytest.approx(9.2, rel=1e-5)


def test_mrc_mmap_reads_without_copy(tmp_path):
    vol = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    write_mrc(tmp_path / "v.mrc", vol, 2.0)
    data, _ = read_mrc(tmp_path / "v.mrc", mmap=True)
    assert isinstance(data, np.memmap)
    np.testing.assert_array_equal(np.asarray(data[1:3, 2, :]), vol[1:3, 2, :])


def test_truncated_mrc_error_names_the_file(tmp_path):
    path = tmp_path / "cut.mrc"
    write_mrc(path, np.ones((10, 10, 10), np.float32), 1.0)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) - 500])
    with pytest.raises(InputFileError, match="cut.mrc.*truncated"):
        read_mrc(path)
    with pytest.raises(InputFileError, match="cut.mrc"):
        read_mrc_header(path)


def test_tiny_and_garbage_files_are_refused(tmp_path):
    (tmp_path / "tiny.mrc").write_bytes(b"abc")
    with pytest.raises(InputFileError, match="tiny.mrc.*shorter than an MRC header"):
        read_mrc(tmp_path / "tiny.mrc")
    (tmp_path / "junk.mrc").write_bytes(np.random.default_rng(1).integers(0, 255, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(InputFileError, match="junk.mrc"):
        read_mrc(tmp_path / "junk.mrc")
    with pytest.raises(InputFileError, match="missing.mrc.*not found"):
        read_mrc(tmp_path / "missing.mrc")


def test_nan_volume_is_refused(tmp_path):
    vol = np.zeros((4, 4, 4), np.float32)
    vol[1, 2, 3] = np.nan
    write_mrc(tmp_path / "nan.mrc", vol, 1.0)
    with pytest.raises(InputFileError, match="nan.mrc: 1 voxel"):
        read_mrc(tmp_path / "nan.mrc")
    data, _ = read_mrc(tmp_path / "nan.mrc", check_finite=False)
    assert np.isnan(data[1, 2, 3])


def test_atomic_write_leaves_target_untouched_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_atomic_write_gives_the_mode_of_a_plain_write(tmp_path, umask):
    """Outputs follow the umask (a facility's group can read them), not mkstemp's owner-only 0600."""
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "a.json", "{}")
        (tmp_path / "plain.txt").write_text("x")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "a.json").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode) == 0o666 & ~umask


def _table(tmp_path, n=3):
    for i in range(n):
        write_mrc(tmp_path / "sub" / f"p{i}.mrc", np.zeros((4, 4, 4), np.float32), 9.2)
    return pd.DataFrame({T.IMAGE: [f"sub/p{i}.mrc" for i in range(n)], T.VOXEL_SIZE: 9.2,
                         T.TILT_MIN: -60.0, T.TILT_MAX: 60.0, T.CLASS: [1, 2, 1],
                         T.CLASS_NAME: ["a", "b", "a"], T.ANGLES[0]: [10.0, 20.0, 30.0]})


def test_table_round_trip_resolves_relative_paths(tmp_path):
    df = _table(tmp_path)
    T.write_table(tmp_path / "particles.star", df)
    back = T.read_table(tmp_path / "particles.star", require=(T.IMAGE, T.CLASS))
    assert back[T.IMAGE].tolist() == [str((tmp_path / "sub" / f"p{i}.mrc").resolve()) for i in range(3)]
    assert back[T.CLASS].tolist() == [1, 2, 1]
    assert back[T.CLASS_NAME].tolist() == ["a", "b", "a"]
    np.testing.assert_allclose(T.tilt_ranges(back), [[-60, 60]] * 3)
    # writing with relative paths gives the same table back
    T.write_table(tmp_path / "again.star", back, relative_to_table=True)
    assert T.read_table(tmp_path / "again.star")[T.IMAGE].tolist() == back[T.IMAGE].tolist()


def test_table_errors_name_the_problem(tmp_path):
    df = _table(tmp_path)
    T.write_table(tmp_path / "p.star", df.drop(columns=[T.CLASS]))
    with pytest.raises(TableError, match="missing column.*rlnClassNumber"):
        T.read_table(tmp_path / "p.star", require=(T.IMAGE, T.CLASS))
    bad = df.copy()
    bad[T.VOXEL_SIZE] = ["9.2", "oops", "9.2"]
    with pytest.raises(TableError, match="cmVoxelSize.*row 2"):
        T.validate_table(bad)
    with pytest.raises(TableError, match="no particles"):
        T.validate_table(df.iloc[:0])
    with pytest.raises(TableError, match="no tilt range.*--tilt-range"):
        T.tilt_ranges(df.drop(columns=[T.TILT_MIN]))
    flipped = df.copy()
    flipped[T.TILT_MIN] = 70.0
    with pytest.raises(TableError, match="row 1"):
        T.tilt_ranges(flipped)


def test_dynamo_table_round_trip(tmp_path):
    df = pd.DataFrame({"tag": [1, 2], "x": [10.0, 20.0], "y": [5.0, 6.0], "z": [7.0, 8.0],
                       "tdrot": [10.0, -20.0], "tilt": [30.0, 40.0], "narot": [50.0, 60.0],
                       "dx": [0.5, 0.0], "dy": [0.0, -1.5], "dz": [2.0, 0.0]})
    write_dynamo_table(tmp_path / "p.tbl", df)
    back = read_dynamo_table(tmp_path / "p.tbl")
    for col in df.columns:
        np.testing.assert_allclose(back[col].to_numpy(float), df[col].to_numpy(float))


def test_imod_points_round_trip_with_offset(tmp_path):
    xyz = np.array([[10.0, 20.0, 30.0], [1.5, 2.5, 3.5]])
    write_imod_points(tmp_path / "p.mod", xyz, offset_voxels=0.5)
    back = read_imod_points(tmp_path / "p.mod", offset_voxels=0.5)
    np.testing.assert_allclose(back[["x", "y", "z"]].to_numpy(), xyz, atol=1e-4)
    raw = read_imod_points(tmp_path / "p.mod")
    np.testing.assert_allclose(raw[["x", "y", "z"]].to_numpy(), xyz - 0.5, atol=1e-4)


def test_remove_stale_deletes_only_unwritten_matches(tmp_path):
    from cryomine_core.io.outputs import remove_stale

    for name in ("class_001.mrc", "class_002.mrc", "class_003.mrc", "average.mrc"):
        (tmp_path / name).write_text("x")
    assert remove_stale(tmp_path, "class_*.mrc", ["class_001.mrc", "class_002.mrc"]) == ["class_003.mrc"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["average.mrc", "class_001.mrc", "class_002.mrc"]
