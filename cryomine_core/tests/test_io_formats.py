"""RELION STAR, Dynamo .tbl and IMOD .mod conversions: round trips and pinned conventions."""

import imodmodel
import numpy as np
import pandas as pd
import pytest
import starfile
import torch

from cryomine_core.errors import CryomineError, TableError
from cryomine_core.geometry import random_rotations, rotation_angle_deg
from cryomine_core.io import table as T
from cryomine_core.io.dynamo import read_dynamo_table, write_dynamo_table
from cryomine_core.io.formats import (
    IMOD_VOXEL_CENTRE,
    dynamo_to_table,
    read_imod_coordinates,
    read_volume_list,
    table_to_dynamo,
    write_imod_coordinates,
)
from cryomine_core.io.poses import table_poses, with_poses
from cryomine_core.io.relion import read_relion_star, write_relion_star

N = 12
VOXEL = 4.2


@pytest.fixture
def table():
    rng = np.random.default_rng(3)
    rot = random_rotations(N, generator=7, dtype=torch.float64)
    shift = torch.as_tensor(rng.normal(0, 3, (N, 3)))
    df = pd.DataFrame({T.IMAGE: [f"/data/sub_{i:03d}.mrc" for i in range(N)], T.VOXEL_SIZE: VOXEL,
                       T.TOMO: ["tomoA" if i % 3 else "tomoB" for i in range(N)],
                       T.COORDS[0]: rng.uniform(0, 100, N), T.COORDS[1]: rng.uniform(0, 100, N),
                       T.COORDS[2]: rng.uniform(0, 50, N), T.CLASS: rng.integers(1, 4, N),
                       T.TILT_MIN: -58.0, T.TILT_MAX: 61.0, T.ITEM_ID: np.arange(5, 5 + N),
                       T.SCORE: rng.uniform(0, 1, N), T.HALF_SET: 1 + np.arange(N) % 2})
    return with_poses(df, rot, shift), rot, shift


def _same_poses(df, rot, shift, tol=1e-4):
    r2, t2 = table_poses(df)
    assert float(rotation_angle_deg(r2.transpose(-1, -2) @ rot).max()) < tol
    assert torch.allclose(t2, shift, atol=tol)


def test_relion_star_round_trip(tmp_path, table):
    df, rot, shift = table
    path = write_relion_star(tmp_path / "particles.star", df)
    blocks = starfile.read(path, always_dict=True)
    assert set(blocks) == {"optics", "particles"}
    assert float(blocks["optics"]["rlnImagePixelSize"].iloc[0]) == pytest.approx(VOXEL)
    assert list(blocks["particles"]["rlnTomoParticleId"]) == list(range(1, N + 1))
    back = read_relion_star(path)
    _same_poses(back, rot, shift)
    assert list(back[T.CLASS]) == list(df[T.CLASS])
    assert list(back[T.TOMO]) == list(df[T.TOMO])
    assert list(back[T.HALF_SET]) == list(df[T.HALF_SET])
    assert np.allclose(back[list(T.COORDS)].to_numpy(), df[list(T.COORDS)].to_numpy())


def test_relion_reads_pixel_origins_and_optics_group_pixel_size(tmp_path):
    particles = pd.DataFrame({"rlnTomoName": ["t"], "rlnImageName": ["sub.mrc"], "rlnOriginX": [2.0],
                              "rlnOriginY": [-1.0], "rlnOriginZ": [0.5], "rlnAngleRot": [10.0],
                              "rlnAngleTilt": [20.0], "rlnAnglePsi": [30.0], "rlnOpticsGroup": [2]})
    optics = pd.DataFrame({"rlnOpticsGroup": [1, 2], "rlnImagePixelSize": [1.0, 2.5]})
    starfile.write({"optics": optics, "particles": particles}, tmp_path / "p.star")
    df = read_relion_star(tmp_path / "p.star")
    assert df[T.VOXEL_SIZE].iloc[0] == 2.5
    assert np.allclose(df[list(T.ORIGINS)].to_numpy(), [[5.0, -2.5, 1.25]])
    assert df[T.IMAGE].iloc[0] == str((tmp_path / "sub.mrc").resolve())
    _, t = table_poses(df)
    assert np.allclose(t.numpy(), [[-2.0, 1.0, -0.5]])


