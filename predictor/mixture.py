"""The mixture Bayesian linear regression both spaces adapt with (NB201: ``prior.posterior``; FBNet:
``blr.posterior_with_costs``).

A device's normalised latency is ``phi(arch) . w``. The prior on the head ``w`` [F] is a mixture of Gaussians,
listed as ``Hypothesis`` objects: each has centres [C, F] with their log prior masses, and covariance settings, each a
combination of a few F x F "parts" (the cross-device covariance, the per-feature spread, a broad component, ...).
Every (centre, covariance setting, noise variance of the prior's grid) is one Gaussian setting, weighed by its
marginal likelihood on the K samples (times its prior masses); settings below ``MIN_WEIGHT`` of the best one's
weight are left out and the posteriors of the rest averaged (moment-matched). A setting's posterior mean is its
centre plus ``sum_p c_p part_p phi_s^T (S^-1 r)`` (``c`` its coefficients, ``S`` [K, K] the samples' covariance,
``r`` the residuals from the centre), so the moments are accumulated over the centres and ``P x K`` directions and
mapped to the F features once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from latfarm.predictor.prior import LeaveOneOut, Prior

MIN_WEIGHT = 1e-3
"""Settings below this share of the best one's posterior weight are left out of the average."""


@dataclass(frozen=True)
class Hypothesis:
    """Gaussian priors on the head: centred on one of ``centres`` [C, F] (log prior masses ``log_mass`` [C]), with
    covariance ``sum_p coefs[s, p] * parts[p]`` for each setting s (``coefs`` [S, P], ``parts`` P matrices [F, F],
    log priors ``log_cov``: [S] or one for all)."""

    centres: np.ndarray
    log_mass: np.ndarray
    parts: tuple[np.ndarray, ...]
    coefs: np.ndarray
    log_cov: np.ndarray | float = 0.0

    @classmethod
    def shared(
        cls,
        centres: np.ndarray,
        mass: float,
        parts: Sequence[np.ndarray],
        coefs: Iterable[Sequence[float]],
        log_cov: np.ndarray | float = 0.0,
    ) -> Hypothesis:
        """Centres [C, F] sharing prior probability ``mass`` equally; ``coefs`` [S, P] over ``parts``."""
        centres = np.asarray(centres, dtype=np.float64)
        log_mass = np.full(len(centres), np.log(mass / len(centres)))
        return cls(centres, log_mass, tuple(parts), np.asarray(list(coefs), dtype=np.float64), log_cov)

    @property
    def mass(self) -> float:
        """Prior probability of all its centres together."""
        return float(np.exp(self.log_mass).sum())

    @property
    def covs(self) -> tuple[np.ndarray, ...]:
        """Its covariance settings as [F, F] matrices."""
        return tuple(sum(c * part for c, part in zip(coef, self.parts, strict=True)) for coef in self.coefs)


