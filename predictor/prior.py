"""Cross-device prior over per-device cost vectors and Bayesian linear regression on a new device's samples.

A device's latency, divided by its mean latency, is ``phi(arch) . w`` with ``phi`` = additive op features plus GCN
arch embeddings and ``w`` the device's head (its embedding). Source devices give heads ``w_d``; their mean and
covariance form a Gaussian prior. A new device's K samples (ms) set a scale (``s0``) and refine ``w`` in closed
form; the noise variance, the prior's spread and the width of a broad op-cost component are weighed on grids by
marginal likelihood (times a log-normal prior on the noise fitted to the source devices' residual levels).
Other hypotheses can compete with the prior (NB201: the cost-only one, ``nb201_costs.cost_hypothesis``, one
centred on each source device's own head, ``source_hypothesis``, and the structure one, broad weights on the
critical-path columns, ``nb201_structure.structure_hypothesis``): their centres and covariances are weighed with the
prior's settings (``mixture.weigh``, FBNet's too). The noise is relative to the latency: a
sample's variance scales with its latency squared, a prediction's with the predicted latency's
(``Posterior.noise_at``). Samples in whole milliseconds add the rounding variance (1/12 ms^2) to the noise.
The predictive spread is then rescaled per device by leave-one-out cross-validation on the K samples
(``loo_std_factor``): marginal likelihood picks the settings assuming the prior's shape is right; how well the fit
predicts each sample it did not see is the check that does not.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from latfarm.predictor.calibration import calibrating_mask, calibration_factor
from latfarm.predictor.features import FEATURE_NAMES, NUM_OP_TYPES, OP_KINDS
from latfarm.predictor.mixture import Hypothesis, weigh
from latfarm.predictor.scores import GAUSSIAN_1SD

SCALE_VARIANCE = 0.05
"""Prior variance of the relative error of the sample-mean scale estimate (added along the prior mean)."""
JITTER = 1e-4
"""Isotropic prior variance floor."""
NOISE_GRID_SIZE = 12
SPREAD_GRID = (0.0, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
"""Candidate weights of the per-feature prior variance (mean squared source head): room for devices outside the
span of the source devices; the samples choose it by marginal likelihood."""
PLANNING_SPREAD = 0.03
BROAD_GRID = (0.0, 0.1, 1.0)
"""Candidate variances of the broad op-cost component, in (normalised mean latency)^2 per arch: lets a device's
samples override the cross-device prior on the op costs (devices unlike any source, weak priors)."""
BROAD_LOG_PRIOR = -1.0
"""Log prior of the broad component being on (the cross-device prior is preferred when the samples agree)."""
BROAD_FEATURES = [i for i, n in enumerate(FEATURE_NAMES) if not n.startswith("edge")]
"""Op-count features (intercept, disconnected flag, live and dead counts): few, so K=5-20 samples can pin them."""
SOURCE_WEIGHTS = (0.03, 0.1, 0.3, 1.0)
"""Weights of the cross-device covariance around a source centre (NB201: one source device's head,
``source_hypothesis``; FBNet: every centre of ``blr``'s source hypothesis): a device close to one source (a GPU at
another batch size among its siblings) needs a prior far narrower than all sources' spread, or its predicted std is
far wider than its errors (FBNet with 0.1 the narrowest: 1-sd coverage 0.9-0.99 at K=20 on 2080ti_1, titan_rtx_1,
titanx_1 in ``bench/fbnet_transfer.py``'s LODO)."""
MIN_RELATIVE = 0.2
"""Floor of a sample's latency relative to the samples' mean when scaling its noise (near-zero cells)."""
LOO_PRIOR_SD = 0.3
"""Prior sd of the log of a device's spread factor (``loo_std_factor``): how far from 1 the leave-one-out check
may move the spread, weighed against the few degrees of freedom the samples leave it."""
TAIL_MARGIN = 1.15
"""NB201: the leave-one-out factor aims the 1-sd coverage this much above 0.683 (at about 0.75, inside issue #16's
band 0.58-0.78): the errors are heavier-tailed than Gaussian (2-sd coverage 0.86-0.89 where 1-sd is 0.68), and the
2-sd coverage must clear 0.90 too (FBNet's: ``blr.TAIL_MARGIN``)."""
QUANTUM_MS = 1.0
"""Resolution of latencies reported in whole milliseconds (phone runtimes): rounding adds ``QUANTUM_MS**2 / 12``
of variance to every such measurement, a floor under the noise of that device that no fit removes."""


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
    heads, noise = source_heads(phi, latencies)
    return prior_from_heads(list(heads.values()), list(noise.values())), heads


def source_heads(phi: np.ndarray, latencies: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Each source device's head (``ridge_head`` of its latency over its mean) and its residual variance (the
    mean squared normalised residual over its measured archs), by device name."""
    heads, noise = {}, {}
    for name, lat in latencies.items():
        y = lat / np.nanmean(lat)
        heads[name] = ridge_head(phi, y)
        noise[name] = float(np.mean((y - phi @ heads[name])[~np.isnan(y)] ** 2))
    return heads, noise


def prior_from_heads(heads: list[np.ndarray], noise: list[float]) -> Prior:
    """The prior of source heads [F] each and their residual variances (``source_heads``)."""
    w_all = np.stack(heads)
    mean = w_all.mean(0)
    cov = np.cov(w_all.T) if len(w_all) > 1 else np.zeros((len(mean), len(mean)))
    cov = cov + SCALE_VARIANCE * np.outer(mean, mean) + JITTER * np.eye(len(mean))
    spread = np.mean(w_all**2, 0) + JITTER
    grid = np.geomspace(max(min(noise) / 3, 1e-6), max(noise) * 3, NOISE_GRID_SIZE)
    log_noise = np.log(np.maximum(noise, 1e-6))
    log_prior = -0.5 * ((np.log(grid) - log_noise.mean()) / max(float(log_noise.std()), 1.0)) ** 2
    return Prior(mean, cov, spread, grid, log_prior)


def extended(prior: Prior, columns: int, variance: float = 0.0) -> Prior:
    """``prior`` over ``columns`` more features appended last: weight 0, independent variance ``variance`` each, no
    spread (columns that only a competing hypothesis weighs: the network costs, the structure columns)."""
    size = len(prior.mean)
    cov = np.zeros((size + columns, size + columns))
    cov[:size, :size] = prior.cov
    cov[size:, size:] = variance * np.eye(columns)
    pad = np.zeros(columns)
    return Prior(
        np.concatenate([prior.mean, pad]),
        cov,
        np.concatenate([prior.spread, pad]),
        prior.noise_grid,
        prior.noise_log_prior,
    )


@dataclass(frozen=True)
class Posterior:
    """Posterior N(mean, cov) of a device's normalised head, its scale (ms per unit) and its noise: at a normalised
    prediction ``mu`` a variance of ``noise + relative * max(mu / level, MIN_RELATIVE)**2`` (``noise_at``), so the
    noise grows with the predicted latency as the fit's does with each sample's; ``relative`` 0 = uniform ``noise``
    (the non-robust fit, states stored before ``relative`` and ``level`` were). ``std_factor`` multiplies every
    predictive sd (``loo_std_factor``; 1 = none: the non-robust fit, K = 0, states stored before it)."""

    mean: np.ndarray
    cov: np.ndarray
    scale_ms: float
    noise: float
    relative: float = 0.0
    level: float = 1.0
    std_factor: float = 1.0

    def noise_at(self, mu: np.ndarray) -> np.ndarray:
        """Noise variances (normalised units) at normalised predictions ``mu`` [n] (``phi @ mean``)."""
        mu = np.asarray(mu, dtype=np.float64)
        return self.noise + self.relative * np.maximum(mu / self.level, MIN_RELATIVE) ** 2

    def to_state(self) -> dict:
        """JSON-ready fields (how device-model states store a posterior)."""
        return {
            "mean": self.mean.tolist(),
            "cov": self.cov.tolist(),
            "scale_ms": self.scale_ms,
            "noise": self.noise,
            "relative": self.relative,
            "level": self.level,
            "std_factor": self.std_factor,
        }

    @classmethod
    def from_state(cls, state: dict) -> Posterior:
        """The posterior stored by ``to_state`` (extra keys of the state are ignored; a state without ``relative``
        and ``level`` has uniform noise, one without ``std_factor`` the spread as fitted)."""
        return cls(
            mean=np.asarray(state["mean"], dtype=np.float64),
            cov=np.asarray(state["cov"], dtype=np.float64),
            scale_ms=float(state["scale_ms"]),
            noise=float(state["noise"]),
            relative=float(state.get("relative", 0.0)),
            level=float(state.get("level", 1.0)),
            std_factor=float(state.get("std_factor", 1.0)),
        )


def unit_variance(phi_s: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """[F, F] covariance of free weights along ``basis`` [F, B], scaled so that it adds one unit of variance to the
    mean prediction of rows ``phi_s`` [K, F]."""
    return basis @ basis.T / max(float(np.mean(((phi_s @ basis) ** 2).sum(1))), 1e-9)


def broad_basis(size: int) -> np.ndarray:
    """[size, B]: the broad component's directions over features ``FEATURE_NAMES`` first: one free cost per op type
    (live, zero-fed and dead alike) and one per op-count feature (``BROAD_FEATURES``)."""
    tied = np.zeros((size, NUM_OP_TYPES))
    for op in range(NUM_OP_TYPES):
        tied[[2 + kind * NUM_OP_TYPES + op for kind in range(len(OP_KINDS))], op] = 1.0
    return np.hstack([tied, np.eye(size)[:, BROAD_FEATURES]])


def source_hypothesis(prior: Prior, sources: np.ndarray, mass: float) -> Hypothesis:
    """The hypothesis that the device is close to one source device: centred on one of the source heads
    ``sources`` [D, F] (prior probability ``mass``) with the cross-device covariance times one of ``SOURCE_WEIGHTS``
    around it (the scale variance kept whole)."""
    scale = SCALE_VARIANCE * np.outer(prior.mean, prior.mean)
    return Hypothesis.shared(sources, mass, (prior.cov, scale), [(w, 1 - w) for w in SOURCE_WEIGHTS])


def posterior(
    prior: Prior,
    phi_s: np.ndarray,
    y_ms: np.ndarray,
    default_scale_ms: float,
    *,
    robust: bool = True,
    alternatives: Sequence[Hypothesis] = (),
    calibrating: np.ndarray | None = None,
) -> Posterior:
    """Condition the prior on samples (features [K, F], latencies ms [K]); K = 0 gives the prior itself.

    Robust (default): noise relative to each sample's latency (errors in %, as quantised and run-to-run noise
    are; predictions get it relative to the predicted latency, ``Posterior.noise_at``), a broad component over the
    op-count features whose width, like the prior spread and the noise, is weighed by marginal likelihood, and the
    posteriors of all plausible settings averaged (moment-matched), so the samples override the cross-device prior
    on devices unlike the sources, and the spread rescaled by leave-one-out cross-validation (``loo_std_factor``);
    ``alternatives`` compete with the prior (their settings join the average; the prior keeps the mass they leave).
    ``robust=False``: the baseline that ``bench/predictor_ood.py`` compares against: uniform noise, no broad
    component, no alternatives, no leave-one-out factor, and the single most likely setting of spread and noise.
    ``calibrating`` [K]: the samples measured to calibrate the spread (``LeaveOneOut``); all are fitted.
    """
    if len(y_ms) == 0:
        return Posterior(prior.mean, prior.planning_cov(), default_scale_ms, prior.typical_noise)
    scale = float(np.mean(y_ms) / np.mean(phi_s @ prior.mean))
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError("latencies must be positive milliseconds")
    y = y_ms / scale
    rel_var = np.maximum(y / y.mean(), MIN_RELATIVE) ** 2 if robust else np.ones(len(y))
    floor = quantisation_variance(y_ms) / scale**2 if robust else 0.0
    broad = unit_variance(phi_s, broad_basis(phi_s.shape[1]))
    coefs = np.array([(1.0, s, b) for s, b in itertools.product(SPREAD_GRID, BROAD_GRID if robust else (0.0,))])
    alternatives = alternatives if robust else ()
    own = Hypothesis(
        prior.mean[None, :],
        np.array([np.log1p(-sum(alt.mass for alt in alternatives))]),
        (prior.cov, np.diag(prior.spread), broad),
        coefs,
        BROAD_LOG_PRIOR * (coefs[:, 2] > 0),
    )
    loo = LeaveOneOut(calibrating=calibrating) if robust else None
    mean, cov, noise = weigh(prior, [own, *alternatives], phi_s, y, rel_var, floor, best_only=not robust, loo=loo)
    if loo is None:
        return Posterior(mean, cov, scale, noise)
    return Posterior(mean, cov, scale, floor, relative=noise, level=float(y.mean()), std_factor=loo.std_factor())


def quantisation_variance(y_ms: np.ndarray) -> float:
    """Variance (ms^2) that rounding to whole milliseconds adds when every sample is a whole number of ms (K >= 2
    continuous measurements are all whole by chance with probability ~0); else 0."""
    steps = np.asarray(y_ms, dtype=np.float64) / QUANTUM_MS
    whole = len(steps) >= 2 and bool(np.all(np.abs(steps - np.round(steps)) < 1e-9))
    return QUANTUM_MS**2 / 12 if whole else 0.0


class LeaveOneOut:
    """The factor on a posterior mixture's predictive sd that leave-one-out cross-validation on the K samples calls
    for, with the space's ``margin`` (``loo_std_factor``): ``mixture.weigh`` hands it the mixture's settings
    (``add``), ``std_factor`` gives the factor (1 until then). With ``calibrating`` [K] marking at least
    ``calibration.MIN_CALIBRATION_ARCHS`` samples measured to calibrate (random archs, not chosen by the prior), the
    factor is ``calibration.calibration_factor`` of their leave-one-out z-scores instead."""

    def __init__(self, margin: float = TAIL_MARGIN, calibrating: np.ndarray | None = None) -> None:
        self.margin = margin
        self.factor = 1.0
        self.calibrating = calibrating

    def add(self, weights: np.ndarray, diag: np.ndarray, fitted: np.ndarray, sample_noise: np.ndarray) -> None:
        """The mixture's T Gaussian settings: posterior ``weights`` [T], each one's samples' covariance ``S`` by the
        diagonal of its inverse ``diag`` [T, K] and its noise part ``sample_noise`` [T, K], and ``fitted`` [T, K] =
        ``S^-1 r`` (``r`` the residuals from its centre); the residual degrees of freedom are their weighted mean."""
        weights = np.asarray(weights, dtype=np.float64)
        resid, var = loo_residuals(diag, fitted)
        z = mixture_loo_z(weights, resid, var)
        calibrating = calibrating_mask(self.calibrating, len(z))
        if calibrating is not None:
            self.factor = calibration_factor(z[calibrating])
            return
        dof = float(weights @ (diag * sample_noise).sum(-1) / weights.sum())
        self.factor = loo_std_factor(z, dof, self.margin)

    def std_factor(self) -> float:
        """``loo_std_factor`` of the mixture's LOO z-scores and its weighted residual degrees of freedom, or the
        calibrating samples' ``calibration_factor``."""
        return self.factor


