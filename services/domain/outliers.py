"""Few-shot fits robust to a bogus sample: before the predictor adapts to a device's measured samples, drop those
whose ratio to the unadapted prior's estimate is far from the other samples' ratios.

A device scales the prior's shape by one factor, give or take the prior's error; a sample off that factor by more
than ``MAX_FACTOR`` (in either direction; measured with ``bench/outlier_fit.py`` on the HELP devices) is not a
latency of this device under these conditions. At most ``MAX_SHARE`` of the samples are dropped: with more, the
prior rather than the samples would be the odd one out.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MAX_FACTOR = 10.0  # HELP: but pixel3's glitched rows, every arch lies within 7.9x of its device's median ratio
MAX_SHARE = 0.25


def inliers(predictor, indices: Sequence[int] | np.ndarray, latencies_ms: Sequence[float] | np.ndarray) -> np.ndarray:
    """A boolean mask over the samples: True for those to fit, False for the outliers to leave out."""
    values = np.asarray(latencies_ms, dtype=np.float64)
    keep = np.ones(len(values), dtype=bool)
    if len(values) < 3:  # no majority to judge by
        return keep
    prior, _ = predictor.adapt([], []).predict(np.asarray(indices, dtype=np.int64))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ratio = np.log(values) - np.log(np.maximum(prior, 1e-12))
    off = np.abs(ratio - np.median(ratio[np.isfinite(ratio)]))
    off[~np.isfinite(off)] = np.inf
    for worst in np.argsort(-off)[: int(MAX_SHARE * len(values))]:
        if off[worst] <= np.log(MAX_FACTOR):
            break
        keep[worst] = False
    return keep


def robust_adapt(
    predictor,
    indices: Sequence[int] | np.ndarray,
    latencies_ms: Sequence[float] | np.ndarray,
    calibrating: Sequence[bool] | None = None,
):
    """``predictor.adapt`` on the ``inliers`` only (``calibrating`` [K]: the samples measured to calibrate its
    spread); returns (model, archs left out). Archs are reference positions [K] or encodings [K, length], as the
    predictor takes them; those left out come back as ints or index lists."""
    idx, values = np.asarray(indices, dtype=np.int64), np.asarray(latencies_ms, dtype=np.float64)
    keep = inliers(predictor, idx, values)
    mask = None if calibrating is None else np.asarray(calibrating, dtype=bool)[keep]
    return predictor.adapt(idx[keep], values[keep], mask), idx[~keep].tolist()
