"""``cryomine segment``: voxel segmentation of tomograms from a few annotated boxes, and objects.

    cryomine segment train   --tomograms T.mrc ... --labels L.mrc ... --out DIR [--boxes 10 | --boxes boxes.star]
    cryomine segment predict --model DIR/model.pt --tomograms T.mrc ... --out DIR2
    cryomine segment objects --probabilities DIR2/probabilities/*.mrc --classes DIR2/segmenter.json --out DIR3
"""

from __future__ import annotations

import json

from cryomine_core.cli import add_device_argument


def _boxes(value: str):
    try:
        return int(value)
    except ValueError:
        return value


def register(sub) -> None:
    p = sub.add_parser("segment", help="segment tomograms (U-Net from a few boxes), group objects, count them",
                       description=__doc__)
    ssub = p.add_subparsers(dest="segment_command", metavar="ACTION")
    ssub.required = True

    t = ssub.add_parser("train", help="train a segmenter from a few annotated boxes",
                        description="Train a 3-D U-Net on label maps (0 background, positive integers the classes; "
                                    "only voxels inside the boxes are used). Writes OUT/model.pt, checkpoint.pt "
                                    "(every epoch), boxes.star, metrics.json (losses, Dice per class on the held-out "
                                    "box), training_curves.png.")
    t.add_argument("--tomograms", nargs="+", required=True, help="tomogram MRC files")
    t.add_argument("--labels", nargs="+", required=True, help="label map MRC files (TomoMasks), one per tomogram")
    t.add_argument("--out", required=True, help="output folder")
    t.add_argument("--boxes", type=_boxes, default=10,
                   help="number of annotated boxes to pick automatically on labelled objects (default 10), or a "
                        "STAR/CSV table of box centres (rlnCoordinateX/Y/Z or x,y,z voxels; rlnTomoName with several "
                        "tomograms; optional cmBoxSize)")
    t.add_argument("--box-size", type=int, default=64, help="box edge in voxels (default 64)")
    t.add_argument("--classes", default=None,
                   help="JSON file naming the label values, e.g. the simulator's classes.json {\"1\": \"ribosome\"}")
    t.add_argument("--stuff", nargs="*", default=["membrane"],
                   help="class names segmented but not grouped into objects (default: membrane)")
    t.add_argument("--val-boxes", type=int, default=None,
                   help="boxes held out for validation (default: 1 when there are >= 4 boxes, else 0)")
    t.add_argument("--patch", type=int, default=48, help="training patch edge, at most the box edge (default 48)")
    t.add_argument("--epochs", type=int, default=40, help="most epochs (default 40)")
    t.add_argument("--patches-per-epoch", type=int, default=64, help="random patches per epoch (default 64)")
    t.add_argument("--batch-size", type=int, default=4, help="patches per step (default 4)")
    t.add_argument("--lr", type=float, default=0.02, help="SGD learning rate (default 0.02)")
    t.add_argument("--momentum", type=float, default=0.9, help="Nesterov momentum (default 0.9)")
    t.add_argument("--weight-decay", type=float, default=1e-5, help="L2 weight decay (default 1e-5)")
    t.add_argument("--patience", type=int, default=10, help="early stop after this many epochs without improvement "
                                                            "of the validation loss (0: off; default 10)")
    t.add_argument("--width", type=int, default=8, help="U-Net channels at full resolution (default 8)")
    t.add_argument("--depth", type=int, default=2, help="U-Net poolings (default 2)")
    t.add_argument("--object-fraction", type=float, default=0.5,
                   help="fraction of patches centred on an object voxel (default 0.5)")
    t.add_argument("--class-balance", type=float, default=0.5,
                   help="inverse-frequency voxel balancing exponent (default 0.5): 1 equalises the classes in the "
                        "loss, 0 is off")
    t.add_argument("--rot90", action="store_true",
                   help="also augment with 90-degree xy rotations (moves the missing wedge; off by default)")
    t.add_argument("--jitter", type=float, default=0.1, help="intensity jitter strength (default 0.1; 0: off)")
    t.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt with the same settings")
    add_device_argument(t)
    t.set_defaults(func=run_train)

    q = ssub.add_parser("predict", help="probability and label maps of whole tomograms",
                        description="Tiled inference (overlap blending; equal to whole-volume inference with the "
                                    "default margin). Writes OUT/labels/NAME.mrc (int16 label values), "
                                    "OUT/probabilities/NAME.mrc (float16 stack C x Z x Y x X, channel k = class k of "
                                    "segmenter.json), OUT/classes.json, OUT/segmenter.json, OUT/metrics.json.")
    q.add_argument("--model", required=True, help="model.pt written by 'cryomine segment train'")
    q.add_argument("--tomograms", nargs="+", required=True, help="tomogram MRC files")
    q.add_argument("--out", required=True, help="output folder")
    q.add_argument("--tile", type=int, default=256,
                   help="largest tile edge in voxels (bounds the network memory; default 256)")
    q.add_argument("--margin", type=int, default=None,
                   help="context voxels dropped at inner tile edges (default: the network's receptive radius, "
                        "exact; smaller is faster, seams are blended)")
    q.add_argument("--blend", type=int, default=8, help="overlap of the kept tile regions, blended (default 8)")
    q.add_argument("--no-probabilities", dest="probabilities", action="store_false",
                   help="write only the label maps")
    q.add_argument("--tta", action="store_true",
                   help="test-time augmentation: average the probabilities over the 4 flips in x and y (4x slower)")
    add_device_argument(q)
    q.set_defaults(func=run_predict)

    o = ssub.add_parser("objects", help="group predicted voxels into objects; object table, counts, evaluation",
                        description="Connected components of the object classes, non-convex ones split by a "
                                    "distance-transform watershed, size filters. Writes OUT/instances/NAME.mrc, "
                                    "OUT/classes/NAME.mrc, OUT/objects.star (rlnTomoName, cmTomoFile, "
                                    "rlnCoordinateX/Y/Z, rlnClassNumber, cmClassName, cmScore, cmObjectId, cmVoxels, "
                                    "cmVolumeA3, cmSolidity, cmObjectSplit, cmVoxelSize), OUT/counts.csv "
                                    "(tomogram,class,count), OUT/counts.json, OUT/metrics.json.")
    src = o.add_mutually_exclusive_group(required=True)
    src.add_argument("--probabilities", nargs="+", help="probability stacks of 'segment predict' (one per tomogram)")
    src.add_argument("--labels", nargs="+", help="label maps (one per tomogram)")
    o.add_argument("--classes", required=True, help="segmenter.json (or classes.json) of 'segment predict'")
    o.add_argument("--out", required=True, help="output folder")
    o.add_argument("--tomograms", nargs="+", default=[], help="the tomograms, same order (recorded as cmTomoFile)")
    o.add_argument("--stuff", nargs="*", default=["membrane"],
                   help="class names not grouped (used when the class file does not list the object classes)")
    o.add_argument("--min-solidity", type=float, default=0.8,
                   help="split components whose solidity (volume / convex-hull volume) is below this (default 0.8)")
    o.add_argument("--neck-ratio", type=float, default=0.7,
                   help="merge watershed parts whose neck is at least this fraction of the thinner part (0.7)")
    o.add_argument("--peak-radius", type=int, default=2, help="radius of the watershed marker search (default 2)")
    o.add_argument("--min-voxels", type=int, default=8, help="drop objects smaller than this (default 8 voxels)")
    o.add_argument("--max-voxels", type=int, default=None, help="drop objects larger than this (default: none)")
    o.add_argument("--split-factor", type=float, default=1.4,
                   help="never split a component up to this many times its class's typical volume (default 1.4)")
    o.add_argument("--min-size-fraction", type=float, default=0.1,
                   help="drop objects smaller than this fraction of their class's typical volume (segmenter.json; "
                        "default 0.1; 0: off): specks of noise voted into a large class")
    o.add_argument("--no-expected", dest="use_expected", action="store_false",
                   help="ignore the typical object volumes of segmenter.json")
    o.add_argument("--classifier", default=None,
                   help="model.pt of 'cryomine classify train': classify the objects from sub-volumes (needs "
                        "--tomograms)")
    o.add_argument("--truth-table", default=None, help="ground-truth particles.star (with cmInstanceId) to evaluate")
    o.add_argument("--truth-instances", nargs="+", default=[], help="ground-truth instance maps, one per tomogram")
    o.add_argument("--truth-labels", nargs="+", default=[], help="ground-truth label maps for voxel Dice")
    o.add_argument("--dilate", type=int, default=0, help="grow true occupancies by N voxels when matching (default 0)")
    o.add_argument("--no-fill-cavities", dest="fill_cavities", action="store_false",
                   help="do not count a true particle's enclosed cavities as its occupancy when matching (by default "
                        "they count: a hollow complex's centre lies in its cavity)")
    add_device_argument(o)
    o.set_defaults(func=run_objects)


