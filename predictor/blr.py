"""Bayesian linear regression of a device's normalised latency on arch features, for spaces whose features have
a block of device-agnostic cost columns (FBNet): the cross-device prior on the rest, a broad prior on the costs.

A device's latency divided by its scale is ``phi(arch) . w``. The prior on ``w`` is a mixture of N(m, c * cov + s *
diag(spread) + b * B): ``m`` the source devices' mean head (prior mass ``1 - SOURCE_MASS``) or one source device's
own head (``SOURCE_MASS`` shared equally), ``cov`` the heads' covariance, ``spread`` their mean squared weights, and
``B`` a broad component over the cost columns only (scaled so that it adds one unit of variance to the samples' mean
prediction). A device like one source (a GPU at another batch size, a sibling board) is then centred on it, and a
few cost weights pinned by a handful of samples let the target's own samples override the source devices where
they disagree (other families). The cost-only hypothesis (prior mass ``COST_MASS``, the sources share the rest)
centres ``m`` on a head of the costs alone (``cost_centres``, e.g. latency = kernels launched) with ``c`` = 0 and a
small spread: with 5 samples, a device unlike every source (a GPU among CPU and phone sources) is fitted from its
costs instead of the sources' per-layer block costs. Around a cost centre, a block-type efficiency component
(``efficiency``: the second moment of the source devices' deviations from their own cost-only fits along block-type
cost directions, ``fbnet_model.efficiency_cov``) lets the samples pin the few directions in which devices of any
family differ from their costs, instead of 27 free ones. ``m``, ``c``, ``s``, ``b`` and the noise are weighed by
marginal likelihood and the posteriors averaged (moment-matched; ``mixture.weigh``, NB201's too). ``c`` < 1
(``prior.SOURCE_WEIGHTS``) narrows the cross-device covariance for a device close to ``m``.
Noise is relative to each sample's latency (errors in %), and a prediction's to the predicted latency
(``Posterior.noise_at``). Samples in whole milliseconds (phone runtimes) add the rounding variance
(``prior.quantisation_variance``) to every sample, and their noise is heavy-tailed (Student-t with ``T_DOF`` degrees of
freedom, fitted by EM as a Gaussian scale mixture: a sample far off the fit gets its noise variance scaled up): on the
HELP devices a Student-t fit raises the ceiling of whole-ms phones only (samsung_s7 0.74 -> 0.79 Spearman,
``bench/fbnet_transfer.py``), and with 5 samples on other devices it mistakes a misfit prior for outliers.
The predictive sd is rescaled per device by leave-one-out cross-validation on the samples of the last Student-t step,
as NB201's (``prior.LeaveOneOut``), with FBNet's own ``TAIL_MARGIN``.
"""

from __future__ import annotations

import itertools

import numpy as np

from latfarm.predictor.mixture import Hypothesis, weigh
from latfarm.predictor.prior import (
    MIN_RELATIVE,
    SOURCE_WEIGHTS,
    LeaveOneOut,
    Posterior,
    Prior,
    quantisation_variance,
    unit_variance,
)

SPREAD_GRID = (0.0, 0.03, 0.3, 3.0)
BROAD_GRID = (0.0, 0.01, 0.1, 1.0, 10.0)
PLANNING_SPREAD = 0.3
PLANNING_BROAD = 1.0
T_DOF = 4.0
"""Degrees of freedom of the Student-t noise of whole-ms samples: 4, the usual robust-regression choice (finite
variance, tails that let a spike among 5-20 samples lose its pull on the fit)."""
T_ITERATIONS = 3
"""EM steps of the Student-t reweighting of whole-ms samples (the first is the Gaussian fit)."""
COST_MASS = 1 / 3
"""Prior probability of the cost-only hypothesis (the device's latency is carried by the network's costs, not by
the source devices' per-layer block costs); the source hypotheses share the rest."""
COST_SPREAD_GRID = (0.0, 0.03, 0.3)
"""Weights of the per-feature spread around a cost centre: the one-hot block stays near zero (std at most 0.55 of
the source devices' root-mean-square block costs)."""
COST_BROAD_GRID = (0.1, 1.0, 10.0)
"""Weights of the broad cost component around a cost centre: the cost weights are the samples' to fit."""
EFFICIENCY_GRID = (0.0, 0.3, 1.0, 3.0)
"""Weights of the block-type efficiency component around a cost centre (1: deviations as large as the source
devices'; 0: none, the plain cost-only fit)."""
TAIL_MARGIN = 1.0
"""FBNet's margin on the leave-one-out sd factor (``prior.loo_std_factor``): none, its errors are close to Gaussian
(2-sd coverage 0.95-0.96 where 1-sd is 0.72-0.78; NB201's margin 1.15 here: cells in band 22 / 22 -> 18 / 15)."""
SOURCE_MASS = 0.5
"""Prior probability that the device is centred on one source device's head rather than on their mean: even odds
(no preference between the two hypotheses), split equally among the source devices."""


