"""copick projects: CryoMine picks -> copick -> CryoMine, and copick's own API reading what CryoMine wrote."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

copick_open = pytest.importorskip("copick.ops.open")

from cryomine_core.errors import InputFileError, TableError  # noqa: E402
from cryomine_core.geometry import random_rotations, relion_eulers_to_rotation, rotation_to_relion_eulers  # noqa: E402
from cryomine_core.io import table as T  # noqa: E402
from cryomine_core.io.copick_project import read_copick_picks, write_copick_picks  # noqa: E402

VOXEL = 10.012


def _project(tmp_path):
    config = {"config_type": "filesystem", "name": "test", "overlay_root": f"local://{tmp_path / 'overlay'}",
              "overlay_fs_args": {"auto_mkdir": True},
              "pickable_objects": [
                  {"name": "ribosome", "is_particle": True, "label": 1, "radius": 150.0, "color": [0, 255, 0, 255]},
                  {"name": "apo-ferritin", "is_particle": True, "label": 2, "radius": 60.0,
                   "color": [255, 0, 0, 255]},
                  {"name": "membrane", "is_particle": False, "label": 3, "color": [0, 0, 255, 255]}]}
    path = tmp_path / "copick.json"
    path.write_text(json.dumps(config))
    return path


def _table(n=9):
    rng = np.random.default_rng(1)
    rot = random_rotations(n, generator=2, dtype=torch.float64)
    eulers = rotation_to_relion_eulers(rot).numpy()
    df = pd.DataFrame({T.TOMO: ["TS_5_4"] * 5 + ["TS_69_2"] * 4, T.VOXEL_SIZE: VOXEL,
                       T.CLASS_NAME: ["ribosome", "apo-ferritin", "ribosome"] * 3})
    for i in range(3):
        df[T.COORDS[i]] = rng.uniform(0, 600, n)
        df[T.ANGLES[i]] = eulers[:, i]
        df[T.ORIGINS[i]] = rng.normal(0, 4, n)
    return df, rot


def test_round_trip_through_copick(tmp_path):
    config = _project(tmp_path)
    df, rot = _table()
    assert write_copick_picks(config, df, user_id="cryomine", session_id="7") == len(df)
    back = read_copick_picks(config, voxel_size=VOXEL, user_id="cryomine")
    key = [T.TOMO, T.CLASS_NAME]
    expected = df.assign(**{c: df[c] - df[o] / VOXEL for c, o in zip(T.COORDS, T.ORIGINS)})
    expected["r"] = list(rot.numpy())
    back = back.sort_values(key + [T.COORDS[0]]).reset_index(drop=True)
    expected = expected.sort_values(key + [T.COORDS[0]]).reset_index(drop=True)
    assert list(back[T.TOMO]) == list(expected[T.TOMO])
    assert list(back[T.CLASS]) == [1 if n == "ribosome" else 2 for n in expected[T.CLASS_NAME]]
    assert np.abs(back[list(T.COORDS)].to_numpy() - expected[list(T.COORDS)].to_numpy()).max() < 1e-3
    r_back = relion_eulers_to_rotation(torch.as_tensor(back[list(T.ANGLES)].to_numpy()))
    assert torch.allclose(r_back, torch.as_tensor(np.stack(expected["r"])), atol=1e-9)


def test_copick_reads_what_cryomine_wrote(tmp_path):
    """copick's own API: locations in Å (voxel index times voxel size), transformation = [R | 0]."""
    config = _project(tmp_path)
    df, rot = _table()
    write_copick_picks(config, df, user_id="cryomine", session_id="7")
    root = copick_open.from_file(str(config))
    run = root.get_run("TS_69_2")
    picks = run.get_picks(object_name="ribosome", user_id="cryomine", session_id="7")
    assert len(picks) == 1
    locations, transforms = picks[0].numpy()
    rows = df[(df[T.TOMO] == "TS_69_2") & (df[T.CLASS_NAME] == "ribosome")]
    position = (rows[list(T.COORDS)].to_numpy() - rows[list(T.ORIGINS)].to_numpy() / VOXEL) * VOXEL
    assert np.allclose(locations, position, atol=1e-6)
    assert np.allclose(transforms[:, :3, :3], rot.numpy()[rows.index], atol=1e-9)
    assert np.allclose(transforms[:, :3, 3], 0.0)


