"""RELION 3.1/4 export: an optics block RELION itself can read, and a warning on odd boxes."""

import logging

import numpy as np
import pandas as pd
import pytest
import starfile

from cryomine_core.errors import TableError
from cryomine_core.io import table as T
from cryomine_core.io.mrc import write_mrc
from cryomine_core.io.relion import write_relion_star


def _particles(tmp_path, box):
    files = []
    for i in range(2):
        files.append(str(write_mrc(tmp_path / f"p{i}.mrc", np.zeros((box, box, box), np.float32), voxel_size=5.0)))
    return pd.DataFrame({T.IMAGE: files, T.VOXEL_SIZE: [5.0, 5.0], T.TOMO: ["t", "t"]})


def test_optics_block_has_what_relion_needs(tmp_path, caplog):
    path = write_relion_star(tmp_path / "particles.star", _particles(tmp_path, 24), voltage_kv=200.0, cs_mm=2.0,
                             amplitude_contrast=0.07)
    optics = starfile.read(path, always_dict=True)["optics"].iloc[0]
    assert (optics["rlnVoltage"], optics["rlnSphericalAberration"], optics["rlnAmplitudeContrast"]) == (200, 2, 0.07)
    assert (optics["rlnImageSize"], optics["rlnImagePixelSize"], optics["rlnImageDimensionality"]) == (24, 5.0, 3)
    assert "even" not in caplog.text


def test_odd_box_is_written_with_a_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="cryomine"):
        path = write_relion_star(tmp_path / "particles.star", _particles(tmp_path, 25))
    assert starfile.read(path, always_dict=True)["optics"]["rlnImageSize"].iloc[0] == 25
    assert "RELION needs even boxes" in caplog.text and "--box" in caplog.text


def test_bad_optics_are_refused(tmp_path):
    with pytest.raises(TableError, match="amplitude contrast"):
        write_relion_star(tmp_path / "p.star", _particles(tmp_path, 24), amplitude_contrast=7.0)
    with pytest.raises(TableError, match="voltage"):
        write_relion_star(tmp_path / "p.star", _particles(tmp_path, 24), voltage_kv=0.0)
