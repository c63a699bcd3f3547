"""Per-cluster averages (reference-free classification of each cluster) and merge / split of clusters.

:func:`cluster_averages` gives one average per cluster, either by reference-free gold-standard
refinement of each cluster's members (:func:`cryomine_core.align.refine`, ``align=True``), or by
wedge-compensated averaging with the poses already in the table (``rlnAngle*``/``rlnOrigin*``,
:func:`cryomine_core.align.average_particles`). Only one cluster's volumes are in memory at a time.

:func:`merge_similar` joins clusters whose averages agree (correlation after aligning one onto the
other, :func:`~cryomine_core.subdivide.evaluate.map_agreement`), :func:`split_poorly_aligned` cuts
in two (2-means on the cluster's features) clusters whose members align clearly worse than the
others'.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import torch

from cryomine_core.align.average import average_particles
from cryomine_core.align.particle_source import ParticleFiles
from cryomine_core.align.refine import RefineSettings, refine
from cryomine_core.align.search import SearchSettings
from cryomine_core.errors import CryomineError
from cryomine_core.io import table as T
from cryomine_core.io.poses import table_poses

log = logging.getLogger("cryomine")


@dataclass
class ClusterAverages:
    """Averages of ``K`` clusters of ``N`` particles (box ``n``).

    Attributes:
        volumes: ``(K, n, n, n)`` CPU float32 (zeros for a cluster without an average).
        counts: ``(K,)`` particles averaged per cluster.
        scores: ``(N,)`` alignment score of each particle (NaN without alignment).
        rotations, shifts: ``(N, 3, 3)`` and ``(N, 3)`` voxel poses used (None without alignment).
        failed: ``(N,)`` bool, alignment failed (left out of the average).
        resolution: ``(K,)`` half-map FSC 0.143 resolution in Å (NaN when not aligned).
        mode: ``'align'`` (reference-free per cluster) or ``'poses'`` (the table's poses).
        seconds: wall time.
        half_maps: ``(K, 2, n, n, n)`` CPU float32 gold-standard half maps (``'align'`` mode; zeros
            for a cluster without an average), else None.
    """

    volumes: torch.Tensor
    counts: np.ndarray
    scores: np.ndarray
    rotations: torch.Tensor | None
    shifts: torch.Tensor | None
    failed: np.ndarray
    resolution: np.ndarray
    mode: str
    seconds: float = 0.0
    history: list = field(default_factory=list)
    half_maps: torch.Tensor | None = None

    def self_agreement(self, voxel_size: float, resolution: float = 30.0) -> np.ndarray:
        """``(K,)`` correlation of each cluster's two half maps at ``resolution`` Å (NaN without halves).

        The yardstick for comparing two clusters' averages: two averages of one structure from
        ``n_i`` and ``n_j`` particles are expected to correlate about ``sqrt(C_i C_j)`` with
        ``C = 2 r / (1 + r)``, ``r`` this half-map correlation (the full average's correlation with
        the noise-free structure is ``sqrt(C)``, Rosenthal & Henderson 2003).
        """
        from cryomine_core.align.scoring import soft_sphere_mask
        from cryomine_core.fourier.filters import lowpass
        from cryomine_core.subdivide.evaluate import pearson

        k = self.volumes.shape[0]
        out = np.full(k, np.nan)
        if self.half_maps is None:
            return out
        mask = soft_sphere_mask(self.volumes.shape[-1])
        for j in range(k):
            h = self.half_maps[j].float()
            if self.counts[j] == 0 or float(h.abs().max()) == 0:
                continue
            out[j] = pearson(lowpass(h[0], resolution, voxel_size), lowpass(h[1], resolution, voxel_size), mask)
        return out

    def cluster_scores(self, labels: np.ndarray) -> np.ndarray:
        """``(K,)`` mean alignment score of each cluster's non-failed members (NaN if none)."""
        k = self.volumes.shape[0]
        out = np.full(k, np.nan)
        for j in range(k):
            s = self.scores[(labels == j) & ~self.failed]
            s = s[np.isfinite(s)]
            if s.size:
                out[j] = float(s.mean())
        return out


def has_poses(df: pd.DataFrame) -> bool:
    """Whether the table holds orientations (all three RELION Euler-angle columns)."""
    return all(c in df.columns for c in T.ANGLES)


def particle_files(df: pd.DataFrame, rows: np.ndarray, device) -> tuple[ParticleFiles, torch.Tensor]:
    """The subtomograms of table rows ``rows``, read from disk when needed (z-scored, checked; see
    :class:`~cryomine_core.align.particle_source.ParticleFiles`), and their tilt ranges ``(B, 2)``."""
    tilt_all = T.tilt_ranges(df)
    source = ParticleFiles(df[T.IMAGE].iloc[rows].tolist(), device=device)
    return source, torch.as_tensor(tilt_all[rows], dtype=torch.float32, device=device)


def default_settings(box: int, *, iterations: int = 3, angular_step: float = 15.0, max_shift: float | None = None,
                     seed: int = 0, batch_size: int = 32) -> RefineSettings:
    """Refinement settings for per-cluster averages: coarse enough for many clusters on a CPU."""
    search = SearchSettings(angular_step_deg=angular_step, max_shift_voxels=float(max_shift if max_shift is not None
                                                                                  else max(1.0, box / 8)),
                            final_step_deg=min(2.0, angular_step))
    return RefineSettings(iterations=iterations, search=search, start_iterations=2, start_subset=100, seed=seed,
                          batch_size=batch_size)


def cluster_averages(df: pd.DataFrame, labels: np.ndarray, n_clusters: int, voxel_size: float, *, align: bool = True,
                     settings: RefineSettings | None = None, device="cpu", min_size: int = 2) -> ClusterAverages:
    """Average each cluster of the particle table ``df`` (``labels (N,)`` 0-based).

    ``align=True``: reference-free refinement of each cluster with at least ``min_size`` members
    (``settings``, default :func:`default_settings`). ``align=False``: the table's poses (the
    table must have them). Raises CryomineError otherwise.
    """
    import time

    t0 = time.perf_counter()
    n = len(df)
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (n,):
        raise CryomineError(f"{labels.shape[0]} labels for {n} particles.")
    scores = np.full(n, np.nan, dtype=np.float64)
    failed = np.zeros(n, dtype=bool)
    counts = np.zeros(n_clusters, dtype=np.int64)
    resolution = np.full(n_clusters, np.nan)
    vols: list[torch.Tensor | None] = [None] * n_clusters
    halves: list[torch.Tensor | None] = [None] * n_clusters
    history = []
    if not align:
        if not has_poses(df):
            raise CryomineError("averaging the clusters needs poses (rlnAngleRot/Tilt/Psi) in the table, or "
                                "reference-free alignment of each cluster (--align-clusters).")
        rot_all, shift_all = table_poses(df)
        rotations, shifts = rot_all.float(), shift_all.float()
        for j in range(n_clusters):
            rows = np.flatnonzero(labels == j)
            if rows.size == 0:
                continue
            x, tilt = particle_files(df, rows, device)
            r = rotations[rows].to(device)
            s = shifts[rows].to(device)
            avg, _ = average_particles(x, r, s, tilt)
            vols[j], counts[j] = avg[0].cpu(), rows.size
    else:
        rotations = torch.tile(torch.eye(3), (n, 1, 1))
        shifts = torch.zeros(n, 3)
        for j in range(n_clusters):
            rows = np.flatnonzero(labels == j)
            if rows.size < min_size:
                log.warning("cluster %d has %d member(s): no average (needs %d)", j + 1, rows.size, min_size)
                continue
            x, tilt = particle_files(df, rows, device)
            cfg = settings or default_settings(x.box)
            cfg = replace(cfg, seed=cfg.seed + j)
            log.info("cluster %d/%d: reference-free alignment of %d particles", j + 1, n_clusters, rows.size)
            res = refine(x, tilt, voxel_size, settings=cfg)
            vols[j] = res.average.cpu().float()
            halves[j] = res.half_maps.cpu().float()
            counts[j] = int((~res.failed).sum())
            scores[rows] = res.scores.cpu().double().numpy()
            failed[rows] = res.failed.cpu().numpy()
            rotations[rows] = res.rotations.cpu().float()
            shifts[rows] = res.shifts.cpu().float()
            resolution[j] = float(res.resolution_0143)
            history.append({"cluster": j + 1, "n": int(rows.size), "resolution_0143_A": float(res.resolution_0143)})
    box = next((v.shape[-1] for v in vols if v is not None), None)
    if box is None:
        raise CryomineError("no cluster has enough members to average; give more subtomograms or fewer clusters.")
    volumes = torch.stack([v if v is not None else torch.zeros((box,) * 3) for v in vols])
    half_maps = torch.stack([h if h is not None else torch.zeros((2,) + (box,) * 3) for h in halves]) if align \
        else None
    return ClusterAverages(volumes=volumes, counts=counts, scores=scores, rotations=rotations, shifts=shifts,
                           failed=failed, resolution=resolution, mode="align" if align else "poses",
                           seconds=time.perf_counter() - t0, history=history, half_maps=half_maps)


def merge_similar(volumes: torch.Tensor, counts: np.ndarray, voxel_size: float, *, threshold: float = 0.9,
                  resolution: float = 30.0, angular_step: float = 15.0,
                  self_agreement: np.ndarray | None = None) -> tuple[np.ndarray, list[dict]]:
    """Groups of clusters whose averages agree (similarity at ``resolution`` >= ``threshold``).

    Every pair of averages is compared once (:func:`~cryomine_core.subdivide.evaluate.map_agreement`
    after aligning one onto the other). The similarity is their correlation, or, with
    ``self_agreement (K,)`` (half-map correlations, :meth:`ClusterAverages.self_agreement`), their
    correlation divided by the one expected for two averages of one structure with that much noise,
    ``sqrt(C_i C_j)``, ``C = 2 r / (1 + r)``: about 1 for the same structure whatever the cluster
    sizes, lower for different structures. Groups are then formed by complete linkage: the two
    groups whose *least* similar members agree best are joined, as long as that least similarity
    reaches ``threshold``. Unlike joining every agreeing pair (single linkage), this never chains
    two different structures together through an intermediate, blurred average.

    Returns ``(mapping (K,) old cluster -> new 0-based cluster, pair records)``; groups are numbered
    by their first member.
    """
    from cryomine_core.subdivide.evaluate import map_agreement

    k = volumes.shape[0]
    sim = np.full((k, k), -np.inf)
    pairs = []
    for i in range(k):
        for j in range(i + 1, k):
            if counts[i] == 0 or counts[j] == 0:
                continue
            agree = map_agreement(volumes[i], volumes[j], voxel_size, resolution=resolution, angular_step=angular_step,
                                  contrast="same")
            rec = {"a": i + 1, "b": j + 1, "correlation": agree["correlation"]}
            value = agree["correlation"]
            if self_agreement is not None:
                r = [max(float(self_agreement[m]), 1e-3) for m in (i, j)]
                c = [2 * v / (1 + v) for v in r]
                rec["expected"] = float(np.sqrt(c[0] * c[1])) if np.isfinite(c).all() else None
                value = value / rec["expected"] if rec["expected"] else value
                rec["normalised"] = value
            pairs.append(rec)
            sim[i, j] = sim[j, i] = value
    groups = [[i] for i in range(k)]
    while len(groups) > 1:
        best, pick = -np.inf, None
        for a in range(len(groups)):
            for b in range(a + 1, len(groups)):
                link = sim[np.ix_(groups[a], groups[b])].min()
                if link > best:
                    best, pick = link, (a, b)
        if best < threshold:
            break
        a, b = pick
        groups[a] = sorted(groups[a] + groups.pop(b))
    groups.sort(key=lambda g: g[0])
    mapping = np.empty(k, dtype=np.int64)
    for g, members in enumerate(groups):
        mapping[members] = g
    return mapping, pairs


def split_poorly_aligned(labels: np.ndarray, cluster_scores: np.ndarray, embedding: np.ndarray, *,
                         ratio: float = 0.8, min_size: int = 10, seed: int = 0) -> tuple[np.ndarray, list[int]]:
    """Split in two the clusters whose mean alignment score is below ``ratio`` x the median cluster's.

    Each such cluster (with at least ``2 min_size`` members) is cut by 2-means on its rows of
    ``embedding (N, d)``; both parts must keep ``min_size`` members. Returns ``(new labels (N,),
    0-based clusters that were split)``; new clusters are numbered after the existing ones.
    """
    from sklearn.cluster import KMeans

    labels = np.asarray(labels, dtype=np.int64).copy()
    finite = cluster_scores[np.isfinite(cluster_scores)]
    if finite.size < 2:
        return labels, []
    median = float(np.median(finite))
    next_id = int(labels.max()) + 1
    done = []
    for j, s in enumerate(cluster_scores):
        rows = np.flatnonzero(labels == j)
        if not np.isfinite(s) or s >= ratio * median or rows.size < 2 * min_size:
            continue
        part = KMeans(n_clusters=2, n_init=4, random_state=seed).fit_predict(embedding[rows])
        if min(int((part == 0).sum()), int((part == 1).sum())) < min_size:
            continue
        labels[rows[part == 1]] = next_id
        next_id += 1
        done.append(j)
    return labels, done
