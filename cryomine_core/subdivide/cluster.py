"""Dimension reduction and clustering of per-subtomogram feature vectors.

Pipeline (:func:`cluster_features`): features ``(N, F)`` -> per-dimension standardisation ->
PCA to ``d`` components (one common scale) -> Gaussian mixture (default) or k-means, with the number of
clusters chosen by the Bayesian information criterion over ``1..max_clusters`` unless fixed.

Bounded memory: above ``minibatch_threshold`` items (or with ``minibatch=True``) the scaler and an
:class:`~sklearn.decomposition.IncrementalPCA` are fitted chunk by chunk, the model choice (BIC)
is made on a random subsample of at most ``selection_sample`` items, the final model is fitted
on at most ``fit_sample`` items (GMM) or streamed through :class:`~sklearn.cluster.MiniBatchKMeans`
(k-means), and every item is assigned chunk by chunk. ``features`` may then be a
``numpy.memmap``: only ``chunk_size`` rows are read at once, plus the reduced ``(N, d)`` array.

For k-means the BIC is that of a mixture of spherical Gaussians with one shared variance at the
k-means centres (the X-means criterion), so both methods choose ``k`` the same way.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.decomposition import PCA, IncrementalPCA
from sklearn.mixture import GaussianMixture
from sklearn.preprocessing import StandardScaler

from cryomine_core.errors import CryomineError

log = logging.getLogger("cryomine")

METHODS = ("gmm", "kmeans")
COVARIANCES = ("full", "diag", "spherical", "tied")


@dataclass
class ClusterResult:
    """Output of :func:`cluster_features` (``N`` items, ``K`` clusters, ``d`` PCA components).

    Attributes:
        labels: ``(N,)`` int, 0-based cluster of each item; clusters are numbered by decreasing size.
        scores: ``(N,)`` confidence in [0, 1]: the GMM posterior of the assigned cluster, or for
            k-means ``1 - d1 / d2`` (nearest vs second-nearest centre distance).
        n_clusters: ``K``.
        method: ``'gmm'`` or ``'kmeans'``.
        criterion: ``{k: BIC}`` of every candidate ``k`` tried (empty when ``k`` was fixed).
        embedding: ``(N, d)`` float32 reduced (PCA, one common scale) features; columns 0-1 give the 2-D scatter.
        explained_variance: ``(d,)`` fraction of the standardised variance of each component.
        minibatch: whether the bounded-memory path was used.
    """

    labels: np.ndarray
    scores: np.ndarray
    n_clusters: int
    method: str
    criterion: dict = field(default_factory=dict)
    embedding: np.ndarray | None = None
    explained_variance: np.ndarray | None = None
    minibatch: bool = False

    @property
    def sizes(self) -> list[int]:
        return np.bincount(self.labels, minlength=self.n_clusters).astype(int).tolist()


def _chunks(n: int, size: int):
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def check_features(features, what: str = "features") -> None:
    """Raise CryomineError unless ``features`` is a finite 2-D array with at least one row."""
    if features.ndim != 2:
        raise CryomineError(f"{what}: expected a 2-D array (items, dimensions), got shape {tuple(features.shape)}.")
    if features.shape[0] == 0:
        raise CryomineError(f"{what}: no items to cluster (the particle table is empty). Give a table with "
                            "subtomograms.")
    for sl in _chunks(features.shape[0], 65536):
        bad = ~np.isfinite(np.asarray(features[sl]))
        if bad.any():
            row = sl.start + int(np.argwhere(bad)[0][0])
            raise CryomineError(f"{what}: item {row + 1} has NaN or infinite values. Check that subtomogram "
                                "(a NaN volume or a failed extraction) and remove or re-extract it.")


def _scale(variances: np.ndarray) -> float:
    """One factor for all components: the RMS standard deviation of the kept components (keeps their ratios)."""
    return float(np.sqrt(max(float(np.mean(variances)), 1e-12)))


def reduce_features(features, n_components: int = 8, *, minibatch: bool = False, chunk_size: int = 8192,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Standardise ``features (N, F)`` per dimension and project on the first PCA components.

    Returns ``(reduced (N, d) float32, explained variance ratio (d,))`` with
    ``d = min(n_components, F, N)`` (``N - 1`` when ``N > 1``). With ``minibatch`` both the scaler
    and the PCA are fitted chunk by chunk (``chunk_size`` rows, at least ``d``). The components are
    not whitened (noise directions would weigh as much as the signal's); all are divided by one
    factor, their RMS standard deviation, so that covariance regularisation is scale-free.
    """
    n, f = features.shape
    d = max(1, min(int(n_components), f, n - 1 if n > 1 else 1))
    scaler = StandardScaler()
    if not minibatch:
        x = scaler.fit_transform(np.asarray(features, dtype=np.float64))
        pca = PCA(n_components=d, whiten=False, random_state=seed)
        out = pca.fit_transform(x)
        ratio = pca.explained_variance_ratio_.astype(np.float32)
        return (out / _scale(pca.explained_variance_)).astype(np.float32), ratio
    chunk = max(int(chunk_size), d)
    for sl in _chunks(n, chunk):
        scaler.partial_fit(np.asarray(features[sl], dtype=np.float64))
    ipca = IncrementalPCA(n_components=d, whiten=False, batch_size=chunk)
    for sl in _chunks(n, chunk):
        part = scaler.transform(np.asarray(features[sl], dtype=np.float64))
        if part.shape[0] >= d:
            ipca.partial_fit(part)
    out = np.empty((n, d), dtype=np.float32)
    scale = _scale(ipca.explained_variance_)
    for sl in _chunks(n, chunk):
        out[sl] = ipca.transform(scaler.transform(np.asarray(features[sl], dtype=np.float64))) / scale
    return out, ipca.explained_variance_ratio_.astype(np.float32)


