"""Sample-selection criteria compared on held-out devices and families, the cross-family split and HELP's split.

Every criterion is greedy over the same seeded pool as ``Predictor.select_samples`` (zero-fed ops counted as dead)
and conditions on each pick before the next; adaptation and scoring are ``evaluate.transfer_scores``'s. Criteria
(``CRITERIA``): ``variance``, the default (largest posterior variance); ``info``, information gain under the
relative noise model (largest variance over the noise at the arch's prior prediction); ``mixture``, largest variance
under the moment-matched planning mixture of the hypotheses ``Predictor.adapt`` weighs (cross-device prior, source
heads, cost-only); ``transductive``, largest expected reduction of the variance of all archs' relative predictions
(V-optimal on the latency profile, scale left out); ``integrated``, ``integrated_centred`` and ``integrated_level``,
V-optimal on the normalised predictions (as they are, centred, centred with a quarter of the level's variance);
``connected``, the default without disconnected cells; ``half_random`` and ``fifth_random``, the default for
most picks and uniform draws for ⌊K/2⌋ or ⌊K/5⌋ of them; ``trim_varQ`` and ``trim_levQ`` (Q = 1, 2, 5), the
default with the Q% of archs of largest prior variance or ``leverage`` (squared Mahalanobis distance of the features
from all archs' centre) left out of the pool; ``densA`` (A = 2, 5, 10), largest variance x Gaussian density^(A/100)
(log variance - A/100 x leverage / 2); ``typicalM`` (M = 3, 10, 30), the least leverage among the M largest
variances. Fits (``FITS``, ``--fits``; each row is criterion+fit): ``full``, ``Predictor.adapt``; ``jackknife``,
``half_jackknife`` and ``median``, the means of the K leave-one-out fits (all, half-and-half with the full fit's,
the median with it); ``scaled_half``, ``scaled_half_log`` and ``scaled_jackknife``, the ranking of
``half_jackknife`` (or ``jackknife``) at the full fit's scale (the leave-one-out mean and the blend mapped onto the
full fit's mean and sd over all archs, in ms or in log ms); ``drop*``, the fit without the sample whose removal
changes the predicted ranking most (influence, 1 - Spearman of the full and leave-one-out predictions) when that
exceeds a threshold (and a ratio to the next). Pretraining is ``predictor_loo``'s (cached by data hash: pass its
``--cache``). Without ``--criteria`` it runs ``DEFAULT_CRITERIA``: the shipped ``variance`` and the four
docs/predictor-experiments.md compares it with under "Sample selection criteria".

    .venv/bin/python bench/selection_criteria.py --trials 3 --cache build/loo-cache
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
from predictor_loo import SOURCE_FAMILIES, family  # bench/ is the script's folder: on sys.path
from transfer_args import transfer_parser

from latfarm.predictor.blr import COST_BROAD_GRID, COST_MASS, COST_SPREAD_GRID, SOURCE_MASS
from latfarm.predictor.evaluate import cached_pretrain, transfer_scores
from latfarm.predictor.features import FEATURE_NAMES
from latfarm.predictor.help_data import load_help
from latfarm.predictor.model import Predictor
from latfarm.predictor.nb201_costs import COST_NAMES, PRUNED_OP_GRID, pruned_op_basis
from latfarm.predictor.nb201_structure import structure_hypothesis
from latfarm.predictor.pretrain import DEFAULT_EPOCHS
from latfarm.predictor.prior import MIN_RELATIVE, SCALE_VARIANCE, SOURCE_WEIGHTS, unit_variance
from latfarm.predictor.selection import POOL_SIZE

SPLITS = ("device", "family", "cross", "help")
"""Held out of pretraining: the device alone, its whole family, every family but ``SOURCE_FAMILIES``, or HELP's
test devices (``HELP_TEST``; pretrained on ``HELP_TRAIN``, as docs/predictor.md's ``latfarm eval transfer``)."""
HELP_TRAIN = [
    "1080ti_1",
    "1080ti_32",
    "2080ti_1",
    "2080ti_32",
    "titanx_1",
    "titanx_32",
    "titanxp_1",
    "titanxp_32",
    "titan_rtx_1",
    "silver_4114",
    "gold_6240",
    "samsung_a50",
    "pixel3",
]
HELP_TEST = ["1080ti_256", "titan_rtx_32", "titanxp_256", "silver_4210r", "samsung_s7", "essential_ph_1"]
REFERENCE_ARCHS = 3000
"""Random archs standing for all of them in the planning mixture and the transductive criterion."""


def greedy(p: Predictor, cov: np.ndarray, noise, k: int, seed: int, exclude, metric: np.ndarray | None = None):
    """K pool rows of ``p.planning_phi``, each maximising ``x' S M S x / (x' S x + noise_x)`` (``metric`` M [F, F];
    None: ``x' S x / noise_x``, the information gain's order) under the covariance S left by the picks before it;
    ``noise`` a scalar or [15625] per arch."""
    phi = p.planning_phi
    allowed = np.setdiff1d(np.arange(len(phi)), np.asarray(list(exclude), dtype=np.int64))
    pool = np.random.default_rng(seed).choice(allowed, size=min(max(POOL_SIZE, k), len(allowed)), replace=False)
    cand = phi[pool]
    nz = np.broadcast_to(np.asarray(noise, dtype=np.float64), (len(phi),))[pool]
    s = np.array(cov, dtype=np.float64)
    chosen: list[int] = []
    for _ in range(k):
        cs = cand @ s
        var = (cs * cand).sum(1)
        gain = var / nz if metric is None else ((cs @ metric) * cs).sum(1) / (var + nz)
        gain[np.isin(pool, chosen)] = -np.inf
        j = int(np.argmax(gain))
        chosen.append(int(pool[j]))
        sx = s @ cand[j]
        s = s - np.outer(sx, sx) / (cand[j] @ sx + nz[j])
    return chosen


def reference(p: Predictor) -> np.ndarray:
    """[REFERENCE_ARCHS, F] planning features of random archs (fixed seed)."""
    return p.planning_phi[np.random.default_rng(1).choice(len(p.phi), REFERENCE_ARCHS, replace=False)]


def planning_mixture(p: Predictor) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of the hypotheses ``Predictor.adapt`` weighs, at their prior masses, with each one's
    covariances averaged over its grid: the prior (planning covariance), the source heads (``SOURCE_WEIGHTS``), the
    cost-only centres (``blr``'s grids) and the structure hypothesis (``nb201_structure``'s grids)."""
    prior, size = p.prior, len(p.prior.mean)
    scale = SCALE_VARIANCE * np.outer(prior.mean, prior.mean)
    ref = reference(p)
    cost_cov = (
        np.mean(COST_SPREAD_GRID) * np.diag(prior.spread)
        + np.mean(COST_BROAD_GRID) * unit_variance(ref, np.eye(size)[:, p.cost_columns])
        + np.mean(PRUNED_OP_GRID) * unit_variance(ref, pruned_op_basis(size))
    )
    structure = structure_hypothesis(prior, ref, p.structure_columns)
    rest = 1 - structure.mass
    source_mass = rest * SOURCE_MASS * (1 - COST_MASS)
    sources = p.sources if p.sources is not None else np.zeros((0, size))
    parts = [(rest * (1 - COST_MASS) - source_mass, prior.mean, prior.planning_cov())]
    source_cov = np.mean(SOURCE_WEIGHTS) * (prior.cov - scale) + scale
    parts += [(source_mass / len(sources), c, source_cov) for c in sources]
    parts += [(rest * COST_MASS / len(COST_NAMES), c, cost_cov) for c in np.eye(size)[p.cost_columns]]
    parts += [(structure.mass, prior.mean, np.mean(structure.covs, 0))]
    mean = sum(w * c for w, c, _ in parts)
    cov = sum(w * (v + np.outer(c - mean, c - mean)) for w, c, v in parts)
    return mean, cov


def variance(p: Predictor, k: int, seed: int, exclude) -> list[int]:
    """The default: ``Predictor.select_samples``."""
    return p.select_samples(k, seed=seed, exclude=exclude)


def info(p: Predictor, k: int, seed: int, exclude) -> list[int]:
    """Largest information gain, the noise relative to the arch's prior prediction (``Posterior.noise_at``'s)."""
    mu = p.phi @ p.prior.mean
    noise = p.prior.typical_noise * np.maximum(mu / mu.mean(), MIN_RELATIVE) ** 2
    return greedy(p, p.prior.planning_cov(), noise, k, seed, exclude)


def mixture(p: Predictor, k: int, seed: int, exclude) -> list[int]:
    """Largest variance under ``planning_mixture``."""
    return greedy(p, planning_mixture(p)[1], p.prior.typical_noise, k, seed, exclude)


def transductive(p: Predictor, k: int, seed: int, exclude) -> list[int]:
    """Largest expected reduction of the variance of the reference archs' predictions over their prior ones,
    each centred (the common scale does not change a ranking)."""
    ref = reference(p)
    rel = ref / (ref @ p.prior.mean)[:, None]
    rel -= rel.mean(0)
    return greedy(p, p.prior.planning_cov(), p.prior.typical_noise, k, seed, exclude, rel.T @ rel / len(rel))


def _integrated(p: Predictor, k: int, seed: int, exclude, level: float | None) -> list[int]:
    """Largest expected reduction of the mean variance of the reference archs' normalised predictions (V-optimal in
    the head's units: a cut-off cell's flag weighs as much as the archs it describes); ``level`` None: the predictions
    as they are, else centred on their mean plus ``level`` times the mean's variance."""
    ref = reference(p)
    if level is None:
        return greedy(p, p.prior.planning_cov(), p.prior.typical_noise, k, seed, exclude, ref.T @ ref / len(ref))
    mean = ref.mean(0)
    metric = (ref - mean).T @ (ref - mean) / len(ref) + level * np.outer(mean, mean)
    return greedy(p, p.prior.planning_cov(), p.prior.typical_noise, k, seed, exclude, metric)


