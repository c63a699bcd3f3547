"""Benchmark of tomogram segmentation on simulated crowded tomograms (SHREC-like), SNR 0.1.

    python benchmarks/segmentation.py --small        # 2-core CPU, under 30 minutes
    python benchmarks/segmentation.py                # full mode (GPU)
    python benchmarks/segmentation.py --structures-dir /path/to/maps   # default: ../shared/data/structures

Classes: the SHREC 2021 complexes found among the maps of ``--structures-dir`` (10 Å/voxel), grouped
by size as below; phantoms of three sizes when no map is there. Vesicles give the membrane class.
One simulated tomogram is annotated in at most 10 boxes (one held out for validation); the U-Net
is trained on them (``train_segmenter``), then the test tomograms are segmented
(``predict_tomograms``) and grouped into objects (``find_objects``) and evaluated against the
simulator's ground truth: voxel Dice per class (membrane included), the CZII challenge's picking
score (F-beta 4, a pick within half the particle radius; :mod:`cryomine_core.segment.picking_score`),
object precision / recall / F1 per class and pooled over size groups (a prediction counts when its
centre falls inside a true particle's occupancy, enclosed cavities included, each particle matched once;
``unfilled_occupancy`` repeats the figures without filling the cavities, the definition used
before), classification accuracy of the localised objects by the voxel vote and by the sub-volume
CNN (``compact3d`` pre-trained on sub-volumes at the true centres of separate simulated
tomograms), seconds per tomogram, and the time to segment a 512 x 512 x 200 tomogram (predict +
objects). ``membrane_recall_by_orientation``: the membrane's recall binned by the angle of its normal to
the beam (normals within 30 degrees of it lie in the missing wedge). Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from cryomine_core.device import select_device
from cryomine_core.io import table as T
from cryomine_core.io.columns import INSTANCE
from cryomine_core.io.mrc import read_mrc, write_mrc
from cryomine_core.segment.evaluate import match_objects, prf
from cryomine_core.segment.object_classifier import predict_object_classes, train_object_classifier
from cryomine_core.segment.object_evaluation import evaluate_objects  # noqa: E402
from cryomine_core.segment.objects import find_objects
from cryomine_core.segment.predicting import predict_tomograms
from cryomine_core.segment.training import read_class_names, train_segmenter
from cryomine_core.simulate import simulate_tomogram_dataset

VOXEL = 10.0
GROUPS_SMALL = {"large": ["4v4r", "3j9i"], "medium": ["1bxn"], "small": ["3h84", "1s3x"]}
GROUPS_FULL = {"large": ["4v4r", "3j9i"], "medium": ["1bxn", "3cf3", "1u6g", "3d2f"],
               "small": ["1s3x", "3qm1", "3h84", "2cg9"]}
PHANTOMS = {"large": ["big=phantom:0"], "medium": ["mid=phantom:1"], "small": ["tiny=phantom:2"]}
# --czii: complexes of the CZII picking challenge's kind, from the pinned models of `cryomine structures
# fetch` (70S ribosome 4v5d, TRiC 4v8r, apoferritin 6z6u) and two maps of --structures-dir (1bxn, 1s3x)
CZII_FETCHED = {"large": ["4v5d", "4v8r"], "medium": ["6z6u"]}
CZII_MAPS = {"medium": ["1bxn"], "small": ["1s3x"]}


def _czii_classes(structures_dir: str) -> tuple[list[str], dict[str, list[str]]]:
    """The CZII-like set; stops with the reason when a model cannot be fetched or a map is missing."""
    from cryomine_core.simulate.structures import load_structure

    groups: dict[str, list[str]] = {}
    specs = []
    for g, names in CZII_FETCHED.items():
        for n in names:
            load_structure(n, VOXEL)  # downloads the pinned model once; raises with the reason otherwise
            specs.append(n)
            groups.setdefault(g, []).append(n)
    for g, names in CZII_MAPS.items():
        for n in names:
            path = Path(structures_dir) / f"{n}.mrc"
            if not path.exists():
                raise SystemExit(f"--czii needs {path} (the maps of --structures-dir)")
            specs.append(str(path))
            groups.setdefault(g, []).append(n)
    return specs, groups


def _classes(structures_dir: str | None, small: bool) -> tuple[list[str], dict[str, list[str]]]:
    groups = GROUPS_SMALL if small else GROUPS_FULL
    if structures_dir and Path(structures_dir).is_dir():
        found = {g: [n for n in names if (Path(structures_dir) / f"{n}.mrc").exists()] for g, names in groups.items()}
        if all(found.values()):
            specs = [str(Path(structures_dir) / f"{n}.mrc") for g in found.values() for n in g]
            return specs, found
        print(f"maps missing in {structures_dir}; using phantoms")
    return [s for g in PHANTOMS.values() for s in g], {g: [s.split("=")[0] for s in v] for g, v in PHANTOMS.items()}


def _pool(per_class: dict, names: list[str]) -> dict:
    sel = [per_class[n] for n in names if n in per_class]
    return prf(sum(r["tp"] for r in sel), sum(r["n_predicted"] for r in sel), sum(r["n_true"] for r in sel))


def _f1_summary(ev: dict, groups: dict) -> dict:
    """Localisation, class-aware, per-class and per-group F1 of a pooled evaluation."""
    return {"f1_localisation": ev["localisation"]["f1"], "f1_overall_classwise": ev["overall"]["f1"],
            "f1_per_class": {n: r["f1"] for n, r in ev["per_class"].items()},
            "f1_groups": {g: _pool(ev["per_class"], members)["f1"] for g, members in groups.items()}}


def _membrane_by_orientation(pred_dir: Path, sim_dir: Path, tomos, value: int) -> list[dict]:
    """Membrane recall per orientation bin (``recall_by_orientation``), pooled over the test tomograms."""
    from cryomine_core.segment.evaluate import recall_by_orientation

    pooled: list[dict] = []
    for tomo in tomos:
        pred = read_mrc(pred_dir / f"labels/{tomo.stem}.mrc")[0] == value
        true = read_mrc(sim_dir / f"labels/{tomo.stem}.mrc")[0] == value
        for k, row in enumerate(recall_by_orientation(pred, true)):
            hits = (row["recall"] or 0.0) * row["true_voxels"]
            if k == len(pooled):
                pooled.append({"cos_min": row["cos_min"], "cos_max": row["cos_max"], "true_voxels": 0, "hits": 0.0})
            pooled[k]["true_voxels"] += row["true_voxels"]
            pooled[k]["hits"] += hits
    total = max(sum(r["true_voxels"] for r in pooled), 1)
    return [{"cos_min": r["cos_min"], "cos_max": r["cos_max"], "fraction": round(r["true_voxels"] / total, 4),
             "recall": round(r["hits"] / r["true_voxels"], 4) if r["true_voxels"] else None} for r in pooled]


def _evaluate_table(objects_star, sim_dir: Path, tomos, names: list[str], dilate: int, classes=None,
                    fill: bool = True) -> dict:
    """Pooled object figures of an object table (or of ``classes`` per row, 0-based) against the simulator's truth."""
    from cryomine_core.segment.object_evaluation import pool_evaluations

    objs = T.read_table(objects_star, require=(T.TOMO, *T.COORDS), resolve_paths=False)
    truth = T.read_table(sim_dir / "particles.star", require=(T.TOMO, *T.COORDS), resolve_paths=False)
    evs = []
    for tomo in tomos:
        stem = tomo.stem
        sel = (objs[T.TOMO] == stem).to_numpy()
        sub = objs[sel]
        tsub = truth[truth[T.TOMO].map(lambda s: Path(s).stem) == stem]
        inst, _ = read_mrc(sim_dir / f"instances/{stem}.mrc")
        tc = {int(i): names.index(n) for i, n in zip(tsub[INSTANCE], tsub[T.CLASS_NAME])}
        pc = classes[stem] if classes is not None else [names.index(n) for n in sub[T.CLASS_NAME]]
        evs.append(match_objects(sub[list(T.COORDS)].to_numpy(), pc, sub[T.SCORE].to_numpy(), inst.astype(np.int64),
                                 tc, dict(enumerate(names)), dilate=dilate, fill=fill))
    return pool_evaluations(evs)