def test_relion_errors_name_the_problem(tmp_path):
    with pytest.raises(CryomineError, match="not found"):
        read_relion_star(tmp_path / "missing.star")
    starfile.write({"particles": pd.DataFrame({"rlnTomoName": ["t"], "rlnOriginXAngst": [1.0],
                                               "rlnCoordinateX": [1.0], "rlnCoordinateY": [1.0],
                                               "rlnCoordinateZ": [1.0]})}, tmp_path / "a.star")
    with pytest.raises(TableError, match="no pixel size"):
        read_relion_star(tmp_path / "a.star")
    with pytest.raises(TableError, match="no rlnImageName"):
        read_relion_star(tmp_path / "a.star", voxel_size=2.0, require_images=True)
    starfile.write({"particles": pd.DataFrame({"rlnTomoName": ["t"], "rlnCenteredCoordinateXAngst": [1.0],
                                               "rlnCenteredCoordinateYAngst": [1.0],
                                               "rlnCenteredCoordinateZAngst": [1.0]})}, tmp_path / "r5.star")
    with pytest.raises(TableError, match="RELION 5 centred"):
        read_relion_star(tmp_path / "r5.star", voxel_size=2.0)
    mixed = pd.DataFrame({T.VOXEL_SIZE: [1.0, 2.0], T.IMAGE: ["a", "b"]})
    with pytest.raises(TableError, match="different voxel sizes"):
        write_relion_star(tmp_path / "m.star", mixed)


@pytest.mark.parametrize("index_base", [0, 1])
def test_dynamo_table_round_trip(tmp_path, table, index_base):
    df, rot, shift = table
    tbl = table_to_dynamo(df, index_base=index_base)
    write_dynamo_table(tmp_path / "p.tbl", tbl)
    back = dynamo_to_table(read_dynamo_table(tmp_path / "p.tbl"), voxel_size=VOXEL,
                           tomo_names={1: "tomoA", 2: "tomoB"}, index_base=index_base)
    _same_poses(back, rot, shift)
    assert list(back[T.CLASS]) == list(df[T.CLASS])
    assert list(back[T.ITEM_ID]) == list(df[T.ITEM_ID])
    assert list(back[T.TOMO]) == list(df[T.TOMO])
    assert np.allclose(back[list(T.COORDS)].to_numpy(), df[list(T.COORDS)].to_numpy(), atol=1e-4)
    assert np.allclose(back[[T.TILT_MIN, T.TILT_MAX]].to_numpy(), [[-58.0, 61.0]] * N)
    # Dynamo counts voxels from 1: its x column is our position + index_base
    assert np.allclose(tbl["x"].to_numpy(), df[T.COORDS[0]].to_numpy() + index_base)


def test_dynamo_shifts_are_the_canonical_shift(table):
    df, _, shift = table
    tbl = table_to_dynamo(df)
    assert np.allclose(tbl[["dx", "dy", "dz"]].to_numpy(), shift.numpy(), atol=1e-10)


def test_dynamo_unknown_tomogram_number_is_an_error(table):
    df, _, _ = table
    tbl = table_to_dynamo(df)
    with pytest.raises(TableError, match=r"tomogram number\(s\) \[2\]"):
        dynamo_to_table(tbl, voxel_size=VOXEL, tomo_names={1: "tomoA"})
    with pytest.raises(TableError, match="voxel size"):
        dynamo_to_table(tbl, voxel_size=0)


def test_volume_list(tmp_path):
    (tmp_path / "t.vll").write_text("/data/tomoA.mrc\n* ytilt = -60 60\n\n/data/tomoB.mrc\n")
    assert read_volume_list(tmp_path / "t.vll") == {1: "/data/tomoA.mrc", 2: "/data/tomoB.mrc"}