def planning_cov(prior: Prior, phi_pool: np.ndarray, cost_columns: np.ndarray) -> np.ndarray:
    """The covariance used to choose samples before any is measured (typical spread and broad weights)."""
    broad = unit_variance(phi_pool, np.eye(phi_pool.shape[1])[:, cost_columns])
    return prior.cov + PLANNING_SPREAD * np.diag(prior.spread) + PLANNING_BROAD * broad


def posterior_with_costs(
    prior: Prior,
    phi_s: np.ndarray,
    y_ms: np.ndarray,
    default_scale_ms: float,
    cost_columns: np.ndarray,
    sources: np.ndarray | None = None,
    cost_centres: np.ndarray | None = None,
    calibrating: np.ndarray | None = None,
    efficiency: np.ndarray | None = None,
) -> Posterior:
    """Condition the prior on samples (features [K, F], latencies ms [K]); K = 0 gives the planning prior.
    ``sources`` [D, F]: the source devices' heads, candidate centres besides ``prior.mean`` (None: the mean only).
    ``cost_centres`` [C, F]: centres of the cost-only hypothesis (prior mass ``COST_MASS``; None: not weighed).
    ``efficiency`` [F, F]: the cost-only hypothesis's block-type efficiency component (weights ``EFFICIENCY_GRID``;
    None: none).
    ``calibrating`` [K]: the samples measured to calibrate the spread (``prior.LeaveOneOut``); all are fitted."""
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
    parts = (prior.cov, np.diag(prior.spread), unit_variance(phi_s, np.eye(phi_s.shape[1])[:, cost_columns]))
    grid = np.array(list(itertools.product(SOURCE_WEIGHTS, SPREAD_GRID, BROAD_GRID)))
    hypotheses = [Hypothesis(centres, log_mass, parts, grid)]
    if cost_centres is not None and len(cost_centres):
        cost_parts = parts[1:] if efficiency is None else (*parts[1:], efficiency)
        cost_grid = (COST_SPREAD_GRID, COST_BROAD_GRID) + (() if efficiency is None else (EFFICIENCY_GRID,))
        hypotheses = [
            Hypothesis(centres, log_mass + np.log(1 - COST_MASS), parts, grid),
            Hypothesis.shared(cost_centres, COST_MASS, cost_parts, itertools.product(*cost_grid)),
        ]
    rel_var = np.maximum(y / y.mean(), MIN_RELATIVE) ** 2
    floor = quantisation_variance(y_ms) / scale**2
    weights = np.ones(len(y))
    for _ in range(T_ITERATIONS - 1 if floor > 0 else 0):
        mean, cov, noise = weigh(prior, hypotheses, phi_s, y, rel_var / weights, floor)
        expected = (y - phi_s @ mean) ** 2 + ((phi_s @ cov) * phi_s).sum(1)
        weights = (T_DOF + 1) / (T_DOF + expected / (noise * rel_var / weights + floor))
    loo = LeaveOneOut(TAIL_MARGIN, calibrating)
    mean, cov, noise = weigh(prior, hypotheses, phi_s, y, rel_var / weights, floor, loo=loo)
    return Posterior(mean, cov, scale, floor, relative=noise, level=float(y.mean()), std_factor=loo.std_factor())
