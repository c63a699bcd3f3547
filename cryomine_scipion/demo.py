"""The CryoMine demo: a headless Scipion project on data it makes itself.

Run it with ``./scripts/demo.sh`` (which sets up the environment and the headless Scipion
variables). Steps, each a real Scipion protocol in one project:

1. make two small tomograms with particles planted at known positions (ground truth);
2. import them and their coordinates with scipion-em-tomo's own import protocols;
3. extract subtomograms with CryoMine;
4. measure the result against the ground truth, write a report folder with PNG pictures and
   ``summary.json``, and print the command that opens the project in the Scipion GUI.

The pipeline grows as CryoMine's capabilities land (simulation, classification, subdivision,
alignment, segmentation).
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from cryomine_core.io.atomic import atomic_write_text
from cryomine_core.io.mrc import read_mrc, write_mrc

TOMO_SHAPE = (64, 160, 160)  # z, y, x
BOX = 24
VOXEL = 10.0


def make_tomograms(folder: Path, n_tomos: int = 2, n_particles: int = 12, seed: int = 0) -> dict:
    """Plant asymmetric two-lobe particles at random non-overlapping positions; write MRC + .txt."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in TOMO_SHAPE], indexing="ij")
    truth = {}
    for t in range(n_tomos):
        name = f"demo_tomo_{t + 1}"
        tomo = rng.normal(0, 0.3, TOMO_SHAPE).astype(np.float32)
        centers = []
        while len(centers) < n_particles:
            c = rng.uniform([8, 8, 8], [TOMO_SHAPE[2] - 8, TOMO_SHAPE[1] - 8, TOMO_SHAPE[0] - 8])
            if all(np.linalg.norm(c - o) > 14 for o in centers):
                centers.append(c)
        for cx, cy, cz in centers:
            cx, cy, cz = round(cx), round(cy), round(cz)
            tomo += np.exp(-((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) / (2 * 2.5**2))
            tomo += 0.5 * np.exp(-((x - cx - 4) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) / (2 * 1.5**2))
        rounded = [(round(cx), round(cy), round(cz)) for cx, cy, cz in centers]
        write_mrc(folder / f"{name}.mrc", tomo, VOXEL)
        atomic_write_text(folder / f"{name}.txt", "".join(f"{a} {b} {c}\n" for a, b, c in rounded))
        truth[name] = rounded
    return truth


def _launch(project, prot, log):
    t0 = time.time()
    project.launchProtocol(prot, wait=True)
    if not prot.isFinished():
        log(f"FAILED: {prot.getRunName()}; see {prot.getLogPaths()[1]}")
        sys.exit(1)
    log(f"  {prot.getRunName()}: finished in {time.time() - t0:.1f} s")
    return prot


def run(out: Path, project_name: str = "CryomineDemo") -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import tomo.protocols as tp
    from pyworkflow.project import Manager
    from tomo.constants import BOTTOM_LEFT_CORNER

    from cryomine_scipion.protocols import ProtCryomineExtract

    log = lambda msg: print(msg, flush=True)  # noqa: E731
    data, report = out / "data", out / "report"
    data.mkdir(parents=True, exist_ok=True)
    report.mkdir(parents=True, exist_ok=True)
    log(f"[1/4] making synthetic tomograms in {data}")
    truth = make_tomograms(data)

    manager = Manager()
    if manager.hasProject(project_name):
        manager.deleteProject(project_name)
    project = manager.createProject(project_name)
    os.chdir(project.getPath())  # Scipion resolves run paths relative to the project folder
    log(f"[2/4] Scipion project {project.getPath()}: importing with scipion-em-tomo")
    importTomos = _launch(project, project.newProtocol(
        tp.ProtImportTomograms, filesPath=str(data), filesPattern="*.mrc", samplingRate=VOXEL,
        acquisitionAngleMin=-60.0, acquisitionAngleMax=60.0), log)
    importCoords = project.newProtocol(tp.ProtImportCoordinates3D, filesPath=str(data), filesPattern="*.txt",
                                       boxSize=BOX, samplingRate=VOXEL)
    importCoords.importTomograms.set(importTomos)
    importCoords.importTomograms.setExtended("Tomograms")
    _launch(project, importCoords, log)

    log("[3/4] extracting subtomograms with CryoMine")
    extract = project.newProtocol(ProtCryomineExtract, boxSize=BOX, edgeMode=0)
    extract.inputCoordinates.set(importCoords)
    extract.inputCoordinates.setExtended("outputCoordinates")
    _launch(project, extract, log)

    log("[4/4] measuring against the ground truth")
    subtomos = project.getProtocol(extract.getObjId()).subtomograms
    vols, matched = [], 0
    planted = {(name, c) for name, cs in truth.items() for c in cs}
    for sub in subtomos.iterSubtomos():
        vol, _ = read_mrc(sub.getFileName())
        vols.append(vol)
        coord = sub.getCoordinate3D()
        xyz = tuple(int(round(v)) for v in coord.getPosition(BOTTOM_LEFT_CORNER))
        matched += (coord.getTomoId(), xyz) in planted
    n_planted = sum(len(v) for v in truth.values())
    average = np.mean(vols, axis=0)
    peak = np.array(np.unravel_index(np.argmax(average), average.shape))
    metrics = extract.readMetrics()
    summary = {
        "tomograms": len(truth), "particles_planted": n_planted, "subtomograms_extracted": subtomos.getSize(),
        "skipped_at_edge": metrics.get("n_skipped"),
        "coordinates_matching_truth": matched,
        "average_peak_offset_from_box_centre_voxels": float(np.linalg.norm(peak - BOX // 2)),
        "box": BOX, "voxel_size_A": VOXEL, "project": project.getPath(),
    }
    # pictures: the first tomogram's central slice with the planted positions, and a gallery
    tomo, _ = read_mrc(data / "demo_tomo_1.mrc")
    zc = TOMO_SHAPE[0] // 2
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.imshow(tomo[zc - 3:zc + 4].mean(0), cmap="gray")
    pts = np.array([c for c in truth["demo_tomo_1"] if abs(c[2] - zc) < 6])
    if len(pts):
        ax.scatter(pts[:, 0], pts[:, 1], s=200, facecolors="none", edgecolors="tab:red")
    ax.set_title(f"demo_tomo_1, z = {zc} (7-slice average), planted particles near this slice")
    fig.savefig(report / "tomogram_slice.png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    n_show = min(8, len(vols))
    fig, axes = plt.subplots(3, n_show, figsize=(1.6 * n_show, 5))
    for i in range(n_show):
        for row, (img, lab) in enumerate(((vols[i][BOX // 2], "z"), (vols[i][:, BOX // 2], "y"),
                                          (vols[i][:, :, BOX // 2], "x"))):
            axes[row, i].imshow(img, cmap="gray")
            axes[row, i].set_xticks([])
            axes[row, i].set_yticks([])
            if i == 0:
                axes[row, i].set_ylabel(f"{lab} centre")
    fig.suptitle("Extracted subtomograms: central slices")
    fig.savefig(report / "subtomogram_gallery.png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    atomic_write_text(report / "summary.json", json.dumps(summary, indent=1))
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="cryomine-demo", help="output folder (data/, report/, scipion/)")
    args = parser.parse_args(argv)
    if "SCIPION_DOMAIN" not in os.environ:
        print("Run the demo through ./scripts/demo.sh (it sets the headless Scipion environment).", file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
    t0 = time.time()
    summary = run(out)
    print("\n=== CryoMine demo summary ===")
    for key, value in summary.items():
        print(f"  {key}: {value}")
    print(f"  wall time: {time.time() - t0:.1f} s")
    print(f"  report: {out / 'report'} (tomogram_slice.png, subtomogram_gallery.png, summary.json)")
    env = " ".join(f"{k}={os.environ[k]}" for k in ("SCIPION_DOMAIN", "SCIPION_HOME", "SCIPION_USER_DATA"))
    print(f"\nOpen the project in the Scipion GUI:\n  {env} {sys.executable} -O -m pyworkflow.apps.pw_project "
          "CryomineDemo")
    print(json.dumps(summary))
    ok = summary["subtomograms_extracted"] == summary["coordinates_matching_truth"] > 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
