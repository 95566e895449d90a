"""NB201 structure block (hand-checked cells) and the structure hypothesis of adaptation."""

import json

import numpy as np
import pytest
from scipy import stats

from latfarm.predictor import nb201, nb201_structure
from latfarm.predictor.features import FEATURE_NAMES, all_features
from latfarm.predictor.model import DeviceModel, Predictor
from latfarm.predictor.nb201_structure import (
    PATH_COLUMNS,
    PATH_OP_COST,
    STRUCTURE_NAMES,
    all_structure,
    device_columns,
    device_op_costs,
    op_cost_map,
    structure_features,
    with_structure,
)
from latfarm.predictor.prior import Prior, posterior
from latfarm.predictor.synthetic import synthetic_device

CELLS = {
    # every edge a 3x3 conv: both additions at node 2 and 3 (two at the output), 4 live paths, the longest 3 convs
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|": [
        1,
        1,
        2,
        3,
        4,
        3,
    ],
    # live paths 0->2->3 (3x3 + 1x1 conv: 1 + 1/9) and 0->3 (skip: 0); node 2 has one input
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|none~1|nor_conv_1x1~2|": [0, 0, 1, 10 / 9, 2, 2],
    # node 2 adds two inputs but never reaches the output; one live path, a 3x3 conv
    "|skip_connect~0|+|avg_pool_3x3~0|nor_conv_1x1~1|+|nor_conv_3x3~0|none~1|none~2|": [1, 0, 0, 1, 1, 1],
    # a pool then a skip on 0->1->3, a skip on 0->3: the pool is the only computing op on a live path
    "|avg_pool_3x3~0|+|none~0|none~1|+|skip_connect~0|skip_connect~1|none~2|": [0, 0, 1, 1 / 9, 2, 1],
    "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|": [0, 0, 0, 0, 0, 0],  # disconnected
}


def test_the_block_of_hand_checked_cells():
    ops = np.stack([nb201.parse(arch) for arch in CELLS])
    np.testing.assert_allclose(structure_features(ops), np.array(list(CELLS.values())))


def test_live_paths_are_the_paths_of_live_edges():
    ops = nb201.official_ops_table()
    live = np.array([nb201.live_edges(cell) for cell in ops])
    count = sum(live[:, list(path)].all(1) for path in nb201.PATHS)
    np.testing.assert_array_equal(structure_features(ops)[:, STRUCTURE_NAMES.index("live_paths")], count)


def test_the_path_columns_have_mean_1_and_enter_with_weight_and_variance_0():
    block = all_structure()
    assert block.shape == (nb201.NUM_ARCHS, len(PATH_COLUMNS)) and not block.flags.writeable
    np.testing.assert_allclose(block.mean(0), 1.0)
    n = 4
    base = Prior(np.ones(n), np.eye(n) + 1, np.full(n, 0.5), np.array([1e-3]), np.zeros(1))
    prior = with_structure(base)
    size = n + len(PATH_COLUMNS)
    assert prior.cov.shape == (size, size) and prior.mean[n:].tolist() == prior.spread[n:].tolist() == [0, 0]
    np.testing.assert_array_equal(prior.cov[:n, :n], base.cov)
    assert not prior.cov[n:].any() and not prior.cov[:, n:].any()


@pytest.fixture(scope="module")
def shipped():
    return Predictor.load()


def _structure_share(predictor, lat: np.ndarray, monkeypatch) -> tuple[float, float, float]:
    """(share of the predictions' spread over unmeasured archs carried by the structure columns, Spearman with the
    structure hypothesis, Spearman without) at K=20."""
    idx = predictor.select_samples(20, seed=1)
    rest = np.setdiff1d(np.arange(nb201.NUM_ARCHS), idx)
    model = predictor.adapt(idx, lat[idx])
    cols, head, phi = predictor.structure_columns, model.posterior.mean, predictor.rows(rest, model.structure)
    share = np.std(phi[:, cols] @ head[cols]) / np.std(phi @ head)
    with_it = stats.spearmanr(model.predict(rest)[0], lat[rest])[0]
    with monkeypatch.context() as patch, np.errstate(divide="ignore"):  # log of mass 0
        patch.setattr(nb201_structure, "STRUCTURE_MASS", 0.0)
        without = stats.spearmanr(predictor.adapt(idx, lat[idx]).predict(rest)[0], lat[rest])[0]
    return float(share), with_it, without


