"""NB201 network costs (against the torch network) and the cost-only hypothesis of adaptation."""

import numpy as np
import pytest
from scipy import stats

from latfarm.predictor import nb201, nb201_costs
from latfarm.predictor.fbnet_features import COSTS
from latfarm.predictor.features import FEATURE_NAMES, all_features
from latfarm.predictor.nb201_costs import (
    COST_NAMES,
    POOL_READS,
    UNITS,
    all_costs,
    cost_hypothesis,
    network_costs,
    pruned_op_basis,
    unit_costs,
    unit_counts,
    with_costs,
)
from latfarm.predictor.nb201_structure import PATH_COLUMNS
from latfarm.predictor.pretrain import pretrain
from latfarm.predictor.prior import Prior, posterior
from tests.torch_costs import torch_macs

DEAD_CONV = nb201.parse("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|none~1|none~2|")
KEPT_CONV = nb201.parse("|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|none~1|none~2|")
ZERO_FED = nb201.parse("|none~0|+|none~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_1x1~2|")


def _torch_costs(ops, runtime: str) -> tuple[int, int]:
    """(multiply-accumulates, parameters) of the torch network (reference graph) by forward hooks; ``used``: the
    modules of edges the pruning runtime does not run (``nb201.run_edges``) are not counted."""
    import torch

    from latfarm.predictor import network

    net = network.build(ops)
    runs = nb201.run_edges(ops) if runtime == "used" else (True,) * len(nb201.EDGES)
    skipped = {
        id(module)
        for cell in net.cells
        if isinstance(cell, network.Cell)
        for k, (src, dst) in enumerate(nb201.EDGES)
        if not runs[k]
        for module in cell.edges[f"{src}_{dst}"].modules()
    }
    params = 0
    for module in net.modules():
        if id(module) in skipped or not isinstance(module, torch.nn.Conv2d | torch.nn.Linear | torch.nn.BatchNorm2d):
            continue
        params += sum(p.numel() for p in module.parameters(recurse=False))
    macs = torch_macs(net, 32, skipped)
    return macs, params


@pytest.mark.parametrize("runtime", ["every", "used"])
def test_analytic_flops_and_params_match_the_torch_network(runtime):
    rng = np.random.default_rng(0)
    archs = [tuple(rng.integers(0, 5, 6)) for _ in range(4)] + [(3,) * 6, (0,) * 6, DEAD_CONV, KEPT_CONV, ZERO_FED]
    costs = network_costs(np.asarray(archs), runtime)
    for ops, row in zip(archs, costs, strict=True):
        assert (row[1], row[3]) == _torch_costs(ops, runtime)


def test_a_runtime_that_drops_dead_ops_runs_fewer_kernels():
    every, used = unit_counts(DEAD_CONV, "every"), unit_counts(DEAD_CONV, "used")
    assert every[UNITS.index("nor_conv_3x3")] == 3 and used[UNITS.index("nor_conv_3x3")] == 0
    assert every[UNITS.index("none")] == 2 and used[UNITS.index("none")] == 0
    assert every[UNITS.index("add")] == 3 and used[UNITS.index("add")] == 0  # output: the skip alone
    # the none on (2, 3) keeps the one conv entering node 2
    assert unit_counts(KEPT_CONV, "used")[UNITS.index("nor_conv_3x3")] == 1
    # zero-fed ops run; node 1 has no input left: one multiply by 0
    zero_fed = unit_counts(ZERO_FED, "used")
    assert zero_fed[UNITS.index("avg_pool_3x3")] == 1 and zero_fed[UNITS.index("zero_node")] == 1
    cut = unit_counts((0,) * 6, "used")
    assert cut.sum() == cut[UNITS.index("zero_node")] == 1  # the output is x * 0
    with pytest.raises(ValueError, match="runtime"):
        unit_counts(DEAD_CONV, "jit")


def test_an_average_pool_reads_its_window():
    n = 16 * 32 * 32
    memory = COSTS.index("memory")
    units = unit_costs(16, 32)
    assert units[UNITS.index("avg_pool_3x3"), memory] == (POOL_READS + 1) * n  # 9 reads per output, 1 write
    assert units[UNITS.index("none"), memory] == 2 * n
    # so memory traffic is no rescaled kernel count: a cell of pools moves more than one of 1x1 convs, though it
    # launches fewer kernels
    pools, convs = network_costs(np.array([(4,) * 6, (2,) * 6]), "every")
    assert pools[memory] > convs[memory] and pools[0] < convs[0]


def test_all_costs_are_normalised_by_their_mean():
    costs = all_costs()
    assert costs.shape == (nb201.NUM_ARCHS, len(COST_NAMES))
    np.testing.assert_allclose(costs.mean(0), 1.0)
    ops = nb201.official_ops_table()
    every, used = network_costs(ops, "every"), network_costs(ops, "used")
    assert np.all(used <= every) and np.mean(used[:, 0] < every[:, 0]) > 0.6


def _launch_bound_sources(rng) -> dict[str, np.ndarray]:
    kernels = all_costs()[:, COST_NAMES.index("cost_every_kernels")]
    live = all_features()[:, 2:6]
    noise = np.exp(0.01 * rng.standard_normal((4, nb201.NUM_ARCHS)))
    return {f"gpu{i}": (3 + i) * (kernels + live @ rng.uniform(0, 0.05, 4)) * noise[i] for i in range(4)}


