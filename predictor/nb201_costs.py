"""Device-agnostic costs of the built NB201 network (torch-free), under two runtimes.

The network is ``network.py``'s at its defaults (16 channels, 10 classes, 5 cells a stage, 32 x 32 input, batch 1):
stem, three stages of cells, a reduction block between stages, head. Costs per ``fbnet_features.COSTS``: kernels
launched, multiply-accumulates (convolutions and the classifier), activation memory traffic (elements read and
written by every kernel; an average pool reads its 3 x 3 window for each output: ``POOL_READS``) and parameters; a
conv + BN follows ``fbnet_features.conv_bn``. ``RUNTIMES``:
- ``every``: the reference network as built: every edge runs (``none`` as a multiply by 0), every node sums all of
  its incoming edges.
- ``used``: a runtime that drops ops it finds unused (pixel3's): only the ops ``nb201.run_edges`` keeps run (those
  on a path to the output, zero-fed ones included, and some a ``none`` reads), a node sums those, and a needed node
  with none of them is one multiply by 0.
A skip connection launches nothing; an average pool is one kernel, a ReLU-Conv-BN three.
"""

from __future__ import annotations

import itertools
from functools import lru_cache

import numpy as np

from latfarm.predictor.blr import COST_BROAD_GRID, COST_MASS, COST_SPREAD_GRID
from latfarm.predictor.fbnet_features import COSTS, conv_bn
from latfarm.predictor.features import FEATURE_NAMES
from latfarm.predictor.mixture import Hypothesis
from latfarm.predictor.nb201 import EDGES, NUM_NODES, OPS, official_ops_table, run_edges
from latfarm.predictor.prior import Prior, extended, unit_variance

RUNTIMES = ("every", "used")
CHANNELS, CLASSES, CELLS_PER_STAGE, RESOLUTION = 16, 10, 5, 32
UNITS = (*OPS, "add", "zero_node")
"""What a cell's cost is counted in: one op of each kind (``none`` = a multiply by 0), one addition of two
feature maps, one node that is a multiply by 0 (``used`` runtime)."""
BOUND_BY = ("kernels", "flops", "memory")
"""The costs that are features (parameters follow FLOPs: correlation 1.00 over the 15,625 archs)."""
COST_NAMES: tuple[str, ...] = tuple(f"cost_{runtime}_{name}" for runtime in RUNTIMES for name in BOUND_BY)
COSTS_REVISION = 3
"""Bumped when the costs' definition changes (2: ``POOL_READS``; 3: ``used`` runs ``nb201.run_edges``): part of the
NB201 predictor's version, so device states and prediction tables computed under other costs are rebuilt."""
POOL_READS = 9
"""Elements an average pool reads per output (its 3 x 3 window): memory-bound runtimes pay for them (batch-256
GPUs: a pool costs 0.7 of a 3x3 conv, against 0.04 at batch 1-32). Counted as one read, the memory traffic is a
rescaled kernel count (Spearman 0.759 against 0.759 on 1080ti_256) and no cost combination fits such a device
(least squares over the 6 costs, all 15,625 archs: 0.815 against 1.000 with the window; docs/predictor.md)."""


def _elementwise(n: int, operands: int) -> np.ndarray:
    """One kernel reading ``operands`` and writing one map of ``n`` elements."""
    return np.array([1, 0, (operands + 1) * n, 0], dtype=np.float64)


def _relu_conv_bn(c_in: int, c_out: int, kernel: int, size: int, stride: int) -> np.ndarray:
    return _elementwise(c_in * size * size, 1) + conv_bn(c_in, c_out, kernel, size, stride, 1, False)


def unit_costs(channels: int, size: int) -> np.ndarray:
    """[len(UNITS), len(COSTS)]: each unit's costs in a cell of ``channels`` at ``size`` x ``size``."""
    n = channels * size * size
    table = {
        "none": _elementwise(n, 1),
        "skip_connect": np.zeros(len(COSTS)),
        "nor_conv_1x1": _relu_conv_bn(channels, channels, 1, size, 1),
        "nor_conv_3x3": _relu_conv_bn(channels, channels, 3, size, 1),
        "avg_pool_3x3": _elementwise(n, POOL_READS),
        "add": _elementwise(n, 2),
        "zero_node": _elementwise(n, 1),
    }
    return np.stack([table[u] for u in UNITS])


def _reduction(c_in: int, size: int) -> np.ndarray:
    """NB201's ResNet block from ``c_in`` to 2 ``c_in`` channels, ``size`` to ``size / 2``."""
    c_out, half = 2 * c_in, size // 2
    out = _relu_conv_bn(c_in, c_out, 3, size, 2) + _relu_conv_bn(c_out, c_out, 3, half, 1)
    out = out + [1, 0, c_in * (size * size + half * half), 0]  # 2x2 average pool of the shortcut
    out = out + [1, c_out * half * half * c_in, (c_in + c_out) * half * half, c_out * c_in]  # its 1x1 conv
    return out + _elementwise(c_out * half * half, 2)


