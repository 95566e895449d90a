"""A device model's spread calibrated on measured random archs (split conformal prediction: Papadopoulos et al.
2002, Vovk et al. 2005), fitted with the samples and judged by leave-one-out.

The K samples an adaptation fits are chosen where the prior is least sure and are fitted closely, so they do not show
how far off the other archs are: the leave-one-out factor (``prior.LeaveOneOut``) leaves the 1-sd coverage of a
held-out NB201 device anywhere in 0.3-1.0 (issue #16). Random archs measured besides them do: fitted with the samples,
each one's leave-one-out error in units of its predictive sd (z) is what an unmeasured arch's error is, and the
spread factor is set from their z so that ``std_ms`` puts the share of archs like them that issue #16 asks
(``COVERAGE_BAND`` within 1 sd, ``MIN_COVERAGE_2SD`` within 2; ``calibration_factor``). Archs a search picked (the
fastest, say) calibrate archs like those. On the HELP devices held out of pretraining, with R = 50 random archs
besides K: (device, K) cells in the band 21 / 19 / 3 -> 55 / 52 / 10 (device held out / family held out /
cross-family, of 63 / 63 / 12), and the share within ±10% rises (family held out at K=5 0.80 -> 0.91;
``bench/calibration_samples.py``).
"""

from __future__ import annotations

import numpy as np

COVERAGE_BAND = (0.58, 0.78)
"""The share of archs a calibrated spread puts within 1 sd (issue #16: 0.68 ± 0.10 on every device)."""
MIN_COVERAGE_2SD = 0.90
"""The share it puts within 2 sd at least (a Gaussian spread 0.95; heavier tails leave less at a right 1-sd share)."""
MIN_CALIBRATION_ARCHS = 10
"""Fewer archs leave the quantiles too loose."""
MAX_CALIBRATION_ARCHS = 200
"""Calibrating archs an adaptation takes at most (a seeded random subset of more)."""


def check_calibration_archs(calibration: int) -> int:
    """``calibration`` when it is an R an adaptation or ``eval transfer`` takes: 0 (none), or
    ``MIN_CALIBRATION_ARCHS``..``MAX_CALIBRATION_ARCHS`` (fewer leave the quantiles too loose); else ``ValueError``."""
    if calibration and not MIN_CALIBRATION_ARCHS <= calibration <= MAX_CALIBRATION_ARCHS:
        raise ValueError(
            f"calibration must be 0 or between {MIN_CALIBRATION_ARCHS} and {MAX_CALIBRATION_ARCHS} archs, "
            f"got {calibration}"
        )
    return calibration


def calibration_factor(z: np.ndarray) -> float:
    """The factor on the predictive sd from the calibrating archs' |z| [n] (leave-one-out errors in units of their
    predictive sd): the geometric middle of the factors that put their own shares where ``COVERAGE_BAND`` and
    ``MIN_COVERAGE_2SD`` ask, between the least putting ``COVERAGE_BAND[0]`` of them within 1 sd and
    ``MIN_COVERAGE_2SD`` within 2 and the most putting at most ``COVERAGE_BAND[1]`` within 1 sd (quantiles of |z|).
    The middle leaves room for the error of shares estimated from n archs (about sqrt(p (1 - p) / n): 0.06 at
    n = 50), which a quantile aimed near an edge (0.75) does not; for Gaussian z it is about their sd (1-sd share
    0.685). Where tails so heavy make the least exceed the most, the middle misses both bounds by the same ratio."""
    a = np.abs(np.asarray(z, dtype=np.float64))
    low = max(np.quantile(a, COVERAGE_BAND[0]), np.quantile(a, MIN_COVERAGE_2SD) / 2)
    return float(np.sqrt(low * np.quantile(a, COVERAGE_BAND[1])))


def calibrating_mask(calibrating, k: int) -> np.ndarray | None:
    """``calibrating`` (None, or [k] booleans: which of k samples calibrate) as a bool array; None when fewer than
    ``MIN_CALIBRATION_ARCHS`` do (the samples' own leave-one-out factor stays); ``ValueError`` for another length."""
    if calibrating is None:
        return None
    mask = np.asarray(calibrating, dtype=bool).reshape(-1)
    if len(mask) != k:
        raise ValueError(f"{k} samples but {len(mask)} calibrating flags")
    return mask if mask.sum() >= MIN_CALIBRATION_ARCHS else None
