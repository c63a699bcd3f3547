"""Contrast check of a given reference (issue 18): refuse, invert on request, pass a matching reference untouched.

The data set is the issue's case in small: ``phantom:0`` simulated with the default CTF, so the
particles show the density dark while ``maps/phantom0.mrc`` is bright (opposite contrast).
"""

import json
import logging

import numpy as np
import pytest
import torch

from cryomine_core.align.contrast import (
    AGREE,
    INCONCLUSIVE,
    OPPOSITE,
    check_contrast,
    contrast_verdict,
    sign_test_p,
)
from cryomine_core.align.evaluate import pose_errors
from cryomine_core.align.jobs import load_particles, load_volume, prepare_reference, run_refine
from cryomine_core.align.search import SearchSettings
from cryomine_core.cli import main
from cryomine_core.errors import CryomineError
from cryomine_core.io import table as T
from cryomine_core.io.mrc import read_mrc, write_mrc
from cryomine_core.io.poses import table_poses
from cryomine_core.simulate import AcquisitionParams, simulate_subtomogram_dataset

BOX, VOXEL = 24, 11.0
REFINE_ARGS = ["--iterations", "2", "--angular-step", "25", "--max-shift", "3", "--device", "cpu", "--seed", "1"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("contrast_sim")
    simulate_subtomogram_dataset(out, ["phantom:0"], n_per_class=16, snr=1.0, box=BOX, voxel_size=VOXEL,
                                 max_shift=1.0, seed=3, n_snr_check=2)  # default acquisition: CTF applied
    bright, _ = read_mrc(out / "maps" / "phantom0.mrc")
    write_mrc(out / "dark.mrc", -bright, VOXEL)  # the particles' own contrast
    return out


@pytest.fixture(scope="module")
def particles(dataset):
    return load_particles(dataset / "particles.star")


def _refine_cli(dataset, out, *extra):
    return main(["align", "refine", "--in", str(dataset / "particles.star"), "--out", str(out), *REFINE_ARGS, *extra])


def test_opposite_contrast_reference_is_refused(dataset, tmp_path, capsys):
    out = tmp_path / "refused"
    assert _refine_cli(dataset, out, "--reference", str(dataset / "maps" / "phantom0.mrc")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "opposite contrast" in err[0] and "--invert-reference" in err[0] and "phantom0.mrc" in err[0]
    assert not (out / "particles.star").exists()


def test_mra_refuses_opposite_contrast_reference(dataset, tmp_path, capsys):
    code = main(["align", "mra", "--in", str(dataset / "particles.star"), "--out", str(tmp_path / "mra"),
                 "--classes", "2", "--reference", str(dataset / "maps" / "phantom0.mrc"), *REFINE_ARGS])
    assert code == 2
    err = capsys.readouterr().err
    assert "opposite contrast" in err and "--invert-reference" in err


def test_invert_reference_recovers_poses(dataset, tmp_path, caplog):
    out = tmp_path / "inverted"
    with caplog.at_level(logging.INFO, logger="cryomine"):
        assert _refine_cli(dataset, out, "--reference", str(dataset / "maps" / "phantom0.mrc"),
                           "--invert-reference") == 0
    assert "multiplied by -1" in caplog.text and "contrast check: reference and particles agree" in caplog.text
    truth, found = T.read_table(dataset / "particles.star"), T.read_table(out / "particles.star")
    # the reference is in the true frame: compare poses directly (2.7 degrees median measured)
    rot_err, shift_err = pose_errors(*table_poses(found), *table_poses(truth), up_to_global=False)
    assert float(rot_err.median()) < 5.0, rot_err
    assert float(shift_err.median()) < 1.0, shift_err
    record = json.loads((out / "metrics.json").read_text())["contrast_check"]
    assert record["verdict"] == AGREE and record["invert_reference"] and record["reference_sign"] == -1
    assert record["median_score_as_given"] > record["median_score_negated"] and record["negated_wins"] == 0


def test_same_contrast_reference_passes_untouched(dataset, particles):
    ref = load_volume(dataset / "dark.mrc", BOX, VOXEL, "reference")
    out, record = prepare_reference(ref, "dark.mrc", particles, SearchSettings(), None)
    assert out is ref
    assert record["verdict"] == AGREE and record["reference_sign"] == 1 and not record["inverted_automatically"]
    assert record["n_particles"] == 16 and record["p_value"] < 0.01


def test_contrast_modes(dataset, particles, caplog):
    bright = load_volume(dataset / "maps" / "phantom0.mrc", BOX, VOXEL, "reference")
    with caplog.at_level(logging.INFO, logger="cryomine"):
        auto, record = prepare_reference(bright, "bright.mrc", particles, SearchSettings(), None, contrast="auto")
    assert torch.equal(auto, -bright) and record["inverted_automatically"] and record["reference_sign"] == -1
    assert record["verdict"] == OPPOSITE and "inverted it (--contrast auto)" in caplog.text
    off, record = prepare_reference(bright, "bright.mrc", particles, SearchSettings(), None, contrast="off")
    assert off is bright and record["verdict"] == "skipped"
    dark = load_volume(dataset / "dark.mrc", BOX, VOXEL, "reference")
    with pytest.raises(CryomineError, match="drop --invert-reference"):
        prepare_reference(dark, "dark.mrc", particles, SearchSettings(), None, invert_reference=True)


def test_check_is_inconclusive_without_signal(particles):
    noise = torch.randn(particles.volumes.shape, generator=torch.Generator().manual_seed(0))
    ref = torch.randn((BOX,) * 3, generator=torch.Generator().manual_seed(1))
    check = check_contrast(noise, particles.tilt, ref, SearchSettings())
    assert check.verdict == INCONCLUSIVE, check.summary()


def test_verdict_needs_a_clear_majority():
    assert sign_test_p(10, 10) == pytest.approx(1 / 1024)
    assert contrast_verdict(40, 40)[0] == OPPOSITE and contrast_verdict(0, 40)[0] == AGREE
    assert contrast_verdict(25, 40)[0] == INCONCLUSIVE  # 62%: not most of the sample
    assert contrast_verdict(5, 5)[0] == INCONCLUSIVE  # unanimous but too few to be significant (p 0.03)
    assert contrast_verdict(0, 0)[0] == INCONCLUSIVE


def test_bad_contrast_options(dataset, tmp_path, capsys):
    assert _refine_cli(dataset, tmp_path / "o", "--invert-reference") == 2
    assert "--invert-reference needs a --reference" in capsys.readouterr().err
    with pytest.raises(CryomineError, match="--contrast 'maybe'"):
        run_refine(dataset / "particles.star", tmp_path / "o", reference=dataset / "dark.mrc", contrast="maybe",
                   device="cpu")


def test_help_documents_the_flags(capsys):
    for command in (["align", "refine"], ["align", "mra"]):
        with pytest.raises(SystemExit):
            main([*command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "--invert-reference" in text and "--contrast {check,auto,off}" in text
    with pytest.raises(SystemExit):
        main(["simulate", "subtomograms", "--help"])
    assert "opposite contrast" in " ".join(capsys.readouterr().out.split())


def test_simulate_logs_the_maps_contrast(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="cryomine"):
        simulate_subtomogram_dataset(tmp_path / "ctf", ["phantom:0"], n_per_class=1, snr=1.0, box=BOX,
                                     voxel_size=VOXEL, max_shift=0.0, seed=0, n_snr_check=1)
    assert "opposite contrast of the subtomograms" in caplog.text and "--invert-reference" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="cryomine"):
        simulate_subtomogram_dataset(tmp_path / "no_ctf", ["phantom:0"], n_per_class=1, snr=1.0, box=BOX,
                                     voxel_size=VOXEL, max_shift=0.0, seed=0, n_snr_check=1,
                                     params=AcquisitionParams(apply_ctf=False))
    assert "same contrast" in caplog.text
    assert np.isfinite(read_mrc(tmp_path / "ctf" / "maps" / "phantom0.mrc")[0]).all()
