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


GAUSSIAN_1SD = 0.6827
"""Share of a Gaussian within 1 std of its mean."""


def coverage(pred_ms: np.ndarray, std_ms: np.ndarray, true_ms: np.ndarray) -> dict[str, float]:
    """Calibration of a predicted spread: the share of archs whose error is within 1 (2) predicted std (a Gaussian
    predictive distribution that is right covers 0.683 (0.954)), and ``std_factor``: the multiplier of every std
    that would make the 1-std share 0.683 (the 0.683 quantile of |error| / std; 1 = calibrated, < 1 = too wide)."""
    err = np.abs(np.asarray(pred_ms, dtype=np.float64) - np.asarray(true_ms, dtype=np.float64))
    std = np.asarray(std_ms, dtype=np.float64)
    return {
        "coverage_1sd": float(np.mean(err <= std)),
        "coverage_2sd": float(np.mean(err <= 2 * std)),
        "std_factor": float(np.quantile(err / np.maximum(std, 1e-12), GAUSSIAN_1SD)),
    }
