"""Figures of a subdivision run (matplotlib, Agg backend), written atomically as PNG files.

``embedding.png`` (first two PCA components, coloured by cluster), ``sizes.png`` (members per
cluster), ``bic.png`` (BIC against the number of clusters) and ``gallery.png`` (central slices of
each cluster average, :func:`cryomine_core.align.report.plot_gallery`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cryomine_core.align.report import plot_gallery, plt, save_figure

__all__ = ["plot_embedding", "plot_sizes", "plot_criterion", "plot_gallery"]


def plot_embedding(path, embedding: np.ndarray, labels: np.ndarray, max_points: int = 20000, seed: int = 0) -> Path:
    """Scatter of ``embedding[:, :2]`` (``(N, d)``) coloured by 0-based cluster ``labels (N,)``."""
    n = embedding.shape[0]
    idx = np.arange(n) if n <= max_points else np.sort(np.random.default_rng(seed).choice(n, max_points, False))
    xy = np.zeros((idx.size, 2))
    xy[:, : min(2, embedding.shape[1])] = embedding[idx, :2]
    fig, ax = plt.subplots(figsize=(5.5, 5))
    cmap = plt.get_cmap("tab20")
    for j in np.unique(labels[idx]):
        sel = labels[idx] == j
        ax.scatter(xy[sel, 0], xy[sel, 1], s=6, color=cmap(int(j) % 20), label=f"{int(j) + 1}", alpha=0.7)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(f"{n} subtomograms" + (f" ({idx.size} shown)" if idx.size < n else ""))
    if len(np.unique(labels)) <= 20:
        ax.legend(title="cluster", fontsize=7, markerscale=2, loc="best")
    return save_figure(fig, path)


def plot_sizes(path, sizes: list[int]) -> Path:
    """Bar chart of the members of each cluster (1-based)."""
    fig, ax = plt.subplots(figsize=(max(4, 0.4 * len(sizes) + 2), 3.5))
    ax.bar(np.arange(1, len(sizes) + 1), sizes, color="tab:blue")
    ax.set_xlabel("cluster")
    ax.set_ylabel("subtomograms")
    ax.set_xticks(np.arange(1, len(sizes) + 1))
    return save_figure(fig, path)


def plot_criterion(path, curve: dict, chosen: int) -> Path:
    """BIC (lower is better) against the number of clusters, the chosen one marked."""
    ks = sorted(int(k) for k in curve if np.isfinite(curve[k]))  # degenerate candidates (inf) are not drawn
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(ks, [curve[k] for k in ks], "o-")
    if chosen in curve:
        ax.plot([chosen], [curve[chosen]], "r*", markersize=14, label=f"chosen: {chosen}")
        ax.legend()
    ax.set_xlabel("clusters")
    ax.set_ylabel("BIC")
    return save_figure(fig, path)
