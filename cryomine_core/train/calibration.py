"""Temperature scaling (Guo et al. 2017): one scalar T fitted on held-out logits so that
``softmax(logits / T)`` gives calibrated confidences; the predicted class does not change."""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import minimize_scalar


def nll(logits, labels, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``labels`` under ``softmax(logits / temperature)``."""
    z = torch.as_tensor(logits, dtype=torch.float64) / float(temperature)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    return float(torch.nn.functional.cross_entropy(z, y))


def fit_temperature(logits, labels, bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """Temperature minimising the NLL of ``labels`` (bounded search in log T).

    Returns 1.0 when there are no logits to fit on.
    """
    z = torch.as_tensor(logits, dtype=torch.float64)
    if z.numel() == 0:
        return 1.0
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)

    def objective(log_t: float) -> float:
        return float(torch.nn.functional.cross_entropy(z / np.exp(log_t), y))

    res = minimize_scalar(objective, bounds=(np.log(bounds[0]), np.log(bounds[1])), method="bounded",
                          options={"xatol": 1e-4})
    t = float(np.exp(res.x))
    return t if objective(np.log(t)) <= objective(0.0) else 1.0


def expected_calibration_error(probabilities, labels, n_bins: int = 15) -> float:
    """ECE: mean |accuracy - confidence| over equal-width confidence bins, weighted by bin size."""
    p = torch.as_tensor(probabilities, dtype=torch.float64)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    if p.numel() == 0:
        return 0.0
    conf, pred = p.max(dim=1)
    correct = (pred == y).double()
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (conf > lo) & (conf <= hi)
        if sel.any():
            ece += float(sel.double().mean() * (correct[sel].mean() - conf[sel].mean()).abs())
    return ece
