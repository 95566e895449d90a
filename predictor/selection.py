"""Which archs to measure: greedy maximum posterior variance (uncertainty sampling, as BRP-NAS's iterative
data selection) under the cross-device prior, over a seeded random candidate pool (trials differ by seed)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

POOL_SIZE = 8000


def select_by_variance(
    phi: np.ndarray,
    cov: np.ndarray,
    noise: float,
    k: int,
    *,
    seed: int = 0,
    exclude: Sequence[int] | np.ndarray = (),
    pool_size: int = POOL_SIZE,
) -> list[int]:
    """K distinct row indices of ``phi``, each the most uncertain given the ones chosen before it.

    ``cov`` is the current covariance of the head (prior or posterior); every pick is conditioned on as if
    measured with ``noise`` variance (the variance after a measurement does not depend on its value).
    """
    n = len(phi)
    excluded = np.zeros(n, dtype=bool)
    excluded[np.asarray(list(exclude), dtype=np.int64)] = True
    allowed = np.flatnonzero(~excluded)
    if not 0 <= k <= len(allowed):
        raise ValueError(f"cannot select {k} archs: {len(allowed)} are available")
    rng = np.random.default_rng(seed)
    pool = rng.choice(allowed, size=min(max(pool_size, k), len(allowed)), replace=False)
    cand = phi[pool]
    s = np.array(cov, dtype=np.float64)
    taken = np.zeros(len(pool), dtype=bool)
    chosen: list[int] = []
    for _ in range(k):
        var = ((cand @ s) * cand).sum(1)
        var[taken] = -np.inf
        j = int(np.argmax(var))
        taken[j] = True
        chosen.append(int(pool[j]))
        sx = s @ cand[j]
        s = s - np.outer(sx, sx) / (cand[j] @ sx + noise)
    return chosen


def select_random(n: int, k: int, *, seed: int = 0, exclude: Sequence[int] | np.ndarray = ()) -> list[int]:
    """K distinct random indices in 0..n-1, avoiding ``exclude`` (the baseline strategy)."""
    allowed = np.setdiff1d(np.arange(n), np.asarray(list(exclude), dtype=np.int64))
    if not 0 <= k <= len(allowed):
        raise ValueError(f"cannot select {k} archs: {len(allowed)} are available")
    return [int(i) for i in np.random.default_rng(seed).choice(allowed, size=k, replace=False)]


def k_values(text: str) -> list[int]:
    """The K values of ``eval transfer``'s and the transfer benches' ``--samples``: comma-separated integers >= 1,
    ``"5,10,20"`` -> ``[5, 10, 20]``; else ``ValueError`` saying so in one line."""
    try:
        ks = [int(part) for part in text.split(",")]
    except ValueError:
        ks = []
    if not ks or min(ks) < 1:
        raise ValueError(f"K values must be comma-separated integers >= 1 (like 5,10,20), got {text!r}")
    return ks
