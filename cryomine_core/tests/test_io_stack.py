"""Stacked sets: one memory-mappable volume stack per set, the table pointing into it (k@stack.mrcs)."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from cryomine_core.cli import main
from cryomine_core.errors import InputFileError
from cryomine_core.io import table as T
from cryomine_core.io.mrc import read_mrc, read_mrc_header, split_stack_name, write_mrc, write_volume_stack


def _set(folder, n=9, box=12):
    rng = np.random.default_rng(0)
    folder.mkdir()
    rows = []
    for i in range(n):
        write_mrc(folder / f"p{i}.mrc", rng.normal(size=(box,) * 3).astype(np.float32), 15.0)
        rows.append({T.IMAGE: f"p{i}.mrc", T.VOXEL_SIZE: 15.0, T.TILT_MIN: -60.0, T.TILT_MAX: 60.0,
                     T.CLASS: 1 + i % 2, "rlnAngleRot": 10.0 * i, "rlnAngleTilt": 5.0 * i, "rlnAnglePsi": -7.0 * i})
    T.write_table(folder / "particles.star", pd.DataFrame(rows), relative_to_table=True)
    return folder / "particles.star"


def test_stack_names_and_reading_one_item(tmp_path):
    assert split_stack_name("12@a/b.mrcs") == (12, __import__("pathlib").Path("a/b.mrcs"))
    assert split_stack_name("a/b@c.mrc")[0] is None  # an @ inside a folder name is part of the path
    with pytest.raises(InputFileError, match="not a stack index"):
        split_stack_name("0@b.mrcs")
    vols = [np.full((4, 5, 6), float(i), np.float32) for i in range(3)]
    write_volume_stack(tmp_path / "s.mrcs", iter(vols), 3, (4, 5, 6), 10.0)
    assert read_mrc_header(tmp_path / "s.mrcs").shape == (3, 4, 5, 6)
    assert read_mrc_header(f"2@{tmp_path / 's.mrcs'}").shape == (4, 5, 6)
    data, vs = read_mrc(f"3@{tmp_path / 's.mrcs'}")
    assert vs == 10.0 and np.array_equal(data, vols[2])
    with pytest.raises(InputFileError, match="no volume 4"):
        read_mrc(f"4@{tmp_path / 's.mrcs'}")
    with pytest.raises(ValueError, match="2 volumes given"):
        write_volume_stack(tmp_path / "t.mrcs", iter(vols[:2]), 3, (4, 5, 6), 10.0)
    assert not (tmp_path / "t.mrcs").exists()  # atomic: nothing left behind


def test_table_stack_gives_the_same_set_and_the_same_average(tmp_path, capsys):
    table = _set(tmp_path / "files")
    assert main(["table", "stack", str(table), "--out", str(tmp_path / "stacked")]) == 0
    # the folder may move: the table points into the stack relative to itself
    shutil.move(str(tmp_path / "stacked"), str(tmp_path / "moved"))
    stacked = T.read_table(tmp_path / "moved" / "particles.star")
    files = T.read_table(table)
    assert stacked[T.IMAGE].iloc[4].startswith("5@") and stacked[T.IMAGE].iloc[4].endswith("subtomograms.mrcs")
    for a, b in zip(files[T.IMAGE], stacked[T.IMAGE]):
        assert np.array_equal(read_mrc(a)[0], read_mrc(b)[0])
    capsys.readouterr()
    assert main(["table", "check", str(tmp_path / "moved" / "particles.star")]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["box"] == [12, 12, 12]
    for name, t in (("a", table), ("b", tmp_path / "moved" / "particles.star")):
        assert main(["align", "average", "--in", str(t), "--out", str(tmp_path / name), "--by-class",
                     "--device", "cpu"]) == 0
    for f in ("average.mrc", "class_001.mrc", "class_002.mrc"):
        assert np.array_equal(read_mrc(tmp_path / "a" / f)[0], read_mrc(tmp_path / "b" / f)[0])
