"""Calibration of the predicted spread: the coverage score and calibrating factor, their place in ``eval transfer``,
whole-ms noise floor, noise relative to the predicted latency, the leave-one-out spread factor, and the factor set by
random archs fitted with the samples (``predictor.calibration``)."""

from dataclasses import replace

import numpy as np
import pytest
from scipy import stats

from latfarm.predictor.calibration import COVERAGE_BAND, MIN_COVERAGE_2SD, calibrating_mask, calibration_factor
from latfarm.predictor.evaluate import TransferInputError, eval_transfer, transfer_scores
from latfarm.predictor.model import DeviceModel, Predictor
from latfarm.predictor.prior import (
    MIN_RELATIVE,
    QUANTUM_MS,
    TAIL_MARGIN,
    Posterior,
    loo_residuals,
    loo_std_factor,
    mixture_loo_z,
    posterior,
    quantisation_variance,
)
from latfarm.predictor.scores import coverage, score
from latfarm.predictor.synthetic import synthetic_device


@pytest.fixture(scope="module")
def shipped():
    return Predictor.load()


def test_coverage_counts_errors_within_one_and_two_std():
    true = np.full(5, 10.0)
    pred = true + np.array([0.0, -0.5, 1.0, 1.5, -2.5])
    shares = coverage(pred, np.ones(5), true)
    assert (shares["coverage_1sd"], shares["coverage_2sd"]) == (0.6, 0.8)  # bounds included


def test_coverage_of_a_right_gaussian_spread_is_68_and_95_percent():
    rng = np.random.default_rng(0)
    true = rng.uniform(5, 20, 200_000)
    std = 0.05 * true
    pred = true + std * rng.standard_normal(len(true))
    right = coverage(pred, std, true)
    assert abs(right["coverage_1sd"] - 0.683) < 0.005 and abs(right["coverage_2sd"] - 0.954) < 0.005
    wide = coverage(pred, 2 * std, true)
    assert abs(wide["coverage_1sd"] - 0.954) < 0.005 and wide["coverage_2sd"] > 0.999


def test_std_factor_is_the_multiplier_that_calibrates_the_spread():
    rng = np.random.default_rng(1)
    true = rng.uniform(5, 20, 100_000)
    std = 0.05 * true
    pred = true + std * rng.standard_normal(len(true))
    assert coverage(pred, std, true)["std_factor"] == pytest.approx(1.0, abs=0.02)
    for wrong in (0.25, 3.0):  # too narrow, too wide
        factor = coverage(pred, wrong * std, true)["std_factor"]
        assert factor == pytest.approx(1 / wrong, rel=0.02)
        assert coverage(pred, factor * wrong * std, true)["coverage_1sd"] == pytest.approx(0.683, abs=0.002)


def test_transfer_scores_report_coverage_per_device_and_mean(shipped, tmp_path):
    test = {f"dev{i}": synthetic_device(kind, seed=i) for i, kind in enumerate(("overhead", "memory_bound"))}
    out = transfer_scores(shipped, test, [5], 2, seed=3, dump=tmp_path)
    block = out["5"]
    for name, lat in test.items():
        runs = []
        for trial in range(2):
            run = np.load(tmp_path / f"{name}_k5_t{trial}.npz")
            rest = np.setdiff1d(np.arange(len(lat)), run["samples"])
            runs.append(coverage(run["pred_ms"][rest], run["std_ms"][rest], lat[rest]))
        for m in ("coverage_1sd", "coverage_2sd", "std_factor"):
            assert block["per_device"][name][m] == pytest.approx(np.mean([r[m] for r in runs]))
        assert 0 < block["per_device"][name]["coverage_1sd"] <= block["per_device"][name]["coverage_2sd"] <= 1
    for m in ("coverage_1sd", "coverage_2sd", "std_factor"):
        assert block[f"mean_{m}"] == pytest.approx(np.mean([v[m] for v in block["per_device"].values()]))