def weigh(
    prior: Prior,
    hypotheses: Sequence[Hypothesis],
    phi_s: np.ndarray,
    y: np.ndarray,
    rel_var: np.ndarray,
    floor: float = 0.0,
    *,
    best_only: bool = False,
    loo: LeaveOneOut | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Posterior mean [F], covariance [F, F] and noise of the head given features ``phi_s`` [K, F] and normalised
    samples ``y`` [K]: every centre and covariance setting of ``hypotheses`` and every noise variance of
    ``prior.noise_grid`` weighed by marginal likelihood, or only the most likely (``best_only``; weight 1); sample
    i's noise variance is ``noise * rel_var[i] + floor`` (the returned noise is the average ``noise``). ``loo``
    collects the averaged settings for the leave-one-out sd factor (``prior.LeaveOneOut``; None: not wanted)."""
    parts, coefs = _common_parts(hypotheses)
    grams = np.stack([phi_s @ part @ phi_s.T for part in parts])  # [P, K, K]
    covs = [np.tensordot(c, grams, 1) + floor * np.eye(len(y)) for c in coefs]  # [S, K, K] per hypothesis
    resids = [y[None, :] - hyp.centres @ phi_s.T for hyp in hypotheses]  # [C, K] per hypothesis
    logliks = [_loglik(prior, hyp, cov, r, rel_var) for hyp, cov, r in zip(hypotheses, covs, resids, strict=True)]
    kept = _keep(_weights(logliks, best_only), coefs, covs, resids, np.asarray(prior.noise_grid), rel_var)
    inverse = np.linalg.inv(kept.cov)  # [N, K, K]
    fitted = (kept.resid[:, None, :] @ inverse[kept.pair])[:, 0]  # S^-1 r [T, K]
    if loo is not None:
        diag = np.diagonal(inverse, axis1=1, axis2=2)[kept.pair]
        loo.add(kept.weight, diag, fitted, kept.noise[kept.pair, None] * rel_var + floor)
    centres = np.vstack([hyp.centres for hyp in hypotheses])
    return _moments(prior.mean, centres, parts, phi_s, kept, inverse, fitted)


def _loglik(prior: Prior, hyp: Hypothesis, cov: np.ndarray, resids: np.ndarray, rel_var: np.ndarray) -> np.ndarray:
    """[S, G, C] log marginal likelihood plus log priors of each covariance setting (its sample covariance ``cov``
    [S, K, K], noise aside), noise variance of the prior's grid and centre (``resids`` [C, K] from each)."""
    root = np.sqrt(rel_var)
    lam, vec = np.linalg.eigh(cov / np.outer(root, root))  # [S, K], [S, K, K]
    z2 = ((resids / root) @ vec) ** 2  # [S, C, K]
    ev = np.maximum(lam, 0.0)[:, None, :] + np.asarray(prior.noise_grid)[None, :, None]  # [S, G, K]
    log_cov = np.broadcast_to(hyp.log_cov, len(cov))
    fit = (1 / ev) @ z2.transpose(0, 2, 1) + np.log(ev).sum(2)[:, :, None]  # [S, G, C]
    log_prior = np.asarray(prior.noise_log_prior)[None, :, None] + (log_cov[:, None, None] + hyp.log_mass)
    return log_prior - 0.5 * fit


def _common_parts(hypotheses: Sequence[Hypothesis]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The distinct parts of all hypotheses and each hypothesis's coefficients [S, P] over them."""
    parts: list[np.ndarray] = []
    coefs = []
    for hyp in hypotheses:
        index = []
        for part in hyp.parts:
            same = [i for i, p in enumerate(parts) if p is part or np.array_equal(p, part)]
            if not same:
                parts.append(part)
            index.append(same[0] if same else len(parts) - 1)
        full = np.zeros((len(hyp.coefs), len(parts)))
        for j, i in enumerate(index):
            full[:, i] += hyp.coefs[:, j]
        coefs.append(full)
    return parts, [np.pad(c, ((0, 0), (0, len(parts) - c.shape[1]))) for c in coefs]


def _weights(logliks: list[np.ndarray], best_only: bool) -> list[np.ndarray]:
    """Posterior weights (of log-likelihoods ``logliks``, any shapes), relative to the best one's; only the best
    one's, 1, when ``best_only`` (the first in order on a tie)."""
    peak = max(float(ll.max()) for ll in logliks)
    if not best_only:
        return [np.exp(ll - peak) for ll in logliks]
    best = int(np.argmax(np.concatenate([ll.ravel() for ll in logliks])))
    weights = [np.zeros(ll.shape) for ll in logliks]
    for w in weights:
        if best < w.size:
            w.flat[best] = 1.0
            break
        best -= w.size
    return weights


@dataclass(frozen=True)
class _Kept:
    """The settings ``weigh`` averages, all hypotheses' together: T (centre, covariance, noise) settings, of N
    (covariance, noise) pairs."""

    weight: np.ndarray  # [T] posterior weights
    centre: np.ndarray  # [T] index among all hypotheses' centres
    resid: np.ndarray  # [T, K] the samples' residuals from the centre
    pair: np.ndarray  # [T] index of the (covariance, noise) pair
    cov: np.ndarray  # [N, K, K] the samples' covariance, noise included
    coef: np.ndarray  # [N, P] the covariance's coefficients over the parts
    noise: np.ndarray  # [N]


def _keep(
    weights: list[np.ndarray],
    coefs: list[np.ndarray],
    covs: list[np.ndarray],
    resids: list[np.ndarray],
    noise_grid: np.ndarray,
    rel_var: np.ndarray,
) -> _Kept:
    """The settings above ``MIN_WEIGHT`` of the best one's weight, from each hypothesis's ``weights`` [S, G, C],
    ``coefs`` [S, P], ``covs`` [S, K, K] (noise aside) and ``resids`` [C, K], in that order."""
    threshold = MIN_WEIGHT * sum(float(w.sum()) for w in weights)
    columns = []
    centres = pairs = 0
    for w, coef, cov, r in zip(weights, coefs, covs, resids, strict=True):
        s, g, c = np.nonzero(w > threshold)
        _, first, which = np.unique(s * len(noise_grid) + g, return_index=True, return_inverse=True)
        noise = noise_grid[g[first]]
        sample_cov = cov[s[first]] + noise[:, None, None] * np.diag(rel_var)
        columns.append((w[s, g, c], centres + c, r[c], pairs + which, sample_cov, coef[s[first]], noise))
        centres, pairs = centres + len(r), pairs + len(first)
    return _Kept(*(np.concatenate(column) for column in zip(*columns, strict=True)))


def _moments(
    origin: np.ndarray,
    centres: np.ndarray,
    parts: list[np.ndarray],
    phi_s: np.ndarray,
    kept: _Kept,
    inverse: np.ndarray,
    fitted: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Mean [F], covariance [F, F] and noise of the mixture of the ``kept`` settings' posteriors (``inverse``
    [N, K, K] of their samples' covariances, ``fitted`` [T, K] each one's ``S^-1 r``; ``centres`` [C, F] of all
    hypotheses). Each posterior mean is
    ``origin + basis @ z``, ``basis`` = [centres - origin, part_p phi_s^T for each part] (F x (C + P K)), and each
    covariance ``sum_p c_p part_p - reach (c c^T kron S^-1) reach^T``: both are averaged in these coordinates, then
    mapped to the F features once."""
    k, p, t = len(phi_s), len(parts), len(kept.weight)
    pair_w = np.bincount(kept.pair, weights=kept.weight, minlength=len(inverse))
    total = float(pair_w.sum())
    z = np.zeros((t, len(centres) + p * k))
    z[np.arange(t), kept.centre] = 1.0
    z[:, len(centres) :] = (kept.coef[kept.pair][:, :, None] * fitted[:, None, :]).reshape(t, p * k)
    mean_z = kept.weight @ z / total
    spread = ((z - mean_z).T * kept.weight) @ (z - mean_z)  # centred: no cancellation against the mean's square
    weighed = pair_w[:, None] * kept.coef  # [N, P]
    shrink = (weighed[:, :, None] * kept.coef[:, None, :]).reshape(len(inverse), p * p).T @ inverse.reshape(-1, k * k)
    shrink = shrink.reshape(p, p, k, k).transpose(0, 2, 1, 3).reshape(p * k, p * k)
    reach = np.hstack([part @ phi_s.T for part in parts])  # [F, P K]
    basis = np.hstack([centres.T - origin[:, None], reach])
    prior_part = np.tensordot(weighed.sum(0), np.stack(parts), 1)
    cov = (prior_part - reach @ shrink @ reach.T + basis @ spread @ basis.T) / total
    return origin + basis @ mean_z, (cov + cov.T) / 2, float(pair_w @ kept.noise / total)