def test_filters_and_errors(tmp_path):
    config = _project(tmp_path)
    df, _ = _table()
    write_copick_picks(config, df, user_id="cryomine", session_id="7")
    write_copick_picks(config, df.iloc[:2], user_id="someone", session_id="1")
    assert len(read_copick_picks(config, voxel_size=VOXEL)) == len(df) + 2
    assert len(read_copick_picks(config, voxel_size=VOXEL, user_id="someone")) == 2
    assert set(read_copick_picks(config, voxel_size=VOXEL, objects=["apo-ferritin"])[T.CLASS_NAME]) == \
        {"apo-ferritin"}
    assert set(read_copick_picks(config, voxel_size=VOXEL, runs=["TS_69_2"])[T.TOMO]) == {"TS_69_2"}
    with pytest.raises(TableError, match="no pickable object"):
        read_copick_picks(config, voxel_size=VOXEL, objects=["proteasome"])
    with pytest.raises(TableError, match="no picks"):
        read_copick_picks(config, voxel_size=VOXEL, user_id="nobody")
    with pytest.raises(TableError, match="not pickable objects"):
        write_copick_picks(config, df.assign(**{T.CLASS_NAME: "proteasome"}), user_id="u", session_id="1")
    with pytest.raises(InputFileError, match="not found"):
        read_copick_picks(tmp_path / "none.json", voxel_size=VOXEL)
    # rewriting an object of the same user and session replaces that set (1 ribosome -> 2; apo-ferritin kept)
    write_copick_picks(config, df.iloc[[0, 2]], user_id="someone", session_id="1")
    again = read_copick_picks(config, voxel_size=VOXEL, user_id="someone")
    assert sorted(again[T.CLASS_NAME]) == ["apo-ferritin", "ribosome", "ribosome"]


def test_formats_convert_copick(tmp_path):
    from cryomine_core.cli import main

    config = _project(tmp_path)
    df, _ = _table()
    T.write_table(tmp_path / "picks.star", df, require=())
    assert main(["formats", "convert", str(tmp_path / "picks.star"), "--from", "cryomine", "--to", "copick",
                 "--out", str(config), "--copick-user", "cryomine", "--copick-session", "2"]) == 0
    assert main(["formats", "convert", str(config), "--from", "copick", "--voxel-size", str(VOXEL), "--copick-user",
                 "cryomine", "--copick-objects", "ribosome", "--to", "cryomine", "--out",
                 str(tmp_path / "back.star")]) == 0
    back = T.read_table(tmp_path / "back.star", require=())
    assert len(back) == 6 and set(back[T.CLASS_NAME]) == {"ribosome"}
    assert main(["formats", "convert", str(config), "--from", "copick", "--to", "cryomine", "--out",
                 str(tmp_path / "x.star")]) == 2  # no --voxel-size


@pytest.mark.slow
def test_opening_a_project_keeps_the_callers_log_handlers(tmp_path):
    """copick's import reconfigures logging (basicConfig(force=True)); the caller's handlers must survive open."""
    import logging
    import subprocess
    import sys

    code = ("import logging, sys\n"
            "h = logging.StreamHandler(sys.stdout); logging.getLogger().addHandler(h)\n"
            "from cryomine_core.io.copick_project import open_project\n"
            f"open_project({str(_project(tmp_path))!r})\n"
            "assert logging.getLogger().handlers == [h], logging.getLogger().handlers\n"
            "logging.getLogger().warning('still logging')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "still logging" in out.stdout
    assert logging  # the module is used above in the child process
