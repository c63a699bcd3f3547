"""Validation of the crowded-tomogram simulator and of structure loading / fetching (offline)."""

from __future__ import annotations

import hashlib
import io
import tarfile

import numpy as np
import pytest
import torch

from cryomine_core.errors import CryomineError
from cryomine_core.fourier import missing_wedge_mask
from cryomine_core.geometry import relion_eulers_to_rotation, rotate_volume
from cryomine_core.io import table as T
from cryomine_core.io.mrc import read_mrc, write_mrc
from cryomine_core.simulate.acquisition import AcquisitionParams
from cryomine_core.simulate.structures import load_structure
from cryomine_core.simulate.tomograms import INSTANCE, simulate_tomogram, simulate_tomogram_dataset

SHAPE = (48, 96, 96)


def _cc(a, b) -> float:
    a = a - a.mean()
    b = b - b.mean()
    return float((a * b).sum() / torch.sqrt((a * a).sum() * (b * b).sum()))


@pytest.fixture(scope="module")
def scene():
    structures = [load_structure(f"phantom:{i}", 9.2) for i in range(2)]
    params = AcquisitionParams(apply_ctf=False, apply_mtf=False)
    sim = simulate_tomogram(structures, SHAPE, occupancy=0.08, n_vesicles=1, snr=0.5, params=params, seed=3)
    return structures, sim


def test_ground_truth_matches_planted_particles(scene):
    structures, sim = scene
    n = len(sim["classes"])
    assert n >= 4
    inst, labels, dens = sim["instances"], sim["labels"], sim["density"]
    zz, yy, xx = torch.meshgrid(*(torch.arange(s, dtype=torch.float64) for s in SHAPE), indexing="ij")
    for i in range(n):
        mask = inst == i + 1
        assert mask.sum() > 20
        assert bool((labels[mask] == int(sim["classes"][i]) + 1).all())
        w = dens[mask].double()  # density-weighted centroid of the instance = the planted centre
        centroid = np.array([float((c[mask] * w).sum() / w.sum()) for c in (xx, yy, zz)])
        assert np.allclose(centroid, sim["coordinates"][i], atol=1.0), (i, centroid, sim["coordinates"][i])
    # bounding spheres do not overlap
    c = sim["coordinates"]
    r = np.array([structures[k].radius for k in sim["classes"]])
    dist = np.linalg.norm(c[:, None] - c[None], axis=-1) + np.eye(n) * 1e9
    assert (dist >= r[:, None] + r[None]).all()
    assert bool((labels == len(structures) + 1).any())  # the vesicle is labelled as membrane


