"""Gold-standard refinement on a tiny simulated set, bad input, and the ``cryomine align`` CLI round trip."""

import json

import numpy as np
import pandas as pd
import pytest
import starfile
import torch

from cryomine_core.align.evaluate import pose_errors
from cryomine_core.align.jobs import FAILED, RANDOM_SUBSET, load_particles, run_average, run_refine, search_settings
from cryomine_core.cli import main
from cryomine_core.errors import CryomineError, InputFileError, TableError
from cryomine_core.io import table as T
from cryomine_core.io.mrc import read_mrc, write_mrc
from cryomine_core.io.poses import table_poses
from cryomine_core.simulate import AcquisitionParams, simulate_subtomogram_dataset

BOX, VOXEL = 24, 11.0


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("align_sim")
    # no CTF: at this box the first CTF zero (~31 Å) would sit near Nyquist and leave too little detail
    simulate_subtomogram_dataset(out, ["phantom:0"], n_per_class=16, snr=1.0, box=BOX, voxel_size=VOXEL,
                                 max_shift=1.0, seed=3, n_snr_check=2, params=AcquisitionParams(apply_ctf=False))
    return out


@pytest.fixture(scope="module")
def refined(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("align_refine")
    code = main(["align", "refine", "--in", str(dataset / "particles.star"), "--out", str(out), "--iterations", "2",
                 "--angular-step", "25", "--max-shift", "3", "--device", "cpu", "--seed", "1"])
    assert code == 0
    return out


def test_refine_writes_every_output(refined):
    for name in ("particles.star", "average.mrc", "half1.mrc", "half2.mrc", "metrics.json", "fsc.png", "slices.png",
                 "orientations.png"):
        assert (refined / name).stat().st_size > 0, name
    m = json.loads((refined / "metrics.json").read_text())
    assert m["resolution_meaningful"] is True and m["warning"] is None
    assert m["resolution_0143_A"] < 0.95 * m["shared_resolution_A"]
    for key in ("resolution_0143_A", "resolution_05_A", "frequency_per_angstrom", "fsc", "history", "n_particles",
                "n_failed"):
        assert key in m, key
    assert m["n_particles"] == 16 and m["n_failed"] == 0
    assert len(m["fsc"]) == len(m["frequency_per_angstrom"]) == BOX // 2 + 1
    assert len(m["history"]) == 2
    assert 2 * VOXEL <= m["resolution_0143_A"] < 80.0
    df = starfile.read(refined / "particles.star")
    assert set(df[RANDOM_SUBSET]) == {1, 2} and (df[T.HALF_SET] == df[RANDOM_SUBSET]).all()
    assert (df[FAILED] == 0).all() and (df[T.SCORE] > 0).all()
    vol, vs = read_mrc(refined / "average.mrc")
    assert vol.shape == (BOX,) * 3 and vs == pytest.approx(VOXEL, rel=1e-4)


def test_refine_recovers_poses_up_to_a_global_pose(dataset, refined):
    truth = T.read_table(dataset / "particles.star")
    found = T.read_table(refined / "particles.star")
    r_true, t_true = table_poses(truth)
    r_est, t_est = table_poses(found)
    rot_err, shift_err = pose_errors(r_est, t_est, r_true, t_true)
    assert float(rot_err.median()) < 8.0, rot_err
    assert float(shift_err.median()) < 1.0, shift_err
    # the refinement improved over its start: the last iteration scores better than the first
    m = json.loads((refined / "metrics.json").read_text())
    assert m["history"][-1]["mean_score"] > m["history"][0]["mean_score"]


def test_average_with_table_poses_and_oracle(dataset, refined, tmp_path):
    m_oracle = run_average(dataset / "particles.star", tmp_path / "oracle", device="cpu")
    m_found = run_average(refined / "particles.star", tmp_path / "found", device="cpu")
    assert (tmp_path / "oracle" / "average.mrc").exists() and (tmp_path / "oracle" / "fsc.png").exists()
    # averages from refined poses are about as good as those from the true poses
    assert m_found["resolution_0143_A"] < 1.3 * m_oracle["resolution_0143_A"]
    # random poses give a much worse average
    df = T.read_table(dataset / "particles.star")
    rng = np.random.default_rng(0)
    for c in T.ANGLES:
        df[c] = rng.uniform(-180, 180, len(df)) if c != "rlnAngleTilt" else rng.uniform(0, 180, len(df))
    T.write_table(tmp_path / "random.star", df)
    m_random = run_average(tmp_path / "random.star", tmp_path / "random", device="cpu")
    assert m_random["resolution_0143_A"] > 1.3 * m_oracle["resolution_0143_A"]
    assert m_oracle["poses"] == "table"


def test_streamed_average_equals_the_in_memory_one_for_any_chunk(dataset, tmp_path):
    """align average reads the set chunk by chunk: 1, 7 or all particles at a time give the same maps, equal
    to average_particles over the whole set in memory (up to float summation order)."""
    from cryomine_core.align import average_particles

    maps = {}
    for chunk in (1, 7, 10_000):
        run_average(dataset / "particles.star", tmp_path / f"c{chunk}", device="cpu", by_class=True, chunk=chunk)
        maps[chunk] = {n: read_mrc(tmp_path / f"c{chunk}" / n)[0] for n in ("average.mrc", "half1.mrc",
                                                                             "class_001.mrc")}
    for chunk in (1, 7):
        for name, vol in maps[chunk].items():
            assert np.allclose(vol, maps[10_000][name], atol=1e-5 * np.abs(vol).max()), (chunk, name)
    ps = load_particles(dataset / "particles.star", device="cpu")
    rot, shifts = table_poses(ps.table)
    if T.HALF_SET in ps.table.columns:
        halves = torch.as_tensor(ps.table[T.HALF_SET].to_numpy(int))
    else:  # run_average's own split (seed 0)
        halves = torch.as_tensor(np.random.default_rng(0).permutation(np.arange(len(ps.table)) % 2) + 1)
    in_memory, _ = average_particles(ps.volumes, rot.float(), shifts.float(), ps.tilt, classes=halves - 1, n_classes=2)
    assert np.allclose(maps[7]["half1.mrc"], in_memory[0].numpy(), atol=1e-5 * np.abs(in_memory[0].numpy()).max())


def test_streamed_refine_equals_the_whole_set_and_the_in_memory_api(dataset, refined):
    """align refine reads the particles chunk by chunk in every pass. Chunks are whole batches, so read from
    the files 4 at a time (batches of 4) it gives what the volumes in memory give in one chunk; and the
    Python API on the volumes in memory gives the command's result (batches of 32)."""
    from cryomine_core.align.particle_source import ParticleFiles
    from cryomine_core.align.refine import RefineSettings, refine
    from cryomine_core.geometry import rotation_angle_deg

    ps = load_particles(dataset / "particles.star", device="cpu")
    search = search_settings(25, 3, "C1", BOX)
    files = ParticleFiles(list(ps.table[T.IMAGE]), ps.box)
    streamed = refine(files, ps.tilt, ps.voxel_size, settings=RefineSettings(iterations=2, search=search, seed=1,
                                                                             batch_size=4, chunk=4))
    whole = refine(ps.volumes, ps.tilt, ps.voxel_size, settings=RefineSettings(iterations=2, search=search, seed=1,
                                                                               batch_size=4, chunk=10_000))
    assert float(rotation_angle_deg(whole.rotations.transpose(-1, -2) @ streamed.rotations).max()) < 1e-3
    assert torch.allclose(whole.average, streamed.average, atol=1e-5 * float(whole.average.abs().max()))
    assert (whole.half_sets == streamed.half_sets).all()
    cli = T.read_table(refined / "particles.star")
    rc, _ = table_poses(cli)
    api = refine(ps.volumes, ps.tilt, ps.voxel_size, settings=RefineSettings(iterations=2, search=search, seed=1))
    assert float(rotation_angle_deg(rc.float().transpose(-1, -2) @ api.rotations).max()) < 0.01
    avg = read_mrc(refined / "average.mrc")[0]
    assert np.corrcoef(avg.ravel(), api.average.numpy().ravel())[0, 1] >= 0.9999


def test_average_by_class_without_classes_leaves_earlier_outputs_alone(dataset, tmp_path):
    """The missing class column is found before anything is written; a pose-less table is said to be unaligned."""
    df = T.read_table(dataset / "particles.star").drop(columns=[T.CLASS, *T.ANGLES], errors="ignore")
    T.write_table(tmp_path / "plain.star", df)
    m = run_average(tmp_path / "plain.star", tmp_path / "o", device="cpu")
    assert m["poses"].startswith("none")
    before = {p.name: p.read_bytes() for p in (tmp_path / "o").iterdir()}
    with pytest.raises(CryomineError, match="averaging by class needs"):
        run_average(tmp_path / "plain.star", tmp_path / "o", device="cpu", by_class=True, seed=5)
    assert {p.name: p.read_bytes() for p in (tmp_path / "o").iterdir()} == before


def test_mra_cli_separates_two_structures(tmp_path):
    data = tmp_path / "two"
    simulate_subtomogram_dataset(data, ["a=phantom:0", "b=phantom:2"], n_per_class=10, snr=1.0, box=BOX,
                                 voxel_size=VOXEL, max_shift=1.0, seed=5, n_snr_check=2,
                                 params=AcquisitionParams(apply_ctf=False))
    out = tmp_path / "mra"
    code = main(["align", "mra", "--in", str(data / "particles.star"), "--out", str(out), "--classes", "2",
                 "--iterations", "1", "--angular-step", "30", "--device", "cpu"])
    assert code == 0
    truth = starfile.read(data / "particles.star")[T.CLASS].to_numpy()
    found = starfile.read(out / "particles.star")[T.CLASS].to_numpy()
    assert set(found) <= {1, 2}
    agree = max(np.mean(found == truth), np.mean(found == 3 - truth))  # class labels are arbitrary
    assert agree >= 0.9, (truth, found)
    m = json.loads((out / "metrics.json").read_text())
    assert sum(m["class_sizes"].values()) == 20
    assert set(m["class_resolution_0143_A"]) == {"1", "2"}
    for name in ("class_001.mrc", "class_002.mrc", "gallery.png"):
        assert (out / name).stat().st_size > 0
    # streamed from the files 3 at a time (batches of 3) = the volumes in memory in one chunk
    from cryomine_core.align import mra
    from cryomine_core.align.particle_source import ParticleFiles
    from cryomine_core.align.refine import RefineSettings
    from cryomine_core.geometry import rotation_angle_deg

    ps = load_particles(data / "particles.star", device="cpu")
    runs = [mra.multi_reference_alignment(src, ps.tilt, ps.voxel_size, 2, RefineSettings(
        iterations=1, search=search_settings(30, 3, "C1", BOX), batch_size=3, chunk=chunk))
        for src, chunk in ((ParticleFiles(list(ps.table[T.IMAGE]), ps.box), 3), (ps.volumes, 10_000))]
    assert (runs[0].classes == runs[1].classes).all()
    assert float(rotation_angle_deg(runs[0].rotations.transpose(-1, -2) @ runs[1].rotations).max()) < 1e-3
    assert torch.allclose(runs[0].averages, runs[1].averages, atol=1e-5 * float(runs[1].averages.abs().max()))


def test_mra_seeds_on_a_subset_and_gives_the_rest_the_nearest_centre(tmp_path, monkeypatch, caplog):
    """Above SEED_SUBSET particles k-means runs on a drawn subset; the others join the nearest centre in a
    streamed pass. With the subset at half the set, three structures are still told apart."""
    from cryomine_core.align import mra
    from cryomine_core.align.refine import RefineSettings

    data = tmp_path / "three"
    simulate_subtomogram_dataset(data, ["a=phantom:0", "b=phantom:1", "c=phantom:2"], n_per_class=10, snr=1.0,
                                 box=20, voxel_size=16.0, max_shift=1.0, seed=6, n_snr_check=2,
                                 params=AcquisitionParams(apply_ctf=False))
    ps = load_particles(data / "particles.star", device="cpu")
    monkeypatch.setattr(mra, "SEED_SUBSET", 15)
    with caplog.at_level("INFO", logger="cryomine"):
        res = mra.multi_reference_alignment(ps.volumes, ps.tilt, ps.voxel_size, 3, RefineSettings(
            iterations=1, search=search_settings(30, 3, "C1", 20), chunk=4))
    assert "k-means on 15 of 30 particles" in caplog.text
    truth = ps.table[T.CLASS].to_numpy()
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(truth, res.classes.numpy()) >= 0.9


def test_mra_local_rounds_separate_structures_and_resume_to_the_same_result(tmp_path):
    """With local_radius_deg, the first round aligns each particle to each reference on its own (global search) and
    later rounds search only near the pose of the round before; three structures are told apart, and a run resumed
    after round 2 gives the uninterrupted run's classes and poses (the per-reference poses are checkpointed)."""
    from sklearn.metrics import adjusted_rand_score

    from cryomine_core.align import mra
    from cryomine_core.align.refine import RefineSettings

    data = tmp_path / "three"
    simulate_subtomogram_dataset(data, ["a=phantom:0", "b=phantom:1", "c=phantom:2"], n_per_class=10, snr=1.0,
                                 box=20, voxel_size=16.0, max_shift=1.0, seed=6, n_snr_check=2,
                                 params=AcquisitionParams(apply_ctf=False))
    ps = load_particles(data / "particles.star", device="cpu")

    def run(**kw):
        return mra.multi_reference_alignment(ps.volumes, ps.tilt, ps.voxel_size, 3, RefineSettings(
            iterations=3, search=search_settings(30, 3, "C1", 20), local_radius_deg=20.0), **kw)

    full = run(checkpoint=tmp_path / "ck.pt")  # the checkpoint after round 2 stays (the job removes it, not this)
    assert adjusted_rand_score(ps.table[T.CLASS].to_numpy(), full.classes.numpy()) >= 0.85  # 0.90 seen; chance 0
    resumed = run(checkpoint=tmp_path / "ck.pt", resume=True)
    assert len(resumed.history) == 3 and resumed.history[:2] == full.history[:2]
    assert (resumed.classes == full.classes).all()
    assert torch.allclose(resumed.rotations, full.rotations, atol=1e-5)


def _table_copy(dataset, tmp_path, edit):
    df = T.read_table(dataset / "particles.star")
    df = edit(df)
    path = tmp_path / "t.star"
    T.write_table(path, df)
    return path


def test_missing_tilt_range_is_refused_unless_given(dataset, tmp_path, capsys):
    path = _table_copy(dataset, tmp_path, lambda d: d.drop(columns=[T.TILT_MIN, T.TILT_MAX]))
    with pytest.raises(TableError, match="--tilt-range"):
        load_particles(path)
    assert main(["align", "refine", "--in", str(path), "--out", str(tmp_path / "o"), "--device", "cpu"]) == 2
    assert "tilt range" in capsys.readouterr().err
    ps = load_particles(path, tilt_range=(-45, 50))
    assert torch.equal(ps.tilt[0], torch.tensor([-45.0, 50.0]))


def test_bad_reference_mask_and_volumes(dataset, tmp_path):
    star = dataset / "particles.star"
    write_mrc(tmp_path / "small.mrc", np.zeros((16, 16, 16), np.float32), VOXEL)
    with pytest.raises(InputFileError, match="16, 16, 16"):
        run_refine(star, tmp_path / "o", reference=tmp_path / "small.mrc", device="cpu")
    write_mrc(tmp_path / "vs.mrc", np.zeros((BOX,) * 3, np.float32), 2 * VOXEL)
    with pytest.raises(InputFileError, match="voxel size"):
        run_refine(star, tmp_path / "o", reference=tmp_path / "vs.mrc", device="cpu")
    write_mrc(tmp_path / "mask.mrc", np.full((BOX,) * 3, 3.0, np.float32), VOXEL)
    with pytest.raises(InputFileError, match="mask"):
        run_refine(star, tmp_path / "o", mask=tmp_path / "mask.mrc", device="cpu")
    # a NaN volume is named
    data, _ = read_mrc(dataset / "subtomograms" / "sub_000001.mrc")
    data[0, 0, 0] = np.nan
    import mrcfile

    with mrcfile.new(tmp_path / "nan.mrc", overwrite=True) as m:
        m.set_data(data)
        m.voxel_size = VOXEL
    images = [str(tmp_path / "nan.mrc")]
    path = _table_copy(dataset, tmp_path, lambda d: d.assign(**{T.IMAGE: images + list(d[T.IMAGE][1:])}))
    with pytest.raises(InputFileError, match="nan.mrc"):
        load_particles(path)
    # mixed boxes
    write_mrc(tmp_path / "b16.mrc", np.random.default_rng(0).normal(size=(16, 16, 16)).astype(np.float32), VOXEL)
    images = [str(tmp_path / "b16.mrc")]
    path = _table_copy(dataset, tmp_path, lambda d: d.assign(**{T.IMAGE: list(d[T.IMAGE][:-1]) + images}))
    with pytest.raises(InputFileError, match="box"):
        load_particles(path)


def test_empty_set_and_bad_settings(dataset, tmp_path):
    empty = tmp_path / "empty.star"
    starfile.write({"particles": pd.DataFrame({T.IMAGE: pd.Series([], dtype=str)})}, empty)
    with pytest.raises(CryomineError):
        load_particles(empty)
    with pytest.raises(CryomineError, match="symmetry"):
        run_refine(dataset / "particles.star", tmp_path / "o", symmetry="X7", device="cpu")
    with pytest.raises(CryomineError, match="max-shift"):
        run_refine(dataset / "particles.star", tmp_path / "o", max_shift=50, device="cpu")


def test_noise_gets_no_meaningful_resolution(tmp_path):
    """Pure noise with a missing wedge: the half maps agree only where they share their start (issue 18)."""
    from cryomine_core.fourier.wedge import missing_wedge_mask
    from cryomine_core.io.mrc import write_mrc

    g = torch.Generator().manual_seed(0)
    wedge = missing_wedge_mask((BOX,) * 3, -60.0, 60.0)
    noise = torch.fft.irfftn(torch.fft.rfftn(torch.randn(40, BOX, BOX, BOX, generator=g), dim=(-3, -2, -1)) * wedge,
                             s=(BOX,) * 3, dim=(-3, -2, -1))
    names = []
    for i, vol in enumerate(noise):
        write_mrc(tmp_path / "sub" / f"n{i:03d}.mrc", vol.numpy(), VOXEL)
        names.append(f"sub/n{i:03d}.mrc")
    T.write_table(tmp_path / "noise.star", pd.DataFrame({T.IMAGE: names, T.VOXEL_SIZE: VOXEL, T.TILT_MIN: -60.0,
                                                        T.TILT_MAX: 60.0}))
    assert main(["align", "refine", "--in", str(tmp_path / "noise.star"), "--out", str(tmp_path / "o"),
                 "--iterations", "2", "--angular-step", "25", "--device", "cpu"]) == 0
    m = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert m["resolution_meaningful"] is False and "no meaningful resolution" in m["warning"]
