"""Cross-device prior over per-device cost vectors and Bayesian linear regression on a new device's samples.

A device's latency, divided by its mean latency, is ``phi(arch) . w`` with ``phi`` = additive op features plus GCN
arch embeddings and ``w`` the device's head (its embedding). Source devices give heads ``w_d``; their mean and
covariance form a Gaussian prior. A new device's K samples (ms) set a scale (``s0``) and refine ``w`` in closed
form; the noise variance and the prior's spread are chosen on grids by marginal likelihood (times a log-normal
prior on the noise fitted to the source devices' residual levels).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from predictor.features import FEATURE_NAMES

SCALE_VARIANCE = 0.05
"""Prior variance of the relative error of the sample-mean scale estimate (added along the prior mean)."""
JITTER = 1e-4
"""Isotropic prior variance floor."""
NOISE_GRID_SIZE = 12
SPREAD_GRID = (0.0, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
"""Candidate weights of the per-feature prior variance (mean squared source head): room for devices outside the
span of the source devices; the samples choose it by marginal likelihood."""
PLANNING_SPREAD = 0.03
BROAD_GRID = (0.0, 0.01, 0.1, 1.0)
"""Candidate variances of the broad components, in units of one normalised mean latency per arch."""
BROAD_LOG_PRIOR = -1.0
"""Log prior of each broad component switched on (the cross-device prior is preferred when the samples agree)."""
MIN_WEIGHT = 1e-3
AVERAGE = True
"""Hyperparameter settings below this posterior weight are left out of the average."""
FEATURE_GROUPS = (
    [i for i, n in enumerate(FEATURE_NAMES) if not n.startswith("edge")],
    [i for i, n in enumerate(FEATURE_NAMES) if n.startswith("edge")],
)
"""Op-count features (intercept, disconnected flag, live and dead counts) and per-edge op one-hots."""


@dataclass(frozen=True)
class Prior:
    """Gaussian prior N(mean, cov) over normalised device heads, and the candidate noise variances."""

    mean: np.ndarray  # [F]
    cov: np.ndarray  # [F, F], cross-device covariance + scale variance + jitter
    spread: np.ndarray  # [F] per-feature variance, weighted by a value of SPREAD_GRID
    noise_grid: np.ndarray  # [G] normalised noise variances to choose from
    noise_log_prior: np.ndarray  # [G] log prior of each (log-normal fitted to the source devices' noise)

    @property
    def typical_noise(self) -> float:
        """The median candidate noise variance (used to plan samples before any is measured)."""
        return float(self.noise_grid[np.argmax(self.noise_log_prior)])

    def planning_cov(self) -> np.ndarray:
        """The covariance used to choose samples before any is measured."""
        return self.cov + PLANNING_SPREAD * np.diag(self.spread)


def ridge_head(phi: np.ndarray, y: np.ndarray, lam: float = 1e-3) -> np.ndarray:
    """Least-squares head of one device (rows with NaN targets ignored), rescaled to mean prediction 1."""
    ok = ~np.isnan(y)
    a = phi[ok]
    w = np.linalg.solve(a.T @ a + lam * np.eye(phi.shape[1]), a.T @ y[ok])
    return w / float(np.mean(phi @ w))


def fit_prior(phi: np.ndarray, latencies: dict[str, np.ndarray]) -> tuple[Prior, dict[str, np.ndarray]]:
    """Prior from source devices (ms arrays by official index, NaN = not measured); also returns their heads."""
    heads, noise = {}, []
    for name, lat in latencies.items():
        y = lat / np.nanmean(lat)
        w = ridge_head(phi, y)
        heads[name] = w
        resid = (y - phi @ w)[~np.isnan(y)]
        noise.append(float(np.mean(resid**2)))
    w_all = np.stack(list(heads.values()))
    mean = w_all.mean(0)
    cov = np.cov(w_all.T) if len(w_all) > 1 else np.zeros((len(mean), len(mean)))
    cov = cov + SCALE_VARIANCE * np.outer(mean, mean) + JITTER * np.eye(len(mean))
    spread = np.mean(w_all**2, 0) + JITTER
    grid = np.geomspace(max(min(noise) / 3, 1e-6), max(noise) * 3, NOISE_GRID_SIZE)
    log_noise = np.log(np.maximum(noise, 1e-6))
    log_prior = -0.5 * ((np.log(grid) - log_noise.mean()) / max(float(log_noise.std()), 1.0)) ** 2
    return Prior(mean, cov, spread, grid, log_prior), heads


@dataclass(frozen=True)
class Posterior:
    """Posterior N(mean, cov) of a device's normalised head, its scale (ms per unit) and noise variance."""

    mean: np.ndarray
    cov: np.ndarray
    scale_ms: float
    noise: float