def loo_residuals(diag: np.ndarray, fitted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Leave-one-out residuals and predictive variances [..., K] (noise included) of K samples under a Gaussian
    setting, in closed form from the diagonal ``diag`` [..., K] of the inverse of the samples' covariance ``S`` and
    ``fitted`` [..., K] = ``S^-1 r`` (``r`` their residuals from the setting's centre): ``fitted_i / diag_i`` and
    ``1 / diag_i``."""
    return fitted / diag, np.broadcast_to(1.0 / diag, np.broadcast_shapes(diag.shape, fitted.shape))


def mixture_loo_z(weights: np.ndarray, resid: np.ndarray, var: np.ndarray) -> np.ndarray:
    """[K] leave-one-out z-scores of a mixture of S Gaussian settings (posterior ``weights`` [S], their
    ``loo_residuals`` ``resid`` and ``var`` [S, K]): leaving sample i out divides each setting's weight by its
    likelihood of sample i given the rest, and the residual is divided by the sd of the mixture so reweighed."""
    log_w = np.log(weights)[:, None] + 0.5 * (resid**2 / var + np.log(var))
    w = np.exp(log_w - log_w.max(0))
    w /= w.sum(0)
    mean = (w * resid).sum(0)
    return mean / np.sqrt(np.maximum((w * (var + resid**2)).sum(0) - mean**2, 1e-18))


def loo_std_factor(z: np.ndarray, dof: float, margin: float = TAIL_MARGIN) -> float:
    """The factor on the predictive sd from leave-one-out z-scores ``z`` [K] and the samples' residual degrees of
    freedom ``dof`` (K - the effective number of fitted parameters: sum of noise_i (C^-1)_ii; about 1 at K=5, where
    the samples pin the head, 10-15 at K=20): ``margin`` times ``s`` shrunk toward 1, ``s`` the 0.683 quantile
    of |z| (the factor that would put the samples' own 1-sd coverage at 0.683; one far-off sample does not set it),
    shrunk as a log-normal posterior: prior log s ~ N(0, ``LOO_PRIOR_SD``^2), the estimate's variance 1 / (2 dof) as
    for a chi-square with ``dof`` degrees of freedom."""
    if not len(z):
        return 1.0
    log_s = float(np.log(max(np.quantile(np.abs(z), GAUSSIAN_1SD), 1e-6)))
    weight = LOO_PRIOR_SD**2 / (LOO_PRIOR_SD**2 + 1 / (2 * max(dof, 1e-9)))
    return margin * float(np.exp(weight * log_s))
