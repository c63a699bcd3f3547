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
``checkpoint.pt``   while the run is going: the finished stages (``--resume`` continues from it)
==================  =====================================================================
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from cryomine_core.device import seed_everything, select_device
from cryomine_core.errors import CryomineError
from cryomine_core.io import table as T
from cryomine_core.io.atomic import atomic_write_text
from cryomine_core.io.columns import ALIGN_FAILED, ALIGN_SCORE, EMBEDDING, INPUT_CLASS, INPUT_CLASS_NAME
from cryomine_core.io.mrc import write_mrc
from cryomine_core.io.outputs import remove_results
from cryomine_core.io.poses import with_poses
from cryomine_core.subdivide import report
from cryomine_core.subdivide.cluster import cluster_features
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
from cryomine_core.subdivide.settings import SubdivideSettings
from cryomine_core.subdivide.stages import CHECKPOINT_FILE, StageCheckpoint, file_digest
from cryomine_core.validate import check_subtomograms, check_volume_values

log = logging.getLogger("cryomine")

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


def run_subdivide(table, out_dir, settings: SubdivideSettings | None = None, *, model=None, device: str = "auto",
                  plots: bool = True, resume: bool = False) -> dict:
    """Subdivide the subtomograms of ``table`` into clusters; write the outputs to ``out_dir``.

    Args:
        table: particle table of the subtomograms.
        out_dir: output folder (an earlier run's results in it are removed first).
        settings: what to do (:class:`~cryomine_core.subdivide.settings.SubdivideSettings`; default:
            rotation-invariant features, clusters by BIC, no alignment).
        model: ``model.pt`` of :func:`cryomine_core.classify.train_classifier`, for
            ``settings.features == 'model'`` (features = its penultimate layer).
        device: compute device.
        plots: draw the PNG figures.
        resume: continue an interrupted run from ``out_dir/checkpoint.pt`` (same inputs and
            settings) to the uninterrupted run's result.

    The stages: features (:func:`_features`), clustering, cluster refinement (averages, split,
    re-assignment, merge: :func:`_refine_clusters`), outputs. Each stage's output is kept in
    ``out_dir/checkpoint.pt`` (:mod:`.stages`) until the results are written.

    Returns the metrics dict (``metrics.json``): ``n``, ``n_clusters``, ``cluster_sizes``,
    ``features`` (source, dimension), ``clustering`` (method, covariance, pca_components,
    explained_variance, k_mode 'auto'/'fixed', bic {k: value}, minibatch), ``averages`` (mode
    'align'/'poses'/'none', per-cluster counts and resolution), ``split``/``merge`` records,
    ``timings`` (seconds per stage), ``device``, ``seed``, and ``vs_input_labels``
    (:func:`.evaluate.clustering_scores`) when the input was labelled.
    """
    st = settings or SubdivideSettings()
    st.validate(model)
    t_start = time.perf_counter()
    timings: dict = {}
    dev = select_device(device)
    seed_everything(st.seed)
    src = str(table)
    df = T.read_table(table, require=(T.IMAGE,))
    n = len(df)
    if n == 0:
        raise CryomineError(f"{src}: the particle table is empty; give a table with subtomograms to subdivide.")
    if st.clusters is not None and n < 2 * int(st.clusters):
        raise CryomineError(f"--clusters {st.clusters}: {src} has only {n} subtomograms; at least "
                            f"{2 * int(st.clusters)} (2 per cluster) are needed. Ask for at most {max(1, n // 2)} "
                            "clusters or give more subtomograms.")
    info = check_subtomograms(df)
    check_volume_values(df[T.IMAGE])
    box = tuple(info["box"])
    voxel_size = float(info["voxel_size"])

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    remove_results(out, ("particles.star", "metrics.json", "class_*.mrc"))  # an earlier run's results go first
    big = (n > MINIBATCH_THRESHOLD) if st.minibatch == "auto" else bool(st.minibatch)

    fingerprint = {"table": file_digest(table), "model": file_digest(model) if model else None,
                   "settings": sorted((k, repr(v)) for k, v in asdict(st).items()), "n": n}
    ck = StageCheckpoint(out / CHECKPOINT_FILE, fingerprint, resume=resume)

    t0 = time.perf_counter()
    feats, result, feat_info = ck.run("features", lambda: _features(df, box, st, model, dev,
                                                                    out / "features.npy" if big else None, src))
    timings["features"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    if result is None:
        result = ck.run("clustering", lambda: cluster_features(
            feats, st.clusters, max_clusters=st.max_clusters, method=st.method, covariance=st.covariance,
            n_components=st.pca_components, seed=st.seed, minibatch=big))
    timings["clustering"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    labels, k, avg, records = _refine_clusters(df, result, box, voxel_size, st, dev, src, ck)
    timings["averages"] = time.perf_counter() - t0

    sizes = _write_clusters(out, df, labels, k, result, avg, voxel_size)
    metrics = {
        "command": "subdivide", "input": str(Path(src).resolve()), "n": n, "box": list(box),
        "voxel_size_A": voxel_size, "n_clusters": k, "cluster_sizes": {str(j + 1): s for j, s in enumerate(sizes)},
        "features": feat_info,
        "clustering": {"method": st.method, "covariance": st.covariance if st.method == "gmm" else None,
                       "pca_components": int(result.embedding.shape[1]),
                       "explained_variance": result.explained_variance.tolist(),
                       "k_mode": "fixed" if st.clusters is not None else "auto", "max_clusters": st.max_clusters,
                       "bic": {str(a): (b if np.isfinite(b) else None) for a, b in result.criterion.items()},
                       "n_clusters_found": result.n_clusters,
                       "minibatch": result.minibatch},
        "averages": {"mode": avg.mode if avg is not None else "none",
                     "files": {str(j + 1): f"class_{j + 1:03d}.mrc" for j in range(k)
                               if avg is not None and avg.counts[j] > 0},
                     "counts": {str(j + 1): int(avg.counts[j]) for j in range(k)} if avg is not None else {},
                     "resolution_0143_A": {str(j + 1): (float(avg.resolution[j]) if np.isfinite(avg.resolution[j])
                                                        else None) for j in range(k)} if avg is not None else {}},
        **records, "device": str(dev), "seed": st.seed,
    }
    truth = _input_truth(df)
    if truth is not None:
        metrics["vs_input_labels"] = clustering_scores(truth[0], labels, truth[1])
    t0 = time.perf_counter()
    if plots:
        _plot(out, result, labels, k, sizes, avg, st.seed)
    timings["plots"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start
    metrics["timings_s"] = timings
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2, default=float))
    ck.remove()
    log.info("subdivided %d subtomograms into %d clusters %s in %.1f s -> %s", n, k, sizes, timings["total"], out)
    return metrics


def _features(df, box, st: SubdivideSettings, model, dev, feat_file, src):
    """Stage 1: one feature vector per subtomogram; the unsupervised mode also returns its clustering."""
    n = len(df)
    if st.features == "model":
        feats, meta = model_features(df, model, device=dev, batch_size=st.batch_size, out_file=feat_file)
        feat_info = {"source": "model", "model": str(Path(model).resolve()), "architecture": meta["architecture"],
                     "model_classes": list(meta["class_names"])}
        result = None
    elif st.features == "rif":
        mm = open_features(feat_file, n, rif_dimension()) if feat_file is not None else None
        feats = rif_features(table_dataset(df, box), batch_size=st.batch_size, out=mm)
        feat_info = {"source": "rif"}
        result = None
    else:
        from cryomine_core.subdivide.unsupervised import unsupervised_subdivision

        if len(set(box)) != 1:
            raise CryomineError(f"{src}: unsupervised mode needs cubic subtomograms, got box {box}.")
        un = unsupervised_subdivision(table_dataset(df, box), box[0], n_clusters=st.clusters,
                                      max_clusters=st.max_clusters, rounds=st.rounds, epochs=st.epochs,
                                      method=st.method, covariance=st.covariance, n_components=st.pca_components,
                                      device=dev, batch_size=st.batch_size, seed=st.seed)
        feats, result = un.features, un.clustering
        feat_info = {"source": "unsupervised", "rounds": un.history}
    feat_info["dimension"] = int(feats.shape[1])
    return feats, result, feat_info


def _refine_clusters(df, result, box, voxel_size, st: SubdivideSettings, dev, src, ck: StageCheckpoint):
    """Stage 3: per-cluster averages, then split, re-assignment and merge as asked, each a stage of ``ck``.

    Returns ``(labels, k, averages or None, {"split": ..., "reassign": ..., "merge": ...})``.
    """
    labels, k = result.labels.copy(), result.n_clusters
    records = {"split": None, "reassign": None, "merge": None}
    if not (st.align_clusters or has_poses(df)):
        log.warning("%s has no poses and --align-clusters was not given: no cluster averages written", src)
        return labels, k, None, records
    settings = default_settings(box[0], iterations=st.align_iterations, angular_step=st.angular_step,
                                max_shift=st.max_shift, seed=st.seed) if st.align_clusters else None

    def average(labels, k, align):
        return cluster_averages(df, labels, k, voxel_size, align=align, settings=settings, device=dev)

    def reassigned(labels, avg, iterations):
        """Re-assign against ``avg``'s averages, then average the new clusters."""
        ra = reassign_by_alignment(df, labels, avg.volumes, voxel_size, settings, iterations=iterations,
                                   resolution_A=st.reassign_resolution, local_radius_deg=st.reassign_local,
                                   device=dev)
        log.info("re-assignment moved %.1f %% of the subtomograms; %d clusters", 100 * ra.moved, ra.n_clusters)
        return ra, average(ra.labels, ra.n_clusters, True)

    def split(state):
        labels, k, avg, records = state
        new, done = split_poorly_aligned(labels, avg.cluster_scores(labels), result.embedding, ratio=st.split_ratio,
                                         seed=st.seed)
        records = {**records, "split": {"ratio": st.split_ratio, "split_clusters": [j + 1 for j in done]}}
        if done:
            labels, k = new, int(new.max()) + 1
            avg = average(labels, k, True)
        return labels, k, avg, records

    def reassign(state):
        labels, k, avg, records = state
        ra, avg = reassigned(labels, avg, st.reassign)
        records = {**records, "reassign": {"iterations": st.reassign, "band_A": ra.band_A, "moved_fraction": ra.moved,
                                           "clusters_before": k, "clusters_after": ra.n_clusters,
                                           "history": ra.history}}
        return ra.labels, ra.n_clusters, avg, records

    def merge(state):
        labels, k, avg, records = state
        agreement = avg.self_agreement(voxel_size, st.merge_resolution) if st.merge_relative else None
        mapping, pairs = merge_similar(avg.volumes, avg.counts, voxel_size, threshold=st.merge_threshold,
                                       resolution=st.merge_resolution, self_agreement=agreement)
        records = {**records, "merge": {"threshold": st.merge_threshold, "relative": st.merge_relative,
                                        "resolution_A": st.merge_resolution, "pairs": pairs,
                                        "groups": {str(g + 1): [j + 1 for j in np.flatnonzero(mapping == g)]
                                                   for g in range(int(mapping.max()) + 1)}}}
        if int(mapping.max()) + 1 < k:
            labels, k = mapping[labels], int(mapping.max()) + 1
            avg = average(labels, k, True)
            if st.reassign and k > 1:  # members of merged clusters compete again (half the rounds, at least 2)
                ra, avg = reassigned(labels, avg, max(2, st.reassign // 2))
                records["reassign"] = {**records["reassign"],
                                       "after_merge": {"moved_fraction": ra.moved, "clusters_after": ra.n_clusters,
                                                       "history": ra.history}}
                labels, k = ra.labels, ra.n_clusters
        return labels, k, avg, records

    state = ck.run("averages", lambda: (labels, k, average(labels, k, st.align_clusters), records))
    if st.split:
        state = ck.run("split", lambda: split(state))
    if st.reassign and state[1] > 1:
        state = ck.run("reassign", lambda: reassign(state))
    if st.merge_threshold is not None and state[1] > 1:
        state = ck.run("merge", lambda: merge(state))
    return state


def _write_clusters(out: Path, df, labels, k, result, avg, voxel_size) -> list[int]:
    """Stage 4: ``particles.star`` (clusters, confidence, embedding, poses) and ``class_NNN.mrc``; the sizes."""
    out_df = df.copy()
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
        out_df = with_poses(out_df, avg.rotations.double(), avg.shifts.double(), voxel_size)
        out_df[ALIGN_SCORE] = avg.scores
        out_df[ALIGN_FAILED] = avg.failed.astype(int)
    T.write_table(out / "particles.star", out_df)
    if avg is not None:
        for j in range(k):
            if avg.counts[j] > 0:
                write_mrc(out / f"class_{j + 1:03d}.mrc", avg.volumes[j].numpy(), voxel_size)
    return np.bincount(labels, minlength=k).astype(int).tolist()


def _plot(out: Path, result, labels, k, sizes, avg, seed) -> None:
    report.plot_embedding(out / "embedding.png", result.embedding, labels, seed=seed)
    report.plot_sizes(out / "sizes.png", sizes)
    if result.criterion:
        report.plot_criterion(out / "bic.png", result.criterion, result.n_clusters)
    if avg is not None:
        keep = [j for j in range(k) if avg.counts[j] > 0]
        report.plot_gallery(out / "gallery.png", [avg.volumes[j].numpy() for j in keep],
                            [f"cluster {j + 1} ({sizes[j]})" for j in keep])
