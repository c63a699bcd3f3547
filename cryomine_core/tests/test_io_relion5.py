"""RELION 5 particle files, tomograms files and optimisation sets: conventions pinned by round trips."""

import numpy as np
import pandas as pd
import pytest
import starfile
import torch

from cryomine_core.errors import TableError
from cryomine_core.geometry import random_rotations, relion_eulers_to_rotation
from cryomine_core.io import table as T
from cryomine_core.io.mrc import write_mrc
from cryomine_core.io.relion5 import (
    read_optimisation_set,
    read_relion5_particles,
    write_optimisation_set,
    write_relion5_particles,
)
from cryomine_core.io.relion_tomograms import (
    RelionTomogram,
    read_tomograms_star,
    tomograms_from_files,
    write_tomograms_star,
)

TS_PIXEL = 1.35


def _angle_deg(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    cos = ((a.transpose(-1, -2) @ b).diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
    return torch.rad2deg(torch.arccos(cos.clamp(-1, 1)))


def _table(n: int, binning: float, sizes_bin1, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rot = random_rotations(n, generator=seed, dtype=torch.float64)
    from cryomine_core.geometry import rotation_to_relion_eulers

    eulers = rotation_to_relion_eulers(rot).numpy()
    df = pd.DataFrame({T.TOMO: rng.choice(["TS_01", "TS_02"], n)})
    binned = np.asarray(sizes_bin1, float) / binning
    coords = rng.uniform(0, 1, (n, 3)) * (binned - 1)
    for i, c in enumerate(T.COORDS):
        df[c] = coords[:, i]
    for i, c in enumerate(T.ANGLES):
        df[c] = eulers[:, i]
    for c in T.ORIGINS:
        df[c] = rng.normal(0, 5, n)
    df[T.VOXEL_SIZE] = TS_PIXEL * binning
    df[T.CLASS] = rng.integers(1, 4, n)
    df[T.HALF_SET] = rng.integers(1, 3, n)
    return df


def _positions(df: pd.DataFrame) -> np.ndarray:
    """Where each particle is, in voxels: coordinate - origin / voxel size (RELION's rule)."""
    return df[list(T.COORDS)].to_numpy() - df[list(T.ORIGINS)].to_numpy() / df[[T.VOXEL_SIZE]].to_numpy()


@pytest.mark.parametrize("orientation", ["subtomogram", "particle"])
@pytest.mark.parametrize("binning", [1.0, 4.0])
@pytest.mark.parametrize("hand", [-1.0, 1.0])
def test_round_trip_through_relion5(tmp_path, binning, hand, orientation):
    sizes = (4000.0, 3712.0, 1001.0)  # an odd depth: the centre is size / 2, not an integer
    tomos = {name: RelionTomogram(name=name, size_bin1=sizes, tilt_series_pixel_size=TS_PIXEL, binning=binning,
                                  hand=hand) for name in ("TS_01", "TS_02")}
    df = _table(40, binning, sizes)
    particles = write_relion5_particles(tmp_path / "particles.star", df, tomos, orientation=orientation)
    tomo_file = write_tomograms_star(tmp_path / "tomograms.star", tomos)
    opt = write_optimisation_set(tmp_path / "optimisation_set.star", particles, tomo_file)

    back = read_relion5_particles(opt)
    assert list(back[T.TOMO]) == list(df[T.TOMO])
    assert np.abs(_positions(back) - _positions(df)).max() < 1e-3
    assert np.allclose(back[T.VOXEL_SIZE], TS_PIXEL * binning)
    r0 = relion_eulers_to_rotation(torch.as_tensor(df[list(T.ANGLES)].to_numpy()))
    r1 = relion_eulers_to_rotation(torch.as_tensor(back[list(T.ANGLES)].to_numpy()))
    assert float(_angle_deg(r0, r1).max()) < 1e-4
    if orientation == "particle":  # the refined form keeps coordinates and origins apart
        assert np.abs(back[list(T.COORDS)].to_numpy() - df[list(T.COORDS)].to_numpy()).max() < 1e-3
        assert np.allclose(back[list(T.ORIGINS)].to_numpy(), df[list(T.ORIGINS)].to_numpy(), atol=1e-6)
    else:
        assert np.allclose(back[list(T.ORIGINS)].to_numpy(), 0.0)
    assert list(back[T.CLASS]) == list(df[T.CLASS]) and list(back[T.HALF_SET]) == list(df[T.HALF_SET])
    again = read_tomograms_star(tomo_file)
    assert again["TS_01"].hand == hand and again["TS_01"].binning == binning
    assert again["TS_02"].size_bin1 == sizes


def test_centred_coordinates_by_hand(tmp_path):
    """(10, -20, 3) Å from the centre of a (100, 80, 41)-pixel tomogram at 2 Å, binned 2 times."""
    tomos = {"t": RelionTomogram(name="t", size_bin1=(100, 80, 41), tilt_series_pixel_size=2.0, binning=2.0)}
    write_tomograms_star(tmp_path / "tomograms.star", tomos)
    starfile.write({"optics": pd.DataFrame({"rlnOpticsGroup": [1], "rlnTomoTiltSeriesPixelSize": [2.0]}),
                    "particles": pd.DataFrame({"rlnTomoName": ["t"], "rlnCenteredCoordinateXAngst": [10.0],
                                               "rlnCenteredCoordinateYAngst": [-20.0],
                                               "rlnCenteredCoordinateZAngst": [3.0], "rlnOpticsGroup": [1]})},
                   tmp_path / "p.star")
    df = read_relion5_particles(tmp_path / "p.star", tmp_path / "tomograms.star")
    # bin 1: (5 + 50, -10 + 40, 1.5 + 20.5) = (55, 30, 22) pixels; binned twice: half of that, at 4 Å
    assert np.allclose(df[list(T.COORDS)].to_numpy()[0], [27.5, 15.0, 11.0])
    assert df[T.VOXEL_SIZE].iloc[0] == 4.0
    at_bin1 = read_relion5_particles(tmp_path / "p.star", tmp_path / "tomograms.star", voxel_size=2.0)
    assert np.allclose(at_bin1[list(T.COORDS)].to_numpy()[0], [55.0, 30.0, 22.0])


def test_subtomogram_orientation_is_composed(tmp_path):
    """RELION 5: rotation A_sub @ A_part, position coordinate - A_sub @ origin (ParticleSet)."""
    sub, part, origin = [20.0, 35.0, -50.0], [110.0, 70.0, 15.0], np.array([3.0, -7.0, 2.0])
    starfile.write({"optics": pd.DataFrame({"rlnOpticsGroup": [1], "rlnTomoTiltSeriesPixelSize": [1.0]}),
                    "particles": pd.DataFrame({"rlnTomoName": ["t"], "rlnCoordinateX": [10.0],
                                               "rlnCoordinateY": [20.0], "rlnCoordinateZ": [30.0],
                                               "rlnTomoSubtomogramRot": [sub[0]], "rlnTomoSubtomogramTilt": [sub[1]],
                                               "rlnTomoSubtomogramPsi": [sub[2]], "rlnAngleRot": [part[0]],
                                               "rlnAngleTilt": [part[1]], "rlnAnglePsi": [part[2]],
                                               "rlnOriginXAngst": [origin[0]], "rlnOriginYAngst": [origin[1]],
                                               "rlnOriginZAngst": [origin[2]], "rlnOpticsGroup": [1]})},
                   tmp_path / "p.star")
    df = read_relion5_particles(tmp_path / "p.star")
    a_sub = relion_eulers_to_rotation(torch.tensor(sub, dtype=torch.float64))
    a_part = relion_eulers_to_rotation(torch.tensor(part, dtype=torch.float64))
    got = relion_eulers_to_rotation(torch.as_tensor(df[list(T.ANGLES)].to_numpy()[0]))
    assert float(_angle_deg(got, a_sub @ a_part)) < 1e-6
    assert np.allclose(df[list(T.ORIGINS)].to_numpy()[0], (a_sub.numpy() @ origin), atol=1e-9)
    assert "rlnTomoSubtomogramRot" not in df.columns
    # the particle's position in the tomogram, coordinate - origin (the CryoMine/RELION 4 rule), is RELION 5's
    position = df[list(T.COORDS)].to_numpy()[0] - df[list(T.ORIGINS)].to_numpy()[0]
    assert np.allclose(position, np.array([10.0, 20.0, 30.0]) - a_sub.numpy() @ origin)


def test_centred_coordinates_need_the_tomograms_file(tmp_path):
    starfile.write({"particles": pd.DataFrame({"rlnTomoName": ["t"], "rlnCenteredCoordinateXAngst": [0.0],
                                               "rlnCenteredCoordinateYAngst": [0.0],
                                               "rlnCenteredCoordinateZAngst": [0.0]})}, tmp_path / "p.star")
    with pytest.raises(TableError, match="--tomograms"):
        read_relion5_particles(tmp_path / "p.star")


def test_particles_of_an_unlisted_tomogram_are_named(tmp_path):
    tomos = {"a": RelionTomogram(name="a", size_bin1=(10, 10, 10), tilt_series_pixel_size=1.0)}
    write_tomograms_star(tmp_path / "tomograms.star", tomos)
    df = pd.DataFrame({T.TOMO: ["b"], **{c: [1.0] for c in T.COORDS}, T.VOXEL_SIZE: [1.0]})
    with pytest.raises(TableError, match=r"\['b'\]"):
        write_relion5_particles(tmp_path / "p.star", df, tomos)
    write_relion5_particles(tmp_path / "p.star", df.assign(**{T.TOMO: "a"}), tomos)
    starfile.write({"particles": starfile.read(tmp_path / "p.star")["particles"].assign(rlnTomoName="b")},
                   tmp_path / "q.star")
    with pytest.raises(TableError, match="does not list"):
        read_relion5_particles(tmp_path / "q.star", tmp_path / "tomograms.star")


def test_optimisation_set_paths_are_relative_to_it(tmp_path):
    (tmp_path / "Refine").mkdir()
    tomos = {"a": RelionTomogram(name="a", size_bin1=(10, 10, 10), tilt_series_pixel_size=1.0)}
    particles = write_relion5_particles(tmp_path / "Refine" / "particles.star",
                                        pd.DataFrame({T.TOMO: ["a"], **{c: [2.0] for c in T.COORDS},
                                                      T.VOXEL_SIZE: [1.0]}), tomos)
    tomo_file = write_tomograms_star(tmp_path / "tomograms.star", tomos)
    opt = write_optimisation_set(tmp_path / "Refine" / "optimisation_set.star", particles, tomo_file)
    assert "../tomograms.star" in opt.read_text()
    assert read_optimisation_set(opt) == (particles.resolve(), tomo_file.resolve())


def test_tilt_range_and_reconstruction_come_from_the_tomograms_file(tmp_path):
    starfile.write({"TS_01": pd.DataFrame({"rlnTomoNominalStageTiltAngle": [-54.0, 0.0, 3.0, 57.0]})},
                   tmp_path / "TS_01.star")
    write_mrc(tmp_path / "rec_TS_01.mrc", np.zeros((4, 6, 8), np.float32), voxel_size=5.4)
    starfile.write({"global": pd.DataFrame({"rlnTomoName": ["TS_01"], "rlnTomoSizeX": [32], "rlnTomoSizeY": [24],
                                            "rlnTomoSizeZ": [16], "rlnTomoTiltSeriesPixelSize": [1.35],
                                            "rlnTomoTomogramBinning": [4.0],
                                            "rlnTomoTiltSeriesStarFile": ["TS_01.star"],
                                            "rlnTomoReconstructedTomogram": ["rec_TS_01.mrc"]})},
                   tmp_path / "tomograms.star")
    tomo = read_tomograms_star(tmp_path / "tomograms.star")["TS_01"]
    assert tomo.tilt_range == (-54.0, 57.0) and tomo.hand == -1.0 and tomo.voxel_size == pytest.approx(5.4)
    starfile.write({"particles": pd.DataFrame({"rlnTomoName": ["TS_01"], "rlnCenteredCoordinateXAngst": [0.0],
                                               "rlnCenteredCoordinateYAngst": [0.0],
                                               "rlnCenteredCoordinateZAngst": [0.0]})}, tmp_path / "p.star")
    df = read_relion5_particles(tmp_path / "p.star", tmp_path / "tomograms.star")
    assert (df[T.TILT_MIN].iloc[0], df[T.TILT_MAX].iloc[0]) == (-54.0, 57.0)
    assert df[T.TOMO_FILE].iloc[0] == str((tmp_path / "rec_TS_01.mrc").resolve())
    assert np.allclose(df[list(T.COORDS)].to_numpy()[0], [4.0, 3.0, 2.0])


def test_tomograms_from_mrc_headers(tmp_path):
    write_mrc(tmp_path / "a.mrc", np.zeros((10, 20, 30), np.float32), voxel_size=8.0)
    tomos = tomograms_from_files({"a": str(tmp_path / "a.mrc")}, tilt_series_pixel_size=2.0, hand=1.0)
    assert tomos["a"].binning == 4.0 and tomos["a"].size_bin1 == (120.0, 80.0, 40.0) and tomos["a"].hand == 1.0
    same = tomograms_from_files({"a": str(tmp_path / "a.mrc")})
    assert same["a"].binning == 1.0 and same["a"].tilt_series_pixel_size == 8.0
    with pytest.raises(TableError, match="-1 or 1"):
        tomograms_from_files({"a": str(tmp_path / "a.mrc")}, hand=0.0)


def test_formats_convert_to_relion5_and_back(tmp_path, capsys):
    """`cryomine formats convert`: a picking table -> RELION 5 (three files) -> CryoMine and RELION 4."""
    from cryomine_core.cli import main

    write_mrc(tmp_path / "TS_07.mrc", np.zeros((20, 40, 60), np.float32), voxel_size=10.8)
    df = pd.DataFrame({T.TOMO: ["TS_07"] * 3, T.TOMO_FILE: [str(tmp_path / "TS_07.mrc")] * 3,
                       T.COORDS[0]: [1.0, 30.0, 59.0], T.COORDS[1]: [2.0, 20.0, 39.0], T.COORDS[2]: [3.0, 10.0, 19.0],
                       T.VOXEL_SIZE: [10.8] * 3, T.CLASS: [1, 2, 1]})
    T.write_table(tmp_path / "picks.star", df, require=())
    assert main(["formats", "convert", str(tmp_path / "picks.star"), "--from", "cryomine", "--to", "relion5",
                 "--out", str(tmp_path / "r5" / "particles.star"), "--tilt-series-pixel-size", "1.35"]) == 0
    written = sorted(p.name for p in (tmp_path / "r5").iterdir())
    assert written == ["particles.star", "particles_optimisation_set.star", "particles_tomograms.star"]
    tomo = read_tomograms_star(tmp_path / "r5" / "particles_tomograms.star")["TS_07"]
    assert tomo.binning == pytest.approx(8.0) and tomo.size_bin1 == (480.0, 320.0, 160.0)
    assert main(["formats", "convert", str(tmp_path / "r5" / "particles_optimisation_set.star"), "--from",
                 "relion5", "--to", "cryomine", "--out", str(tmp_path / "back.star")]) == 0
    back = T.read_table(tmp_path / "back.star", require=())
    assert np.allclose(back[list(T.COORDS)].to_numpy(), df[list(T.COORDS)].to_numpy(), atol=1e-3)
    assert list(back[T.CLASS]) == [1, 2, 1] and np.allclose(back[T.VOXEL_SIZE], 10.8)
    # RELION 4 coordinates from RELION 5, at the tilt series' pixel size
    assert main(["formats", "convert", str(tmp_path / "r5" / "particles.star"), "--from", "relion5", "--tomograms",
                 str(tmp_path / "r5" / "particles_tomograms.star"), "--voxel-size", "1.35", "--to", "relion",
                 "--out", str(tmp_path / "r4.star")]) == 0
    r4 = starfile.read(tmp_path / "r4.star")["particles"]
    assert np.allclose(r4[list(T.COORDS)].to_numpy(), df[list(T.COORDS)].to_numpy() * 8, atol=1e-3)
    # --tomograms with no RELION 5 side is refused in one line
    assert main(["formats", "convert", str(tmp_path / "picks.star"), "--from", "cryomine", "--to", "relion",
                 "--tomograms", "x.star", "--out", str(tmp_path / "x.star")]) == 2
    assert "--tomograms is a RELION 5 file" in capsys.readouterr().err


def test_relion5_output_without_tomogram_sizes_is_refused(tmp_path):
    from cryomine_core.io.convert import write_particles

    df = pd.DataFrame({T.TOMO: ["a"], **{c: [1.0] for c in T.COORDS}, T.VOXEL_SIZE: [1.0]})
    with pytest.raises(TableError, match="give --tomograms"):
        write_particles(df, tmp_path / "p.star", "relion5")