def integrated(p: Predictor, k: int, seed: int, exclude) -> list[int]:
    """V-optimal on the predictions as they are."""
    return _integrated(p, k, seed, exclude, None)


def integrated_centred(p: Predictor, k: int, seed: int, exclude) -> list[int]:
    """V-optimal on the predictions centred on their mean (a common offset does not change a ranking)."""
    return _integrated(p, k, seed, exclude, 0.0)


def integrated_level(p: Predictor, k: int, seed: int, exclude) -> list[int]:
    """``integrated_centred`` plus a quarter of the mean prediction's variance (some weight on the level)."""
    return _integrated(p, k, seed, exclude, 0.25)


def connected(p: Predictor, k: int, seed: int, exclude) -> list[int]:
    """The default with cells that have no path from input to output left out of the pool."""
    disconnected = np.flatnonzero(p.phi[:, FEATURE_NAMES.index("disconnected")] > 0)
    return variance(p, k, seed, np.union1d(np.asarray(list(exclude), dtype=np.int64), disconnected))


def _with_random(p: Predictor, k: int, seed: int, exclude, n_random: int) -> list[int]:
    """The default's first K - ``n_random`` picks, then ``n_random`` uniform draws of the rest (the bulk's level)."""
    first = variance(p, k - n_random, seed, exclude)
    taken = np.union1d(np.asarray(list(exclude), dtype=np.int64), first)
    rest = np.setdiff1d(np.arange(len(p.phi)), taken)
    return first + [int(i) for i in np.random.default_rng(seed + 1).choice(rest, n_random, replace=False)]


