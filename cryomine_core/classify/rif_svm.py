"""RIF-SVM baseline (Che et al. 2018, Table 1): rotation-invariant spherical-harmonic features
(:mod:`cryomine_core.features`) and an RBF support-vector machine (scikit-learn)."""

from __future__ import annotations

import time

import numpy as np
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from cryomine_core.features import rotation_invariant_features


class RifSvmClassifier:
    """Features -> standardisation -> RBF SVM (one-vs-one, ``C``, ``gamma='scale'``).

    Args:
        l_max, n_shells, source, cross_shells: feature settings (:func:`rotation_invariant_features`;
            the paper's baseline is the per-shell power alone, ``cross_shells=False``).
        C, gamma: SVM settings.
    """

    def __init__(self, *, l_max: int = 8, n_shells: int = 14, source: str = "both", cross_shells: bool = False,
                 C: float = 10.0, gamma: str | float = "scale", seed: int = 0):
        self.l_max, self.n_shells, self.source, self.cross_shells = l_max, n_shells, source, bool(cross_shells)
        self.pipeline = make_pipeline(StandardScaler(), SVC(C=C, gamma=gamma, kernel="rbf", random_state=seed))
        self.feature_seconds = 0.0
        self.n_featurised = 0

    def features(self, volumes) -> np.ndarray:
        t0 = time.perf_counter()
        f = rotation_invariant_features(volumes, l_max=self.l_max, n_shells=self.n_shells, source=self.source,
                                        cross_shells=self.cross_shells)
        self.feature_seconds += time.perf_counter() - t0
        self.n_featurised += len(f)
        return f.cpu().numpy().astype(np.float64)

    def fit(self, volumes, labels) -> RifSvmClassifier:
        self.pipeline.fit(self.features(volumes), np.asarray(labels))
        return self

    def predict(self, volumes) -> np.ndarray:
        return self.pipeline.predict(self.features(volumes))