def test_imod_origin_convention_is_pinned(tmp_path):
    """3dmod: voxel (i, j, k) has its centre at model point (i + 0.5, j + 0.5, k)."""
    raw = pd.DataFrame({"object_id": [0, 0, 1], "contour_id": [0, 1, 0], "x": [10.5, 0.5, 3.0],
                        "y": [20.5, 0.5, 4.0], "z": [7.0, 0.0, 5.0]})
    imodmodel.write(raw, tmp_path / "m.mod")
    df = read_imod_coordinates(tmp_path / "m.mod")
    assert np.allclose(df[list(T.COORDS)].to_numpy(), [[10, 20, 7], [0, 0, 0], [2.5, 3.5, 5]])
    assert list(df["object_id"]) == [1, 1, 2]
    assert IMOD_VOXEL_CENTRE == (0.5, 0.5, 0.0)
    write_imod_coordinates(tmp_path / "w.mod", [[10, 20, 7]])
    written = imodmodel.read(tmp_path / "w.mod")
    assert np.allclose(written[["x", "y", "z"]].to_numpy(), [[10.5, 20.5, 7.0]])
    back = read_imod_coordinates(tmp_path / "w.mod")
    assert np.allclose(back[list(T.COORDS)].to_numpy(), [[10, 20, 7]])


def _formats_cli(argv):
    import argparse

    from cryomine_core.cli import formats

    parser = argparse.ArgumentParser()
    formats.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["formats", "convert", *argv])
    return args.func(args)


def test_cli_convert_relion_to_dynamo_and_back(tmp_path, table):
    df, rot, shift = table
    write_relion_star(tmp_path / "in.star", df)
    assert _formats_cli([str(tmp_path / "in.star"), "--from", "relion", "--to", "dynamo",
                         "--out", str(tmp_path / "p.tbl")]) == 0
    assert _formats_cli([str(tmp_path / "p.tbl"), "--from", "dynamo", "--to", "relion", "--voxel-size", str(VOXEL),
                         "--out", str(tmp_path / "back.star")]) == 0
    back = read_relion_star(tmp_path / "back.star")
    _same_poses(back, rot, shift)
    assert np.allclose(back[list(T.COORDS)].to_numpy(), df[list(T.COORDS)].to_numpy(), atol=1e-4)
    with pytest.raises(TableError, match="--voxel-size is required"):
        _formats_cli([str(tmp_path / "p.tbl"), "--from", "dynamo", "--to", "relion", "--out", str(tmp_path / "x")])


def test_cli_convert_imod_to_cryomine(tmp_path):
    write_imod_coordinates(tmp_path / "t.mod", [[3, 4, 5]])
    _formats_cli([str(tmp_path / "t.mod"), "--from", "imod", "--to", "cryomine", "--voxel-size", "8",
                  "--tomo-name", "t", "--out", str(tmp_path / "c.star")])
    df = T.read_table(tmp_path / "c.star", require=())
    assert np.allclose(df[list(T.COORDS)].to_numpy(), [[3, 4, 5]]) and df[T.TOMO].iloc[0] == "t"


def test_convert_applies_voxel_size_and_tomo_name_to_cryomine_input_and_refuses_positionless_dynamo(tmp_path):
    from cryomine_core.errors import TableError
    from cryomine_core.io.convert import convert_particles, read_particles

    df = pd.DataFrame({T.IMAGE: ["a.mrc", "b.mrc"], T.VOXEL_SIZE: 10.0, **{c: [1.0, 2.0] for c in T.COORDS}})
    T.write_table(tmp_path / "t.star", df)
    got = read_particles(tmp_path / "t.star", "cryomine", voxel_size=12.0, tomo_name="TS_01")
    assert (got[T.VOXEL_SIZE] == 12.0).all() and (got[T.TOMO] == "TS_01").all()
    T.write_table(tmp_path / "nopos.star", df.drop(columns=list(T.COORDS)))
    with pytest.raises(TableError, match="no positions"):
        convert_particles(tmp_path / "nopos.star", "cryomine", tmp_path / "o.tbl", "dynamo")
    assert not (tmp_path / "o.tbl").exists()
    assert convert_particles(tmp_path / "t.star", "cryomine", tmp_path / "o.tbl", "dynamo", tomo_name="TS_01") == 2