def _kmeans_bic(x: np.ndarray, centres: np.ndarray) -> float:
    """BIC (lower is better) of spherical Gaussians with a shared variance at ``centres``."""
    n, d = x.shape
    k = centres.shape[0]
    d2 = ((x[:, None, :] - centres[None]) ** 2).sum(-1)
    lab = d2.argmin(1)
    sse = float(d2[np.arange(n), lab].sum())
    var = max(sse / max(n * d, 1), 1e-12)
    counts = np.bincount(lab, minlength=k).astype(np.float64)
    nz = counts[counts > 0]
    loglik = float((nz * np.log(nz / n)).sum()) - 0.5 * n * d * math.log(2 * math.pi * var) - 0.5 * n * d
    n_params = k * d + (k - 1) + 1
    return -2.0 * loglik + n_params * math.log(n)


def _fit(x: np.ndarray, k: int, method: str, covariance: str, seed: int, n_init: int):
    if method == "gmm":
        gmm = GaussianMixture(n_components=k, covariance_type=covariance, n_init=n_init, random_state=seed,
                              reg_covar=1e-3, max_iter=300, init_params="k-means++")
        gmm.fit(x)
        return gmm, float(gmm.bic(x))
    km = KMeans(n_clusters=k, n_init=n_init, random_state=seed)
    km.fit(x)
    return km, _kmeans_bic(x, km.cluster_centers_)


