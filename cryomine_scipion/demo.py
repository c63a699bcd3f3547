"""The CryoMine demo: a headless Scipion project on data it makes itself.

Run it with ``./scripts/demo.sh`` (which sets up the environment and the headless Scipion
variables). Steps, each a real Scipion protocol in one project:

1. simulate two small crowded tomograms (``cryomine simulate tomograms``: procedural phantom
   complexes at random poses, tilt series over +-60 degrees with CTF, SNR 0.5), whose particle
   positions are the ground truth;
2. import them, their coordinates and their label maps with scipion-em-tomo's own import protocols;
3. train a segmenter on 10 annotated boxes and segment the tomograms into objects ("train
   segmenter", "segment tomograms");
3b. extract subtomograms with CryoMine at the imported coordinates;
4. simulate a labelled training set of the same complexes (CryoMine "simulate") and train a CNN
   classifier on it ("train CNN classifier", the compact network: a few CPU minutes);
5. classify the extracted subtomograms with it ("classify with CNN"), and subdivide them
   template-free ("template-free subdivision": the CNN's features, BIC, reference-free
   classification by alignment against the cluster averages);
6. align and average the largest predicted class without a reference ("align and average");
7. measure every step against the ground truth (coordinates, classes, orientations), write a
   report folder with PNG pictures and ``summary.json``, and print the command that opens the
   project in the Scipion GUI.

The pipeline grows as CryoMine's capabilities land (simulation, classification, subdivision,
alignment, segmentation).
"""

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import adjusted_rand_score

from cryomine_core.io.atomic import atomic_write_text
from cryomine_core.io.mrc import read_mrc
from cryomine_scipion.convert import filePath

TOMO_SIZE_XYZ = (160, 160, 64)
BOX = 24
VOXEL = 9.2
SNR = 0.5
STRUCTURES = ("phantom:0", "phantom:1", "phantom:2")  # the simulator's default classes, in tomograms and training
N_TRAIN_PER_CLASS = 40


def make_tomograms(folder: Path, n_tomos: int = 2, seed: int = 0) -> dict:
    """Simulate crowded tomograms with ``cryomine simulate tomograms``; write tomo-importable .txt files.

    Returns ``{tomogram basename: [(x, y, z, class_name), ...]}`` (voxels, ground truth).
    """
    import subprocess

    from cryomine_core.io import table as T

    sim = folder / "simulated"
    cmd = [sys.executable, "-m", "cryomine_core", "simulate", "tomograms", "--out", str(sim), "--size",
           *map(str, TOMO_SIZE_XYZ), "--n-tomograms", str(n_tomos), "--snr", str(SNR), "--voxel-size", str(VOXEL),
           "--seed", str(seed), "--structures", *STRUCTURES]
    subprocess.run(cmd, check=True)
    df = T.read_table(sim / "particles.star", require=(T.TOMO, *T.COORDS), resolve_paths=False)
    truth = {}
    for tomo_ref, group in df.groupby(T.TOMO, sort=True):
        name = Path(str(tomo_ref)).stem
        (folder / f"{name}.mrc").unlink(missing_ok=True)
        (folder / f"{name}.mrc").symlink_to((sim / "tomograms" / f"{name}.mrc").resolve())
        (folder / "labels").mkdir(exist_ok=True)
        (folder / "labels" / f"{name}.mrc").unlink(missing_ok=True)
        (folder / "labels" / f"{name}.mrc").symlink_to((sim / "labels" / f"{name}.mrc").resolve())
        xyz = group[list(T.COORDS)].to_numpy(float)
        names = group[T.CLASS_NAME].tolist() if T.CLASS_NAME in group.columns else ["?"] * len(group)
        angles = group[list(T.ANGLES)].to_numpy(float)
        atomic_write_text(folder / f"{name}.txt", "".join(f"{x:.2f} {y:.2f} {z:.2f}\n" for x, y, z in xyz))
        truth[name] = [(*p, c, tuple(a)) for p, c, a in zip(map(tuple, xyz), names, angles)]
    return truth


