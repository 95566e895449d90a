"""Additive per-arch features: what a sum-of-op-costs latency model sees (torch-free).

Columns: intercept, disconnected flag, live op counts (4 non-``none`` ops), dead op counts, and per-edge live op
one-hots (6 edges x 4 ops). Live = on an input-output path; mobile runtimes skip the rest.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from latfarm.predictor.nb201 import EDGES, OPS, live_edges, official_ops_table

NUM_OP_TYPES = len(OPS) - 1  # non-"none" ops


def _names() -> list[str]:
    ops = OPS[1:]
    names = ["intercept", "disconnected"]
    names += [f"live_{o}" for o in ops] + [f"dead_{o}" for o in ops]
    names += [f"edge{k}_{o}" for k in range(len(EDGES)) for o in ops]
    return names


FEATURE_NAMES: tuple[str, ...] = tuple(_names())


def arch_features(ops: np.ndarray) -> np.ndarray:
    """[n, 6] op vectors -> [n, len(FEATURE_NAMES)] float64 additive features."""
    ops = np.asarray(ops, dtype=np.int64)
    out = np.zeros((len(ops), len(FEATURE_NAMES)))
    out[:, 0] = 1.0
    for row, cell in enumerate(ops):
        live = live_edges(cell)
        out[row, 1] = not any(live)
        for k, op in enumerate(cell):
            if op == 0:
                continue
            if live[k]:
                out[row, 2 + op - 1] += 1
                out[row, 2 + 2 * NUM_OP_TYPES + k * NUM_OP_TYPES + op - 1] = 1
            else:
                out[row, 2 + NUM_OP_TYPES + op - 1] += 1
    return out


@lru_cache(maxsize=1)
def all_features() -> np.ndarray:
    """Additive features of all 15,625 archs, by official NB201 index (read-only)."""
    feats = arch_features(official_ops_table())
    feats.setflags(write=False)
    return feats
