"""A device model's spread calibrated on measured random archs (split conformal prediction: Papadopoulos et al.
2002, Vovk et al. 2005), fitted with the samples and judged by leave-one-out.

The K samples an adaptation fits are chosen where the prior is least sure and are fitted closely, so they do not show
how far off the other archs are: the leave-one-out factor (``prior.LeaveOneOut``) leaves the 1-sd coverage of a
held-out NB201 device anywhere in 0.3-1.0 (issue #16). Random archs measured besides them do: fitted with the samples,
each one's leave-one-out error in units of its predictive sd (z) is what an unmeasured arch's error is, and the
spread factor becomes their ``CALIBRATION_QUANTILE`` quantile, so ``std_ms`` covers about that share of the archs.
Archs a search picked (the fastest, say) calibrate archs like those. On the HELP devices held out of pretraining,
with R = 20 random archs besides K: cells (device, K) with 1-sd coverage in 0.58-0.78 and 2-sd >= 0.90 21 / 19 / 3 ->
38 / 45 / 9 (device held out / family held out / cross-family), and the share within ±10% rises (family held out at
K=5 0.80 -> 0.89; ``bench/calibration_samples.py``).
"""

from __future__ import annotations

import numpy as np

CALIBRATION_QUANTILE = 0.75
"""The 1-sd coverage aimed at: inside 0.58-0.78 and high enough that heavy-tailed errors leave 2 sd >= 0.90 (as
``prior.TAIL_MARGIN`` aims)."""
MIN_CALIBRATION_ARCHS = 10
"""Fewer archs leave the quantile too loose."""
MAX_CALIBRATION_ARCHS = 200
"""Calibrating archs an adaptation takes at most (a seeded random subset of more)."""


def check_calibration_archs(calibration: int) -> int:
    """``calibration`` when it is an R an adaptation or ``eval transfer`` takes: 0 (none), or
    ``MIN_CALIBRATION_ARCHS``..``MAX_CALIBRATION_ARCHS`` (fewer leave the quantile too loose); else ``ValueError``."""
    if calibration and not MIN_CALIBRATION_ARCHS <= calibration <= MAX_CALIBRATION_ARCHS:
        raise ValueError(
            f"calibration must be 0 or between {MIN_CALIBRATION_ARCHS} and {MAX_CALIBRATION_ARCHS} archs, "
            f"got {calibration}"
        )
    return calibration


def calibration_factor(z: np.ndarray) -> float:
    """The factor on the predictive sd that puts ``CALIBRATION_QUANTILE`` of the calibrating archs within 1 sd: the
    quantile of their |z| [n] (leave-one-out errors in units of their predictive sd)."""
    return float(np.quantile(np.abs(np.asarray(z, dtype=np.float64)), CALIBRATION_QUANTILE))


def calibrating_mask(calibrating, k: int) -> np.ndarray | None:
    """``calibrating`` (None, or [k] booleans: which of k samples calibrate) as a bool array; None when fewer than
    ``MIN_CALIBRATION_ARCHS`` do (the samples' own leave-one-out factor stays); ``ValueError`` for another length."""
    if calibrating is None:
        return None
    mask = np.asarray(calibrating, dtype=bool).reshape(-1)
    if len(mask) != k:
        raise ValueError(f"{k} samples but {len(mask)} calibrating flags")
    return mask if mask.sum() >= MIN_CALIBRATION_ARCHS else None