def _picking_score(objects_star, sim_dir: Path, tomos, names: list[str], classes=None) -> dict:
    """The CZII challenge's score (F-beta 4, :mod:`cryomine_core.segment.picking_score`) of the objects' centres.

    Each class's radius is that of a sphere of its particles' mean volume in the true instance maps
    (the challenge takes it from the project's configuration); coordinates are in voxels.
    """
    from cryomine_core.segment.picking_score import picking_score

    objs = T.read_table(objects_star, require=(T.TOMO, *T.COORDS), resolve_paths=False)
    truth = T.read_table(sim_dir / "particles.star", require=(T.TOMO, *T.COORDS), resolve_paths=False)
    true_xyz = {n: [] for n in names}
    picks = {n: [] for n in names}
    volumes = {n: [] for n in names}
    for tomo in tomos:
        stem = tomo.stem
        sub = objs[(objs[T.TOMO] == stem).to_numpy()]
        tsub = truth[truth[T.TOMO].map(lambda s: Path(s).stem) == stem]
        inst, _ = read_mrc(sim_dir / f"instances/{stem}.mrc")
        sizes = np.bincount(inst.astype(np.int64).ravel())
        pc = classes[stem] if classes is not None else [names.index(n) for n in sub[T.CLASS_NAME]]
        for k, name in enumerate(names):
            rows = tsub[tsub[T.CLASS_NAME] == name]
            true_xyz[name].append(rows[list(T.COORDS)].to_numpy(float))
            picks[name].append(sub[list(T.COORDS)].to_numpy(float)[np.asarray(pc) == k])
            volumes[name] += [int(sizes[i]) for i in rows[INSTANCE].astype(int) if 0 < i < len(sizes)]
    radius = {n: float((3 * np.mean(v) / (4 * np.pi)) ** (1 / 3)) if v else 1.0 for n, v in volumes.items()}
    score = picking_score(true_xyz, picks, radius)
    return {"fbeta4": round(score["score"], 4),
            "fbeta4_per_class": {n: round(r["fbeta"], 4) for n, r in score["per_class"].items()},
            "radius_voxels": {n: round(r, 2) for n, r in radius.items()}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", action="store_true", help="sizes for a 2-core CPU (< 30 min)")
    default_maps = Path(__file__).resolve().parents[2] / "shared" / "data" / "structures"
    ap.add_argument("--structures-dir", default=str(default_maps), help="folder of 10 Å MRC maps (SHREC complexes)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--boxes", type=int, default=10, help="annotated boxes (at most 10 for the issue's target)")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--width", type=int, default=None, help="U-Net channels at full resolution")
    ap.add_argument("--dilate", type=int, default=2,
                    help="also report the object figures with true occupancies dilated by this many voxels (SHREC's "
                         "dilated occupancy; hollow complexes such as the proteasome have their centre in a cavity)")
    ap.add_argument("--czii", action="store_true",
                    help="classes of the CZII picking challenge's kind: ribosome 4v5d, TRiC 4v8r and apoferritin "
                         "6z6u (fetched models) with 1bxn and 1s3x (maps of --structures-dir)")
    ap.add_argument("--tta", action="store_true",
                    help="test-time augmentation: average the probabilities over the 4 x/y flips (4x predict time)")
    ap.add_argument("--skip-large", action="store_true", help="skip the 512 x 512 x 200 timing")
    ap.add_argument("--work", default=None, help="keep the files here (default: a temporary folder)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for name in ("cryomine",):
        logging.getLogger(name).setLevel(logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = select_device(args.device)
    small = args.small
    shape = (64, 192, 192) if small else (128, 320, 320)
    n_test = 2 if small else 3
    epochs = args.epochs or (120 if small else 150)
    width = args.width or (8 if small else 16)
    specs, groups = _czii_classes(args.structures_dir) if args.czii else _classes(args.structures_dir, small)
    names = [Path(s).stem if s.endswith(".mrc") else s.split("=")[0] for s in specs]
    t_all = time.perf_counter()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="cryomine-seg-bench-"))
    print(f"device {device}, {torch.get_num_threads()} threads; classes {names}; groups {groups}; work {work}")
    result: dict = {"mode": "small" if small else "full", "device": str(device), "threads": torch.get_num_threads(),
                    "classes": names, "class_set": "czii" if args.czii else "shrec",
                    "groups": groups, "snr": 0.1, "voxel_size": VOXEL, "shape_zyx": list(shape),
                    "boxes": args.boxes, "epochs": epochs, "width": width, "tta": args.tta}

    # data: 1 annotated + n_test test + 2 classifier-pretraining tomograms, all independent draws
    t0 = time.perf_counter()
    sims = {}
    for role, n, seed in (("train", 1, 100), ("test", n_test, 200), ("pretrain", 2, 300)):
        sims[role] = work / role
        if not (sims[role] / "metrics.json").exists():
            simulate_tomogram_dataset(sims[role], specs, shape=shape, n_tomograms=n, occupancy=0.15, n_vesicles=2,
                                      snr=0.1, voxel_size=VOXEL, seed=args.seed + seed, device=device)
    result["simulation_s"] = round(time.perf_counter() - t0, 1)
    classes = read_class_names(sims["train"] / "classes.json")

    # (1) voxel segmenter from <= 10 annotated boxes
    t0 = time.perf_counter()
    train_out = work / "model"
    m = train_segmenter([sims["train"] / "tomograms/tomo000.mrc"], [sims["train"] / "labels/tomo000.mrc"], train_out,
                        boxes=args.boxes, box_size=48 if small else 64, patch=40 if small else 56, epochs=epochs,
                        patches_per_epoch=32 if small else 64, batch_size=4, lr=0.02, base=width,
                        patience=10 if small else 15, class_names=classes, seed=args.seed, device=str(device))
    result["train_s"] = round(time.perf_counter() - t0, 1)
    result["train_epochs_run"] = m["epochs_run"]
    result["val_box_dice"] = m["dice"]
    print(f"trained in {result['train_s']} s ({m['epochs_run']} epochs); Dice on the held-out box {m['dice']}")

    # (2) predict + objects on the test tomograms
    tomos = [sims["test"] / f"tomograms/tomo{k:03d}.mrc" for k in range(n_test)]
    t0 = time.perf_counter()
    pm = predict_tomograms(train_out / "model.pt", tomos, work / "pred", device=str(device), tta=args.tta)
    t_pred = time.perf_counter() - t0
    t0 = time.perf_counter()
    prob_maps = [work / f"pred/probabilities/tomo{k:03d}.mrc" for k in range(n_test)]
    find_objects(work / "objects", probabilities=prob_maps, classes=work / "pred/segmenter.json", tomograms=tomos)
    t_obj = time.perf_counter() - t0
    om = evaluate_objects(work / "objects", prob_maps, truth_table=sims["test"] / "particles.star",
                          truth_instances=[sims["test"] / f"instances/tomo{k:03d}.mrc" for k in range(n_test)],
                          truth_labels=[sims["test"] / f"labels/tomo{k:03d}.mrc" for k in range(n_test)])
    ev = om["objects"]
    result["seconds_per_tomogram"] = round((t_pred + t_obj) / n_test, 2)
    result["seconds_predict_per_tomogram"] = round(pm["seconds_per_tomogram"], 2)
    result["dice"] = {k: (None if v is None else round(v, 4)) for k, v in om["dice"].items()}
    result.update(_f1_summary(ev, groups))
    result["precision_localisation"] = ev["localisation"]["precision"]
    result["recall_localisation"] = ev["localisation"]["recall"]
    result["classification_accuracy_voxel_vote"] = ev["classification_accuracy"]
    membrane = [v for v, n in classes.items() if n.lower() == "membrane"]
    if membrane:  # |cos| of the membrane normal to the beam; > 0.866: in the missing wedge (+-60 degree tilts)
        result["membrane_recall_by_orientation"] = _membrane_by_orientation(work / "pred", sims["test"], tomos,
                                                                            membrane[0])
    result["picking_score_voxel_vote"] = _picking_score(work / "objects/objects.star", sims["test"], tomos, names)
    old = _evaluate_table(work / "objects/objects.star", sims["test"], tomos, names, 0, fill=False)
    result["unfilled_occupancy"] = _f1_summary(old, groups)
    if args.dilate:
        dil = _evaluate_table(work / "objects/objects.star", sims["test"], tomos, names, args.dilate)
        result[f"dilate{args.dilate}"] = _f1_summary(dil, groups)
    print(f"objects: localisation F1 {ev['localisation']['f1']:.3f} (P {ev['localisation']['precision']:.3f}, "
          f"R {ev['localisation']['recall']:.3f}); class-aware F1 {ev['overall']['f1']:.3f}; groups "
          f"{result['f1_groups']}; per class {result['f1_per_class']}; Dice {result['dice']}")

    # (3) object classification by a sub-volume CNN pre-trained on simulated tomograms
    t0 = time.perf_counter()
    vols, cents, labs = [], [], []
    pre = T.read_table(sims["pretrain"] / "particles.star", require=(T.TOMO, *T.COORDS), resolve_paths=False)
    for tomo_rel, g in pre.groupby(T.TOMO):
        vol, _ = read_mrc(sims["pretrain"] / tomo_rel)
        vols.append(vol)
        cents.append(g[list(T.COORDS)].to_numpy())
        labs.append(np.array([names.index(n) for n in g[T.CLASS_NAME]]))
    box = 32 if small else 40
    cm = train_object_classifier(vols, cents, labs, names, work / "object_classifier.pt", box=box,
                                 voxel_size=VOXEL, epochs=15 if small else 40, width=0.5 if small else 1.0,
                                 seed=args.seed, device=device)
    from cryomine_core.classify.model_file import load_classifier

    clf, meta = load_classifier(work / "object_classifier.pt", device)
    objs = T.read_table(work / "objects/objects.star", require=(T.TOMO, *T.COORDS), resolve_paths=False)
    cnn_classes = {}  # the CNN's class of every object, per tomogram (0-based, the order of names)
    for tomo in tomos:
        sub = objs[objs[T.TOMO] == tomo.stem]
        vol, _ = read_mrc(tomo)
        cnn_classes[tomo.stem] = predict_object_classes(vol, sub[list(T.COORDS)].to_numpy(), clf, meta, device)[0]
    pooled = _evaluate_table(work / "objects/objects.star", sims["test"], tomos, names, 0, cnn_classes)
    result["classifier_val_accuracy"] = cm["val_accuracy"]
    result["classification_accuracy_cnn"] = pooled["classification_accuracy"]
    result["f1_overall_classwise_cnn"] = pooled["overall"]["f1"]
    result["f1_groups_cnn"] = {g: _pool(pooled["per_class"], members)["f1"] for g, members in groups.items()}
    result["picking_score_cnn"] = _picking_score(work / "objects/objects.star", sims["test"], tomos, names,
                                                 cnn_classes)
    if args.dilate:
        dil = _evaluate_table(work / "objects/objects.star", sims["test"], tomos, names, args.dilate, cnn_classes)
        result[f"dilate{args.dilate}"].update(
            f1_overall_classwise_cnn=dil["overall"]["f1"],
            f1_per_class_cnn={n: r["f1"] for n, r in dil["per_class"].items()},
            f1_groups_cnn={g: _pool(dil["per_class"], m)["f1"] for g, m in groups.items()},
            classification_accuracy_cnn=dil["classification_accuracy"])
    result["object_classifier_s"] = round(time.perf_counter() - t0, 1)
    print(f"object CNN: val accuracy {cm['val_accuracy']}, accuracy on localised objects "
          f"{result['classification_accuracy_cnn']}, class-aware F1 {pooled['overall']['f1']}")

    # (4) a 512 x 512 x 200 tomogram: predict + objects (noise volume with the test tomogram's statistics)
    if not args.skip_large:
        big = work / "big" / "big.mrc"
        rng = np.random.default_rng(args.seed)
        write_mrc(big, rng.standard_normal((200, 512, 512), dtype=np.float32), VOXEL)
        t0 = time.perf_counter()
        predict_tomograms(train_out / "model.pt", [big], work / "big_pred", device=str(device), tta=args.tta)
        t_big_pred = time.perf_counter() - t0
        t0 = time.perf_counter()
        find_objects(work / "big_objects", probabilities=[work / "big_pred/probabilities/big.mrc"],
                     classes=work / "big_pred/segmenter.json")
        t_big_obj = time.perf_counter() - t0
        result["tomogram_512x512x200_s"] = round(t_big_pred + t_big_obj, 1)
        result["tomogram_512x512x200_predict_s"] = round(t_big_pred, 1)
        print(f"512 x 512 x 200: predict {t_big_pred:.1f} s + objects {t_big_obj:.1f} s")
    result["total_s"] = round(time.perf_counter() - t_all, 1)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
