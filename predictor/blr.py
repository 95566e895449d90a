"""Bayesian linear regression of a device's normalised latency on arch features, for spaces whose features have
a block of device-agnostic cost columns (FBNet): the cross-device prior on the rest, a broad prior on the costs.

A device's latency divided by its scale is ``phi(arch) . w``. The prior on ``w`` is N(mean, c * cov + s *
diag(spread) + b * B): ``mean``/``cov`` from the source devices' heads, ``spread`` their mean squared weights, and
``B`` a broad component over the cost columns only (scaled so that it adds one unit of variance to the samples' mean
prediction). A few cost weights are pinned by a handful of samples, so the target's own samples can override the
source devices where they disagree (other families). ``c``, ``s``, ``b`` and the noise are weighed by marginal
likelihood and the posteriors averaged (moment-matched). ``c`` < 1 narrows the cross-device covariance for a device
close to the prior mean (``cov`` spans every family: at full width the predicted std of a GPU is several times its
errors). Noise is relative to each sample's latency (errors in %), heavy-tailed (Student-t with ``T_DOF`` degrees of
freedom, fitted by EM as a Gaussian scale mixture: a sample far off the fit gets its noise variance scaled up), and
samples in whole milliseconds add the rounding variance (``prior.quantisation_variance``) to every sample.
"""

from __future__ import annotations

import itertools

import numpy as np

from latfarm.predictor.prior import MIN_RELATIVE, MIN_WEIGHT, Posterior, Prior, quantisation_variance

SCALE_GRID = (0.1, 0.3, 1.0)
SPREAD_GRID = (0.0, 0.03, 0.3, 3.0)
BROAD_GRID = (0.0, 0.01, 0.1, 1.0, 10.0)
PLANNING_SPREAD = 0.3
PLANNING_BROAD = 1.0
T_DOF = 4.0
"""Degrees of freedom of the Student-t noise: 4, the usual robust-regression choice (finite variance, tails that
let one spike among 5-20 samples, as phones' whole-ms runs have, lose its pull on the fit)."""
T_ITERATIONS = 3
"""EM steps of the Student-t reweighting (the first is the Gaussian fit)."""


def broad_variance(phi_s: np.ndarray, cost_columns: np.ndarray) -> np.ndarray:
    """The broad component over ``cost_columns``, unit variance added to the mean prediction of rows ``phi_s``."""
    basis = np.eye(phi_s.shape[1])[:, cost_columns]
    return basis @ basis.T / max(float(np.mean(((phi_s @ basis) ** 2).sum(1))), 1e-9)


def planning_cov(prior: Prior, phi_pool: np.ndarray, cost_columns: np.ndarray) -> np.ndarray:
    """The covariance used to choose samples before any is measured (typical spread and broad weights)."""
    broad = broad_variance(phi_pool, cost_columns)
    return prior.cov + PLANNING_SPREAD * np.diag(prior.spread) + PLANNING_BROAD * broad


def posterior_with_costs(
    prior: Prior, phi_s: np.ndarray, y_ms: np.ndarray, default_scale_ms: float, cost_columns: np.ndarray
) -> Posterior:
    """Condition the prior on samples (features [K, F], latencies ms [K]); K = 0 gives the planning prior."""
    if len(y_ms) == 0:
        cov = prior.cov + PLANNING_SPREAD * np.diag(prior.spread)
        return Posterior(prior.mean, cov, default_scale_ms, prior.typical_noise)
    scale = float(np.mean(y_ms) / np.mean(phi_s @ prior.mean))
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError("latencies must be positive milliseconds")
    y = y_ms / scale
    resid = y - phi_s @ prior.mean
    rel_var = np.maximum(y / y.mean(), MIN_RELATIVE) ** 2
    floor = quantisation_variance(y_ms) / scale**2
    broad = broad_variance(phi_s, cost_columns)
    weights = np.ones(len(y))
    for _ in range(T_ITERATIONS):
        mean, cov, noise = _weighed(prior, phi_s, resid, rel_var / weights, floor, broad)
        expected = (y - phi_s @ mean) ** 2 + ((phi_s @ cov) * phi_s).sum(1)
        weights = (T_DOF + 1) / (T_DOF + expected / (noise * rel_var / weights + floor))
    return Posterior(mean, cov, scale, noise + floor)


def _weighed(
    prior: Prior, phi_s: np.ndarray, resid: np.ndarray, rel_var: np.ndarray, floor: float, broad: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float]:
    """Posterior mean, covariance and noise with every setting of the grids weighed by marginal likelihood;
    sample i's noise variance is ``noise * rel_var[i] + floor``."""
    root = np.sqrt(rel_var)
    grams = [phi_s @ part @ phi_s.T for part in (prior.cov, np.diag(prior.spread), broad)]
    floor_eye = floor * np.eye(len(resid))
    settings, logliks = [], []
    for scale_w, spread_w, broad_w in itertools.product(SCALE_GRID, SPREAD_GRID, BROAD_GRID):
        gram = scale_w * grams[0] + spread_w * grams[1] + broad_w * grams[2] + floor_eye
        lam, vec = np.linalg.eigh(gram / np.outer(root, root))
        z2 = (vec.T @ (resid / root)) ** 2
        for noise, log_prior in zip(prior.noise_grid, prior.noise_log_prior, strict=True):
            ev = np.maximum(lam, 0.0) + noise
            logliks.append(log_prior - 0.5 * ((z2 / ev).sum() + np.log(ev).sum()))
            settings.append((scale_w, spread_w, broad_w, noise))
    loglik = np.asarray(logliks)
    weights = np.exp(loglik - loglik.max())
    parts = []
    for j in np.flatnonzero(weights > MIN_WEIGHT * weights.sum()):
        scale_w, spread_w, broad_w, noise = settings[j]
        cov = scale_w * prior.cov + np.diag(spread_w * prior.spread) + broad_w * broad
        c_phi = phi_s @ cov
        gain = np.linalg.solve(c_phi @ phi_s.T + noise * np.diag(rel_var) + floor_eye, c_phi).T
        parts.append((weights[j], prior.mean + gain @ resid, cov - gain @ c_phi, noise))
    total = sum(p[0] for p in parts)
    mean = sum(w * m for w, m, _, _ in parts) / total
    cov = sum(w * (c + np.outer(m - mean, m - mean)) for w, m, c, _ in parts) / total
    return mean, (cov + cov.T) / 2, float(sum(w * n for w, _, _, n in parts) / total)
