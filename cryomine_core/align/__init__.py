"""Subtomogram alignment and averaging.

Modules (one concept each):

* :mod:`.spectra`: Fourier samples, centred padded transforms, the missing wedge at any frequency;
* :mod:`.scoring`: constrained correlation over the jointly observed Fourier region;
* :mod:`.reference`: references (with their own coverage) prepared for the search;
* :mod:`.search`: global SO(3) x shift search as batched matrix products, local refinement;
* :mod:`.average`: wedge-compensated Fourier averaging with a guard against small weights;
* :mod:`.refine`: reference-free start, gold-standard iterative refinement, FSC;
* :mod:`.mra`: multi-reference alignment (classification by alignment);
* :mod:`.contrast`: does a given reference have the particles' contrast (or the opposite)?
* :mod:`.evaluate`: pose errors against ground truth (up to a global pose);
* :mod:`.jobs`, :mod:`.report`: particle tables in, files and figures out (``cryomine align``).

Conventions: volumes ``(..., N, N, N)`` zyx in cubic boxes centred at ``N // 2``; poses
``particle(x) = reference(R^T (x - t))`` (:mod:`cryomine_core.geometry`), ``t`` xyz voxels;
frequencies in cycles/voxel unless named ``_angstrom``; angles in degrees.
"""

from cryomine_core.align.average import FourierAverager, average_particles
from cryomine_core.align.evaluate import global_pose_offset, pose_errors
from cryomine_core.align.mra import MRAResult, multi_reference_alignment
from cryomine_core.align.reference import SearchReference
from cryomine_core.align.refine import RefineResult, RefineSettings, half_map_fsc, refine
from cryomine_core.align.scoring import constrained_correlation, soft_sphere_mask, wedge_masks
from cryomine_core.align.search import AlignmentResult, SearchSettings, align_particles, symmetry_reduced_grid
from cryomine_core.align.spectra import PaddedSpectrum
from cryomine_core.fourier.wedge import wedge_at

__all__ = [
    "AlignmentResult",
    "FourierAverager",
    "MRAResult",
    "PaddedSpectrum",
    "RefineResult",
    "RefineSettings",
    "SearchReference",
    "SearchSettings",
    "align_particles",
    "average_particles",
    "constrained_correlation",
    "global_pose_offset",
    "half_map_fsc",
    "multi_reference_alignment",
    "pose_errors",
    "refine",
    "soft_sphere_mask",
    "symmetry_reduced_grid",
    "wedge_at",
    "wedge_masks",
]
