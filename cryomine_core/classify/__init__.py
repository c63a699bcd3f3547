"""Supervised subtomogram classification over particle tables (Che et al. 2018).

- :func:`train_classifier` (``cryomine classify train``) and :func:`predict_table`
  (``cryomine classify predict``);
- :func:`load_classifier` / :func:`save_classifier`: the ``model.pt`` file;
- :class:`RifSvmClassifier`: the rotation-invariant-feature + RBF-SVM baseline.
"""

from cryomine_core.classify.labels import MIN_PER_CLASS, SPLIT, stratified_split, table_labels
from cryomine_core.classify.model_file import load_classifier, read_classifier_file, save_classifier
from cryomine_core.classify.predicting import UNKNOWN, predict_table
from cryomine_core.classify.rif_svm import RifSvmClassifier
from cryomine_core.classify.training import train_classifier

__all__ = ["MIN_PER_CLASS", "SPLIT", "UNKNOWN", "RifSvmClassifier", "load_classifier", "predict_table",
           "read_classifier_file", "save_classifier", "stratified_split", "table_labels", "train_classifier"]
