"""Bayesian linear regression of a device's normalised latency on arch features, for spaces whose features have
a block of device-agnostic cost columns (FBNet): the cross-device prior on the rest, a broad prior on the costs.

A device's latency divided by its scale is ``phi(arch) . w``. The prior on ``w`` is a mixture of N(m, c * cov + s *
diag(spread) + b * B): ``m`` the source devices' mean head (prior mass ``1 - SOURCE_MASS``) or one source device's
own head (``SOURCE_MASS`` shared equally), ``cov`` the heads' covariance, ``spread`` their mean squared weights, and
``B`` a broad component over the cost columns only (scaled so that it adds one unit of variance to the samples' mean
prediction). A device like one source (a GPU at another batch size, a sibling board) is then centred on it, and a
few cost weights pinned by a handful of samples let the target's own samples override the source devices where
they disagree (other families). ``m``, ``c``, ``s``, ``b`` and the noise are weighed by marginal likelihood and the
posteriors averaged (moment-matched). ``c`` < 1 narrows the cross-device covariance for a device close to ``m``.
Noise is relative to each sample's latency (errors in %). Samples in whole milliseconds (phone runtimes) add the
rounding variance (``prior.quantisation_variance``) to every sample, and their noise is heavy-tailed (Student-t with
``T_DOF`` degrees of freedom, fitted by EM as a Gaussian scale mixture: a sample far off the fit gets its noise
variance scaled up): on the HELP devices a Student-t fit raises the ceiling of whole-ms phones only (samsung_s7
0.74 -> 0.79 Spearman, ``bench/fbnet_transfer.py``), and with 5 samples on other devices it mistakes a misfit prior
for outliers.
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
"""Degrees of freedom of the Student-t noise of whole-ms samples: 4, the usual robust-regression choice (finite
variance, tails that let a spike among 5-20 samples lose its pull on the fit)."""
T_ITERATIONS = 3
"""EM steps of the Student-t reweighting of whole-ms samples (the first is the Gaussian fit)."""
SOURCE_MASS = 0.5
"""Prior probability that the device is centred on one source device's head rather than on their mean: even odds
(no preference between the two hypotheses), split equally among the source devices."""


def broad_variance(phi_s: np.ndarray, cost_columns: np.ndarray) -> np.ndarray:
    """The broad component over ``cost_columns``, unit variance added to the mean prediction of rows ``phi_s``."""
    basis = np.eye(phi_s.shape[1])[:, cost_columns]
    return basis @ basis.T / max(float(np.mean(((phi_s @ basis) ** 2).sum(1))), 1e-9)


def planning_cov(prior: Prior, phi_pool: np.ndarray, cost_columns: np.ndarray) -> np.ndarray:
    """The covariance used to choose samples before any is measured (typical spread and broad weights)."""
    broad = broad_variance(phi_pool, cost_columns)
    return prior.cov + PLANNING_SPREAD * np.diag(prior.spread) + PLANNING_BROAD * broad


def posterior_with_costs(
    prior: Prior,
    phi_s: np.ndarray,
    y_ms: np.ndarray,
    default_scale_ms: float,
    cost_columns: np.ndarray,
    sources: np.ndarray | None = None,
) -> Posterior:
    """Condition the prior on samples (features [K, F], latencies ms [K]); K = 0 gives the planning prior.
    ``sources`` [D, F]: the source devices' heads, candidate centres besides ``prior.mean`` (None: the mean only)."""
    if len(y_ms) == 0:
        cov = prior.cov + PLANNING_SPREAD * np.diag(prior.spread)
        return Posterior(prior.mean, cov, default_scale_ms, prior.typical_noise)
    scale = float(np.mean(y_ms) / np.mean(phi_s @ prior.mean))
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError("latencies must be positive milliseconds")
    y = y_ms / scale
    centres, log_mass = np.asarray(prior.mean)[None, :], np.zeros(1)
    if sources is not None and len(sources):
        centres = np.vstack([centres, sources])
        log_mass = np.log(np.r_[1 - SOURCE_MASS, np.full(len(sources), SOURCE_MASS / len(sources))])
    rel_var = np.maximum(y / y.mean(), MIN_RELATIVE) ** 2
    floor = quantisation_variance(y_ms) / scale**2
    broad = broad_variance(phi_s, cost_columns)
    weights = np.ones(len(y))
    for _ in range(T_ITERATIONS if floor > 0 else 1):
        mean, cov, noise = _weighed(prior, centres, log_mass, phi_s, y, rel_var / weights, floor, broad)
        expected = (y - phi_s @ mean) ** 2 + ((phi_s @ cov) * phi_s).sum(1)
        weights = (T_DOF + 1) / (T_DOF + expected / (noise * rel_var / weights + floor))
    return Posterior(mean, cov, scale, noise + floor)


def _weighed(
    prior: Prior,
    centres: np.ndarray,
    log_mass: np.ndarray,
    phi_s: np.ndarray,
    y: np.ndarray,
    rel_var: np.ndarray,
    floor: float,
    broad: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Posterior mean, covariance and noise with every centre [C, F] (log prior mass [C]) and setting of the grids
    weighed by marginal likelihood; sample i's noise variance is ``noise * rel_var[i] + floor``."""
    root = np.sqrt(rel_var)
    resids = y[None, :] - centres @ phi_s.T  # [C, K]
    grams = [phi_s @ part @ phi_s.T for part in (prior.cov, np.diag(prior.spread), broad)]
    floor_eye = floor * np.eye(len(y))
    settings, logliks = [], []
    for scale_w, spread_w, broad_w in itertools.product(SCALE_GRID, SPREAD_GRID, BROAD_GRID):
        gram = scale_w * grams[0] + spread_w * grams[1] + broad_w * grams[2] + floor_eye
        lam, vec = np.linalg.eigh(gram / np.outer(root, root))
        z2 = ((resids / root) @ vec) ** 2
        for noise, log_prior in zip(prior.noise_grid, prior.noise_log_prior, strict=True):
            ev = np.maximum(lam, 0.0) + noise
            logliks.append(log_prior + log_mass - 0.5 * ((z2 / ev).sum(1) + np.log(ev).sum()))
            settings.append((scale_w, spread_w, broad_w, noise))
    loglik = np.asarray(logliks)  # [settings, C]
    weights = np.exp(loglik - loglik.max())
    weights[weights <= MIN_WEIGHT * weights.sum()] = 0.0
    total = weights.sum()
    # Moments about the prior mean, accumulated per setting (its covariance is shared by every centre).
    first, second, noise_sum = np.zeros(len(prior.mean)), np.zeros((len(prior.mean),) * 2), 0.0
    for j in np.flatnonzero(weights.any(1)):
        scale_w, spread_w, broad_w, noise = settings[j]
        cov = scale_w * prior.cov + np.diag(spread_w * prior.spread) + broad_w * broad
        c_phi = phi_s @ cov
        gain = np.linalg.solve(c_phi @ phi_s.T + noise * np.diag(rel_var) + floor_eye, c_phi).T
        kept = np.flatnonzero(weights[j])
        w = weights[j, kept]
        means = centres[kept] - prior.mean + resids[kept] @ gain.T  # [kept, F]
        first += w @ means
        second += w.sum() * (cov - gain @ c_phi) + (means.T * w) @ means
        noise_sum += w.sum() * noise
    shift = first / total
    cov = second / total - np.outer(shift, shift)
    return prior.mean + shift, (cov + cov.T) / 2, float(noise_sum / total)