def test_transfer_scores_calibrate_on_r_random_archs_and_score_the_others(shipped, tmp_path):
    """``calibration`` R: each run fits R random measured archs besides its K (none of them, seeded per trial) as
    calibrating archs, and is scored on the archs neither sampled nor calibrating; a device without K + R + 3
    measured archs is skipped."""
    lat = synthetic_device("memory_bound", seed=5)
    lat[::2] = np.nan  # unmeasured archs are neither drawn nor scored
    sparse = np.full(len(lat), np.nan)
    sparse[:17] = np.linspace(1.0, 3.0, 17)
    test = {"dev": lat, "sparse": sparse}
    out = transfer_scores(shipped, test, [5], 2, seed=3, calibration=10, dump=tmp_path)
    assert out["5"]["skipped"] == {"sparse": "17 measured archs; K=5 and R=10 needs at least 18"}
    runs = []
    for trial in range(2):
        run = np.load(tmp_path / f"dev_k5_t{trial}.npz")
        calib = run["calibrating"]
        assert len(calib) == 10 and not set(calib) & set(run["samples"]) and not np.isnan(lat[calib]).any()
        rest = np.setdiff1d(np.flatnonzero(~np.isnan(lat)), np.r_[run["samples"], calib])
        runs.append(
            score(run["pred_ms"][rest], lat[rest]) | coverage(run["pred_ms"][rest], run["std_ms"][rest], lat[rest])
        )
    assert set(np.load(tmp_path / "dev_k5_t0.npz")["calibrating"]) != set(calib)  # trials draw anew
    for m in ("spearman", "acc10", "coverage_1sd", "coverage_2sd", "std_factor"):
        assert out["5"]["per_device"]["dev"][m] == pytest.approx(np.mean([r[m] for r in runs]))
    assert 0 < out["5"]["mean_coverage_1sd"] <= out["5"]["mean_coverage_2sd"] <= 1
    uncalibrated = transfer_scores(shipped, {"dev": lat}, [5], 1, seed=3, dump=tmp_path / "k-only")
    run = np.load(tmp_path / "k-only" / "dev_k5_t0.npz")
    assert run["calibrating"].shape == (0,)
    assert uncalibrated["5"]["per_device"]["dev"]["std_factor"] != out["5"]["per_device"]["dev"]["std_factor"]
    assert transfer_scores(shipped, test, [5], 2, seed=3, calibration=10) == out  # runs repeat


@pytest.mark.parametrize("calibration", [5, 201])
def test_transfer_calibration_outside_its_range_is_refused_before_pretraining(shipped, calibration):
    lat = {"a": synthetic_device("overhead", seed=0), "b": synthetic_device("overhead", seed=1)}
    with pytest.raises(
        TransferInputError, match=f"calibration must be 0 or between 10 and 200 archs, got {calibration}"
    ):
        eval_transfer(lat, ["a"], ["b"], [5], 1, calibration=calibration)
    with pytest.raises(ValueError, match="calibration must be 0 or between 10 and 200"):
        transfer_scores(shipped, {"b": lat["b"]}, [5], 1, calibration=calibration)


def test_whole_millisecond_samples_floor_the_predicted_spread(shipped):
    assert quantisation_variance(np.array([3.0, 4.0, 17.0])) == pytest.approx(QUANTUM_MS**2 / 12)
    assert quantisation_variance(np.array([3.0, 4.2, 17.0])) == 0.0
    assert quantisation_variance(np.array([3.0])) == 0.0  # one whole number says nothing
    lat = synthetic_device("overhead", seed=1, noise=0.0, quantum_ms=1.0, mean_ms=15.0)
    idx = shipped.select_samples(10, seed=0)
    _, std = shipped.adapt(idx, lat[idx]).predict()
    assert std.min() >= np.sqrt(1 / 12) - 1e-9
    _, std_fine = shipped.adapt(idx, lat[idx] + 0.01).predict()  # the same values, not whole ms
    assert np.median(std) > np.median(std_fine)


def test_noise_is_a_floor_plus_a_part_relative_to_the_predicted_latency():
    post = Posterior(np.zeros(2), np.zeros((2, 2)), 1.0, noise=0.01, relative=0.04, level=2.0)
    mu = np.array([2.0, 4.0, 0.0, -1.0])
    np.testing.assert_allclose(post.noise_at(mu), [0.05, 0.01 + 0.04 * 4, *[0.01 + 0.04 * MIN_RELATIVE**2] * 2])
    uniform = Posterior(np.zeros(2), np.zeros((2, 2)), 1.0, noise=0.01)
    np.testing.assert_array_equal(uniform.noise_at(mu), np.full(4, 0.01))


