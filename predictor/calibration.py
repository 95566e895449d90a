"""A device model's spread calibrated on measured archs it was not fitted to (split conformal prediction: Papadopoulos
et al. 2002, Vovk et al. 2005).

The K samples an adaptation fits are chosen where the prior is least sure and are fitted closely, so they do not show
how far off the other archs are: the leave-one-out factor (``prior.LeaveOneOut``) leaves the 1-sd coverage of a
held-out NB201 device anywhere in 0.3-1.0 (issue #16). Archs of the device measured besides the samples do: with
their errors in units of the model's sd (z, the model's own spread factor taken out), the factor becomes their
``CALIBRATION_QUANTILE`` quantile, so ``std_ms`` covers about that share of archs like them. Random archs calibrate
every arch; archs a search picked (the fastest, say) calibrate archs like those. On the HELP devices held out of
pretraining, cells (device, K) with 1-sd coverage in 0.58-0.78 and 2-sd >= 0.90: 21 of 63 without, 47 with 20 random
archs, 58 with 100 (``bench/calibration_samples.py``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

CALIBRATION_QUANTILE = 0.75
"""The 1-sd coverage aimed at: inside 0.58-0.78 and high enough that heavy-tailed errors leave 2 sd >= 0.90 (as
``prior.TAIL_MARGIN`` aims)."""
MIN_CALIBRATION_ARCHS = 10
"""Fewer archs leave the quantile too loose (10: cells in band 21 -> 36 of 63; 20: 47)."""
MAX_CALIBRATION_ARCHS = 200
"""Archs an adaptation keeps for calibration (a seeded random subset of more): 100 put 58 of 63 cells in band."""


def calibration_factor(mean_ms: np.ndarray, std_ms: np.ndarray, true_ms: np.ndarray) -> float:
    """The factor on ``std_ms`` [n] that puts ``CALIBRATION_QUANTILE`` of the errors |``mean_ms`` - ``true_ms``| within
    1 sd (their z quantile); ``ValueError`` for fewer than ``MIN_CALIBRATION_ARCHS`` or unequal lengths."""
    mean, std, true = (np.asarray(a, dtype=np.float64).reshape(-1) for a in (mean_ms, std_ms, true_ms))
    if not len(mean) == len(std) == len(true):
        raise ValueError(f"{len(mean)} predictions, {len(std)} sds and {len(true)} latencies")
    if len(true) < MIN_CALIBRATION_ARCHS:
        raise ValueError(f"calibration needs at least {MIN_CALIBRATION_ARCHS} archs, got {len(true)}")
    z = np.abs(mean - true) / np.maximum(std, 1e-12)
    return float(np.quantile(z, CALIBRATION_QUANTILE))


def calibrated(model: Any, archs: Any, latencies_ms: Any) -> Any:
    """``model`` (a ``DeviceModel`` of either space) with its spread factor set by ``calibration_factor`` on ``archs``
    (what its ``predict`` takes) and their measured ``latencies_ms`` [n]; the means do not move. Returns the model."""
    mean, std = model.predict(archs)
    factor = model.posterior.std_factor
    model.posterior = replace(model.posterior, std_factor=calibration_factor(mean, std / factor, latencies_ms))
    return model
