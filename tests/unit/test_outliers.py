"""#18 item 1: few-shot fits leave out a bogus sample (``services.domain.outliers``), on real HELP latencies."""

from __future__ import annotations

import numpy as np
import pytest

from latfarm.predictor.help_data import load_help
from latfarm.predictor.model import Predictor
from latfarm.predictor.scores import score
from latfarm.services.domain.outliers import inliers, robust_adapt


@pytest.fixture(scope="module")
def shipped():
    return Predictor.load()


@pytest.mark.parametrize("factor", [1e3, 1e-3, 1e300])
def test_one_bogus_sample_is_left_out_and_the_fit_stays_sound(shipped, help_dir, factor):
    truth = load_help(help_dir, ["samsung_a50"])["samsung_a50"]
    idx = np.random.default_rng(1).choice(len(truth), 10, replace=False)
    values = truth[idx].copy()
    assert inliers(shipped, idx, values).all()  # sound samples all stay
    values[3] *= factor
    model, dropped = robust_adapt(shipped, idx, values)
    assert dropped == [int(idx[3])]
    robust = score(model.predict(None)[0], truth)["spearman"]
    assert robust > 0.9
    if factor < 1e300:  # a plain fit on 1e300 overflows altogether
        assert robust > score(shipped.adapt(idx, values).predict(None)[0], truth)["spearman"] + 0.1


def test_no_majority_no_verdict(shipped):
    idx = np.array([1, 2, 3, 4])
    assert inliers(shipped, idx[:2], [1.0, 1e6]).all()  # two samples: neither is the odd one out
    keep = inliers(shipped, idx, [2.0, 2.0, 2.0, 2e5])  # at most a quarter of the samples go
    assert keep.tolist() == [True, True, True, False]