def test_relative_noise_spreads_coverage_evenly_over_fast_and_slow_archs(shipped):
    # 10% multiplicative noise: against the same posterior with its noise uniform at the samples' mean level, the
    # 1-sd shares of the fastest and slowest third of the archs lie closer together
    for kind in ("memory_bound", "conv_heavy"):
        lat = synthetic_device(kind, seed=1, noise=0.1)
        idx = shipped.select_samples(20, seed=1)
        model = shipped.adapt(idx, lat[idx])
        post = model.posterior
        assert post.relative > 0 and post.level == pytest.approx(np.mean(post.scale_ms**-1 * lat[idx]))
        level_noise = float(post.noise_at(np.array([post.level]))[0])
        uniform = DeviceModel(
            shipped, replace(post, noise=level_noise, relative=0.0), model.indices, lat[idx], model.op_costs
        )
        gaps = []
        for m in (model, uniform):
            mean, std = m.predict()
            order = np.argsort(mean)
            fast, slow = order[: len(order) // 3], order[-len(order) // 3 :]
            shares = [coverage(mean[i], std[i], lat[i])["coverage_1sd"] for i in (fast, slow)]
            gaps.append(abs(shares[0] - shares[1]))
        assert gaps[0] < gaps[1]
        np.testing.assert_array_equal(model.predict()[0], uniform.predict()[0])


def _refit_without(phi, cov, noise, resid, i):
    """Predictive mean residual and variance (noise included) of sample i conditioned on the others."""
    rest = np.delete(np.arange(len(resid)), i)
    c = phi @ cov @ phi.T + np.diag(noise)
    gain = np.linalg.solve(c[np.ix_(rest, rest)], c[rest, i])
    return resid[i] - gain @ resid[rest], c[i, i] - c[i, rest] @ gain


def test_leave_one_out_residuals_in_closed_form_match_refits_without_each_sample():
    rng = np.random.default_rng(0)
    k, f = 8, 5
    phi, a = rng.standard_normal((k, f)), rng.standard_normal((f, f))
    cov, noise, resid = a @ a.T, rng.uniform(0.1, 1.0, k), rng.standard_normal(k)
    inverse = np.linalg.inv(phi @ cov @ phi.T + np.diag(noise))
    e, v = loo_residuals(np.diag(inverse), inverse @ resid)
    for i in range(k):
        assert (e[i], v[i]) == pytest.approx(_refit_without(phi, cov, noise, resid, i))


def test_mixture_loo_z_weighs_settings_by_the_other_samples_alone():
    rng = np.random.default_rng(1)
    k, f = 6, 3
    phi = rng.standard_normal((k, f))
    y = phi @ rng.standard_normal(f) + 0.3 * rng.standard_normal(k)
    settings = [(s * np.eye(f), np.full(k, n)) for s, n in ((0.1, 0.05), (1.0, 0.1), (3.0, 0.5))]
    prior_w = np.array([0.5, 0.3, 0.2])
    full = [stats.multivariate_normal(np.zeros(k), phi @ c @ phi.T + np.diag(n)).pdf(y) for c, n in settings]
    inverses = [np.linalg.inv(phi @ c @ phi.T + np.diag(n)) for c, n in settings]
    loo = [loo_residuals(np.diag(inverse), inverse @ y) for inverse in inverses]
    z = mixture_loo_z(prior_w * full, np.stack([r for r, _ in loo]), np.stack([v for _, v in loo]))
    for i in range(k):
        rest = np.delete(np.arange(k), i)
        covs = [(phi @ c @ phi.T + np.diag(n))[np.ix_(rest, rest)] for c, n in settings]
        w = prior_w * [stats.multivariate_normal(np.zeros(k - 1), c).pdf(y[rest]) for c in covs]
        w /= w.sum()
        e, v = np.array([_refit_without(phi, c, n, y, i) for c, n in settings]).T
        mean = w @ e
        assert z[i] == pytest.approx(mean / np.sqrt(w @ (v + e**2) - mean**2))


def test_loo_std_factor_shrinks_the_samples_own_calibration_toward_one_by_their_degrees_of_freedom():
    z = np.linspace(-2.0, 2.0, 21)  # 0.683 quantile of |z|: 1.38
    s = np.quantile(np.abs(z), 0.6827)
    assert loo_std_factor(z, 1e6) == pytest.approx(TAIL_MARGIN * s, rel=1e-4)
    assert loo_std_factor(z, 0.0) == pytest.approx(TAIL_MARGIN)
    factors = [loo_std_factor(z, dof) for dof in (0.5, 2.0, 8.0, 32.0)]
    assert TAIL_MARGIN < factors[0] < factors[1] < factors[2] < factors[3] < TAIL_MARGIN * s
    assert loo_std_factor(z / 4, 8.0) < TAIL_MARGIN  # samples predicted better than their spread says: narrower
    # one far-off sample does not set it
    assert loo_std_factor(np.array([0.5, 0.5, 0.5, 0.5, 40.0]), 1e6) == pytest.approx(TAIL_MARGIN * 0.5, rel=1e-4)


def test_device_model_applies_stores_and_loads_its_std_factor(shipped):
    lat = synthetic_device("memory_bound", seed=2, noise=0.1)
    idx = shipped.select_samples(20, seed=2)
    model = shipped.adapt(idx, lat[idx])
    post = model.posterior
    assert post.std_factor != 1.0
    plain = DeviceModel(shipped, replace(post, std_factor=1.0), model.indices, lat[idx], model.op_costs)
    (mean, std), (mean_plain, std_plain) = model.predict(), plain.predict()
    np.testing.assert_array_equal(mean, mean_plain)
    np.testing.assert_allclose(std, post.std_factor * std_plain)
    a, b = np.arange(0, 200), np.arange(200, 400)
    z, z_plain = stats.norm.ppf(model.prob_faster(a, b)), stats.norm.ppf(plain.prob_faster(a, b))
    near = np.abs(z_plain) < 4  # where the probabilities keep the digits to invert
    np.testing.assert_allclose((z * post.std_factor)[near], z_plain[near], rtol=1e-6)
    state = model.to_state()
    assert DeviceModel.from_state(shipped, state).posterior.std_factor == post.std_factor
    old = {key: value for key, value in state.items() if key != "std_factor"}  # stored before the factor
    assert DeviceModel.from_state(shipped, old).posterior.std_factor == 1.0
    assert posterior(shipped.prior, shipped.rows(idx), lat[idx], 10.0, robust=False).std_factor == 1.0


def test_calibration_factor_puts_the_calibrating_archs_in_the_middle_of_the_band():
    """Gaussian errors keep their sd (1-sd share 0.685); heavier tails get a wider spread, 2 sd still covering
    ``MIN_COVERAGE_2SD`` and 1 sd inside ``COVERAGE_BAND``."""
    rng = np.random.default_rng(2)
    z = rng.normal(0.0, 2.0, 200_000)  # errors twice the sd of 1
    assert calibration_factor(z) == pytest.approx(2.0, rel=0.01)
    assert calibration_factor(-z) == calibration_factor(z)
    for dof in (3, 2, 1.5):
        t = rng.standard_t(dof, 200_000)
        factor = calibration_factor(t)
        assert COVERAGE_BAND[0] <= np.mean(np.abs(t) <= factor) <= COVERAGE_BAND[1]
        assert np.mean(np.abs(t) <= 2 * factor) >= MIN_COVERAGE_2SD
    low, high = np.quantile(np.abs(z), [MIN_COVERAGE_2SD, COVERAGE_BAND[1]])
    assert calibration_factor(z) == pytest.approx(np.sqrt(low / 2 * high), rel=1e-9)  # the 2-sd bound binds
    assert calibrating_mask(None, 3) is None and calibrating_mask([False] * 3, 3) is None
    with pytest.raises(ValueError, match="4 samples but 3 calibrating flags"):
        calibrating_mask([True] * 3, 4)


def test_random_archs_fitted_with_the_samples_calibrate_the_spread_by_their_leave_one_out_errors(shipped):
    """The K samples leave the spread of an unlike device off (a critical-path device, whose errors the additive prior
    does not expect); 60 random archs fitted with them set it (from their leave-one-out z), and the state keeps which
    archs calibrated."""
    lat = synthetic_device("critical_path", seed=5, noise=0.03)  # K=10 alone leaves its spread too narrow
    idx = np.asarray(shipped.select_samples(10, seed=0))
    rng = np.random.default_rng(0)
    others = rng.permutation(np.setdiff1d(np.arange(len(lat)), idx))
    calib, rest = others[:60], others[60:]

    def coverage_of(model) -> float:
        mean, std = model.predict(rest)
        return float(np.mean(np.abs(mean - lat[rest]) <= std))

    alone = shipped.adapt(idx, lat[idx])
    both = np.r_[idx, calib]
    flags = [False] * len(idx) + [True] * len(calib)
    calibrated = shipped.adapt(both, lat[both], flags)
    fitted_only = shipped.adapt(both, lat[both])  # the same fit, its spread by the samples' own leave-one-out
    assert np.array_equal(calibrated.predict(rest)[0], fitted_only.predict(rest)[0])
    assert COVERAGE_BAND[0] <= coverage_of(calibrated) <= COVERAGE_BAND[1]
    assert coverage_of(alone) < COVERAGE_BAND[0] - 0.2
    assert calibrated.posterior.std_factor != fitted_only.posterior.std_factor
    state = calibrated.to_state()
    assert state["calibrating"] == flags
    again = DeviceModel.from_state(shipped, {**state, "predictor_version": "an older one"})  # re-adapted
    assert again.posterior.std_factor == pytest.approx(calibrated.posterior.std_factor)
    assert shipped.adapt(idx[:5], lat[idx[:5]], [True] * 5).posterior.std_factor == pytest.approx(
        shipped.adapt(idx[:5], lat[idx[:5]]).posterior.std_factor
    )  # fewer than MIN_CALIBRATION_ARCHS calibrating: the samples' own factor