@lru_cache(maxsize=1)
def _fixed_and_stages() -> tuple[np.ndarray, np.ndarray]:
    """(costs of stem, reduction blocks and head [len(COSTS)], unit costs of all cells [len(UNITS), len(COSTS)])."""
    fixed = conv_bn(3, CHANNELS, 3, RESOLUTION, 1, 1, False)
    cells = np.zeros((len(UNITS), len(COSTS)))
    c, size = CHANNELS, RESOLUTION
    for stage in range(3):
        if stage:
            fixed = fixed + _reduction(c, size)
            c, size = 2 * c, size // 2
        cells += CELLS_PER_STAGE * unit_costs(c, size)
    n = c * size * size
    fixed = fixed + _elementwise(n, 1) + [0, 0, 0, 2 * c] + _elementwise(n, 1)  # last BN (its weights), ReLU
    fixed = fixed + [1, 0, n + c, 0] + [1, c * CLASSES, c + CLASSES, (c + 1) * CLASSES]  # global pool, classifier
    return fixed, cells


def unit_counts(ops, runtime: str) -> np.ndarray:
    """[len(UNITS)]: how many of each unit one cell (6-op vector) runs under ``runtime`` (one of ``RUNTIMES``)."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
    counts = np.zeros(len(UNITS))
    runs = [True] * len(EDGES) if runtime == "every" else list(run_edges(ops))
    for k, op in enumerate(ops):
        counts[op] += runs[k]
    read = {s for k, (s, _) in enumerate(EDGES) if runs[k]}  # nodes an edge that runs reads
    for node in range(1, NUM_NODES):
        # a node's sum runs under "every", when a running edge reads it, and always at the output node
        if runtime == "every" or node in read or node == NUM_NODES - 1:
            terms = sum(runs[k] for k, (_, d) in enumerate(EDGES) if d == node)
            counts[UNITS.index("add")] += max(terms - 1, 0)
            counts[UNITS.index("zero_node")] += terms == 0
    return counts


def network_costs(ops: np.ndarray, runtime: str) -> np.ndarray:
    """[n, len(COSTS)] whole-network costs of op vectors [n, 6] under ``runtime``."""
    fixed, cells = _fixed_and_stages()
    counts = np.stack([unit_counts(cell, runtime) for cell in np.asarray(ops, dtype=np.int64).reshape(-1, len(EDGES))])
    return fixed + counts @ cells


@lru_cache(maxsize=1)
def all_costs() -> np.ndarray:
    """[15625, len(COST_NAMES)] costs of every arch by official index, under each runtime, each divided by its
    mean over all archs (a head of one cost predicts mean 1, like a source device's head; read-only)."""
    ops = official_ops_table()
    columns = [COSTS.index(name) for name in BOUND_BY]
    costs = np.hstack([network_costs(ops, runtime)[:, columns] for runtime in RUNTIMES])
    costs = costs / costs.mean(0)
    costs.setflags(write=False)
    return costs


COST_JITTER = 1e-4
"""Prior variance of each cost weight under the cross-device prior (the source heads carry none)."""


def with_costs(prior: Prior) -> Prior:
    """``prior`` over the base features extended by the ``COST_NAMES`` columns (appended last): weight 0,
    variance ``COST_JITTER``, no spread (the cost-only hypothesis, ``cost_hypothesis``, weighs them)."""
    return extended(prior, len(COST_NAMES), COST_JITTER)


PRUNED_OP_GRID = (0.0, 1.0)
"""Weights of the pruned-runtime op-cost component of the cost-only hypothesis (``pruned_op_basis``; 0: off)."""


def pruned_op_basis(size: int) -> np.ndarray:
    """[size, 2 + op types]: the directions a runtime that drops dead ops (``used``, pixel3's) is additive in, over
    features whose first columns are ``features.FEATURE_NAMES``: the intercept, the disconnected flag, and one cost
    per op type shared by its live and zero-fed ops (dead ones cost nothing)."""
    names = ["intercept", "disconnected"]
    groups = [[name] for name in names] + [[f"{kind}_{op}" for kind in ("live", "zerofed")] for op in OPS[1:]]
    basis = np.zeros((size, len(groups)))
    for j, group in enumerate(groups):
        basis[[FEATURE_NAMES.index(name) for name in group], j] = 1.0
    return basis


def cost_hypothesis(prior: Prior, phi_s: np.ndarray, columns: np.ndarray, mass: float = COST_MASS) -> Hypothesis:
    """The cost-only hypothesis for samples ``phi_s`` [K, F] (``features.FEATURE_NAMES`` first, the ``COST_NAMES``
    columns at positions ``columns``) with prior probability ``mass`` (default ``blr``'s):
    latency = one cost of the network under one runtime (launch-, compute- or memory-bound), a small spread on the
    other features, broad weights on the costs and, weighed by ``PRUNED_OP_GRID``, free per-op costs of a runtime
    that drops dead ops (``pruned_op_basis``: its op-cost ratios differ from what the costs count; pixel3 at K=5
    Spearman 0.934 -> 0.961 with it, docs/predictor.md), with ``blr``'s grids."""
    size = phi_s.shape[1]
    centres = np.eye(size)[columns]
    broad = unit_variance(phi_s, np.eye(size)[:, columns])
    pruned = unit_variance(phi_s, pruned_op_basis(size))
    grid = itertools.product(COST_SPREAD_GRID, COST_BROAD_GRID, PRUNED_OP_GRID)
    return Hypothesis.shared(centres, mass, (np.diag(prior.spread), broad, pruned), grid)
