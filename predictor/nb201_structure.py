"""NB201 structure block (torch-free): what a sum of per-op costs cannot express, and the hypothesis that weighs it.

The block (``STRUCTURE_NAMES``) per cell: the additions node 2 performs (as built, and only where node 2 reaches the
output: a runtime that drops dead ops keeps only those) and those at the output node (kernels a runtime launches
besides the ops), and over the live input-output paths (``nb201.PATHS``; a path is live when none of its ops is
``none``) the critical path (largest sum of ``PATH_OP_COST``: it sets the latency where parallel branches overlap),
the count of live paths and the most computing ops on one. Its ``PATH_COLUMNS`` enter the predictor's features at
adapt time after the checkpoint's columns, with weight 0 and no variance under the cross-device prior
(``with_structure``: the prior and sample selection are as before); the structure hypothesis
(``structure_hypothesis``) gives them broad weights, and the samples' marginal likelihood switches it on only where
a device shows the structure.

Adaptation then re-weighs the samples with the same two positions holding ``DEVICE_COLUMNS``: the critical path and
the sum of live ops under the device's own op costs (``device_op_costs``: the first posterior's mean prediction
projected on per-op-type live costs), not ``PATH_OP_COST``'s fixed ones.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from latfarm.predictor.features import FEATURE_NAMES, all_features
from latfarm.predictor.mixture import Hypothesis
from latfarm.predictor.nb201 import EDGES, OPS, PATHS, official_ops_table
from latfarm.predictor.prior import Prior, broad_basis, extended, unit_variance

PATH_OP_COST = np.array([0.0, 0.0, 1 / 9, 1.0, 1 / 9])
"""Device-agnostic cost of each op (by op id) on a path: a 3x3 conv 1, a 1x1 conv 1/9 (its share of the
multiply-accumulates), a 3x3 average pool 1/9 (weighted as a 1x1 conv: it reads the same 3x3 window as the 3x3
conv, and is bound by that memory traffic rather than by arithmetic), a skip 0."""
STRUCTURE_NAMES: tuple[str, ...] = (
    "sum2_built",  # node 2 adds two built (non-none) inputs
    "sum2_used",  # ... and node 2 reaches the output (a pruning runtime keeps that addition)
    "sums3",  # additions at the output node: its built inputs - 1 (0-2)
    "path_cost_max",  # critical path: the largest PATH_OP_COST sum over live input-output paths
    "live_paths",  # input-output paths of non-none ops (0-4)
    "op_chain",  # the most computing ops (convs and pools: not skips) on one live path (0-3)
)
PATH_COLUMNS = ("path_cost_max", "op_chain")
"""The block's columns in the predictor's features: the critical path. With the additions and the live-path count
too, the hypothesis fits noise on a whole-ms phone (essential_ph_1 cross-family at K=20: Spearman 0.931 -> 0.922)
and gains less on critical-path devices (docs/predictor-experiments.md)."""
DEVICE_COLUMNS = ("path_cost_device", "live_cost_device")
"""The structure columns of the second pass (``device_columns``), in the ``PATH_COLUMNS``' positions: the critical
path under the device's op costs, and the sum of its live ops' costs, which lets the hypothesis tell a device that
adds its ops (a critical path under costs fitted to the samples fits such a device too: memory-bound synthetic
devices in whole ms at K=20 Spearman 0.967 -> 0.940 with the path alone) from one that overlaps them."""
STRUCTURE_REVISION = 2
"""Bumped when the structure columns change (1: ``PATH_COLUMNS`` appended; 2: ``DEVICE_COLUMNS`` in a second pass):
part of the NB201 predictor's version with ``nb201_costs.COSTS_REVISION``, so device states and prediction tables
over other columns are rebuilt."""
_INTO = [[k for k, (_, d) in enumerate(EDGES) if d == node] for node in (2, 3)]
_FROM2 = [k for k, (s, _) in enumerate(EDGES) if s == 2]


def structure_features(ops: np.ndarray) -> np.ndarray:
    """[n, 6] op vectors -> [n, len(STRUCTURE_NAMES)] float64, unnormalised (counts and path costs)."""
    ops = np.asarray(ops, dtype=np.int64).reshape(-1, len(EDGES))
    built = ops > 0
    live = _live_paths(ops)
    computing = np.stack([(ops[:, p] > OPS.index("skip_connect")).sum(1) for p in PATHS], 1)
    sum2 = built[:, _INTO[0]].all(1)
    columns = [
        sum2,
        sum2 & built[:, _FROM2].any(1),
        np.maximum(built[:, _INTO[1]].sum(1) - 1, 0),
        critical_path(ops, PATH_OP_COST),
        live.sum(1),
        np.where(live, computing, 0).max(1),
    ]
    return np.stack(columns, 1).astype(np.float64)


@lru_cache(maxsize=1)
def all_structure() -> np.ndarray:
    """[15625, len(PATH_COLUMNS)] the ``PATH_COLUMNS`` of every arch by official index, each divided by its mean
    over all archs (read-only)."""
    block = structure_features(official_ops_table())[:, [STRUCTURE_NAMES.index(n) for n in PATH_COLUMNS]]
    block = block / block.mean(0)
    block.setflags(write=False)
    return block


def _live_paths(ops: np.ndarray) -> np.ndarray:
    """[n, paths]: is each input-output path (``nb201.PATHS``) of op vectors ``ops`` [n, 6] live (no ``none``)?"""
    return np.stack([(ops[:, p] > 0).all(1) for p in PATHS], 1)


def critical_path(ops: np.ndarray, op_cost: np.ndarray) -> np.ndarray:
    """[n] the largest sum of ``op_cost`` [5] (by op id, ``none`` first) over the live input-output paths of op vectors
    ``ops`` [n, 6]; 0 for a cell with none."""
    paths = np.stack([op_cost[ops[:, p]].sum(1) for p in PATHS], 1)
    return np.where(_live_paths(ops), paths, 0.0).max(1)


@lru_cache(maxsize=1)
def _ops_and_live_counts() -> tuple[np.ndarray, np.ndarray]:
    """(op vectors [15625, 6] by official index, their live op counts [15625, op types])."""
    counts = all_features()[:, [FEATURE_NAMES.index(f"live_{op}") for op in OPS[1:]]]
    return official_ops_table().astype(np.int64), counts


def device_columns(op_costs: np.ndarray) -> np.ndarray:
    """[15625, len(DEVICE_COLUMNS)] of every arch by official index under ``op_costs`` [op types] (>= 0, not all 0;
    by op id 1..4): the largest op-cost sum over its live input-output paths (0 when it has none) and the sum over its
    live ops, each divided by its mean over all archs. ``ValueError`` for costs that leave a column all 0."""
    costs = cost_vector(op_costs)
    ops, counts = _ops_and_live_counts()
    block = np.stack([critical_path(ops, np.concatenate([[0.0], costs])), counts @ costs], 1)
    mean = block.mean(0)
    if not np.all(mean > 0):
        raise ValueError(f"op costs {op_costs!r} give a structure column of all zeros")
    return block / mean


def cost_vector(op_costs: np.ndarray | Sequence[float]) -> np.ndarray:
    """``op_costs`` as a float64 [op types] vector; ``ValueError`` for another length or a negative cost."""
    costs = np.asarray(op_costs, dtype=np.float64).reshape(-1)
    if len(costs) != len(OPS) - 1 or not np.all(costs >= 0):
        raise ValueError(f"op costs must be {len(OPS) - 1} non-negative numbers, got {op_costs!r}")
    return costs


def op_cost_map(phi: np.ndarray) -> np.ndarray:
    """[op types, F]: the linear map from a head over ``phi`` [15625, F] (all archs by official index) to the
    per-op-type live costs of the least-squares fit of its predictions by the op-count features
    (``features.FEATURE_NAMES`` but the per-edge ones: intercept, disconnected flag, live, zero-fed and dead counts)."""
    columns = [i for i, name in enumerate(FEATURE_NAMES) if not name.startswith("edge")]
    live = [columns.index(FEATURE_NAMES.index(f"live_{op}")) for op in OPS[1:]]
    return np.linalg.pinv(all_features()[:, columns])[live] @ phi


def device_op_costs(cost_map: np.ndarray, head: np.ndarray) -> np.ndarray:
    """[op types] the device's op costs of a posterior mean ``head`` [F] (``op_cost_map``'s map ``cost_map``), negative
    ones as 0; ``PATH_OP_COST``'s when none is positive."""
    costs = np.maximum(cost_map @ head, 0.0)
    return costs if np.any(costs > 0) else PATH_OP_COST[1:].copy()


