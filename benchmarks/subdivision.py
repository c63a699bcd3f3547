"""Benchmark of template-free subdivision (Xu et al. 2017): structures absent from training are recovered.

    python benchmarks/subdivision.py --small      # 2-core CPU, < 30 min
    python benchmarks/subdivision.py              # full mode, for a GPU

For each SNR (``--small``: 0.1; full: 0.1, 0.05, 0.03), tilt range +-60 degrees:

1. classes **A** are simulated (:func:`~cryomine_core.simulate.simulate_subtomogram_dataset`) and a
   classifier is trained on them (:func:`~cryomine_core.classify.train_classifier`): the feature network;
2. a second set holding A **plus classes B never seen in training** is simulated with new noise
   and poses; its table is stripped of poses (the subdivision is blind: it sees only the volumes);
3. ``run_subdivide`` (the code behind ``cryomine subdivide``) subdivides it four ways, the number of
   clusters chosen by BIC in all:
   - ``cnn``: the network's penultimate-layer features + PCA + GMM (clustering only);
   - ``rif``: rotation-invariant features + PCA + GMM: the **baseline** (the kind of method the
     paper improved on);
   - ``cnn_reassign``: the full pipeline (Xu et al.): CNN feature clusters, a reference-free average
     per cluster, then ``--reassign`` rounds of reference-free classification (every subtomogram
     aligned against all averages and moved to the best; ``cryomine subdivide --reassign``), clusters
     whose averages agree merged (``--merge-threshold``) and re-assigned once more;
   - ``rif_reassign``: the same refinement started from the baseline's clusters (for comparison);
   - ``unsupervised``: no labels at all (``features='unsupervised'``, DISCA-like): rotation-invariant
     features clustered, then rounds of pseudo-label training of compact3d and re-clustering of its
     features (skip with ``--no-unsupervised``);
4. scored against the truth: ARI and NMI overall, purity and recall of the cluster holding most of
   each B class; for each B class that cluster's members are aligned and averaged reference-free
   (:func:`~cryomine_core.subdivide.cluster_averages`) and the average is compared with the true map
   (:func:`~cryomine_core.subdivide.map_agreement`: correlation at 30 Å, or the finest resolution the
   voxel size allows, after aligning the map onto the average);
5. context: the 5-fold cross-validated accuracy of a *supervised* SVM on rotation-invariant features
   of the same set with its true labels (``supervised_ceiling``): how separable the set is with those
   features when the labels are known.

The gain over the baseline is ``cnn_reassign`` ARI minus ``rif`` ARI.

Structures: the maps of ``../shared/data/structures`` that fit the box (A = first half, B = the
next ``--n-b``), else procedural phantoms. Full mode: 32^3 at 12 Å, 6 A + 4 B classes, 500 per
class for training, 200 per class in the subdivided set, compact3d width 1, 20 epochs.
``--small``: 24^3 at 16 Å, 4 A + 3 B, 200 per class for training, 60 per class subdivided,
compact3d width 0.5, 20 epochs, one torch thread. The feature network is trained with the
``subtomo`` recipe (:mod:`cryomine_core.train.recipes`: wedge-preserving augmentation, AdamW,
cosine decay, spectral whitening) unless ``--recipe paper``; before round 2 it used SGD at lr
0.01 without augmentation.

Maps are bright on a dark background while the simulated subtomograms show density dark, so the
map comparison tries both contrasts and keeps the better alignment (``contrast='auto'``).

Ends with one JSON line holding every figure.
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

log = logging.getLogger("cryomine")


def _specs(args, n: int) -> list[str]:
    """``n`` structures that fit the box: shared maps when present, else phantoms."""
    from cryomine_core.errors import CryomineError
    from cryomine_core.simulate.structures import check_fits, load_structure

    folder = Path(args.structures_dir) if args.structures_dir else REPO.parent / "shared" / "data" / "structures"
    specs = []
    if folder.is_dir() and not args.phantoms:
        for p in sorted(folder.glob("*.mrc")):
            try:
                check_fits(load_structure(str(p), args.voxel, args.box), args.box, args.max_shift)
                specs.append(str(p))
            except CryomineError as exc:
                print(f"skip {p.name}: {str(exc).split(';')[0]}")
    seed = 0
    while len(specs) < n:
        try:
            check_fits(load_structure(f"phantom:{seed}", args.voxel, args.box), args.box, args.max_shift)
            specs.append(f"phantom:{seed}")
        except CryomineError:
            pass
        seed += 1
    return specs[:n]


def _strip(table: Path, out: Path) -> Path:
    """Copy of the truth table without poses (the subdivision must not see them)."""
    from cryomine_core.io import table as T

    df = T.read_table(table)
    df = df.drop(columns=[c for c in (*T.ANGLES, *T.ORIGINS) if c in df.columns])
    T.write_table(out, df)
    return out


def _score_run(metrics: dict, sub_dir: Path, maps_dir: Path, b_names: list[str], args, device) -> dict:
    """ARI/NMI, per-B-class purity/recall, and per-B-class average vs true map."""
    from cryomine_core.io import table as T
    from cryomine_core.io.mrc import read_mrc
    from cryomine_core.subdivide import cluster_averages, map_agreement
    from cryomine_core.subdivide.refine import default_settings

    vs = metrics["vs_input_labels"]
    out = {"ari": vs["ari"], "nmi": vs["nmi"], "n_clusters": metrics["n_clusters"],
           "cluster_sizes": list(metrics["cluster_sizes"].values()), "seconds": metrics["timings_s"],
           "bic": metrics["clustering"]["bic"], "per_class": vs["per_class"], "b_classes": {}}
    df = T.read_table(sub_dir / "particles.star")
    resolution = max(30.0, 2.5 * args.voxel)
    for name in b_names:
        pc = vs["per_class"][name]
        rows = np.flatnonzero(df[T.CLASS].to_numpy(int) == pc["cluster"] + 1)
        rec = {"purity": pc["purity"], "recall": pc["recall"], "cluster": pc["cluster"] + 1,
               "n_cluster": int(rows.size)}
        if args.averages and rows.size >= 4:
            t0 = time.perf_counter()
            sub = df.iloc[rows].reset_index(drop=True)
            settings = default_settings(args.box, iterations=args.align_iterations, angular_step=args.angular_step,
                                        seed=args.seed)
            avg = cluster_averages(sub, np.zeros(len(sub), dtype=np.int64), 1, args.voxel, align=True,
                                   settings=settings, device=device)
            truth, _ = read_mrc(maps_dir / f"{name}.mrc")
            agree = map_agreement(avg.volumes[0].to(device), torch.as_tensor(truth, device=device), args.voxel,
                                  resolution=resolution)
            rec.update(correlation=agree["correlation"], resolution_A=resolution, fsc_05_A=agree["fsc_05_A"],
                       average_seconds=time.perf_counter() - t0)
        out["b_classes"][name] = rec
    return out


def _supervised_ceiling(table: Path, args) -> float:
    """Cross-validated accuracy of an SVM on rotation-invariant features given the TRUE labels.

    Not a subdivision result: it says how separable the subdivided set is with rotation-invariant
    features even when the labels are known (classification by alignment, which uses what those
    features discard, can do better).
    """
    from sklearn.model_selection import cross_val_score

    from cryomine_core.classify import RifSvmClassifier
    from cryomine_core.io import table as T
    from cryomine_core.subdivide.features import rif_features, table_dataset

    df = T.read_table(table)
    feats = rif_features(table_dataset(df, (args.box,) * 3), batch_size=64)
    clf = RifSvmClassifier(C=10.0, seed=args.seed).pipeline  # the RIF-SVM baseline's scaler + RBF SVM
    return float(cross_val_score(clf, feats, df[T.CLASS].to_numpy(int), cv=5).mean())


def run_snr(snr: float, specs_a: list[str], specs_b: list[str], args, root: Path, device) -> dict:
    from cryomine_core.classify import train_classifier
    from cryomine_core.simulate.datasets import simulate_subtomogram_dataset
    from cryomine_core.subdivide import run_subdivide
    from cryomine_core.subdivide.settings import SubdivideSettings

    common = dict(snr=snr, box=args.box, voxel_size=args.voxel, max_shift=args.max_shift, n_snr_check=4,
                  device=device)
    t0 = time.perf_counter()
    train_dir = root / f"train_{snr}"
    simulate_subtomogram_dataset(train_dir, specs_a, n_per_class=args.n_train, seed=args.seed, **common)
    test_dir = root / f"test_{snr}"
    simulate_subtomogram_dataset(test_dir, specs_a + specs_b, n_per_class=args.n_test, seed=args.seed + 17,
                                       **common)
    sim_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    overrides = {"epochs": args.epochs, "patience": 0, "seed": args.seed, "log_interval_s": 1e9}
    train = train_classifier(train_dir / "particles.star", root / f"model_{snr}", model="compact3d",
                             recipe=args.recipe, overrides=overrides, tilt_range=(-60.0, 60.0),
                             normalise=args.normalise, width=args.width, device=str(device), plots=False)
    train_s = time.perf_counter() - t0
    blind = _strip(test_dir / "particles.star", root / f"blind_{snr}.star")
    from cryomine_core.simulate.structures import structure_name

    b_names = [structure_name(s) for s in specs_b]
    a_names = [structure_name(s) for s in specs_a]
    result = {"snr": snr, "simulate_s": sim_s, "train_s": train_s, "train_test_accuracy": train.get("test_accuracy"),
              "a_classes": a_names, "b_classes": b_names}
    model = root / f"model_{snr}" / "model.pt"
    variants = [("cnn", "model", 0), ("rif", "rif", 0)]
    if args.reassign:
        variants += [("cnn_reassign", "model", args.reassign), ("rif_reassign", "rif", args.reassign)]
    if args.unsupervised:
        variants += [("unsupervised", "unsupervised", 0)]
    for label, features, reassign in variants:
        out = root / f"sub_{label}_{snr}"
        extra = dict(align_clusters=True, align_iterations=args.align_iterations, angular_step=args.angular_step,
                     reassign=reassign, merge_threshold=args.merge_threshold) if reassign else {}
        settings = SubdivideSettings(features=features, clusters=args.clusters, max_clusters=args.max_clusters,
                                     method=args.method, seed=args.seed, **extra)
        m = run_subdivide(blind, out, settings, model=model if features == "model" else None, device=str(device),
                          plots=label == "cnn")
        result[label] = _score_run(m, out, test_dir / "maps", b_names, args, device)
        r = result[label]
        if reassign:  # None when BIC found a single cluster: nothing to re-assign
            r["reassign"] = {k: v for k, v in (m["reassign"] or {}).items() if k not in ("history", "after_merge")}
            r["merge_groups"] = m["merge"]["groups"] if m.get("merge") else None
        print(f"SNR {snr} {label}: ARI {r['ari']:.3f} NMI {r['nmi']:.3f}, {r['n_clusters']} clusters; B: " +
              ", ".join(f"{n} purity {v['purity']:.2f} recall {v['recall']:.2f}"
                        + (f" corr {v['correlation']:.2f}" if "correlation" in v else "")
                        for n, v in r["b_classes"].items()), flush=True)
    result["supervised_ceiling"] = _supervised_ceiling(test_dir / "particles.star", args)
    print(f"SNR {snr} supervised ceiling (5-fold SVM on rotation-invariant features, true labels): "
          f"{result['supervised_ceiling']:.3f}", flush=True)
    best = "cnn_reassign" if args.reassign else "cnn"
    result["pipeline"] = best
    result["ari_gain_over_baseline"] = result[best]["ari"] - result["rif"]["ari"]
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--small", action="store_true", help="2-core CPU mode (< 30 min)")
    ap.add_argument("--snr", type=float, nargs="*", default=None, help="SNRs (default: 0.1 small; 0.1 0.05 0.03)")
    ap.add_argument("--structures-dir", default=None, help="MRC maps (default: ../shared/data/structures)")
    ap.add_argument("--phantoms", action="store_true", help="use procedural phantoms even if maps are present")
    ap.add_argument("--n-a", type=int, default=None, help="classes in training (A)")
    ap.add_argument("--n-b", type=int, default=None, help="unseen classes (B), at least 3")
    ap.add_argument("--clusters", type=int, default=None, help="fix the number of clusters (default: BIC)")
    ap.add_argument("--max-clusters", type=int, default=None)
    ap.add_argument("--method", default="gmm", choices=["gmm", "kmeans"])
    ap.add_argument("--reassign", type=int, default=5,
                    help="rounds of reference-free classification after clustering (0: clustering only)")
    ap.add_argument("--merge-threshold", type=float, default=0.95,
                    help="merge clusters whose averages agree at least this much, relative to their half maps "
                         "(with --reassign)")
    ap.add_argument("--no-averages", dest="averages", action="store_false", help="skip per-B-class averages")
    ap.add_argument("--align-iterations", type=int, default=2)
    ap.add_argument("--angular-step", type=float, default=15.0)
    ap.add_argument("--n-train", type=int, default=None, help="training subtomograms per A class")
    ap.add_argument("--n-test", type=int, default=None, help="subdivided subtomograms per class")
    ap.add_argument("--epochs", type=int, default=None, help="epochs of the feature network (20)")
    ap.add_argument("--recipe", default="subtomo", choices=["subtomo", "paper"],
                    help="training recipe of the feature network (cryomine_core.train.recipes; default subtomo)")
    ap.add_argument("--normalise", choices=["zscore", "whiten", "none"], default=None,
                    help="input normalisation of the feature network (default: the recipe's, zscore)")
    ap.add_argument("--no-unsupervised", dest="unsupervised", action="store_false",
                    help="skip the fully unsupervised mode (features='unsupervised': no labels at all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--work", default=None, help="folder for the data (default: a temporary folder)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    small = args.small
    args.box = 24 if small else 32
    args.voxel = 16.0 if small else 12.0
    args.max_shift = 1.0
    args.n_a = args.n_a or (4 if small else 6)
    args.n_b = args.n_b or (3 if small else 4)
    args.n_train = args.n_train or (200 if small else 500)
    args.n_test = args.n_test or (60 if small else 200)
    args.epochs = args.epochs or 20
    args.width = 0.5 if small else 1.0
    args.max_clusters = args.max_clusters or (args.n_a + args.n_b + 4)
    snrs = args.snr or ([0.1] if small else [0.1, 0.05, 0.03])
    if small:
        torch.set_num_threads(1)
    from cryomine_core.device import select_device

    device = select_device(args.device)
    specs = _specs(args, args.n_a + args.n_b)
    specs_a, specs_b = specs[: args.n_a], specs[args.n_a:]
    print(f"A (trained): {specs_a}\nB (unseen): {specs_b}\nbox {args.box} at {args.voxel} Å, device {device}",
          flush=True)
    t_all = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.work) if args.work else Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        for snr in snrs:
            results.append(run_snr(snr, specs_a, specs_b, args, root, device))
    summary = {
        "benchmark": "subdivision", "mode": "small" if small else "full", "device": str(device), "tilt": [-60, 60],
        "box": args.box, "voxel_size_A": args.voxel, "n_train_per_class": args.n_train,
        "n_test_per_class": args.n_test, "epochs": args.epochs, "recipe": args.recipe,
        "normalise": args.normalise, "width": args.width,
        "method": args.method,
        "reassign": args.reassign, "merge_threshold": args.merge_threshold,
        "structures_a": specs_a, "structures_b": specs_b, "seconds": time.perf_counter() - t_all,
        "targets": {"ari": 0.9, "b_purity": 0.9, "ari_gain_over_baseline": 0.2}, "results": results,
    }
    print(json.dumps(summary, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