def test_the_structure_hypothesis_wins_on_a_critical_path_device_only(shipped, monkeypatch):
    share, with_it, without = _structure_share(shipped, synthetic_device("critical_path", seed=1), monkeypatch)
    assert share > 0.3 and with_it > without + 0.03
    share, with_it, without = _structure_share(shipped, synthetic_device("overhead", seed=0), monkeypatch)
    assert share < 0.02 and abs(with_it - without) < 0.001


def test_device_columns_are_the_critical_path_and_the_live_sum_under_the_given_costs():
    ops = nb201.official_ops_table()
    block = device_columns(PATH_OP_COST[1:])
    fixed = structure_features(ops)[:, STRUCTURE_NAMES.index("path_cost_max")]
    np.testing.assert_allclose(block[:, 0], fixed / fixed.mean())
    live = all_features()[:, [FEATURE_NAMES.index(f"live_{op}") for op in nb201.OPS[1:]]]
    costs = np.array([0.1, 0.6, 1.0, 0.5])
    block = device_columns(costs)
    np.testing.assert_allclose(block[:, 1], live @ costs / (live @ costs).mean())
    np.testing.assert_allclose(block.mean(0), 1.0)
    # every edge a 3x3 conv: the longest path is 3 of them (3.0); a lone skip 0 -> 3: 0.1; disconnected: 0
    full, skip = block[nb201.official_index((3,) * 6)], block[nb201.official_index((0, 0, 0, 1, 0, 0))]
    assert full[0] / skip[0] == pytest.approx(30.0) and full[1] / skip[1] == pytest.approx(60.0)
    assert not block[nb201.official_index((0,) * 6)].any()
    for bad in (np.zeros(4), [1.0, -1.0, 1.0, 1.0], [1.0, 1.0]):
        with pytest.raises(ValueError):
            device_columns(np.asarray(bad))


def test_device_op_costs_recover_the_op_costs_of_an_additive_head():
    phi = all_features()
    costs = np.array([0.2, 0.5, 1.0, 0.7])
    head = np.zeros(phi.shape[1])
    head[0] = 3.0
    counts = [FEATURE_NAMES.index(f"{kind}_{op}") for kind in ("live", "dead") for op in nb201.OPS[1:]]
    head[counts] = np.r_[costs, costs]
    np.testing.assert_allclose(device_op_costs(op_cost_map(phi), head), costs, atol=1e-9)
    np.testing.assert_allclose(device_op_costs(op_cost_map(phi), -head), PATH_OP_COST[1:])  # none positive


def test_the_device_columns_lift_a_critical_path_device_and_leave_an_additive_one(shipped):
    """At K=20 the second pass (structure columns under the device's op costs) against the first (fixed costs)."""
    idx = np.asarray(shipped.select_samples(20, seed=1))
    rest = np.setdiff1d(np.arange(nb201.NUM_ARCHS), idx)
    for kind, gain in (("critical_path", 0.015), ("overhead", 0.0), ("memory_bound", 0.0)):
        for seed in (1, 2) if kind == "critical_path" else (0,):
            lat = synthetic_device(kind, seed=seed)
            model = shipped.adapt(idx, lat[idx])
            phi_s = shipped.phi[idx]
            first = posterior(shipped.prior, phi_s, lat[idx], 10.0, alternatives=shipped._alternatives(phi_s))
            two = stats.spearmanr(model.predict(rest)[0], lat[rest])[0]
            one = stats.spearmanr(shipped.phi[rest] @ first.mean, lat[rest])[0]
            assert two > one + gain if gain else abs(two - one) < 0.002, (kind, seed, two, one)


def test_a_state_keeps_the_device_op_costs(shipped):
    lat = synthetic_device("critical_path", seed=1)
    idx = shipped.select_samples(10, seed=0)
    model = shipped.adapt(idx, lat[idx])
    assert model.op_costs is not None and model.op_costs.argmax() == nb201.OPS.index("nor_conv_3x3") - 1
    state = json.loads(json.dumps(model.to_state()))
    again = DeviceModel.from_state(shipped, state)
    np.testing.assert_array_equal(again.op_costs, model.op_costs)
    for a, b in zip(again.predict(), model.predict(), strict=True):
        np.testing.assert_allclose(a, b)
    pairs = np.array([0, 5, 77]), np.array([9, 3000, 15000])
    np.testing.assert_allclose(again.prob_faster(*pairs), model.prob_faster(*pairs))
    # the prediction is the head over the device's columns, not over the fixed ones
    mean = model.posterior.scale_ms * shipped.rows(None, model.structure) @ model.posterior.mean
    np.testing.assert_allclose(model.predict()[0], mean)
    assert shipped.adapt([], []).op_costs is None