def test_cut_out_particle_matches_recorded_pose(scene):
    structures, sim = scene
    from cryomine_core.geometry import pose_to_relion

    eulers, _ = pose_to_relion(sim["rotations"])
    checked = 0
    for i in range(min(4, len(sim["classes"]))):
        s = structures[int(sim["classes"][i])]
        n = s.box
        x, y, z = np.floor(sim["coordinates"][i] + 0.5).astype(int)
        frac = torch.tensor(sim["coordinates"][i] - np.array([x, y, z]), dtype=torch.float32)
        sl = tuple(slice(c - n // 2, c - n // 2 + n) for c in (z, y, x))
        if any(q.start < 0 or q.stop > size for q, size in zip(sl, SHAPE)):
            continue
        rot = relion_eulers_to_rotation(eulers[i].double()).float()  # through the recorded angles
        expected = rotate_volume(s.volume, rot, frac)
        # inside the particle's bounding sphere (neighbours and membranes only reach outside it)
        axis = torch.arange(n, dtype=torch.float32) - n // 2
        zz, yy, xx = torch.meshgrid(axis, axis, axis, indexing="ij")
        ball = (xx - frac[0]) ** 2 + (yy - frac[1]) ** 2 + (zz - frac[2]) ** 2 <= s.radius**2
        assert _cc(sim["density"][sl][ball], expected[ball]) > 0.99
        checked = i + 1
    assert checked
    # the noise-free reconstruction is the density seen through the missing wedge of the tilt range
    wedge = missing_wedge_mask(SHAPE, -60.0, 60.0)
    filt = torch.fft.irfftn(torch.fft.rfftn(sim["density"]) * wedge, s=SHAPE)
    assert _cc(sim["clean"], filt) > 0.95


def test_tomogram_snr_and_reproducibility(scene):
    structures, sim = scene
    assert sim["snr_realised"] == pytest.approx(0.5, rel=0.2)
    params = AcquisitionParams(apply_ctf=False, apply_mtf=False)
    again = simulate_tomogram(structures, SHAPE, occupancy=0.08, n_vesicles=1, snr=0.5, params=params, seed=3)
    assert torch.equal(again["tomogram"], sim["tomogram"]) and torch.equal(again["instances"], sim["instances"])
    other = simulate_tomogram(structures, SHAPE, occupancy=0.08, n_vesicles=1, snr=0.5, params=params, seed=4)
    assert not np.allclose(other["coordinates"][:2], sim["coordinates"][:2])


def test_tomogram_dataset_and_cli(tmp_path, capsys):
    from cryomine_core.cli import main

    out = tmp_path / "tomo"
    rc = main(["simulate", "tomograms", "--out", str(out), "--structures", "phantom:0", "phantom:1",
               "--size", "96", "80", "48", "--occupancy", "0.05", "--snr", "0.1", "--device", "cpu"])
    assert rc == 0
    tomo, vs = read_mrc(out / "tomograms" / "tomo000.mrc")
    assert tomo.shape == (48, 80, 96) and vs == pytest.approx(9.2)
    inst, _ = read_mrc(out / "instances" / "tomo000.mrc")
    df = T.read_table(out / "particles.star", require=(T.TOMO, *T.COORDS, *T.ANGLES))
    assert len(df) == int(inst.max()) and set(df[INSTANCE]) == set(range(1, len(df) + 1))
    assert '"snr_realised"' in capsys.readouterr().out
    assert main(["simulate", "tomograms", "--out", str(tmp_path / "x"), "--size", "30", "30", "10"]) == 2
    with pytest.raises(CryomineError, match="occupancy"):
        simulate_tomogram_dataset(tmp_path / "y", ["phantom:0"], (48, 64, 64), occupancy=0.9)
    assert not (tmp_path / "y").exists()


def test_load_structure_from_map_and_atomic_model(tmp_path):
    fine = load_structure("phantom:2", 4.6, 64).volume
    write_mrc(tmp_path / "p2.mrc", fine.numpy() * 200 + 3.0, 4.6)  # arbitrary scale and background
    from_map = load_structure(str(tmp_path / "p2.mrc"), 9.2, 32)
    direct = load_structure("phantom:2", 9.2, 32)
    assert from_map.name == "p2" and float(from_map.volume.max()) == pytest.approx(1.0)
    assert _cc(from_map.volume, direct.volume) > 0.95
    pdb = (
        "ATOM      1  N   SER A   1      10.000  10.000  10.000  1.00  0.00\n"
        "ATOM      2  CA  SER A   1      11.400  10.000  10.000  1.00  0.00\n"
        "ATOM      3  OG  SER A   1      12.000  11.200  10.000  1.00  0.00\n"
        "ATOM      4  HG1 SER A   1      12.500  11.800  10.000  1.00  0.00\n"
        "ATOM      5  CA  GLY A   2      14.000  12.000  11.000  1.00  0.00\n"
        "HETATM    6  O   HOH A 101      30.000  30.000  30.000  1.00  0.00\n"
        "HETATM    7 NA    NA A 102      40.000  30.000  30.000  1.00  0.00\n"
        "HETATM    8  O   DUM A 103      50.000  30.000  30.000  1.00  0.00\n"
        "END\n")
    (tmp_path / "tiny.pdb").write_text(pdb)
    from cryomine_core.simulate.atomic import read_atoms

    xyz, weights = read_atoms(tmp_path / "tiny.pdb")
    assert xyz.shape == (4, 3)  # water, ion, DUM and the hydrogen (not mercury) are gone
    assert sorted(weights.tolist()) == [6.0, 6.0, 7.0, 8.0]
    s = load_structure(f"model={tmp_path / 'tiny.pdb'}", 4.0)
    assert s.name == "model" and s.volume.shape[0] >= 8


def test_fetch_verifies_and_extracts_only_the_model(tmp_path):
    from cryomine_core.simulate.fetch import CatalogEntry, fetch_structures

    pdb = "".join(f"ATOM  {i + 1:5d}  CA  ALA A{i + 1:4d}    {3.8 * i:8.3f}{2.0 * (i % 3):8.3f}{0.0:8.3f}  1.00  0.00"
                  "           C\n" for i in range(30))
    archive = tmp_path / "dl" / "toy-1.0.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        for name, text in (("toy-1.0/toy/data/model.pdb", pdb), ("toy-1.0/setup.py", "print('x')\n")):
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    calls = []

    def downloader(package, version, dest):
        calls.append((package, version))
        return archive

    catalog = {"toy": CatalogEntry("toy", "toy", "1.0", sha, "toy/data/model.pdb", "a toy helix")}
    cache = tmp_path / "cache"
    res = fetch_structures(["toy"], 9.2, cache=cache, downloader=downloader, catalog=catalog)
    assert calls == [("toy", "1.0")] and (cache / "models" / "toy.pdb").exists()
    assert sorted(p.name for p in (cache / "models").iterdir()) == ["toy.pdb"]
    assert read_mrc(res[0]["map"])[0].max() == pytest.approx(1.0)
    fetch_structures(["toy"], 9.2, cache=cache, downloader=downloader, catalog=catalog)
    assert len(calls) == 1  # cached: no second download
    bad = {"toy": CatalogEntry("toy", "toy", "1.0", "0" * 64, "toy/data/model.pdb", "x")}
    with pytest.raises(CryomineError, match="sha256"):
        fetch_structures(["toy"], 9.2, cache=tmp_path / "c2", downloader=downloader, catalog=bad)
    with pytest.raises(CryomineError, match="unknown structure"):
        fetch_structures(["nope"], 9.2, cache=tmp_path / "c3", downloader=downloader, catalog=catalog)


def test_catalog_names_need_fetch(tmp_path, monkeypatch):
    monkeypatch.setenv("CRYOMINE_CACHE", str(tmp_path))
    from cryomine_core.simulate.fetch import cache_dir

    assert cache_dir() == tmp_path / "structures"
    with pytest.raises(CryomineError, match="structures fetch 6zu5"):
        load_structure("6zu5", 9.2)


def test_gallery_png(tmp_path):
    from cryomine_core.cli import main

    out = tmp_path / "gallery.png"
    assert main(["simulate", "gallery", "--out", str(out), "--snrs", "0.1", "0.01", "--tilt-maxima", "60", "40",
                 "--box", "32", "--device", "cpu"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_structures_cli_list(tmp_path, capsys):
    from cryomine_core.cli import main

    assert main(["structures", "list", "--cache-dir", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "6zu5" in text and "4jsv" in text
    assert main(["structures", "fetch", "nosuch", "--cache-dir", str(tmp_path)]) == 2
