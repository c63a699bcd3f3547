"""``cryomine subdivide``: template-free subdivision of a set of subtomograms into clusters.

    cryomine subdivide --in particles.star --out DIR --model model.pt [--clusters K|auto] [...]
    cryomine subdivide --in particles.star --out DIR --features rif
    cryomine subdivide --in particles.star --out DIR --unsupervised [--rounds 3 --epochs 5]
"""

from __future__ import annotations

import argparse
import json

from cryomine_core.cli import add_device_argument


def _clusters(value: str):
    if value.strip().lower() == "auto":
        return None
    try:
        k = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{value}': give a number of clusters (>= 1) or 'auto'") from None
    if k < 1:
        raise argparse.ArgumentTypeError(f"'{value}': give a number of clusters (>= 1) or 'auto'")
    return k


def register(sub) -> None:
    p = sub.add_parser(
        "subdivide", help="template-free subdivision: cluster subtomograms, average each cluster",
        description="Cluster subtomograms by CNN features (penultimate layer of a 'cryomine classify train' model), "
                    "rotation-invariant features (baseline) or unsupervised pseudo-label learning (DISCA-like); "
                    "PCA then a Gaussian mixture or k-means, the number of clusters chosen by BIC unless fixed. "
                    "Writes particles.star (rlnClassNumber = cluster, 1-based; cmScore = cluster confidence), "
                    "class_NNN.mrc (cluster averages), metrics.json, embedding.png, sizes.png, bic.png, gallery.png.")
    p.add_argument("--in", dest="table", required=True, help="particle table (STAR) of subtomograms")
    p.add_argument("--out", required=True, help="output folder")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", help="model.pt from 'cryomine classify train': features = its penultimate layer")
    src.add_argument("--features", choices=["rif"],
                     help="rotation-invariant spherical-harmonic features (baseline; the default when neither "
                          "--model nor --unsupervised is given)")
    src.add_argument("--unsupervised", action="store_true",
                     help="no trained model: iterate network training on pseudo-labels and re-clustering (DISCA-like)")
    p.add_argument("--clusters", type=_clusters, default=None, metavar="K|auto",
                   help="number of clusters, or auto (chosen by BIC in 1..--max-clusters; default)")
    p.add_argument("--max-clusters", type=int, default=10, help="largest number of clusters tried by auto (default 10)")
    p.add_argument("--method", choices=["gmm", "kmeans"], default="gmm",
                   help="Gaussian mixture (default) or k-means")
    p.add_argument("--covariance", choices=["full", "diag", "spherical", "tied"], default="diag",
                   help="covariance of the Gaussian mixture (default diag: fewer parameters, a BIC that is "
                        "reliable on small sets)")
    p.add_argument("--pca-components", type=int, default=8, help="PCA components kept before clustering (default 8)")
    p.add_argument("--minibatch", choices=["auto", "on", "off"], default="auto",
                   help="bounded-memory clustering (incremental PCA, sampled model choice; auto: above 50000 items)")
    p.add_argument("--align-clusters", action="store_true",
                   help="reference-free alignment and average of each cluster (otherwise averages use the table's "
                        "poses when it has any)")
    p.add_argument("--align-iterations", type=int, default=3, help="refinement iterations per cluster (default 3)")
    p.add_argument("--angular-step", type=float, default=15.0, help="global search step, degrees (default 15)")
    p.add_argument("--max-shift", type=float, default=None, help="largest shift, voxels (default box/8)")
    p.add_argument("--split", action="store_true",
                   help="split clusters whose members align clearly worse than the median cluster's (needs "
                        "--align-clusters)")
    p.add_argument("--split-ratio", type=float, default=0.8,
                   help="split when a cluster's mean alignment score < RATIO x the median (default 0.8)")
    p.add_argument("--merge-threshold", type=float, default=None,
                   help="merge clusters whose averages agree at least this much at --merge-resolution (needs "
                        "--align-clusters). The agreement is their correlation divided by the correlation expected "
                        "for two averages of ONE structure with that much noise (from each cluster's half maps): "
                        "about 1 for one structure split in two clusters, lower for different structures; 0.95 is "
                        "a good start. With --merge-absolute: the plain correlation")
    p.add_argument("--merge-absolute", action="store_true",
                   help="compare plain correlations with --merge-threshold (not relative to the half maps)")
    p.add_argument("--merge-resolution", type=float, default=30.0, help="resolution of that comparison, Å (30)")
    p.add_argument("--reassign", type=int, default=0, metavar="N",
                   help="reference-free classification: N rounds in which every subtomogram is aligned against all "
                        "cluster averages and moved to the best-fitting one, then the averages are rebuilt; after a "
                        "merge, max(2, N//2) more rounds (needs --align-clusters; 0 = off; 5 is a good start). "
                        "Corrects the feature clusters, most of all for structures the network never saw")
    p.add_argument("--reassign-resolution", type=float, default=None, metavar="A",
                   help="finest detail used to re-assign, Å (default: 0.45 cycles/voxel = 2.2 x the voxel size)")
    p.add_argument("--reassign-local", type=float, default=None, metavar="DEG",
                   help="faster re-assignment rounds: the first aligns every subtomogram to each average on its own "
                        "(global search); later rounds search each average only within DEG degrees of the "
                        "subtomogram's pose for it in the round before (e.g. the --angular-step). Default: the "
                        "global search against all averages in every round")
    p.add_argument("--rounds", type=int, default=3, help="unsupervised: training rounds (default 3)")
    p.add_argument("--epochs", type=int, default=5, help="unsupervised: epochs per round (default 5)")
    p.add_argument("--batch-size", type=int, default=64, help="subtomograms per feature batch (default 64)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--no-plots", action="store_true", help="do not draw the PNG figures")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from OUT/checkpoint.pt (the finished stages: features, "
                        "clustering, averages, split, re-assignment, merge; removed when the results are written) "
                        "with the same inputs and settings; gives the uninterrupted run's result")
    add_device_argument(p)
    p.set_defaults(func=_run)


def _run(args) -> int:
    from cryomine_core.subdivide.jobs import run_subdivide
    from cryomine_core.subdivide.settings import SubdivideSettings

    features = "model" if args.model else ("unsupervised" if args.unsupervised else (args.features or "rif"))
    minibatch = {"auto": "auto", "on": True, "off": False}[args.minibatch]
    settings = SubdivideSettings(
        features=features, clusters=args.clusters, max_clusters=args.max_clusters, method=args.method,
        covariance=args.covariance, pca_components=args.pca_components, minibatch=minibatch,
        align_clusters=args.align_clusters, align_iterations=args.align_iterations, angular_step=args.angular_step,
        max_shift=args.max_shift, split=args.split, split_ratio=args.split_ratio,
        merge_threshold=args.merge_threshold, merge_resolution=args.merge_resolution,
        merge_relative=not args.merge_absolute, reassign=args.reassign, reassign_resolution=args.reassign_resolution,
        reassign_local=args.reassign_local,
        rounds=args.rounds, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed)
    metrics = run_subdivide(args.table, args.out, settings, model=args.model, device=args.device,
                            plots=not args.no_plots, resume=args.resume)
    summary = {k: metrics[k] for k in ("n", "n_clusters", "cluster_sizes")}
    if "vs_input_labels" in metrics:
        summary["ari_vs_input"] = metrics["vs_input_labels"]["ari"]
    print(json.dumps(summary))
    return 0
