"""``cryomine subdivide``: file-level entry point (particle table in, clusters + averages out).

:func:`run_subdivide` reads the particle table, computes one feature vector per subtomogram
(penultimate layer of a ``model.pt``, rotation-invariant features, or the DISCA-like
unsupervised loop), clusters them (PCA + GMM/k-means, ``k`` by BIC unless fixed), optionally
splits poorly aligning clusters, averages each cluster (reference-free alignment, or the
table's poses), optionally merges clusters whose averages agree, and writes into ``out_dir``:

==================  =====================================================================
``particles.star``  input rows; ``rlnClassNumber`` = cluster (1-based, 1 = largest),
                    ``cmClassName`` = ``cluster_NNN``, ``cmScore`` = cluster confidence in
                    [0, 1], ``cmPc1``/``cmPc2`` = 2-D embedding; the input's labels move to
                    ``cmInputClassNumber``/``cmInputClassName``; with ``--align-clusters``
                    also the poses (``rlnAngle*``, ``rlnOrigin*Angst``), ``cmAlignScore``
                    and ``cmAlignFailed``
``class_NNN.mrc``   average of cluster NNN (when averages were made)
``metrics.json``    see :func:`run_subdivide`
``embedding.png``   ``sizes.png``, ``bic.png`` (automatic k), ``gallery.png`` (averages)
``features.npy``    only on the bounded-memory path: the ``(N, F)`` float32 features
==================  =====================================================================
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from cryomine_core.device import seed_everything, select_device
from cryomine_core.errors import CryomineError
from cryomine_core.io import table as T
from cryomine_core.io.atomic import atomic_write_text
from cryomine_core.io.columns import ALIGN_FAILED, ALIGN_SCORE, EMBEDDING, INPUT_CLASS, INPUT_CLASS_NAME
from cryomine_core.io.mrc import write_mrc
from cryomine_core.io.outputs import remove_results
from cryomine_core.subdivide import report
from cryomine_core.subdivide.cluster import METHODS, cluster_features
from cryomine_core.subdivide.evaluate import clustering_scores
from cryomine_core.subdivide.features import model_features, open_features, rif_dimension, rif_features, table_dataset
from cryomine_core.subdivide.reassign import reassign_by_alignment
from cryomine_core.subdivide.refine import (
    cluster_averages,
    default_settings,
    has_poses,
    merge_similar,
    split_poorly_aligned,
)
from cryomine_core.validate import check_subtomograms, check_volume_values

log = logging.getLogger("cryomine")

FEATURE_SOURCES = ("model", "rif", "unsupervised")
MINIBATCH_THRESHOLD = 50_000
"""Above this many subtomograms (``minibatch='auto'``) features go to ``features.npy`` (memory-mapped)
and clustering takes the bounded-memory path."""


def _input_truth(df) -> tuple[np.ndarray, list[str]] | None:
    """Input class of each row (names when present, else numbers); None when unlabelled."""
    if T.CLASS_NAME in df.columns:
        vals = df[T.CLASS_NAME].astype(str).to_numpy()
    elif T.CLASS in df.columns:
        vals = df[T.CLASS].astype(int).astype(str).to_numpy()
    else:
        return None
    if T.CLASS in df.columns and (df[T.CLASS].astype(int) == 0).all():
        return None
    names = sorted(set(vals.tolist()))
    return np.array([names.index(v) for v in vals]), names


def run_subdivide(table, out_dir, *, model=None, features: str | None = None, clusters: int | None = None,
                  max_clusters: int = 10, method: str = "gmm", covariance: str = "diag", pca_components: int = 8,
                  align_clusters: bool = False, align_iterations: int = 3, angular_step: float = 15.0,
                  max_shift: float | None = None, split: bool = False, split_ratio: float = 0.8,
                  merge_threshold: float | None = None, merge_resolution: float = 30.0, merge_relative: bool = True,
                  reassign: int = 0, reassign_resolution: float | None = None, rounds: int = 3,
                  epochs: int = 5, batch_size: int = 64, device: str = "auto", seed: int = 0,
                  minibatch: bool | str = "auto", plots: bool = True) -> dict:
    """Subdivide the subtomograms of ``table`` into clusters; write the outputs to ``out_dir``.

    Args:
        model: ``model.pt`` of :func:`cryomine_core.classify.train_classifier` (features = its
            penultimate layer); implies ``features='model'``.
        features: ``'model'``, ``'rif'`` (rotation-invariant baseline) or ``'unsupervised'``
            (DISCA-like; ``rounds`` x ``epochs`` of pseudo-label training).
        clusters: fixed number of clusters, or None to choose it in ``1..max_clusters`` by BIC.
        method, covariance, pca_components, minibatch: clustering (:func:`.cluster.cluster_features`).
        align_clusters: reference-free alignment + average per cluster (``align_iterations``,
            ``angular_step`` degrees, ``max_shift`` voxels); otherwise averages use the table's
            poses when it has them, and no averages are written when it has none.
        split: split clusters whose mean alignment score < ``split_ratio`` x median (needs alignment).
        reassign: iterations of reference-free classification after clustering (0: none): every
            subtomogram is aligned against all cluster averages and moved to the best-fitting one
            (:func:`.reassign.reassign_by_alignment`, detail up to ``reassign_resolution`` Å,
            default 0.45 cycles/voxel); needs ``align_clusters``. After a merge, the members of the
            merged clusters are re-assigned for ``max(2, reassign // 2)`` more rounds.
        merge_threshold: merge clusters whose averages agree at ``merge_resolution`` Å at least this
            much (None: no merging). With ``merge_relative`` (default) the agreement is the averages'
            correlation divided by the one expected for two averages of one structure given their
            half-map correlations (about 1 for one structure; 0.95 is a good threshold), otherwise the
            plain correlation (:func:`.refine.merge_similar`).

    Returns the metrics dict (``metrics.json``): ``n``, ``n_clusters``, ``cluster_sizes``,
    ``features`` (source, dimension), ``clustering`` (method, covariance, pca_components,
    explained_variance, k_mode 'auto'/'fixed', bic {k: value}, minibatch), ``averages`` (mode
    'align'/'poses'/'none', per-cluster counts and resolution), ``split``/``merge`` records,
    ``timings`` (seconds per stage), ``device``, ``seed``, and ``vs_input_labels``
    (:func:`.evaluate.clustering_scores`) when the input was labelled.
    """
    t_start = time.perf_counter()
    timings: dict = {}
    source = "model" if model is not None and features in (None, "model") else (features or "rif")
    if source not in FEATURE_SOURCES:
        raise CryomineError(f"--features {features}: use one of {', '.join(FEATURE_SOURCES)}.")
    if source == "model" and model is None:
        raise CryomineError("--features model needs --model model.pt (from 'cryomine classify train').")
    if model is not None and source != "model":
        raise CryomineError(f"give either --model or --features {source}, not both.")
    if method not in METHODS:
        raise CryomineError(f"--method {method}: use one of {', '.join(METHODS)}.")
    if merge_threshold is not None and not -1 <= merge_threshold <= 1:
        raise CryomineError(f"--merge-threshold {merge_threshold}: give a correlation in [-1, 1].")
    if (split or merge_threshold is not None or reassign) and not align_clusters:
        raise CryomineError("--split, --merge-threshold and --reassign work on the per-cluster reference-free "
                            "averages: add --align-clusters.")
    if reassign < 0:
        raise CryomineError(f"--reassign {reassign}: give 0 (off) or a number of iterations.")
    if pca_components < 1:
        raise CryomineError(f"--pca-components {pca_components}: give at least 1 (8 by default).")
    dev = select_device(device)
    seed_everything(seed)
    src = str(table)
    df = T.read_table(table, require=(T.IMAGE,))
    n = len(df)
    if n == 0:
        raise CryomineError(f"{src}: the particle table is empty; give a table with subtomograms to subdivide.")
    if clusters is not None and n < 2 * int(clusters):
        raise CryomineError(f"--clusters {clusters}: {src} has only {n} subtomograms; at least {2 * int(clusters)} "
                            f"(2 per cluster) are needed. Ask for at most {max(1, n // 2)} clusters or give more "
                            "subtomograms.")
    info = check_subtomograms(df)
    check_volume_values(df[T.IMAGE])
    box = tuple(info["box"])
    voxel_size = float(info["voxel_size"])

    t0 = time.perf_counter()
    history = None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    remove_results(out, ("particles.star", "metrics.json", "class_*.mrc"))  # an earlier run's results go first
    big = (n > MINIBATCH_THRESHOLD) if minibatch == "auto" else bool(minibatch)
    feat_file = out / "features.npy" if big else None  # bounded memory: features stream to a memory map
    if source == "model":
        feats, meta = model_features(df, model, device=dev, batch_size=batch_size, out_file=feat_file)
        feat_info = {"source": "model", "model": str(Path(model).resolve()), "architecture": meta["architecture"],
                     "model_classes": list(meta["class_names"])}
        result = None
    elif source == "rif":
        mm = open_features(feat_file, n, rif_dimension()) if feat_file is not None else None
        feats = rif_features(table_dataset(df, box), batch_size=batch_size, out=mm)
        feat_info = {"source": "rif"}
        result = None
    else:
        from cryomine_core.subdivide.unsupervised import unsupervised_subdivision

        if len(set(box)) != 1:
            raise CryomineError(f"{src}: unsupervised mode needs cubic subtomograms, got box {box}.")
        un = unsupervised_subdivision(table_dataset(df, box), box[0], n_clusters=clusters, max_clusters=max_clusters,
                                      rounds=rounds, epochs=epochs, method=method, covariance=covariance,
                                      n_components=pca_components, device=dev, batch_size=batch_size, seed=seed)
        feats, result, history = un.features, un.clustering, un.history
        feat_info = {"source": "unsupervised", "rounds": history}
    feat_info["dimension"] = int(feats.shape[1])
    timings["features"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    if result is None:
        result = cluster_features(feats, clusters, max_clusters=max_clusters, method=method, covariance=covariance,
                                  n_components=pca_components, seed=seed, minibatch=big)
    timings["clustering"] = time.perf_counter() - t0
    labels, k = result.labels.copy(), result.n_clusters

    avg = None
    split_info = merge_info = reassign_info = None
    t0 = time.perf_counter()
    if align_clusters or has_poses(df):
        settings = default_settings(box[0], iterations=align_iterations, angular_step=angular_step,
                                    max_shift=max_shift, seed=seed) if align_clusters else None
        avg = cluster_averages(df, labels, k, voxel_size, align=align_clusters, settings=settings, device=dev)
        if split:
            new, done = split_poorly_aligned(labels, avg.cluster_scores(labels), result.embedding, ratio=split_ratio,
                                             seed=seed)
            split_info = {"ratio": split_ratio, "split_clusters": [j + 1 for j in done]}
            if done:
                labels, k = new, int(new.max()) + 1
                avg = cluster_averages(df, labels, k, voxel_size, align=True, settings=settings, device=dev)

        def reassigned(labels, avg, iterations):
            """Re-assign against ``avg``'s averages, then average the new clusters."""
            ra = reassign_by_alignment(df, labels, avg.volumes, voxel_size, settings, iterations=iterations,
                                       resolution_A=reassign_resolution, device=dev)
            log.info("re-assignment moved %.1f %% of the subtomograms; %d clusters", 100 * ra.moved, ra.n_clusters)
            return ra, cluster_averages(df, ra.labels, ra.n_clusters, voxel_size, align=True, settings=settings,
                                        device=dev)

        if reassign and k > 1:
            ra, avg = reassigned(labels, avg, reassign)
            reassign_info = {"iterations": reassign, "band_A": ra.band_A, "moved_fraction": ra.moved,
                             "clusters_before": k, "clusters_after": ra.n_clusters, "history": ra.history}
            labels, k = ra.labels, ra.n_clusters
        if merge_threshold is not None and k > 1:
            agreement = avg.self_agreement(voxel_size, merge_resolution) if merge_relative else None
            mapping, pairs = merge_similar(avg.volumes, avg.counts, voxel_size, threshold=merge_threshold,
                                           resolution=merge_resolution, self_agreement=agreement)
            merge_info = {"threshold": merge_threshold, "relative": merge_relative, "resolution_A": merge_resolution,
                          "pairs": pairs,
                          "groups": {str(g + 1): [j + 1 for j in np.flatnonzero(mapping == g)]
                                     for g in range(int(mapping.max()) + 1)}}
            if int(mapping.max()) + 1 < k:
                labels, k = mapping[labels], int(mapping.max()) + 1
                avg = cluster_averages(df, labels, k, voxel_size, align=True, settings=settings, device=dev)
                if reassign and k > 1:  # members of merged clusters compete again (half the rounds, at least 2)
                    ra, avg = reassigned(labels, avg, max(2, reassign // 2))
                    reassign_info["after_merge"] = {"moved_fraction": ra.moved, "clusters_after": ra.n_clusters,
                                                    "history": ra.history}
                    labels, k = ra.labels, ra.n_clusters
    else:
        log.warning("%s has no poses and --align-clusters was not given: no cluster averages written", src)
    timings["averages"] = time.perf_counter() - t0

    out_df = df.copy()
    truth = _input_truth(df)
    if T.CLASS in df.columns:
        out_df[INPUT_CLASS] = df[T.CLASS].astype(int)
    if T.CLASS_NAME in df.columns:
        out_df[INPUT_CLASS_NAME] = df[T.CLASS_NAME].astype(str)
    out_df[T.CLASS] = labels + 1
    out_df[T.CLASS_NAME] = [f"cluster_{j + 1:03d}" for j in labels]
    out_df[T.SCORE] = result.scores  # confidence of the clustering (before any split / merge)
    emb = result.embedding
    out_df[EMBEDDING[0]] = emb[:, 0]
    out_df[EMBEDDING[1]] = emb[:, 1] if emb.shape[1] > 1 else 0.0
    if avg is not None and avg.mode == "align":
        from cryomine_core.io.poses import with_poses

        out_df = with_poses(out_df, avg.rotations.double(), avg.shifts.double(), voxel_size)
        out_df[ALIGN_SCORE] = avg.scores
        out_df[ALIGN_FAILED] = avg.failed.astype(int)
    T.write_table(out / "particles.star", out_df)
    sizes = np.bincount(labels, minlength=k).astype(int).tolist()
    if avg is not None:
        for j in range(k):
            if avg.counts[j] > 0:
                write_mrc(out / f"class_{j + 1:03d}.mrc", avg.volumes[j].numpy(), voxel_size)

    metrics = {
        "command": "subdivide", "input": str(Path(src).resolve()), "n": n, "box": list(box),
        "voxel_size_A": voxel_size, "n_clusters": k, "cluster_sizes": {str(j + 1): s for j, s in enumerate(sizes)},
        "features": feat_info,
        "clustering": {"method": method, "covariance": covariance if method == "gmm" else None,
                       "pca_components": int(emb.shape[1]), "explained_variance": result.explained_variance.tolist(),
                       "k_mode": "fixed" if clusters is not None else "auto", "max_clusters": max_clusters,
                       "bic": {str(a): (b if np.isfinite(b) else None) for a, b in result.criterion.items()},
                       "n_clusters_found": result.n_clusters,
                       "minibatch": result.minibatch},
        "averages": {"mode": avg.mode if avg is not None else "none",
                     "files": {str(j + 1): f"class_{j + 1:03d}.mrc" for j in range(k)
                               if avg is not None and avg.counts[j] > 0},
                     "counts": {str(j + 1): int(avg.counts[j]) for j in range(k)} if avg is not None else {},
                     "resolution_0143_A": {str(j + 1): (float(avg.resolution[j]) if np.isfinite(avg.resolution[j])
                                                        else None) for j in range(k)} if avg is not None else {}},
        "split": split_info, "reassign": reassign_info, "merge": merge_info, "device": str(dev), "seed": seed,
    }
    if truth is not None:
        metrics["vs_input_labels"] = clustering_scores(truth[0], labels, truth[1])
    t0 = time.perf_counter()
    if plots:
        report.plot_embedding(out / "embedding.png", emb, labels, seed=seed)
        report.plot_sizes(out / "sizes.png", sizes)
        if result.criterion:
            report.plot_criterion(out / "bic.png", result.criterion, result.n_clusters)
        if avg is not None:
            keep = [j for j in range(k) if avg.counts[j] > 0]
            report.plot_gallery(out / "gallery.png", [avg.volumes[j].numpy() for j in keep],
                                [f"cluster {j + 1} ({sizes[j]})" for j in keep])
    timings["plots"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start
    metrics["timings_s"] = timings
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2, default=float))
    log.info("subdivided %d subtomograms into %d clusters %s in %.1f s -> %s", n, k, sizes, timings["total"], out)
    return metrics
