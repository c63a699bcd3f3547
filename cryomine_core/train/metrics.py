"""Classification figures: confusion matrix, accuracy, per-class counts."""

from __future__ import annotations

import numpy as np


def confusion_matrix(true, pred, n_classes: int) -> np.ndarray:
    """``(n_classes, n_classes)`` counts; rows are true classes, columns predicted ones."""
    t = np.asarray(true, dtype=np.int64)
    p = np.asarray(pred, dtype=np.int64)
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (t, p), 1)
    return cm


def accuracy(true, pred) -> float:
    t = np.asarray(true)
    return float((t == np.asarray(pred)).mean()) if t.size else float("nan")


def confusion_summary(true, pred, class_names: list[str]) -> dict:
    """JSON-ready: accuracy, matrix (rows true, columns predicted), class names, per-class recall and n."""
    cm = confusion_matrix(true, pred, len(class_names))
    n = cm.sum(axis=1)
    recall = np.where(n > 0, np.diag(cm) / np.maximum(n, 1), np.nan)
    return {"accuracy": accuracy(true, pred), "n": int(cm.sum()), "class_names": list(class_names),
            "matrix": cm.tolist(), "rows": "true class", "columns": "predicted class",
            "n_per_class": {c: int(k) for c, k in zip(class_names, n)},
            "recall_per_class": {c: (None if np.isnan(r) else float(r)) for c, r in zip(class_names, recall)}}
