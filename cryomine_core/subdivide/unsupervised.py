"""Unsupervised subdivision in the manner of DISCA (Zeng et al. 2023): no labelled data at all.

Round 0 clusters the rotation-invariant features (:func:`~.features.rif_features`). Each later
round trains a small network (``compact3d`` by default) from scratch on the current cluster labels
as pseudo-labels with the shared training loop (:func:`cryomine_core.train.fit`), takes its
penultimate-layer features of every subtomogram and clusters them again (PCA + GMM/k-means, ``k``
by BIC unless fixed). Rounds stop after ``rounds`` or once the labels agree with the previous
round's at ``ARI >= stop_ari``. Clusters of a single pseudo-class cannot train a classifier: a
round that finds one cluster ends the iteration. A network that does not reproduce its own
pseudo-labels (accuracy on the whole set below ``min_fit_accuracy``: too few items or epochs to
learn from) has not learnt features worth trusting: its round is rejected (recorded in the
history) and the previous round's clustering is kept.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.metrics import adjusted_rand_score
from torch.utils.data import Dataset, Subset

from cryomine_core.models import build_model
from cryomine_core.subdivide.cluster import ClusterResult, cluster_features
from cryomine_core.subdivide.features import network_features, rif_features
from cryomine_core.train import TrainConfig, fit

log = logging.getLogger("cryomine")


class _Relabelled(Dataset):
    """``dataset`` with its labels replaced by ``labels``."""

    def __init__(self, dataset: Dataset, labels: np.ndarray):
        self.dataset, self.labels = dataset, np.asarray(labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i):
        x, _, idx = self.dataset[i]
        return x, int(self.labels[i]), idx


@dataclass
class UnsupervisedResult:
    """Output of :func:`unsupervised_subdivision`.

    Attributes:
        clustering: the last round's :class:`~.cluster.ClusterResult`.
        features: ``(N, F)`` the last round's features.
        model: the network of the last accepted round (None if no round was accepted).
        history: per round ``{"round", "features", "n_clusters", "ari_vs_previous", "fit_accuracy",
            "rejected", "seconds"}``.
    """

    clustering: ClusterResult
    features: np.ndarray
    model: torch.nn.Module | None
    history: list = field(default_factory=list)


def unsupervised_subdivision(dataset: Dataset, box: int, *, n_clusters: int | None = None, max_clusters: int = 10,
                             rounds: int = 3, epochs: int = 5, architecture: str = "compact3d", width: float = 0.5,
                             train_config: TrainConfig | None = None, method: str = "gmm", covariance: str = "diag",
                             n_components: int = 8, stop_ari: float = 0.98, device="cpu", batch_size: int = 64,
                             seed: int = 0, initial_features: np.ndarray | None = None,
                             val_fraction: float = 0.1, min_fit_accuracy: float = 0.9) -> UnsupervisedResult:
    """Iterate pseudo-label training and clustering over ``dataset`` (items ``(1, box, box, box)``).

    Args:
        n_clusters: fixed ``k``, or None to choose it by BIC every round.
        rounds: network-training rounds after the first clustering.
        epochs: training epochs per round.
        architecture, width: network of :mod:`cryomine_core.models`.
        train_config: training settings (default: batch 32, lr 0.01, ``epochs``, no early stopping,
            class-balanced sampling).
        initial_features: features of round 0 (default: rotation-invariant features).
        val_fraction: items held out per round to pick the best epoch (the loop's validation).
    """
    history = []
    t0 = time.perf_counter()
    feats = initial_features if initial_features is not None else rif_features(dataset, batch_size=batch_size)
    res = cluster_features(feats, n_clusters, max_clusters=max_clusters, method=method, covariance=covariance,
                           n_components=n_components, seed=seed)
    history.append({"round": 0, "features": "rif" if initial_features is None else "given",
                    "n_clusters": res.n_clusters, "ari_vs_previous": None, "seconds": time.perf_counter() - t0})
    model = None
    n = len(dataset)
    rng = np.random.default_rng(seed)
    for r in range(1, int(rounds) + 1):
        if res.n_clusters < 2:
            log.info("unsupervised round %d: one cluster, nothing to learn; stopping", r)
            break
        t1 = time.perf_counter()
        cfg = train_config or TrainConfig(epochs=int(epochs), batch_size=32, lr=0.01, patience=0, balance="sample",
                                          seed=seed + r, log_interval_s=1e9)
        net = build_model(architecture, res.n_clusters, box, width=width)
        relabelled = _Relabelled(dataset, res.labels)
        order = rng.permutation(n)
        n_val = int(round(val_fraction * n)) if n >= 20 else 0
        val = Subset(relabelled, order[:n_val].tolist()) if n_val else None
        train = Subset(relabelled, order[n_val:].tolist())
        fit(net, train, val, cfg, device=device, n_classes=res.n_clusters)
        outputs: list = []
        new_feats = network_features(net, dataset, device=device, batch_size=batch_size, logits=outputs)
        fit_acc = float((torch.cat(outputs).argmax(1).numpy() == res.labels).mean())
        if fit_acc < min_fit_accuracy:
            history.append({"round": r, "features": architecture, "n_clusters": res.n_clusters, "ari_vs_previous": None,
                            "fit_accuracy": fit_acc, "rejected": True, "seconds": time.perf_counter() - t1})
            log.warning("unsupervised round %d: the network reproduces only %.0f %% of its pseudo-labels; round "
                        "rejected, keeping the previous clustering (more subtomograms or --epochs help)", r,
                        100 * fit_acc)
            break
        feats, model = new_feats, net
        prev = res.labels
        res = cluster_features(feats, n_clusters, max_clusters=max_clusters, method=method, covariance=covariance,
                               n_components=n_components, seed=seed + r)
        agreement = float(adjusted_rand_score(prev, res.labels))
        history.append({"round": r, "features": architecture, "n_clusters": res.n_clusters,
                        "ari_vs_previous": agreement, "fit_accuracy": fit_acc, "rejected": False,
                        "seconds": time.perf_counter() - t1})
        log.info("unsupervised round %d: %d clusters, ARI vs previous round %.3f", r, res.n_clusters, agreement)
        if agreement >= stop_ari:
            break
    return UnsupervisedResult(clustering=res, features=feats, model=model, history=history)
