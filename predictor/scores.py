"""Scores of predicted against measured latencies."""

from __future__ import annotations

import numpy as np
from scipy import stats


def score(pred_ms: np.ndarray, true_ms: np.ndarray) -> dict[str, float]:
    """Spearman rho, Kendall tau and the share of predictions within +-10% of the truth."""
    pred_ms, true_ms = np.asarray(pred_ms, dtype=np.float64), np.asarray(true_ms, dtype=np.float64)
    return {
        "spearman": float(stats.spearmanr(pred_ms, true_ms)[0]),
        "kendall": float(stats.kendalltau(pred_ms, true_ms)[0]),
        "acc10": float(np.mean(np.abs(pred_ms - true_ms) <= 0.1 * np.abs(true_ms))),
    }
