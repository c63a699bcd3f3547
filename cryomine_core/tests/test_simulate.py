"""Validation of the subtomogram simulator (phantoms only, CPU, no network)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from cryomine_core.errors import CryomineError
from cryomine_core.fourier import missing_wedge_mask
from cryomine_core.geometry import relion_eulers_to_rotation, rotate_volume, rotation_angle_deg, rotation_z
from cryomine_core.io import table as T
from cryomine_core.io.mrc import read_mrc
from cryomine_core.simulate import noise as snr_tools
from cryomine_core.simulate.acquisition import AcquisitionParams, TiltModel
from cryomine_core.simulate.datasets import simulate_subtomogram_dataset
from cryomine_core.simulate.structures import load_structure
from cryomine_core.simulate.subtomograms import EMPTY, SubtomogramSimulator
from cryomine_core.simulate.tilt import centred_fft

N = 40


def _cc(a: torch.Tensor, b: torch.Tensor) -> float:
    a = a - a.mean()
    b = b - b.mean()
    return float((a * b).sum() / torch.sqrt((a * a).sum() * (b * b).sum()))


def _wedge_filter(volumes: torch.Tensor, lo: float, hi: float, extra: torch.Tensor | None = None) -> torch.Tensor:
    ft = torch.fft.rfftn(volumes, dim=(-3, -2, -1)) * missing_wedge_mask(volumes.shape[-3:], lo, hi)
    if extra is not None:
        ft = ft * extra
    return torch.fft.irfftn(ft, s=volumes.shape[-3:], dim=(-3, -2, -1))


@pytest.fixture(scope="module")
def phantoms():
    return [load_structure(f"phantom:{i}", 9.2, N) for i in range(3)]


def test_phantoms_distinct_and_asymmetric(phantoms):
    a, b = phantoms[0].volume, phantoms[1].volume
    assert a.shape == (N, N, N) and float(a.max()) == pytest.approx(1.0)
    assert _cc(a, b) < 0.8
    # no 90/180-degree rotation about z maps a phantom onto itself
    for angle in (90.0, 180.0, 270.0):
        assert _cc(a, rotate_volume(a, rotation_z(angle))) < 0.9
    # centred on the centre of mass
    zz, yy, xx = torch.meshgrid(*(torch.arange(N, dtype=torch.float32),) * 3, indexing="ij")
    com = [float((c * a.clamp_min(0)).sum() / a.clamp_min(0).sum()) for c in (xx, yy, zz)]
    assert np.allclose(com, N // 2, atol=0.3)


@pytest.mark.parametrize("method", ["dfi", "wbp"])
@pytest.mark.parametrize("tilt_range", [(-60.0, 60.0), (-40.0, 60.0)])
def test_noise_free_particle_matches_wedge_filtered_rotated_map(phantoms, method, tilt_range):
    lo, hi = tilt_range
    params = AcquisitionParams(tilt_min_deg=lo, tilt_max_deg=hi, apply_ctf=False, apply_mtf=False,
                               reconstruction=method)
    model = TiltModel(params, (N, N, N), 9.2)
    ref = phantoms[1].volume
    gen = torch.Generator().manual_seed(3)
    from cryomine_core.geometry import random_rotations

    rot = random_rotations(4, generator=gen)
    shift = 4.0 * torch.rand((4, 3), generator=gen) - 2.0
    rec = model.reconstruct(model.particle_slices(centred_fft(ref, 2), rot, shift))
    truth = rotate_volume(ref, rot, shift)
    expected = _wedge_filter(truth, lo, hi)
    mirrored = _wedge_filter(truth, -hi, -lo)
    for i in range(4):
        assert _cc(rec[i], expected[i]) > 0.98
        if lo != -hi:  # the sense of the tilt matters for an asymmetric range
            assert _cc(rec[i], mirrored[i]) < _cc(rec[i], expected[i]) - 0.1
    assert float(rec.std() / expected.std()) == pytest.approx(1.0, abs=0.1)


def test_ctf_and_mtf_are_applied(phantoms):
    params = AcquisitionParams()
    model = TiltModel(params, (N, N, N), 9.2)
    ref = phantoms[0].volume
    rec = model.reconstruct(model.particle_slices(centred_fft(ref, 2)))[0]
    from cryomine_core.fourier import ctf_2d, mtf, radial_frequency

    # The CTF and MTF are isotropic, so the 3-D filter is their 1-D profile at |k|.
    k = radial_frequency((N, N, N))
    prof_k = torch.fft.rfftfreq(4 * N)
    ctf_1d = ctf_2d((1, 4 * N), 9.2, 5.0, voltage_kv=300.0, cs_mm=2.0, amplitude_contrast=0.07)[0]
    mtf_1d = mtf((1, 4 * N))[0] / torch.sinc(torch.zeros(1))  # x-axis profile of the pixel aperture
    h = torch.from_numpy(np.interp(k.numpy(), prof_k.numpy(), (ctf_1d * mtf_1d).numpy())).float()
    expected = _wedge_filter(ref, -60.0, 60.0, extra=h)
    assert _cc(rec, expected) > 0.95
    assert _cc(rec, ref) < 0.5  # the CTF visibly changes the particle (dense matter dark)


def test_fourier_coverage_matches_wedge():
    grid = torch.stack(torch.meshgrid(torch.fft.fftfreq(N), torch.fft.fftfreq(N), torch.fft.rfftfreq(N),
                                      indexing="ij"), -1) * N  # (kz, ky, kx) in Fourier-voxel units
    k = torch.linalg.vector_norm(grid, dim=-1)
    sphere = (k < 0.45 * N) & (k > 0)
    for lo, hi in [(-60.0, 60.0), (-50.0, 50.0), (-40.0, 60.0)]:
        model = TiltModel(AcquisitionParams(tilt_min_deg=lo, tilt_max_deg=hi), (N, N, N), 9.2)
        covered = model.sampling_weights > 0
        wedge = missing_wedge_mask((N, N, N), lo, hi) > 0
        # every observed voxel inside the Nyquist sphere receives data ...
        assert covered[wedge & sphere].float().mean() > 0.995, (lo, hi)
        # ... and no missing-wedge voxel farther than the gridding kernel (sqrt(3) voxels) from the
        # planes of the extreme tilts, whose normals are b(theta) = (cos theta, sin theta) in (kz, kx)
        normals = [(math.cos(math.radians(a)), math.sin(math.radians(a))) for a in (lo, hi)]
        dist = torch.stack([(grid[..., 0] * c + grid[..., 2] * s).abs() for c, s in normals]).amin(0)
        far_outside = ~wedge & sphere & (dist > 1.75)
        assert far_outside.sum() > 1000
        assert not covered[far_outside].any(), (lo, hi)
        # the covered fraction of the sphere is (max - min) / 180 plus the kernel's reach past the edges
        frac = float(covered[sphere & (k > 8)].float().mean())
        assert (hi - lo) / 180.0 < frac < (hi - lo) / 180.0 + 0.08, (lo, hi, frac)


@pytest.mark.slow
@pytest.mark.parametrize("scope", ["dataset", "particle"])
@pytest.mark.parametrize("snr", [0.1, 0.03])
def test_realised_snr_within_20_percent(phantoms, snr, scope):
    sim = SubtomogramSimulator(phantoms, N, max_shift=2.0)
    sigma = sim.dataset_sigma(snr, torch.Generator().manual_seed(1))
    gen = torch.Generator().manual_seed(2)
    classes = torch.arange(48) % 3
    measured, per = sim.measure_snr(classes, gen, snr, sigma, scope)
    assert measured == pytest.approx(snr, rel=0.2)
    if scope == "particle":  # every particle at the target, not only the average
        assert float(per.median()) == pytest.approx(snr, rel=0.25)


def test_snr_from_pairs_recovers_known_ratio():
    gen = torch.Generator().manual_seed(0)
    s = torch.randn((16, 20, 20, 20), generator=gen) * math.sqrt(0.05)
    a = s + torch.randn(s.shape, generator=gen)
    b = s + torch.randn(s.shape, generator=gen)
    pooled, _ = snr_tools.snr_from_pairs(a, b)
    assert pooled == pytest.approx(0.05, rel=0.1)


def test_rotations_uniform_over_so3(phantoms):
    sim = SubtomogramSimulator(phantoms[:1], N, max_shift=2.0)
    rot, shift = sim.random_poses(torch.zeros(4000, dtype=torch.long), torch.Generator().manual_seed(5))
    # Haar measure: the image of any axis is uniform on the sphere (its z component uniform on [-1, 1]),
    # and the rotation angle has density (1 - cos w) / pi on [0, pi].
    for axis in range(3):
        assert stats.kstest(rot[:, 2, axis].numpy(), "uniform", args=(-1, 2)).pvalue > 0.001
    angles = np.radians(rotation_angle_deg(rot).numpy())
    cdf = lambda w: (w - np.sin(w)) / np.pi  # noqa: E731
    assert stats.kstest(angles, cdf).pvalue > 0.001
    assert float(shift.abs().max()) <= 2.0 and float(shift.abs().max()) > 1.9


@pytest.mark.slow
def test_dataset_ground_truth_and_reproducibility(tmp_path, phantoms):
    kw = dict(n_per_class=4, snr=1e6, include_empty=True, seed=7, max_shift=1.5, n_snr_check=4,
              params=AcquisitionParams(apply_ctf=False, apply_mtf=False))
    m1 = simulate_subtomogram_dataset(tmp_path / "a", ["phantom:0", "phantom:1"], **kw)
    simulate_subtomogram_dataset(tmp_path / "b", ["phantom:0", "phantom:1"], **kw)
    simulate_subtomogram_dataset(tmp_path / "c", ["phantom:0", "phantom:1"], **{**kw, "seed": 8})
    df = T.read_table(tmp_path / "a" / "particles.star", require=(T.IMAGE, T.CLASS, *T.ANGLES, *T.ORIGINS))
    assert len(df) == 12 and sorted(set(df[T.CLASS])) == [1, 2, 3]
    assert set(df[T.CLASS_NAME]) == {"phantom0", "phantom1", "empty"}
    assert (df[T.TILT_MIN] == -60).all() and (df[T.TILT_MAX] == 60).all() and (df[T.VOXEL_SIZE] == 9.2).all()
    assert m1["n_particles"] == 12 and m1["snr_requested"] == 1e6
    df_b = T.read_table(tmp_path / "b" / "particles.star")
    df_c = T.read_table(tmp_path / "c" / "particles.star")
    assert np.allclose(df[list(T.ANGLES)].to_numpy(), df_b[list(T.ANGLES)].to_numpy())
    assert not np.allclose(df[list(T.ANGLES)].to_numpy(), df_c[list(T.ANGLES)].to_numpy())
    for (_, row), (_, row_b) in zip(df.iterrows(), df_b.iterrows()):
        vol, vs = read_mrc(row[T.IMAGE])
        assert vs == pytest.approx(9.2)
        assert np.array_equal(vol, read_mrc(row_b[T.IMAGE])[0])
        if row[T.CLASS_NAME] == "empty":
            continue
        # nearly noise-free: the particle is the class map at the recorded pose (RELION angles / origins)
        ref = torch.from_numpy(read_mrc(tmp_path / "a" / "maps" / f"{row[T.CLASS_NAME]}.mrc")[0])
        rot = relion_eulers_to_rotation(torch.tensor([row[c] for c in T.ANGLES], dtype=torch.float64)).float()
        shift = -torch.tensor([row[c] for c in T.ORIGINS], dtype=torch.float32) / 9.2
        expected = _wedge_filter(rotate_volume(ref, rot, shift), -60.0, 60.0)
        assert _cc(torch.from_numpy(vol), expected) > 0.97


@pytest.mark.parametrize("kwargs, match", [
    (dict(specs=["nosuchthing"]), "unknown structure"),
    (dict(specs=["/no/such/map.mrc"]), "file not found"),
    (dict(specs=[]), "class list is empty"),
    (dict(snr=0.0), "SNR"),
    (dict(snr=-1.0), "SNR"),
    (dict(box=16), "does not fit a box"),
    (dict(params=AcquisitionParams(tilt_min_deg=-60, tilt_max_deg=95)), "tilt range"),
    (dict(params=AcquisitionParams(tilt_min_deg=10, tilt_max_deg=60)), "tilt range"),
    (dict(params=AcquisitionParams(tilt_min_deg=-60, tilt_max_deg=0)), "tilt range"),
    (dict(params=AcquisitionParams(tilt_step_deg=0)), "tilt step"),
    (dict(n_per_class=0), "n-per-class"),
    (dict(specs=["phantom:0", "phantom:0"]), "used twice"),
])
def test_bad_input_raises_before_work(tmp_path, kwargs, match):
    out = tmp_path / "out"
    args = dict(specs=["phantom:0"], n_per_class=2, snr=0.1, box=N)
    args.update(kwargs)
    specs = args.pop("specs")
    with pytest.raises(CryomineError, match=match):
        simulate_subtomogram_dataset(out, specs, **args)
    assert not out.exists()


@pytest.mark.slow
def test_cli_subtomograms(tmp_path, capsys):
    from cryomine_core.cli import main

    out = tmp_path / "sim"
    rc = main(["simulate", "subtomograms", "--out", str(out), "--structures", "phantom:0", "b=phantom:1",
               "--n-per-class", "3", "--snr", "0.05", "--empty-class", "--device", "cpu", "--seed", "1"])
    assert rc == 0
    df = T.read_table(out / "particles.star", require=(T.IMAGE, T.CLASS, T.SNR))
    assert len(df) == 9 and set(df[T.CLASS_NAME]) == {"phantom0", "b", "empty"}
    assert sorted(p.name for p in (out / "maps").iterdir()) == ["b.mrc", "phantom0.mrc"]
    assert len(list((out / "subtomograms").glob("*.mrc"))) == 9
    assert '"snr_realised"' in capsys.readouterr().out
    assert main(["simulate", "subtomograms", "--out", str(tmp_path / "x"), "--snr", "-1"]) == 2
    assert "SNR" in capsys.readouterr().err
    assert main(["simulate", "subtomograms", "--out", str(tmp_path / "x"), "--structures"]) == 2


def test_empty_particles_are_noise_only(phantoms):
    sim = SubtomogramSimulator(phantoms[:1], N)
    classes = torch.tensor([EMPTY, EMPTY])
    rot, shift = sim.random_poses(classes, torch.Generator().manual_seed(0))
    batch, clean = sim.simulate(classes, rot, shift, torch.Generator().manual_seed(1), 0.1, sigma=1.0, clean=True)
    assert float(clean.abs().max()) == 0.0 and float(batch.volumes.std()) > 0
    assert torch.equal(rot, torch.eye(3).expand(2, 3, 3))


def test_named_spec_accepts_pdb_ids_that_start_with_a_digit():
    from cryomine_core.simulate.structures import structure_name

    s = load_structure("4cr2=phantom:0", 9.2, 16)
    assert s.name == "4cr2" and structure_name("4cr2=phantom:0") == "4cr2"
    assert structure_name("ribo=phantom:0") == "ribo" and structure_name("phantom:3") == "phantom3"
