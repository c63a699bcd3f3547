"""The settings of a subdivision run (``cryomine subdivide``), checked once, in one frozen dataclass.

The command line builds one from its options, the Scipion protocol through the command line, the
benchmark directly; :func:`cryomine_core.subdivide.jobs.run_subdivide` takes it with the inputs
(table, model file) and the device.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryomine_core.errors import CryomineError
from cryomine_core.subdivide.cluster import METHODS

FEATURE_SOURCES = ("model", "rif", "unsupervised")
COVARIANCES = ("full", "diag", "spherical", "tied")

__all__ = ["FEATURE_SOURCES", "SubdivideSettings"]


@dataclass(frozen=True)
class SubdivideSettings:
    """What a subdivision does (defaults = the command line's).

    Attributes:
        features: ``'model'`` (a ``model.pt``'s penultimate layer; the run's ``model`` file),
            ``'rif'`` (rotation-invariant baseline) or ``'unsupervised'`` (DISCA-like).
        clusters: fixed number of clusters, or None to choose it in ``1..max_clusters`` by BIC.
        max_clusters: largest number of clusters tried by BIC.
        method, covariance: clustering (``gmm``/``kmeans``; the GMM's covariance type).
        pca_components: PCA components kept before clustering (>= 1).
        minibatch: ``'auto'`` (above 50,000 subtomograms), True or False: the bounded-memory path.
        align_clusters: reference-free alignment and average per cluster.
        align_iterations: refinement iterations per cluster.
        angular_step: global search step, degrees.
        max_shift: largest shift, voxels (None: box / 8).
        split, split_ratio: split clusters whose mean alignment score < ratio x median.
        merge_threshold: merge clusters whose averages agree at least this much (None: never).
        merge_resolution: resolution of that comparison, Å.
        merge_relative: agreement relative to the half-map agreement (else plain correlation).
        reassign: rounds of reference-free re-assignment after clustering (0: none).
        reassign_resolution: finest detail of the re-assignment, Å (None: 0.45 cycles/voxel).
        reassign_local: after the first re-assignment round, search each average only within this
            angle (degrees) of the subtomogram's pose for it in the round before; None: the global
            search against all averages in every round.
        rounds, epochs: unsupervised mode's training rounds and epochs per round.
        batch_size: subtomograms per feature batch.
        seed: random seed.
    """

    features: str = "rif"
    clusters: int | None = None
    max_clusters: int = 10
    method: str = "gmm"
    covariance: str = "diag"
    pca_components: int = 8
    minibatch: bool | str = "auto"
    align_clusters: bool = False
    align_iterations: int = 3
    angular_step: float = 15.0
    max_shift: float | None = None
    split: bool = False
    split_ratio: float = 0.8
    merge_threshold: float | None = None
    merge_resolution: float = 30.0
    merge_relative: bool = True
    reassign: int = 0
    reassign_resolution: float | None = None
    reassign_local: float | None = None
    rounds: int = 3
    epochs: int = 5
    batch_size: int = 64
    seed: int = 0

    def validate(self, model=None) -> None:
        """Raise CryomineError (one line naming the option and the fix) for an impossible combination."""
        if self.features not in FEATURE_SOURCES:
            raise CryomineError(f"--features {self.features}: use one of {', '.join(FEATURE_SOURCES)}.")
        if self.features == "model" and model is None:
            raise CryomineError("--features model needs --model model.pt (from 'cryomine classify train').")
        if model is not None and self.features != "model":
            raise CryomineError(f"give either --model or --features {self.features}, not both.")
        if self.method not in METHODS:
            raise CryomineError(f"--method {self.method}: use one of {', '.join(METHODS)}.")
        if self.covariance not in COVARIANCES:
            raise CryomineError(f"--covariance {self.covariance}: use one of {', '.join(COVARIANCES)}.")
        if self.merge_threshold is not None and not -1 <= self.merge_threshold <= 1:
            raise CryomineError(f"--merge-threshold {self.merge_threshold}: give a correlation in [-1, 1].")
        if (self.split or self.merge_threshold is not None or self.reassign) and not self.align_clusters:
            raise CryomineError("--split, --merge-threshold and --reassign work on the per-cluster reference-free "
                                "averages: add --align-clusters.")
        if self.reassign_local is not None and not 0 < self.reassign_local <= 90:
            raise CryomineError(f"--reassign-local {self.reassign_local}: give an angle in (0, 90] degrees (e.g. 15), "
                                "or leave it out for the global search in every round.")
        if self.reassign < 0:
            raise CryomineError(f"--reassign {self.reassign}: give 0 (off) or a number of iterations.")
        if self.pca_components < 1:
            raise CryomineError(f"--pca-components {self.pca_components}: give at least 1 (8 by default).")
        if self.clusters is not None and self.clusters < 1:
            raise CryomineError(f"--clusters {self.clusters}: give at least 1 (or auto).")
        if self.max_clusters < 1:
            raise CryomineError(f"--max-clusters {self.max_clusters}: give at least 1.")
        if self.minibatch not in ("auto", True, False):
            raise CryomineError(f"minibatch {self.minibatch!r}: use 'auto', True or False.")
