"""Template-free subdivision (Xu et al. 2017; DISCA, Zeng et al. 2023 as the unsupervised mode).

- :mod:`.features`: penultimate-layer CNN features (:func:`network_features`, :func:`model_features`)
  and the rotation-invariant baseline (:func:`rif_features`), streamed in batches;
- :mod:`.cluster`: PCA + GMM / k-means, ``k`` by BIC (:func:`cluster_features`), mini-batch path;
- :mod:`.refine`: per-cluster averages (:func:`cluster_averages`), merge / split of clusters;
- :mod:`.reassign`: reference-free classification: every subtomogram re-assigned to the cluster
  average it fits best by multi-reference alignment (:func:`reassign_by_alignment`);
- :mod:`.unsupervised`: pseudo-label training + re-clustering (:func:`unsupervised_subdivision`);
- :mod:`.evaluate`: ARI, NMI, purity / recall per class, map agreement;
- :mod:`.jobs`: :func:`run_subdivide` behind ``cryomine subdivide``.
"""

from cryomine_core.subdivide.cluster import ClusterResult, cluster_features, reduce_features, select_clusters
from cryomine_core.subdivide.evaluate import clustering_scores, map_agreement
from cryomine_core.subdivide.features import model_features, network_features, penultimate_layer, rif_features
from cryomine_core.subdivide.jobs import run_subdivide
from cryomine_core.subdivide.reassign import Reassignment, reassign_by_alignment
from cryomine_core.subdivide.refine import ClusterAverages, cluster_averages, merge_similar, split_poorly_aligned
from cryomine_core.subdivide.settings import SubdivideSettings
from cryomine_core.subdivide.unsupervised import UnsupervisedResult, unsupervised_subdivision

__all__ = ["ClusterAverages", "ClusterResult", "Reassignment", "UnsupervisedResult", "cluster_averages",
           "cluster_features", "clustering_scores", "map_agreement", "merge_similar", "model_features",
           "network_features", "penultimate_layer", "reassign_by_alignment", "reduce_features", "rif_features",
           "run_subdivide", "SubdivideSettings", "select_clusters", "split_poorly_aligned", "unsupervised_subdivision"]