def _kmeans_scores(x: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = np.sqrt(((x[:, None, :] - centres[None]) ** 2).sum(-1))
    lab = d.argmin(1)
    if centres.shape[0] == 1:
        return lab, np.ones(len(x), dtype=np.float32)
    part = np.sort(d, axis=1)
    return lab, (1.0 - part[:, 0] / np.maximum(part[:, 1], 1e-12)).astype(np.float32)


def _min_size(d: int, method: str, covariance: str) -> int:
    """Fewest members a cluster needs for its parameters to be estimable (full covariance: d + 1)."""
    return max(3, d + 1) if method == "gmm" and covariance == "full" else 3


def select_clusters(x: np.ndarray, max_clusters: int, *, method: str = "gmm", covariance: str = "diag",
                    seed: int = 0, n_init: int = 3, min_clusters: int = 1) -> tuple[int, dict]:
    """Number of clusters in ``[min_clusters, max_clusters]`` with the lowest BIC on ``x (N, d)``.

    Returns ``(k, {k: BIC})``. A candidate whose fit leaves a cluster with fewer members than its
    parameters need (``d + 1`` for full covariance, else 3) is degenerate: its BIC is recorded as
    ``inf`` and it is not chosen.
    """
    curve = {}
    need = _min_size(x.shape[1], method, covariance)
    top = min(int(max_clusters), x.shape[0] // need)
    for k in range(max(1, int(min_clusters)), max(top, 1) + 1):
        model, bic = _fit(x, k, method, covariance, seed, n_init)
        sizes = np.bincount(model.predict(x), minlength=k)
        curve[k] = bic if k == 1 or sizes.min() >= need else float("inf")
        log.debug("k=%d BIC %.1f, smallest cluster %d", k, bic, int(sizes.min()))
    best = min(curve, key=curve.get)
    return best, curve


def relabel_by_size(labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-np.bincount(labels, minlength=k), kind="stable")
    mapping = np.empty(k, dtype=np.int64)
    mapping[order] = np.arange(k)
    return mapping[labels], order


def cluster_features(features, n_clusters: int | None = None, *, max_clusters: int = 10, method: str = "gmm",
                     covariance: str = "diag", n_components: int = 8, seed: int = 0, n_init: int = 3,
                     minibatch: bool | str = "auto", minibatch_threshold: int = 50_000, chunk_size: int = 8192,
                     selection_sample: int = 20_000, fit_sample: int = 200_000) -> ClusterResult:
    """Cluster ``features (N, F)`` (numpy array or memmap) into ``n_clusters`` (None: chosen by BIC).

    Args:
        n_clusters: fixed number of clusters, or None to choose in ``1..max_clusters`` by BIC.
        max_clusters: largest candidate ``k`` for the automatic choice.
        method: ``'gmm'`` (Gaussian mixture, DISCA) or ``'kmeans'``.
        covariance: GMM covariance type (``full``, ``diag``, ``spherical``, ``tied``).
        n_components: PCA components kept (capped by ``F`` and ``N - 1``).
        seed: random seed (same seed, same labels).
        n_init: restarts of each fit (the best likelihood / inertia is kept).
        minibatch: ``True``, ``False`` or ``'auto'`` (on above ``minibatch_threshold`` items).
        chunk_size: rows read at once on the bounded-memory path.
        selection_sample, fit_sample: items used for the BIC scan / the final GMM fit on that path.

    Raises:
        CryomineError: empty or non-finite features, an unknown method, fewer items than clusters.
    """
    if method not in METHODS:
        raise CryomineError(f"clustering method '{method}' is unknown; use one of {', '.join(METHODS)}.")
    if covariance not in COVARIANCES:
        raise CryomineError(f"covariance '{covariance}' is unknown; use one of {', '.join(COVARIANCES)}.")
    check_features(features)
    n = int(features.shape[0])
    if n_clusters is not None:
        if int(n_clusters) < 1:
            raise CryomineError(f"--clusters {n_clusters}: give at least 1 (or 'auto').")
        if n < 2 * int(n_clusters):
            raise CryomineError(f"--clusters {n_clusters}: the set has only {n} subtomograms; at least "
                                f"{2 * int(n_clusters)} (2 per cluster) are needed. Ask for at most {max(1, n // 2)} "
                                "clusters or give more subtomograms.")
    elif int(max_clusters) < 1:
        raise CryomineError(f"--max-clusters {max_clusters}: give at least 1.")
    if n < 2:
        raise CryomineError(f"only {n} subtomogram(s): clustering needs at least 2. Give more subtomograms.")
    big = (n > minibatch_threshold) if minibatch == "auto" else bool(minibatch)
    x, explained = reduce_features(features, n_components, minibatch=big, chunk_size=chunk_size, seed=seed)
    rng = np.random.default_rng(seed)
    sel = x if not big or n <= selection_sample else x[np.sort(rng.choice(n, selection_sample, replace=False))]
    curve: dict = {}
    if n_clusters is None:
        k, curve = select_clusters(sel, max_clusters, method=method, covariance=covariance, seed=seed, n_init=n_init)
    else:
        k = int(n_clusters)
    labels = np.empty(n, dtype=np.int64)
    scores = np.empty(n, dtype=np.float32)
    if method == "gmm":
        fit_x = x if not big or n <= fit_sample else x[np.sort(rng.choice(n, fit_sample, replace=False))]
        model, _ = _fit(fit_x, k, "gmm", covariance, seed, n_init)
        for sl in _chunks(n, chunk_size):
            p = model.predict_proba(x[sl])
            labels[sl] = p.argmax(1)
            scores[sl] = p.max(1)
    else:
        if big:
            model = MiniBatchKMeans(n_clusters=k, random_state=seed, batch_size=min(chunk_size, 4096), n_init=n_init)
            model.fit(sel)  # k-means++ start on the sample, then streamed updates
            for _ in range(2):
                for sl in _chunks(n, chunk_size):
                    model.partial_fit(x[sl])
            centres = model.cluster_centers_
        else:
            centres = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit(x).cluster_centers_
        for sl in _chunks(n, chunk_size):
            labels[sl], scores[sl] = _kmeans_scores(x[sl], centres)
    empty = np.bincount(labels, minlength=k) == 0
    if empty.any():  # a component that owns no item: renumber the occupied ones
        keep = np.flatnonzero(~empty)
        labels = np.searchsorted(keep, labels)
        k = len(keep)
    labels, _ = relabel_by_size(labels, k)
    log.info("clustered %d items (%d PCA components) into %d %s clusters%s: sizes %s", n, x.shape[1], k, method,
             " (k by BIC)" if n_clusters is None else "", np.bincount(labels, minlength=k).tolist())
    return ClusterResult(labels=labels, scores=scores, n_clusters=k, method=method,
                         criterion={int(a): float(b) for a, b in curve.items()}, embedding=x,
                         explained_variance=explained, minibatch=big)
