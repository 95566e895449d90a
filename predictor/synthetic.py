"""Synthetic NB201 devices unlike the measured ones: a stress set for few-shot adaptation (out of distribution).

Each device assigns a cost to every (edge, op) pair: a per-op base cost of its kind, jittered per op and per edge,
then combines a cell's costs as a sum (additive devices) or as the longest input-output path (``critical_path``:
parallel branches overlap), adds a fixed overhead, and applies multiplicative noise and optional quantisation
(``quantum_ms=1`` = whole milliseconds, as phone runtimes report). Dead ops cost nothing on devices that prune
them; disconnected cells then cost only the overhead.
"""

from __future__ import annotations

import numpy as np

from latfarm.predictor.nb201 import EDGES, NUM_NODES, live_edges, official_ops_table

# Relative base cost of skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3 per device kind.
KINDS: dict[str, tuple[float, float, float, float]] = {
    "conv_heavy": (0.01, 1.0, 6.0, 0.02),  # systolic accelerator: pooling and skips nearly free
    "pool_heavy": (0.05, 0.5, 1.0, 3.0),  # pooling falls back to a slow path
    "memory_bound": (1.0, 1.0, 1.6, 1.2),  # every op moves the same tensor: a skip costs as much as a conv1x1
    "critical_path": (0.1, 0.6, 1.0, 0.5),  # GPU-like costs, but parallel branches overlap
    "overhead": (0.1, 0.6, 1.0, 0.5),  # GPU-like costs under a large fixed overhead
}
OVERHEAD_SHARE = {"overhead": 3.0}
"""Fixed overhead as a multiple of the mean cell cost (others: 0.3)."""


def _longest_path(cost: np.ndarray, ops: np.ndarray) -> np.ndarray:
    """Per arch, the largest summed cost of an input-output path (edges with op ``none`` absent; -inf if none)."""
    dist = [np.zeros(len(ops))] + [np.full(len(ops), -np.inf) for _ in range(NUM_NODES - 1)]
    for k, (src, dst) in enumerate(EDGES):
        via = np.where(ops[:, k] > 0, dist[src] + cost[:, k], -np.inf)
        dist[dst] = np.maximum(dist[dst], via)
    return dist[-1]


def synthetic_device(
    kind: str,
    *,
    seed: int = 0,
    noise: float = 0.02,
    quantum_ms: float = 0.0,
    mean_ms: float = 10.0,
    jitter: float = 0.3,
) -> np.ndarray:
    """Latencies (ms, 15,625 by official NB201 index) of one random device of ``kind`` (a key of ``KINDS``).

    ``noise`` = std of the multiplicative log-normal noise; ``jitter`` = log-std of per-op and per-edge cost factors.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown synthetic device kind {kind!r}; choose from {sorted(KINDS)}")
    rng = np.random.default_rng(seed)
    ops = official_ops_table().astype(np.int64)
    base = np.asarray(KINDS[kind]) * np.exp(jitter * rng.standard_normal(4))
    table = np.zeros((len(EDGES), 5))  # [edge, op], op 0 = none costs nothing
    table[:, 1:] = base * np.exp(0.5 * jitter * rng.standard_normal((len(EDGES), 4)))
    cost = table[np.arange(len(EDGES)), ops]  # [n, 6]
    prune_dead = bool(rng.integers(2))
    if prune_dead:
        live = np.array([live_edges(cell) for cell in ops], dtype=bool)
        cost = np.where(live, cost, 0.0)
    cell = np.maximum(_longest_path(cost, ops), 0.0) + 0.1 * cost.sum(1) if kind == "critical_path" else cost.sum(1)
    overhead = OVERHEAD_SHARE.get(kind, 0.3) * cell.mean()
    lat = overhead + cell
    lat *= mean_ms / lat.mean()
    lat *= np.exp(noise * rng.standard_normal(len(lat)))
    if quantum_ms > 0:
        lat = np.maximum(np.round(lat / quantum_ms), 1.0) * quantum_ms
    return lat


def stress_set(seed: int = 0, copies: int = 2) -> dict[str, np.ndarray]:
    """``copies`` random devices per kind, clean (2% noise) and phone-like (5% noise, whole ms, 15 ms mean)."""
    out = {}
    for kind in KINDS:
        for copy in range(copies):
            s = seed * 1000 + copy * 10 + list(KINDS).index(kind)
            out[f"{kind}_{copy}"] = synthetic_device(kind, seed=s)
            out[f"{kind}_{copy}_q"] = synthetic_device(kind, seed=s, noise=0.05, quantum_ms=1.0, mean_ms=15.0)
    return out
