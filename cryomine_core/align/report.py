"""Figures of an alignment run (matplotlib, Agg backend), written atomically as PNG files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cryomine_core.io.atomic import atomic_path  # noqa: E402

__all__ = ["plot_fsc", "plot_slices", "plot_orientations", "plot_gallery"]


def save_figure(fig, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)
    return path


def plot_fsc(path, frequencies: Sequence[float], curves: dict[str, Sequence[float]],
             resolutions: dict[str, float] | None = None) -> Path:
    """FSC curves (frequency in 1/Å) with the 0.143 and 0.5 thresholds."""
    fig, ax = plt.subplots(figsize=(6, 4))
    f = np.asarray(frequencies, dtype=float)
    for name, values in curves.items():
        ax.plot(f, np.asarray(values, dtype=float), marker=".", label=name)
    ax.axhline(0.143, color="grey", ls="--", lw=0.8, label="0.143")
    ax.axhline(0.5, color="grey", ls=":", lw=0.8, label="0.5")
    ax.set_xlabel("spatial frequency (1/Å)")
    ax.set_ylabel("FSC")
    ax.set_ylim(-0.2, 1.05)
    title = "Fourier shell correlation of the half maps"
    if resolutions:
        title += "\n" + ", ".join(f"{k}: {v:.1f} Å" for k, v in resolutions.items())
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def _central_slices(volume: np.ndarray) -> list[tuple[str, np.ndarray]]:
    n = volume.shape
    return [("xy (z = centre)", volume[n[0] // 2]), ("xz (y = centre)", volume[:, n[1] // 2, :]),
            ("yz (x = centre)", volume[:, :, n[2] // 2])]


def plot_slices(path, volume: np.ndarray, title: str = "average") -> Path:
    """Central slices of a volume (zyx) in the three directions."""
    vol = np.asarray(volume, dtype=float)
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.3))
    lo, hi = np.percentile(vol, [1, 99])
    for ax, (name, sl) in zip(axes, _central_slices(vol)):
        ax.imshow(sl, cmap="gray", vmin=lo, vmax=hi, origin="lower")
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def plot_orientations(path, rotations: np.ndarray, title: str = "orientation distribution") -> Path:
    """Viewing directions in the reference frame: the beam (z) of each particle, ``R^T z``, on a map."""
    rot = np.asarray(rotations, dtype=float).reshape(-1, 3, 3)
    beam = rot[:, 2, :]  # rows of R^T z = third row of R
    lon = np.degrees(np.arctan2(beam[:, 1], beam[:, 0]))
    lat = np.degrees(np.arcsin(np.clip(beam[:, 2], -1.0, 1.0)))
    fig, ax = plt.subplots(figsize=(7, 3.8))
    if rot.shape[0] >= 200:
        hb = ax.hexbin(lon, lat, gridsize=36, extent=(-180, 180, -90, 90), cmap="viridis", mincnt=1)
        fig.colorbar(hb, ax=ax, label="particles")
    else:
        ax.scatter(lon, lat, s=8, alpha=0.7)
    ax.set_xlim(-180, 180)
    ax.set_ylim(-90, 90)
    ax.set_xlabel("azimuth of the beam in the reference frame (deg)")
    ax.set_ylabel("elevation (deg)")
    ax.set_title(f"{title} ({rot.shape[0]} particles)", fontsize=10)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_gallery(path, volumes: Sequence[np.ndarray], labels: Sequence[str]) -> Path:
    """One row per class average: its three central slices."""
    n = len(volumes)
    fig, axes = plt.subplots(n, 3, figsize=(7, 2.3 * n), squeeze=False)
    for i, (vol, label) in enumerate(zip(volumes, labels)):
        vol = np.asarray(vol, dtype=float)
        lo, hi = np.percentile(vol, [1, 99]) if np.ptp(vol) > 0 else (0.0, 1.0)
        for j, (name, sl) in enumerate(_central_slices(vol)):
            ax = axes[i, j]
            ax.imshow(sl, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, origin="lower")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(name, fontsize=8)
        axes[i, 0].set_ylabel(label, fontsize=8)
    fig.suptitle("class averages", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)
