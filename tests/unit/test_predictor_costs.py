"""NB201 network costs (against the torch network) and the cost-only hypothesis of adaptation."""

import numpy as np
import pytest
from scipy import stats

from latfarm.predictor import nb201
from latfarm.predictor.features import all_features
from latfarm.predictor.nb201_costs import (
    COST_NAMES,
    UNITS,
    all_costs,
    cost_hypothesis,
    network_costs,
    unit_counts,
    with_costs,
)
from latfarm.predictor.pretrain import pretrain
from latfarm.predictor.prior import Prior, posterior
from tests.torch_costs import torch_macs

DEAD_CONV = nb201.parse("|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|none~1|nor_conv_1x1~2|")
ZERO_FED = nb201.parse("|none~0|+|none~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_1x1~2|")


def _torch_costs(ops, runtime: str) -> tuple[int, int]:
    """(multiply-accumulates, parameters) of the torch network (reference graph) by forward hooks; ``used``: the
    modules of edges whose result never reaches a cell's output are not counted."""
    import torch

    from latfarm.predictor import network

    net = network.build(ops)
    runs = nb201.output_edges(ops) if runtime == "used" else (True,) * len(nb201.EDGES)
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
    archs = [tuple(rng.integers(0, 5, 6)) for _ in range(4)] + [(3,) * 6, (0,) * 6, DEAD_CONV, ZERO_FED]
    costs = network_costs(np.asarray(archs), runtime)
    for ops, row in zip(archs, costs, strict=True):
        assert (row[1], row[3]) == _torch_costs(ops, runtime)


def test_a_runtime_that_drops_dead_ops_runs_fewer_kernels():
    every, used = unit_counts(DEAD_CONV, "every"), unit_counts(DEAD_CONV, "used")
    assert every[UNITS.index("nor_conv_3x3")] == 2 and used[UNITS.index("nor_conv_3x3")] == 1
    assert every[UNITS.index("none")] == 2 and used[UNITS.index("none")] == 0
    assert every[UNITS.index("add")] == 3 and used[UNITS.index("add")] == 1  # output: skip + conv1x1
    # zero-fed ops run; node 1 has no input left: one multiply by 0
    zero_fed = unit_counts(ZERO_FED, "used")
    assert zero_fed[UNITS.index("avg_pool_3x3")] == 1 and zero_fed[UNITS.index("zero_node")] == 1
    cut = unit_counts((0,) * 6, "used")
    assert cut.sum() == cut[UNITS.index("zero_node")] == 1  # the output is x * 0
    with pytest.raises(ValueError, match="runtime"):
        unit_counts(DEAD_CONV, "jit")


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
    assert predictor.phi.shape[1] == len(predictor.prior.mean) == all_features().shape[1] + len(COST_NAMES)
    lat = 1e-7 * network_costs(nb201.official_ops_table(), "used")[:, 1] * np.exp(0.01 * rng.standard_normal(15625))
    idx = predictor.select_samples(5, seed=0)
    rest = np.setdiff1d(np.arange(nb201.NUM_ARCHS), idx)
    mean, std = predictor.adapt(idx, lat[idx]).predict(rest)
    assert stats.spearmanr(mean, lat[rest])[0] > 0.98
    assert np.median(np.abs(mean / lat[rest] - 1)) < 0.02
    assert np.mean(np.abs(mean - lat[rest]) <= 2 * std) > 0.9  # the spread covers the errors
    alone = posterior(predictor.prior, predictor.phi[idx], lat[idx], 10.0)
    assert stats.spearmanr(predictor.phi[rest] @ alone.mean, lat[rest])[0] < 0.96


def test_the_cost_hypothesis_centres_on_one_cost_each():
    base = Prior(np.ones(3), np.eye(3), np.full(3, 0.5), np.array([1e-3]), np.zeros(1))
    prior = with_costs(base)
    size = 3 + len(COST_NAMES)
    assert prior.mean.tolist() == [1, 1, 1] + [0] * len(COST_NAMES) and prior.spread[3:].tolist() == [0] * 6
    np.testing.assert_array_equal(prior.cov[:3, :3], base.cov)
    assert np.all(prior.cov[:3, 3:] == 0) and np.all(np.diag(prior.cov)[3:] > 0)
    hypothesis = cost_hypothesis(prior, np.ones((4, size)))
    np.testing.assert_array_equal(hypothesis.centres, np.eye(size)[3:])
    assert all(np.all(cov[3:, :3] == 0) for cov in hypothesis.covs)  # no cross-device covariance