def run_train(args) -> int:
    from cryomine_core.segment.training import read_class_names, train_segmenter

    metrics = train_segmenter(args.tomograms, args.labels, args.out, boxes=args.boxes, box_size=args.box_size,
                              patch=args.patch, epochs=args.epochs, patches_per_epoch=args.patches_per_epoch,
                              batch_size=args.batch_size, lr=args.lr, momentum=args.momentum,
                              weight_decay=args.weight_decay, patience=args.patience, base=args.width,
                              depth=args.depth, val_boxes=args.val_boxes,
                              class_names=read_class_names(args.classes), stuff_classes=args.stuff,
                              object_fraction=args.object_fraction, rot90=args.rot90, jitter=args.jitter,
                              class_balance=args.class_balance, seed=args.seed, device=args.device,
                              resume=args.resume)
    print(json.dumps({k: metrics[k] for k in ("class_names", "object_classes", "n_boxes", "epochs_run", "best_epoch",
                                              "dice", "dice_on")}))
    return 0


def run_predict(args) -> int:
    from cryomine_core.segment.predicting import predict_tomograms

    metrics = predict_tomograms(args.model, args.tomograms, args.out, tile=args.tile, margin=args.margin,
                                blend=args.blend, device=args.device, probabilities=args.probabilities, tta=args.tta)
    print(json.dumps({"seconds_per_tomogram": metrics["seconds_per_tomogram"], "device": metrics["device"],
                      "tomograms": [t["name"] for t in metrics["tomograms"]]}))
    return 0