def _broad_directions(phi_s: np.ndarray) -> list[np.ndarray]:
    """Per feature group (op counts, per-edge ops), a diagonal variance of one unit of normalised latency per arch."""
    out = []
    for group in FEATURE_GROUPS:
        mask = np.zeros(phi_s.shape[1])
        mask[group] = 1.0
        out.append(mask / max(float(np.mean((phi_s[:, group] ** 2).sum(1))), 1e-9))
    return out


def posterior(
    prior: Prior, phi_s: np.ndarray, y_ms: np.ndarray, default_scale_ms: float, *, robust: bool = True
) -> Posterior:
    """Condition the prior on samples (features [K, F], latencies ms [K]); K = 0 gives the prior itself.

    Hyperparameters (prior spread, broad op-cost and per-edge components, noise) are weighed by marginal likelihood
    and the posteriors averaged (moment-matched): the broad components let the samples override the cross-device
    prior on devices unlike the sources. ``robust=False`` = the original method (prior spread and noise only,
    best single setting), kept for comparison benches.
    """
    if len(y_ms) == 0:
        return Posterior(prior.mean, prior.planning_cov(), default_scale_ms, prior.typical_noise)
    scale = float(np.mean(y_ms) / np.mean(phi_s @ prior.mean))
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError("latencies must be positive milliseconds")
    y = y_ms / scale
    resid = y - phi_s @ prior.mean
    broad = _broad_directions(phi_s) if robust else []
    grids = [BROAD_GRID for _ in broad]
    settings, logliks = [], []
    for spread_w in SPREAD_GRID:
        for weights in itertools.product(*grids):
            diag = spread_w * prior.spread + sum((w * d for w, d in zip(weights, broad, strict=True)), 0.0)
            cov = prior.cov + np.diag(diag)
            base = phi_s @ cov @ phi_s.T
            lam, vec = np.linalg.eigh((base + base.T) / 2)
            z2 = (vec.T @ resid) ** 2
            hyper = BROAD_LOG_PRIOR * sum(w > 0 for w in weights)
            for noise, log_prior in zip(prior.noise_grid, prior.noise_log_prior, strict=True):
                ev = np.maximum(lam, 0.0) + noise
                logliks.append(-0.5 * (z2 / ev).sum() - 0.5 * np.log(ev).sum() + log_prior + hyper)
                settings.append((cov, noise))
    logliks = np.asarray(logliks)
    if robust and AVERAGE:
        weights = np.exp(logliks - logliks.max())
        weights /= weights.sum()
        keep = np.flatnonzero(weights > MIN_WEIGHT)
    else:
        keep = np.array([int(np.argmax(logliks))])
        weights = np.ones(len(logliks))
    parts = []
    for j in keep:
        cov, noise = settings[j]
        c_phi = phi_s @ cov
        k = c_phi @ phi_s.T + noise * np.eye(len(y))
        gain = np.linalg.solve(k, c_phi).T  # [F, K]
        parts.append((weights[j], prior.mean + gain @ resid, cov - gain @ c_phi, noise))
    total = sum(p[0] for p in parts)
    mean = sum(w * m for w, m, _, _ in parts) / total
    post_cov = sum(w * (c + np.outer(m - mean, m - mean)) for w, m, c, _ in parts) / total
    noise = sum(w * n for w, _, _, n in parts) / total
    return Posterior(mean, (post_cov + post_cov.T) / 2, scale, float(noise))
