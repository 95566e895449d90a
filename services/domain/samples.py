"""The adapt loop's rule for K, the archs an adaptation measures: dependency-free, so the client commands check
``--samples`` in a client-only install."""

from __future__ import annotations

from latfarm.services.core.errors import InvalidArgument

MIN_SAMPLES, MAX_SAMPLES, DEFAULT_SAMPLES = 3, 200, 10  # K archs an adaptation measures


class AdaptError(InvalidArgument):
    """A request the adapt loop cannot take; the message is safe to show a client."""


def check_samples(samples: int) -> int:
    """``samples`` when it is a K an adaptation takes (``MIN_SAMPLES``..``MAX_SAMPLES``); else ``AdaptError``."""
    if not MIN_SAMPLES <= samples <= MAX_SAMPLES:
        raise AdaptError(f"samples must be between {MIN_SAMPLES} and {MAX_SAMPLES}, got {samples}")
    return samples
