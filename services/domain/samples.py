"""The adapt loop's rules for K, the archs an adaptation fits, and R, the random archs it measures to calibrate its
spread: numpy only, so the client commands check ``--samples`` and ``--calibrate`` in a client-only install."""

from __future__ import annotations

from latfarm.predictor.calibration import check_calibration_archs
from latfarm.services.core.errors import InvalidArgument

MIN_SAMPLES, MAX_SAMPLES, DEFAULT_SAMPLES = 3, 200, 10  # K archs an adaptation measures


class AdaptError(InvalidArgument):
    """A request the adapt loop cannot take; the message is safe to show a client."""


def check_samples(samples: int) -> int:
    """``samples`` when it is a K an adaptation takes (``MIN_SAMPLES``..``MAX_SAMPLES``); else ``AdaptError``."""
    if not MIN_SAMPLES <= samples <= MAX_SAMPLES:
        raise AdaptError(f"samples must be between {MIN_SAMPLES} and {MAX_SAMPLES}, got {samples}")
    return samples


def check_calibration(calibration: int) -> int:
    """``calibration`` when it is an R an adaptation takes (``predictor.calibration.check_calibration_archs``);
    else ``AdaptError``."""
    try:
        return check_calibration_archs(calibration)
    except ValueError as err:
        raise AdaptError(str(err)) from err
