"""Synthetic out-of-distribution devices and the robust few-shot adaptation (samples override the prior)."""

import numpy as np
import pytest

from latfarm.predictor.features import all_features
from latfarm.predictor.model import Predictor
from latfarm.predictor.nb201 import NUM_ARCHS
from latfarm.predictor.prior import posterior
from latfarm.predictor.scores import score
from latfarm.predictor.synthetic import KINDS, stress_set, synthetic_device

OPS_COLUMNS = {"skip": 2, "conv1x1": 3, "conv3x3": 4, "pool": 5}  # live op counts in all_features()


@pytest.fixture(scope="module")
def shipped():
    return Predictor.load()


def _slope(lat: np.ndarray, op: str) -> float:
    """Least-squares ms per extra live op of one type (other live counts held in the fit)."""
    x = all_features()[:, [0, 2, 3, 4, 5]]
    return float(np.linalg.lstsq(x, lat, rcond=None)[0][OPS_COLUMNS[op] - 1])


def test_synthetic_devices_are_valid_seeded_and_shaped_by_kind():
    for kind in KINDS:
        lat = synthetic_device(kind, seed=3)
        assert lat.shape == (NUM_ARCHS,) and np.all(np.isfinite(lat)) and np.all(lat > 0)
        assert abs(lat.mean() - 10.0) < 0.5
        np.testing.assert_array_equal(lat, synthetic_device(kind, seed=3))
        assert not np.array_equal(lat, synthetic_device(kind, seed=4))
    conv = synthetic_device("conv_heavy", seed=1, noise=0.0)
    assert _slope(conv, "conv3x3") > 10 * max(_slope(conv, "pool"), _slope(conv, "skip"), 1e-3)
    pool = synthetic_device("pool_heavy", seed=1, noise=0.0)
    assert _slope(pool, "pool") > _slope(pool, "conv3x3") > _slope(pool, "skip")
    overhead = synthetic_device("overhead", seed=1, noise=0.0)
    assert overhead.min() > 0.5 * overhead.mean()  # the fixed part dominates
    quantised = synthetic_device("memory_bound", seed=2, noise=0.05, quantum_ms=1.0, mean_ms=15.0)
    assert np.all(quantised == np.round(quantised)) and quantised.min() >= 1.0
    with pytest.raises(ValueError, match="unknown synthetic device kind"):
        synthetic_device("quantum_annealer")


def test_critical_path_device_is_not_additive():
    lat = synthetic_device("critical_path", seed=0, noise=0.0)
    x = all_features()
    fit = x @ np.linalg.lstsq(x, lat, rcond=None)[0]
    assert score(fit, lat)["spearman"] < 0.98  # the additive features cannot express the max over branches
    assert len(stress_set(0, copies=1)) == 2 * len(KINDS)


def _adapt_scores(predictor: Predictor, lat: np.ndarray, k: int, seed: int, robust: bool) -> dict:
    idx = np.asarray(predictor.select_samples(k, seed=seed))
    rest = np.setdiff1d(np.arange(NUM_ARCHS), idx)
    post = posterior(predictor.prior, predictor.phi[idx], lat[idx], 10.0, robust=robust)
    phi = predictor.phi[rest]
    mean = post.scale_ms * (phi @ post.mean)
    std = post.scale_ms * np.sqrt(((phi @ post.cov) * phi).sum(1) + post.noise_at(phi @ post.mean))
    out = score(mean, lat[rest])
    out["cover2"] = float(np.mean(np.abs(mean - lat[rest]) <= 2 * std))
    return out


def test_samples_override_the_prior_on_an_unlike_device(shipped):
    lat = synthetic_device("memory_bound", seed=0)
    few = np.mean([_adapt_scores(shipped, lat, 5, s, True)["spearman"] for s in range(2)])
    many = np.mean([_adapt_scores(shipped, lat, 20, s, True)["spearman"] for s in range(2)])
    assert many > few + 0.05 and many > 0.95
    model = shipped.adapt(shipped.select_samples(20, seed=0), lat[shipped.select_samples(20, seed=0)])
    assert score(model.predict()[0], lat)["acc10"] > 0.8


def test_robust_adaptation_is_better_calibrated_at_k5(shipped):
    devices = [synthetic_device(kind, seed=7) for kind in ("memory_bound", "overhead", "pool_heavy")]
    cover = {r: np.mean([_adapt_scores(shipped, lat, 5, 1, r)["cover2"] for lat in devices]) for r in (False, True)}
    assert cover[True] > 0.8 and abs(cover[True] - 0.95) < abs(cover[False] - 0.95)
