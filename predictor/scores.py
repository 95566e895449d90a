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


def coverage(pred_ms: np.ndarray, std_ms: np.ndarray, true_ms: np.ndarray) -> dict[str, float]:
    """Calibration of a predicted spread: the share of archs whose error is within 1 (2) predicted std; a Gaussian
    predictive distribution that is right covers 0.683 (0.954)."""
    err = np.abs(np.asarray(pred_ms, dtype=np.float64) - np.asarray(true_ms, dtype=np.float64))
    std = np.asarray(std_ms, dtype=np.float64)
    return {"coverage_1sd": float(np.mean(err <= std)), "coverage_2sd": float(np.mean(err <= 2 * std))}