def _alignment_errors(aligned, trueAngles, keep=None):
    """Per-particle rotation error (deg) of an alignment against the truth, up to one global rotation
    (a reference-free average may come out rotated; the core's ``pose_errors`` removes that first).
    ``keep``: item ids to measure (those of one true structure); all when None."""
    import torch

    from cryomine_core.align.evaluate import pose_errors
    from cryomine_core.geometry import relion_angstrom_to_pose, scipion_matrix_to_pose

    items = [(i.getObjId(), i.getTransform().getMatrix()) for i in aligned.iterItems()
             if keep is None or i.getObjId() in keep]
    if not items:
        return np.array([np.nan])
    eulers = torch.tensor([trueAngles[i] for i, _ in items], dtype=torch.float64)
    rTrue, _ = relion_angstrom_to_pose(eulers, torch.zeros_like(eulers), 1.0)
    rEst, _ = scipion_matrix_to_pose(torch.tensor(np.stack([m for _, m in items]), dtype=torch.float64))
    zeros = torch.zeros(len(items), 3, dtype=torch.float64)
    return pose_errors(rEst, zeros, rTrue, zeros)[0].numpy()


def _object_f1(coords, instancesDir):
    """Object-level (precision, recall) F1 of segmented centres: a centre is a hit when it falls inside a
    true particle (instance map); each true particle counts once."""
    from tomo.constants import BOTTOM_LEFT_CORNER

    maps, hits, n_pred = {}, set(), 0
    for coord in coords.iterCoordinates():
        tsId = coord.getTomoId()
        if tsId not in maps:
            maps[tsId] = read_mrc(instancesDir / f"{tsId}.mrc")[0]
        n_pred += 1
        x, y, z = (int(round(v)) for v in coord.getPosition(BOTTOM_LEFT_CORNER))
        vol = maps[tsId]
        if 0 <= z < vol.shape[0] and 0 <= y < vol.shape[1] and 0 <= x < vol.shape[2] and vol[z, y, x] > 0:
            hits.add((tsId, int(vol[z, y, x])))
    n_true = sum(len(np.unique(read_mrc(f)[0])) - 1 for f in sorted(instancesDir.glob("*.mrc")))
    precision, recall = len(hits) / max(n_pred, 1), len(hits) / max(n_true, 1)
    return 2 * precision * recall / max(precision + recall, 1e-9), precision, recall


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

    from cryomine_scipion.protocols import (
        ProtCryomineAlign,
        ProtCryomineClassify,
        ProtCryomineExtract,
        ProtCryomineSegment,
        ProtCryomineSimulate,
        ProtCryomineSubdivide,
        ProtCryomineTrainClassifier,
        ProtCryomineTrainSegmenter,
    )
    from cryomine_scipion.protocols.protocol_simulate import SUBTOMOGRAMS
    from cryomine_scipion.protocols.protocol_subdivide import FROM_MODEL
    from cryomine_scipion.protocols.protocol_train_classifier import ARCHITECTURES, FROM_CLASSES

    log = lambda msg: print(msg, flush=True)  # noqa: E731
    data, report = out / "data", out / "report"
    shutil.rmtree(data, ignore_errors=True)  # the demo's own inputs: always made afresh
    data.mkdir(parents=True, exist_ok=True)
    report.mkdir(parents=True, exist_ok=True)
    log(f"[1/9] simulating tomograms in {data}")
    truth = make_tomograms(data)

    manager = Manager()
    if manager.hasProject(project_name):
        manager.deleteProject(project_name)
    project = manager.createProject(project_name)
    os.chdir(project.getPath())  # Scipion resolves run paths relative to the project folder
    log(f"[2/9] Scipion project {project.getPath()}: importing with scipion-em-tomo")
    importTomos = _launch(project, project.newProtocol(
        tp.ProtImportTomograms, filesPath=str(data), filesPattern="*.mrc", samplingRate=VOXEL,
        acquisitionAngleMin=-60.0, acquisitionAngleMax=60.0), log)
    importCoords = project.newProtocol(tp.ProtImportCoordinates3D, filesPath=str(data), filesPattern="*.txt",
                                       boxSize=BOX, samplingRate=VOXEL)
    importCoords.importTomograms.set(importTomos)
    importCoords.importTomograms.setExtended("Tomograms")
    _launch(project, importCoords, log)

    importMasks = project.newProtocol(tp.ProtImportTomomasks, filesPath=str(data / "labels"), filesPattern="*.mrc")
    importMasks.inputTomos.set(importTomos)
    importMasks.inputTomos.setExtended("Tomograms")
    _launch(project, importMasks, log)

    log("[3/9] training a segmenter on 10 annotated boxes, segmenting the tomograms into objects")
    segTrain = project.newProtocol(ProtCryomineTrainSegmenter, classNames=" ".join(x.replace(":", "") for x in
                                                                                  STRUCTURES),
                                   nBoxes=10, boxSize=40, patch=32, epochs=30, patchesPerEpoch=32, width=8)
    segTrain.inputMasks.set(importMasks)
    segTrain.inputMasks.setExtended("tomomasks")
    _launch(project, segTrain, log)
    segment = project.newProtocol(ProtCryomineSegment, boxSize=BOX)
    segment.inputTomograms.set(importTomos)
    segment.inputTomograms.setExtended("Tomograms")
    segment.inputModel.set(segTrain)
    segment.inputModel.setExtended("model")
    _launch(project, segment, log)

    log("[4/9] extracting subtomograms with CryoMine at the imported coordinates")
    extract = project.newProtocol(ProtCryomineExtract, boxSize=BOX, edgeMode=0)
    extract.inputCoordinates.set(importCoords)
    extract.inputCoordinates.setExtended("outputCoordinates")
    _launch(project, extract, log)

    log("[5/9] simulating a labelled training set and training a CNN classifier")
    simulate = project.newProtocol(ProtCryomineSimulate, kind=SUBTOMOGRAMS, structures=" ".join(STRUCTURES),
                                   nPerClass=N_TRAIN_PER_CLASS, boxSize=BOX, voxelSize=VOXEL, snr=SNR, maxShift=1.0,
                                   seed=7)
    _launch(project, simulate, log)
    train = project.newProtocol(ProtCryomineTrainClassifier, inputKind=FROM_CLASSES,
                                architecture=ARCHITECTURES.index("compact3d"), epochs=10, patience=4, batchSize=8)
    train.inputClasses.set(simulate)
    train.inputClasses.setExtended("classes")
    _launch(project, train, log)

    log("[6/9] classifying the extracted subtomograms")
    classify = project.newProtocol(ProtCryomineClassify)
    classify.inputSubtomos.set(extract)
    classify.inputSubtomos.setExtended("subtomograms")
    classify.inputModel.set(train)
    classify.inputModel.setExtended("model")
    _launch(project, classify, log)

    log("[7/9] template-free subdivision of the extracted subtomograms (CNN features, BIC, reference-free "
        "classification)")
    subdivide = project.newProtocol(ProtCryomineSubdivide, featureSource=FROM_MODEL, numberOfClusters=0,
                                    maxClusters=6, alignClusters=True, alignIterations=2, reassignIterations=3)
    subdivide.inputSubtomos.set(extract)
    subdivide.inputSubtomos.setExtended("subtomograms")
    subdivide.inputModel.set(train)
    subdivide.inputModel.setExtended("model")
    _launch(project, subdivide, log)

    log("[8/9] aligning and averaging the largest class, reference-free")
    classes = project.getProtocol(classify.getObjId()).classes
    # iterItems reuses one object: read the sizes out before choosing (max() over it returns the last class)
    sizes = {c.getObjId(): (c.getSize(), c.getObjLabel()) for c in classes.iterItems()}
    largestId = max(sizes, key=lambda k: sizes[k][0])
    largestSize, largestName = sizes[largestId]
    align = project.newProtocol(ProtCryomineAlign, iterations=4, angularStep=15.0, maxShift=3.0)
    align.inputSubtomos.set(classify)
    align.inputSubtomos.setExtended(f"classes.{largestId}")
    _launch(project, align, log)

    log("[9/9] measuring against the ground truth")
    subtomos = project.getProtocol(extract.getObjId()).subtomograms
    vols, matched, trueClass, trueAngles = [], 0, {}, {}
    planted = {name: np.array([c[:3] for c in cs]) for name, cs in truth.items()}
    for sub in subtomos.iterSubtomos():
        vol, _ = read_mrc(filePath(sub))
        vols.append(vol)
        coord = sub.getCoordinate3D()
        xyz = np.array(coord.getPosition(BOTTOM_LEFT_CORNER), dtype=float)
        dist = np.linalg.norm(planted[coord.getTomoId()] - xyz, axis=1)
        nearest = int(np.argmin(dist))
        matched += bool(dist[nearest] < 0.5)
        trueClass[sub.getObjId()] = truth[coord.getTomoId()][nearest][3]
        trueAngles[sub.getObjId()] = truth[coord.getTomoId()][nearest][4]
    n_planted = sum(len(v) for v in truth.values())
    metrics = extract.readMetrics()
    classes = project.getProtocol(classify.getObjId()).classes
    correct = sum(trueClass[item.getObjId()] == cls.getObjLabel() for cls in classes.iterItems()
                  for item in cls.iterItems())
    clusters = project.getProtocol(subdivide.getObjId()).classes
    pred = {item.getObjId(): cls.getObjId() for cls in clusters.iterItems() for item in cls.iterItems()}
    ids = sorted(pred)
    ari = adjusted_rand_score([trueClass[i] for i in ids], [pred[i] for i in ids])
    objectF1, objectP, objectR = _object_f1(project.getProtocol(segment.getObjId()).coordinates,
                                            data / "simulated" / "instances")
    aligned = project.getProtocol(align.getObjId())
    # orientations are only comparable within one structure: measure on the aligned class's dominant one
    alignedTrue = [trueClass[i.getObjId()] for i in aligned.subtomograms.iterItems()]
    dominant = max(set(alignedTrue), key=alignedTrue.count) if alignedTrue else None
    rotErr = _alignment_errors(aligned.subtomograms, trueAngles,
                               keep={i for i, c in trueClass.items() if c == dominant})
    alignMetrics = aligned.readMetrics()
    trainMetrics = train.readMetrics()
    summary = {
        "tomograms": len(truth), "particles_planted": n_planted, "subtomograms_extracted": subtomos.getSize(),
        "skipped_at_edge": metrics.get("n_skipped"),
        "coordinates_matching_truth": matched,
        "segmentation_object_f1": round(objectF1, 3), "segmentation_precision": round(objectP, 3),
        "segmentation_recall": round(objectR, 3),
        "classifier_test_accuracy_simulated": trainMetrics.get("test_accuracy"),
        "classification_accuracy_extracted": round(correct / max(subtomos.getSize(), 1), 3),
        "subdivision_clusters": clusters.getSize(), "subdivision_ari": round(float(ari), 3),
        "aligned_class": largestName, "aligned_particles": aligned.subtomograms.getSize(),
        "aligned_class_purity": round(sum(trueClass[i.getObjId()] == largestName
                                          for i in aligned.subtomograms.iterItems()) / max(largestSize, 1), 3),
        "aligned_dominant_structure": dominant, "aligned_dominant_count": alignedTrue.count(dominant),
        "alignment_median_rotation_error_deg": round(float(np.median(rotErr)), 2),
        "fsc_resolution_0143_A": round(alignMetrics.get("resolution_0143_A", float("nan")), 1),
        "snr": SNR,
        "box": BOX, "voxel_size_A": VOXEL, "project": project.getPath(),
    }
    for src, name in ((train._getExtraPath("confusion.png"), "confusion_matrix.png"),
                      (train._getExtraPath("training_curves.png"), "training_curves.png"),
                      (classify._getExtraPath("averages", "gallery.png"), "class_averages.png"),
                      (align._getExtraPath("fsc.png"), "fsc.png"),
                      (segment._getExtraPath("objects", "overlay_tomo000.png"), "segmentation_overlay.png"),
                      (subdivide._getExtraPath("embedding.png"), "subdivision_embedding.png"),
                      (align._getExtraPath("slices.png"), "average_slices.png")):
        if os.path.exists(src):
            shutil.copyfile(src, report / name)
    # pictures: the first tomogram's central slice with the planted positions, and a gallery
    first = sorted(truth)[0]
    tomo, _ = read_mrc(data / f"{first}.mrc")
    zc = tomo.shape[0] // 2
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.imshow(tomo[zc - 3:zc + 4].mean(0), cmap="gray")
    pts = np.array([c[:3] for c in truth[first] if abs(c[2] - zc) < 4])
    if len(pts):
        ax.scatter(pts[:, 0], pts[:, 1], s=200, facecolors="none", edgecolors="tab:red")
    ax.set_title(f"{first}, z = {zc} (7-slice average); circles: simulated particles near this slice")
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
    print(f"  report: {out / 'report'} (tomogram_slice.png, segmentation_overlay.png, subtomogram_gallery.png, "
          "confusion_matrix.png, training_curves.png, class_averages.png, subdivision_embedding.png, fsc.png, "
          "average_slices.png, summary.json)")
    env = " ".join(f"{k}={os.environ[k]}" for k in ("SCIPION_DOMAIN", "SCIPION_HOME", "SCIPION_USER_DATA"))
    print(f"\nOpen the project in the Scipion GUI:\n  {env} {sys.executable} -O -m pyworkflow.apps.pw_project "
          "CryomineDemo")
    print(json.dumps(summary))
    ok = summary["subtomograms_extracted"] == summary["coordinates_matching_truth"] > 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
