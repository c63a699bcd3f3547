"""Reference-free classification of the clusters: re-assign every subtomogram by multi-reference alignment.

Feature clusters (:mod:`.cluster`) are a first, approximate partition: features of structures the
network never saw, seen in random orientations behind a missing wedge, overlap. Each cluster's
reference-free average (:func:`.refine.cluster_averages`) is a far cleaner description of what
the cluster holds than its members' features, so every subtomogram is then aligned against all
``K`` averages at once and moved to the one it fits best (constrained correlation, missing wedge
accounted for), the averages are rebuilt from the new members, and this is repeated
(:func:`cryomine_core.align.mra.multi_reference_alignment` started from the averages). This is
the "reference-free classification" stage of Xu et al. 2017 (arXiv 1701.08404), run as 3-D
multi-reference classification.

The assignment uses detail up to ``resolution_A`` (default: 0.45 cycles/voxel, just under
Nyquist) rather than the coarse band used to *align* (0.15 cycles/voxel): in a CPU test at 16 Å
voxels and SNR 0.1, assigning subtomograms of 7 structures against the true maps sent 11 % to
their own structure at the coarse band and 67 % at 0.45 cycles/voxel.

Memory: the subtomograms are read from disk a chunk at a time in every round
(:mod:`cryomine_core.align.particle_source`); only poses, scores and classes are kept per subtomogram.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch

from cryomine_core.align.mra import multi_reference_alignment
from cryomine_core.align.refine import RefineSettings
from cryomine_core.errors import CryomineError
from cryomine_core.subdivide.cluster import relabel_by_size
from cryomine_core.subdivide.refine import particle_files

log = logging.getLogger("cryomine")

NYQUIST_FRACTION = 0.45
"""Default finest band for the assignment, in cycles/voxel (0.5 is Nyquist)."""


@dataclass
class Reassignment:
    """Output of :func:`reassign_by_alignment` (``N`` subtomograms, ``K`` classes).

    Attributes:
        labels: ``(N,)`` 0-based class after re-assignment, numbered by decreasing size.
        n_clusters: ``K`` (classes left empty are dropped).
        moved: fraction of subtomograms whose class changed (after matching to the input's).
        history: per iteration: class sizes, mean score, seconds.
        band_A: finest detail used (Å).
    """

    labels: np.ndarray
    n_clusters: int
    moved: float
    history: list
    band_A: float


def assignment_band(voxel_size: float, resolution_A: float | None = None) -> float:
    """Finest frequency (cycles/voxel) used to assign: ``voxel / resolution_A``, capped at 0.45."""
    if resolution_A is None:
        return NYQUIST_FRACTION
    if resolution_A <= 0:
        raise CryomineError(f"--reassign-resolution {resolution_A}: give a resolution in Å (> 0).")
    f = voxel_size / float(resolution_A)
    if f < 2.0 / 24:
        raise CryomineError(f"--reassign-resolution {resolution_A} Å is too coarse for {voxel_size} Å voxels "
                            f"(below 2 cycles per 24 voxels); give at most {12 * voxel_size:.0f} Å.")
    return min(f, NYQUIST_FRACTION)


def reassign_by_alignment(df: pd.DataFrame, labels: np.ndarray, references: torch.Tensor, voxel_size: float,
                          settings: RefineSettings, *, iterations: int = 5, resolution_A: float | None = None,
                          local_radius_deg: float | None = None, device="cpu") -> Reassignment:
    """Re-assign the subtomograms of ``df`` to the best-fitting of ``references (K, n, n, n)``.

    Args:
        df: particle table (``rlnImageName``; tilt range columns as for alignment).
        labels: ``(N,)`` current 0-based clusters (used only to report how many moved).
        references: cluster averages; all-zero volumes (clusters without an average) are skipped.
        settings: search settings (angular step, max shift, batch, seed) as for the averages.
        iterations: rounds of align-all / assign / re-average (>= 1).
        resolution_A: finest detail used to assign (Å); None: 0.45 cycles/voxel.
        local_radius_deg: rounds after the first search each average only within this angle of the
            subtomogram's pose for it in the round before (``RefineSettings.local_radius_deg``); None:
            the global search against all averages in every round.
    """
    if iterations < 1:
        raise CryomineError(f"--reassign {iterations}: give at least 1 iteration (0 switches re-assignment off).")
    labels = np.asarray(labels, dtype=np.int64)
    keep = [j for j in range(references.shape[0]) if float(references[j].abs().max()) > 0]
    if len(keep) < 1:
        raise CryomineError("no cluster has an average to re-assign against; give more subtomograms per cluster.")
    k = len(keep)
    f = assignment_band(voxel_size, resolution_A)
    cfg = replace(settings, iterations=int(iterations), initial_f=f, lowpass_angstrom=voxel_size / f,
                  local_radius_deg=local_radius_deg)
    x, tilt = particle_files(df, np.arange(len(df)), device)
    refs = references[keep].to(x.device, torch.float32)
    log.info("re-assigning %d subtomograms among %d cluster averages by multi-reference alignment (%d iterations, "
             "detail up to %.1f Å; %s)", len(df), k, iterations, voxel_size / f,
             "global search in every round" if local_radius_deg is None else
             f"each average on its own, locally within {local_radius_deg:g} degrees after the first round")
    res = multi_reference_alignment(x, tilt, voxel_size, k, settings=cfg, references=refs)
    classes = res.classes.cpu().numpy().astype(np.int64)
    occupied, compact = np.unique(classes, return_inverse=True)  # classes left empty are dropped
    new, _ = relabel_by_size(compact, occupied.size)
    moved = float(np.mean(np.asarray(keep)[classes] != labels))  # vs the input cluster each class started from
    return Reassignment(labels=new, n_clusters=int(occupied.size), moved=moved, history=res.history,
                        band_A=voxel_size / f)