def with_structure(prior: Prior) -> Prior:
    """``prior`` extended by the ``PATH_COLUMNS`` (appended last): weight 0, variance 0, no spread (only
    ``structure_hypothesis`` weighs them)."""
    return extended(prior, len(PATH_COLUMNS))


STRUCTURE_MASS = 0.1
"""Prior probability of the structure hypothesis (the device's cost is not a plain sum of op costs); the other
hypotheses share the rest as they would without it. 0.05 gains less at K=5-10 on critical-path devices, 0.2 costs
pixel3 at K=5 and calibration cells (docs/predictor-experiments.md)."""
STRUCTURE_SPREAD_GRID = (0.03, 0.3, 3.0)
"""Weights of the per-feature spread (``Prior.spread``) around the cross-device mean under the structure hypothesis."""
STRUCTURE_OPS_GRID = (0.0, 0.1, 1.0)
"""Variances of its broad op-cost component (``prior.broad_basis``): a critical path changes what each op adds on
average, not only the structure columns (without it, critical-path devices gain about half as much at K=10)."""
STRUCTURE_BROAD_GRID = (0.1, 1.0)
"""Variances of its broad component over the structure columns, in (normalised mean latency)^2 per arch."""


def structure_hypothesis(prior: Prior, phi_s: np.ndarray, columns: np.ndarray) -> Hypothesis:
    """The structure hypothesis for samples ``phi_s`` [K, F] (``prior`` and features from ``with_structure``;
    ``columns``: the structure columns' positions): centred on the cross-device mean with its covariance, a spread
    and a broad op-cost component as the prior's own settings have (the same parts: ``mixture.weigh`` shares them),
    and broad weights on the structure columns (``unit_variance``: scaled to the samples' mean prediction); prior
    probability ``STRUCTURE_MASS``."""
    size = phi_s.shape[1]
    parts = (
        prior.cov,
        np.diag(prior.spread),
        unit_variance(phi_s, broad_basis(size)),
        unit_variance(phi_s, np.eye(size)[:, columns]),
    )
    grid = itertools.product((1.0,), STRUCTURE_SPREAD_GRID, STRUCTURE_OPS_GRID, STRUCTURE_BROAD_GRID)
    return Hypothesis.shared(prior.mean[None, :], STRUCTURE_MASS, parts, grid)
