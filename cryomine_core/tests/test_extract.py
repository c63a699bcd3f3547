"""Extraction: a planted blob ends up at the box centre; edges are skipped or padded; rescaling."""

import json

import numpy as np
import pandas as pd
import pytest

from cryomine_core.cli import main
from cryomine_core.extract import extract_subtomograms
from cryomine_core.io import table as T
from cryomine_core.io.mrc import read_mrc, write_mrc


def _tomogram_with_blobs(shape_zyx, centers_xyz, sigma=1.5):
    z, y, x = np.meshgrid(*[np.arange(n) for n in shape_zyx], indexing="ij")
    tomo = np.zeros(shape_zyx, np.float32)
    for cx, cy, cz in centers_xyz:
        tomo += np.exp(-((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) / (2 * sigma**2)).astype(np.float32)
    return tomo


def test_planted_blob_is_at_box_centre():
    centers = np.array([[20.0, 15.0, 12.0], [40.0, 30.0, 20.0]])
    tomo = _tomogram_with_blobs((32, 48, 64), centers)
    res = extract_subtomograms(tomo, centers, 16, normalise=False)
    assert res.kept.tolist() == [0, 1] and res.skipped.size == 0
    for vol in res.volumes:
        assert np.unravel_index(np.argmax(vol), vol.shape) == (8, 8, 8)


def test_edges_skip_or_pad():
    centers = np.array([[20.0, 15.0, 12.0], [2.0, 15.0, 12.0]])  # second box crosses x = 0
    tomo = _tomogram_with_blobs((32, 48, 64), centers)
    skip = extract_subtomograms(tomo, centers, 16, edge="skip")
    assert skip.kept.tolist() == [0] and skip.skipped.tolist() == [1]
    pad = extract_subtomograms(tomo, centers, 16, edge="pad", normalise=False)
    assert pad.kept.tolist() == [0, 1] and pad.padded.tolist() == [1]
    assert np.unravel_index(np.argmax(pad.volumes[1]), (16, 16, 16)) == (8, 8, 8)


def test_binning_by_two_keeps_the_particle_centred_and_inverts():
    centers = np.array([[32.0, 24.0, 16.0]])
    tomo = _tomogram_with_blobs((32, 48, 64), centers, sigma=3.0)
    res = extract_subtomograms(tomo, centers, 12, scale=2.0, invert=True, normalise=False)
    vol = res.volumes[0]
    assert vol.shape == (12, 12, 12)
    assert np.unravel_index(np.argmin(vol), vol.shape) == (6, 6, 6)  # inverted: the blob is the minimum


def test_cli_extract_writes_table_and_files(tmp_path, capsys):
    centers = np.array([[20.0, 15.0, 12.0], [40.0, 30.0, 20.0], [1.0, 1.0, 1.0]])
    write_mrc(tmp_path / "tomo_a.mrc", _tomogram_with_blobs((32, 48, 64), centers[:2]), 10.0)
    coords = pd.DataFrame({T.TOMO_FILE: "tomo_a.mrc", T.COORDS[0]: centers[:, 0], T.COORDS[1]: centers[:, 1],
                           T.COORDS[2]: centers[:, 2], T.ITEM_ID: [11, 12, 13], T.TILT_MIN: -50.0,
                           T.TILT_MAX: 60.0})
    T.write_table(tmp_path / "coords.star", coords, require=(T.TOMO_FILE, *T.COORDS))
    assert main(["extract", "--coords", str(tmp_path / "coords.star"), "--out", str(tmp_path / "out"),
                 "--box", "8", "--voxel-size", "20"]) == 0
    counts = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert counts == {"n_input": 3, "n_extracted": 2, "n_skipped": 1, "n_padded": 0, "n_outside": 0}
    out = T.read_table(tmp_path / "out" / "particles.star")
    assert out[T.ITEM_ID].tolist() == [11, 12]
    np.testing.assert_allclose(T.tilt_ranges(out), [[-50, 60]] * 2)
    vol, vs = read_mrc(out[T.IMAGE].iloc[0])
    assert vol.shape == (8, 8, 8) and vs == pytest.approx(20.0)
    assert abs(vol.mean()) < 1e-4 and vol.std() == pytest.approx(1.0, rel=1e-3)


def test_cli_extract_nothing_extractable_is_a_clear_error(tmp_path, capsys):
    write_mrc(tmp_path / "t.mrc", np.zeros((8, 8, 8), np.float32), 10.0)
    T.write_table(tmp_path / "c.star", pd.DataFrame({T.TOMO_FILE: "t.mrc", T.COORDS[0]: [4.0], T.COORDS[1]: [4.0],
                                                     T.COORDS[2]: [4.0]}), require=(T.TOMO_FILE,))
    assert main(["extract", "--coords", str(tmp_path / "c.star"), "--out", str(tmp_path / "o"), "--box", "16"]) == 2
    assert "no particle could be extracted" in capsys.readouterr().err


def test_coordinates_outside_the_tomogram_are_told_apart_from_edge_skips(tmp_path, capsys):
    """A centre outside the volume (other binning, Å for voxels) is never padded into a box of background."""
    from cryomine_core.extract import extract_subtomograms

    tomo = np.random.default_rng(0).normal(size=(20, 40, 40)).astype(np.float32)
    res = extract_subtomograms(tomo, np.array([[20.0, 20.0, 10.0], [80.0, 20.0, 10.0], [1.0, 1.0, 1.0]]), 8,
                               edge="pad")
    assert res.kept.tolist() == [0, 2] and res.outside.tolist() == [1] and res.padded.tolist() == [2]
    write_mrc(tmp_path / "t.mrc", tomo, 10.0)
    coords = pd.DataFrame({T.TOMO_FILE: "t.mrc", T.COORDS[0]: [400.0, 390.0], T.COORDS[1]: [20.0, 20.0],
                           T.COORDS[2]: [10.0, 10.0]})
    T.write_table(tmp_path / "c.star", coords, require=(T.TOMO_FILE, *T.COORDS))
    rc = main(["extract", "--coords", str(tmp_path / "c.star"), "--out", str(tmp_path / "o"), "--box", "8",
               "--edge", "pad"])
    err = capsys.readouterr().err
    assert rc == 2 and "lie outside their tomogram" in err and "--edge pad" not in err
