"""The mixture Bayesian linear regression (``mixture.weigh``) against the same mixture computed setting by setting."""

import itertools

import numpy as np
from scipy import stats

from latfarm.predictor.mixture import MIN_WEIGHT, Hypothesis, weigh
from latfarm.predictor.prior import Prior

F, K = 6, 5


def _problem():
    rng = np.random.default_rng(0)
    parts = []
    for rank in (F, 2, 1):
        basis = rng.standard_normal((F, rank))
        parts.append(basis @ basis.T)
    prior = Prior(rng.standard_normal(F), parts[0], np.ones(F), np.array([0.01, 0.1, 1.0]), np.array([-1.0, 0.0, -1.0]))
    phi_s = rng.standard_normal((K, F))
    y = phi_s @ (prior.mean + 0.3 * rng.standard_normal(F)) + 0.1 * rng.standard_normal(K)
    own = np.array([(1, 0, 0), (1, 1, 0), (0.1, 0, 3)], dtype=np.float64)
    hypotheses = [
        Hypothesis(prior.mean[None, :], np.log([0.6]), tuple(parts), own, -0.5),
        # a copy of a part (shared with the first hypothesis) and one of its own; two centres sharing the rest
        Hypothesis.shared(rng.standard_normal((2, F)), 0.4, (parts[1].copy(), np.eye(F)), [(1, 0.1), (0, 1)]),
    ]
    return prior, hypotheses, phi_s, y, np.exp(rng.uniform(-1, 1, K)), 0.02


def _settings(prior, hypotheses, phi_s, y, rel_var, floor):
    """(log weight, posterior mean, covariance, noise) of every (centre, covariance, noise) setting, explicitly."""
    out = []
    for hyp in hypotheses:
        for cov, log_cov in zip(hyp.covs, np.broadcast_to(hyp.log_cov, len(hyp.coefs)), strict=True):
            for noise, log_noise in zip(prior.noise_grid, prior.noise_log_prior, strict=True):
                sample_cov = phi_s @ cov @ phi_s.T + np.diag(noise * rel_var + floor)
                gain = cov @ phi_s.T @ np.linalg.inv(sample_cov)
                for centre, log_mass in zip(hyp.centres, hyp.log_mass, strict=True):
                    loglik = stats.multivariate_normal(phi_s @ centre, sample_cov).logpdf(y)
                    mean = centre + gain @ (y - phi_s @ centre)
                    out.append((loglik + log_mass + log_cov + log_noise, mean, cov - gain @ phi_s @ cov, noise))
    return out


def test_weigh_averages_every_setting_weighed_by_marginal_likelihood():
    prior, hypotheses, phi_s, y, rel_var, floor = _problem()
    settings = _settings(prior, hypotheses, phi_s, y, rel_var, floor)
    log_w = np.array([s[0] for s in settings])
    w = np.exp(log_w - log_w.max())
    kept = [(wj, *s[1:]) for wj, s in zip(w, settings, strict=True) if wj > MIN_WEIGHT * w.sum()]
    assert 1 < len(kept) < len(settings)  # the cut-off drops some
    total = sum(k[0] for k in kept)
    mean = sum(wj * m for wj, m, _, _ in kept) / total
    cov = sum(wj * (c + np.outer(m - mean, m - mean)) for wj, m, c, _ in kept) / total
    noise = sum(wj * n for wj, _, _, n in kept) / total
    got = weigh(prior, hypotheses, phi_s, y, rel_var, floor)
    np.testing.assert_allclose(got[0], mean, rtol=1e-10)
    np.testing.assert_allclose(got[1], cov, rtol=1e-8, atol=1e-10 * np.abs(cov).max())
    assert np.isclose(got[2], noise, rtol=1e-12)


def test_best_only_gives_the_most_likely_settings_posterior():
    prior, hypotheses, phi_s, y, rel_var, floor = _problem()
    _, mean, cov, noise = max(_settings(prior, hypotheses, phi_s, y, rel_var, floor), key=lambda s: s[0])
    got = weigh(prior, hypotheses, phi_s, y, rel_var, floor, best_only=True)
    np.testing.assert_allclose(got[0], mean, rtol=1e-10)
    np.testing.assert_allclose(got[1], cov, rtol=1e-8, atol=1e-10 * np.abs(cov).max())
    assert got[2] == noise


def test_a_hypothesis_lists_its_covariance_settings_and_mass():
    parts = (np.eye(2), np.ones((2, 2)))
    hyp = Hypothesis.shared(np.zeros((4, 2)), 0.2, parts, itertools.product((0, 1), (2,)))
    assert np.isclose(hyp.mass, 0.2) and np.allclose(np.exp(hyp.log_mass), 0.05)
    np.testing.assert_array_equal(hyp.covs[1], [[3, 2], [2, 3]])