def test_a_flop_bound_device_among_launch_bound_sources_is_ranked_from_5_samples():
    # Sources: launch-bound devices (a cost per kernel plus small op costs of their own); the target's latency is
    # its FLOPs with dead ops dropped, a family none of them is. The cost-only hypothesis ranks it from 5 samples.
    rng = np.random.default_rng(0)
    predictor = pretrain(_launch_bound_sources(rng), epochs=0)
    assert (
        predictor.phi.shape[1]
        == len(predictor.prior.mean)
        == all_features().shape[1] + len(COST_NAMES) + len(PATH_COLUMNS)
    )
    lat = 1e-7 * network_costs(nb201.official_ops_table(), "used")[:, 1] * np.exp(0.01 * rng.standard_normal(15625))
    covered = []
    for seed in range(3):  # sample draws; the spread's coverage is judged over all three
        idx = predictor.select_samples(5, seed=seed)
        rest = np.setdiff1d(np.arange(nb201.NUM_ARCHS), idx)
        mean, std = predictor.adapt(idx, lat[idx]).predict(rest)
        assert stats.spearmanr(mean, lat[rest])[0] > 0.98
        assert np.median(np.abs(mean / lat[rest] - 1)) < 0.025
        covered.append(np.mean(np.abs(mean - lat[rest]) <= 2 * std))
        alone = posterior(predictor.prior, predictor.phi[idx], lat[idx], 10.0)
        assert stats.spearmanr(predictor.phi[rest] @ alone.mean, lat[rest])[0] < 0.96
    assert np.mean(covered) > 0.9  # the spread covers the errors


def test_the_cost_hypothesis_centres_on_one_cost_each():
    n = len(FEATURE_NAMES)
    base = Prior(np.ones(n), np.eye(n), np.full(n, 0.5), np.array([1e-3]), np.zeros(1))
    prior = with_costs(base)
    size = n + len(COST_NAMES)
    assert prior.mean.tolist() == [1] * n + [0] * len(COST_NAMES) and prior.spread[n:].tolist() == [0] * 6
    np.testing.assert_array_equal(prior.cov[:n, :n], base.cov)
    assert np.all(prior.cov[:n, n:] == 0) and np.all(np.diag(prior.cov)[n:] > 0)
    hypothesis = cost_hypothesis(prior, np.ones((4, size)), np.arange(n, size))
    np.testing.assert_array_equal(hypothesis.centres, np.eye(size)[n:])
    assert all(np.all(cov[n:, :n] == 0) for cov in hypothesis.covs)  # no cross-device covariance
    assert len(hypothesis.covs) == 9 * len(nb201_costs.PRUNED_OP_GRID)


def test_the_pruned_op_basis_counts_what_a_runtime_that_drops_dead_ops_runs():
    ops = nb201.official_ops_table()
    size = len(FEATURE_NAMES) + 5
    counted = all_features() @ pruned_op_basis(size)[: len(FEATURE_NAMES)]
    used = np.stack([unit_counts(cell, "used") for cell in ops])
    np.testing.assert_array_equal(counted[:, 0], 1.0)
    np.testing.assert_array_equal(counted[:, 1], [nb201.is_disconnected(cell) for cell in ops])
    np.testing.assert_array_equal(counted[:, 2:], used[:, [UNITS.index(op) for op in nb201.OPS[1:]]])
    assert np.all(pruned_op_basis(size)[len(FEATURE_NAMES) :] == 0)


def _pruned_device(rng) -> np.ndarray:
    """A runtime that drops dead ops with its own op costs (ms per op: a skip 2, it copies its input; 1x1 conv 0.5,
    3x3 conv 7, pool 0.5: no network cost's ratios), 3 ms of fixed layers, ~0 when the cell is cut off, 10% noise."""
    ops = nb201.official_ops_table()
    used = np.stack([unit_counts(cell, "used") for cell in ops])[:, [UNITS.index(op) for op in nb201.OPS[1:]]]
    cut = np.array([nb201.is_disconnected(cell) for cell in ops])
    lat = np.where(cut, 0.05, 3.0 + used @ [2.0, 0.5, 7.0, 0.5])
    return lat * np.exp(0.1 * rng.standard_normal(len(lat)))


def test_a_pruning_runtime_with_its_own_op_costs_is_ranked_from_5_samples(monkeypatch):
    # Sources: launch-bound devices that run every op; the target drops dead ops and its op costs are neither
    # theirs nor any one network cost's: the pruned-op component of the cost-only hypothesis fits them.
    rng = np.random.default_rng(0)
    predictor = pretrain(_launch_bound_sources(rng), epochs=0)
    lat = _pruned_device(rng)

    def spearman() -> float:
        scores = []
        for seed in range(3):
            idx = predictor.select_samples(5, seed=seed)
            rest = np.setdiff1d(np.arange(nb201.NUM_ARCHS), idx)
            scores.append(stats.spearmanr(predictor.adapt(idx, lat[idx]).predict(rest)[0], lat[rest])[0])
        return float(np.mean(scores))

    with_component = spearman()
    monkeypatch.setattr(nb201_costs, "PRUNED_OP_GRID", (0.0,))
    assert with_component > 0.9 and with_component > spearman() + 0.02
