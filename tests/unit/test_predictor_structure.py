"""NB201 structure block (hand-checked cells) and the structure hypothesis of adaptation."""

import numpy as np
import pytest
from scipy import stats

from latfarm.predictor import nb201, nb201_structure
from latfarm.predictor.model import Predictor
from latfarm.predictor.nb201_structure import (
    PATH_COLUMNS,
    STRUCTURE_NAMES,
    all_structure,
    structure_features,
    with_structure,
)
from latfarm.predictor.prior import Prior
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
    cols, head = predictor.structure_columns, model.posterior.mean
    share = np.std(predictor.phi[rest][:, cols] @ head[cols]) / np.std(predictor.phi[rest] @ head)
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