def half_random(p: Predictor, k: int, seed: int, exclude) -> list[int]:
    """The default for half the K (rounded up), uniform draws for the rest."""
    return _with_random(p, k, seed, exclude, k // 2)


def fifth_random(p: Predictor, k: int, seed: int, exclude) -> list[int]:
    """The default for K - K // 5, uniform draws for K // 5."""
    return _with_random(p, k, seed, exclude, k // 5)


def leverage(p: Predictor) -> np.ndarray:
    """[15625] each arch's squared Mahalanobis distance from the centre of all archs' planning features (their
    covariance pseudo-inverted): how atypical its features are."""
    phi = p.planning_phi
    d = phi - phi.mean(0)
    return ((d @ np.linalg.pinv(np.cov(phi.T))) * d).sum(1)


def prior_variance(p: Predictor) -> np.ndarray:
    """[15625] each arch's planning variance (the default's score for the first pick)."""
    return ((p.planning_phi @ p.prior.planning_cov()) * p.planning_phi).sum(1)


def _trimmed(p: Predictor, k: int, seed: int, exclude, *, score: Callable[[Predictor], np.ndarray], q: float):
    """The default with the archs whose ``score`` [15625] is in the top ``q`` (a share) left out of the pool."""
    values = score(p)
    top = np.flatnonzero(values >= np.quantile(values, 1 - q))
    return variance(p, k, seed, np.union1d(np.asarray(list(exclude), dtype=np.int64), top))


def _weighted(p: Predictor, k: int, seed: int, exclude, alpha: float = 0.0, top: int = 1) -> list[int]:
    """Greedy over the default's pool: each pick maximises log variance - ``alpha`` x leverage / 2 (variance x
    Gaussian density^alpha), or with ``top`` > 1 the least leverage among the ``top`` largest variances."""
    phi, prior = p.planning_phi, p.prior
    lev = leverage(p)
    allowed = np.setdiff1d(np.arange(len(phi)), np.asarray(list(exclude), dtype=np.int64))
    pool = np.random.default_rng(seed).choice(allowed, size=min(max(POOL_SIZE, k), len(allowed)), replace=False)
    cand, h = phi[pool], lev[pool]
    s = np.array(prior.planning_cov(), dtype=np.float64)
    taken = np.zeros(len(pool), dtype=bool)
    chosen: list[int] = []
    for _ in range(k):
        var = ((cand @ s) * cand).sum(1)
        score = np.log(np.maximum(var, 1e-300)) - alpha * h / 2
        score[taken] = -np.inf
        if top > 1:
            best = np.argsort(-score)[:top]
            j = int(best[np.argmin(h[best])])
        else:
            j = int(np.argmax(score))
        taken[j] = True
        chosen.append(int(pool[j]))
        sx = s @ cand[j]
        s = s - np.outer(sx, sx) / (cand[j] @ sx + prior.typical_noise)
    return chosen


class Fixed:
    """Predictions [15625] mean and sd in ms, as a device model's ``predict()`` gives them."""

    def __init__(self, mean: np.ndarray, std: np.ndarray) -> None:
        self.mean, self.std = mean, std

    def predict(self):
        return self.mean, self.std


def _ranks(x: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(x)).astype(np.float64)


def _loo_fits(p: Predictor, idx: np.ndarray, lat: np.ndarray):
    """The full fit's (mean, std) [15625] and each leave-one-out fit's means [K, 15625] and influence [K] (1 -
    Spearman between the full fit's and the leave-one-out fit's predictions of all archs)."""
    mean, std = p.adapt(idx, lat).predict()
    loo = np.stack([p.adapt(np.delete(idx, i), np.delete(lat, i)).predict()[0] for i in range(len(idx))])
    r = _ranks(mean)
    infl = np.array([1 - np.corrcoef(r, _ranks(m))[0, 1] for m in loo])
    return mean, std, loo, infl


def fit_full(p: Predictor, idx, lat):
    """The default: ``Predictor.adapt``."""
    return p.adapt(idx, lat)


class _LooMeans:
    """The full fit's (mean, std) [15625] and the mean of its K leave-one-out fits' means [15625], kept for the last
    predictor's samples so that every fit built on them shares the K + 1 adaptations."""

    def __init__(self) -> None:
        self.predictor: Predictor | None = None
        self.fits: dict[tuple[bytes, bytes], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def __call__(self, p: Predictor, idx: np.ndarray, lat: np.ndarray):
        if self.predictor is not p:
            self.predictor, self.fits = p, {}
        key = (idx.tobytes(), lat.tobytes())
        if key not in self.fits:
            mean, std = p.adapt(idx, lat).predict()
            loo = [p.adapt(np.delete(idx, i), np.delete(lat, i)).predict()[0] for i in range(len(idx))]
            self.fits[key] = mean, std, np.mean(loo, 0)
        return self.fits[key]


_loo_means = _LooMeans()


def fit_jackknife(p: Predictor, idx, lat, share: float = 1.0):
    """Means: (1 - ``share``) x the full fit's + ``share`` x the mean of the leave-one-out fits'; the full fit's sd."""
    mean, std, loo = _loo_means(p, idx, lat)
    return Fixed((1 - share) * mean + share * loo, std)


def _matched(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """``x`` mapped affinely onto ``ref``'s mean and sd over all archs."""
    return (x - x.mean()) / x.std() * ref.std() + ref.mean()


def fit_scaled_jackknife(p: Predictor, idx, lat, share: float = 0.5, log: bool = False):
    """The ranking of ``jackknife``'s blend at the full fit's scale: the leave-one-out fits' mean matched to the full
    fit's mean and sd over all archs, blended with ``share``, the blend matched again (``log``: all in log latency,
    predictions floored at ``MIN_RELATIVE`` x their mean); the full fit's sd."""
    mean, std, loo = _loo_means(p, idx, lat)
    if log:
        mean, loo = (np.log(np.maximum(m, MIN_RELATIVE * m.mean())) for m in (mean, loo))
    blend = _matched((1 - share) * mean + share * _matched(loo, mean), mean)
    return Fixed(np.exp(blend) if log else blend, std)


def fit_drop(p: Predictor, idx, lat, threshold: float = 0.05, ratio: float = 1.0):
    """The full fit, or the fit without the sample of largest influence when that influence exceeds ``threshold``
    and ``ratio`` times the next largest."""
    mean, std, loo, infl = _loo_fits(p, idx, lat)
    order = np.argsort(-infl)
    if infl[order[0]] > threshold and infl[order[0]] > ratio * infl[order[1]]:
        return p.adapt(np.delete(idx, order[0]), np.delete(lat, order[0]))
    return Fixed(mean, std)


def fit_median(p: Predictor, idx, lat):
    """Means: the median of the full fit's and the leave-one-out fits'; the full fit's sd."""
    mean, std, loo, _ = _loo_fits(p, idx, lat)
    return Fixed(np.median(np.vstack([mean, loo]), 0), std)


FITS = {
    "full": fit_full,
    "jackknife": fit_jackknife,
    "half_jackknife": partial(fit_jackknife, share=0.5),
    "scaled_half": fit_scaled_jackknife,
    "scaled_half_log": partial(fit_scaled_jackknife, log=True),
    "scaled_jackknife": partial(fit_scaled_jackknife, share=1.0),
    "median": fit_median,
    "drop5": fit_drop,
    "drop10": partial(fit_drop, threshold=0.10),
    "drop5r2": partial(fit_drop, ratio=2.0),
    "drop3r3": partial(fit_drop, threshold=0.03, ratio=3.0),
}
"""How a device model is fitted to the samples (``--fit``): influence-hedged variants of ``Predictor.adapt``."""


class Choosing:
    """``predictor`` choosing its samples by ``criterion`` and fitted by ``fit`` (what ``transfer_scores`` calls)."""

    def __init__(
        self, predictor: Predictor, criterion: Callable[[Predictor, int, int, object], list[int]], fit=fit_full
    ) -> None:
        self.predictor, self.criterion, self.fit = predictor, criterion, fit

    def select_samples(self, k: int, *, seed: int = 0, exclude=()) -> list[int]:
        return self.criterion(self.predictor, k, seed, exclude)

    def adapt(self, indices, latencies_ms, calibrating=None):
        if self.fit is fit_full:
            return self.predictor.adapt(indices, latencies_ms, calibrating)
        return self.fit(self.predictor, np.asarray(indices, dtype=np.int64), np.asarray(latencies_ms, dtype=np.float64))


CRITERIA: dict[str, Callable[[Predictor, int, int, object], list[int]]] = {
    "variance": variance,
    "info": info,
    "mixture": mixture,
    "transductive": transductive,
    "connected": connected,
    "half_random": half_random,
    "fifth_random": fifth_random,
    "integrated": integrated,
    "integrated_centred": integrated_centred,
    "integrated_level": integrated_level,
    **{f"trim_var{q}": partial(_trimmed, score=prior_variance, q=q / 100) for q in (1, 2, 5)},
    **{f"trim_lev{q}": partial(_trimmed, score=leverage, q=q / 100) for q in (1, 2, 5)},
    **{f"dens{a}": partial(_weighted, alpha=a / 100) for a in (2, 5, 10)},
    **{f"typical{m}": partial(_weighted, top=m) for m in (3, 10, 30)},
}


DEFAULT_CRITERIA = ("variance", "info", "mixture", "transductive", "connected")


def splits(lat: dict, split: str):
    """(pretraining devices, held-out devices) of every pretraining the split needs."""
    if split == "help":
        yield {d: lat[d] for d in HELP_TRAIN}, HELP_TEST
        return
    if split == "cross":
        sources = {d: v for d, v in lat.items() if family(d) in SOURCE_FAMILIES}
        yield sources, [d for d in lat if d not in sources]
        return
    for name in lat:
        yield {d: v for d, v in lat.items() if (family(d) != family(name) if split == "family" else d != name)}, [name]


def names_of(known, text: str) -> list[str]:
    """``--criteria``, ``--splits``, ``--fits``: comma-separated names of ``known``; an unknown one is a usage error."""
    names = text.split(",")
    if unknown := [name for name in names if name not in known]:
        raise argparse.ArgumentTypeError(f"unknown {', '.join(map(repr, unknown))}: use names of {', '.join(known)}")
    return names


def parser() -> argparse.ArgumentParser:
    """The transfer benches' options and this bench's."""
    ap = transfer_parser(__doc__)
    ap.add_argument(
        "--criteria",
        type=partial(names_of, CRITERIA),
        default=list(DEFAULT_CRITERIA),
        help=f"comma-separated, of {', '.join(CRITERIA)} [the shipped one and the docs' baselines: "
        f"{','.join(DEFAULT_CRITERIA)}]",
    )
    ap.add_argument(
        "--splits",
        type=partial(names_of, SPLITS),
        default=list(SPLITS),
        help=f"comma-separated, of {', '.join(SPLITS)}",
    )
    ap.add_argument("--cache", type=Path, default=None, help="pretrained-model cache [~/.cache/latfarm/predictor]")
    ap.add_argument("--json", type=Path, default=None, help="write the per-device scores here")
    ap.add_argument(
        "--fits", type=partial(names_of, FITS), default=["full"], help=f"comma-separated, of {', '.join(FITS)}"
    )
    return ap


def main() -> None:
    args = parser().parse_args()
    lat = load_help(args.data)
    samples = args.samples
    names = [c if f == "full" else f"{c}+{f}" for c in args.criteria for f in args.fits]
    started = time.perf_counter()
    result: dict = {}
    for split in args.splits:
        per: dict = {n: {str(k): {} for k in samples} for n in names}
        for keep, held in splits(lat, split):
            predictor = cached_pretrain(keep, seed=args.seed, epochs=DEFAULT_EPOCHS, cache_dir=args.cache)
            for n in names:
                crit, _, fit = n.partition("+")
                chooser = Choosing(predictor, CRITERIA[crit], FITS[fit or "full"])
                res = transfer_scores(chooser, {d: lat[d] for d in held}, samples, args.trials, seed=args.seed)
                for k in per[n]:
                    per[n][k].update(res[k]["per_device"])
        result[split] = per
        print(f"\n{split} held out ({args.trials} trials): mean Spearman / ±10% / 1-sd coverage")
        print(f"{'criterion':22s}" + "".join(f" | K={k:<3} rho   ±10%  cov1" for k in samples))
        for n in names:
            cells = [
                [np.mean([v[m] for v in per[n][str(k)].values()]) for m in ("spearman", "acc10", "coverage_1sd")]
                for k in samples
            ]
            print(f"{n:22s}" + "".join(f" |       {a:.4f} {b:.3f} {c:.2f}" for a, b, c in cells))
    print(f"bench wall time {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