def run_objects(args) -> int:
    from cryomine_core.segment.grouping import GroupingParams
    from cryomine_core.segment.objects import find_objects

    params = GroupingParams(min_solidity=args.min_solidity, neck_ratio=args.neck_ratio, peak_radius=args.peak_radius,
                            min_voxels=args.min_voxels, max_voxels=args.max_voxels, split_factor=args.split_factor,
                            min_size_fraction=args.min_size_fraction)
    metrics = find_objects(args.out, labels=args.labels or (), probabilities=args.probabilities or (),
                           classes=args.classes, tomograms=args.tomograms, stuff_classes=args.stuff, params=params,
                           use_expected=args.use_expected, classifier=args.classifier, device=args.device)
    if args.truth_table or args.truth_instances or args.truth_labels:
        from cryomine_core.segment.object_evaluation import evaluate_objects

        maps = args.probabilities or args.labels
        metrics = evaluate_objects(args.out, maps, probabilities=bool(args.probabilities),
                                   truth_table=args.truth_table, truth_instances=args.truth_instances,
                                   truth_labels=args.truth_labels, dilate=args.dilate,
                                   fill_cavities=args.fill_cavities)
    summary = {"n_objects": metrics["n_objects"], "counts": metrics["counts"]}
    if "objects" in metrics:
        summary["f1_localisation"] = metrics["objects"]["localisation"]["f1"]
        summary["f1_overall"] = metrics["objects"]["overall"]["f1"]
    print(json.dumps(summary))
    return 0
