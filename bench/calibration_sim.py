"""Calibrations of ``std_ms`` fitted at pretraining by nested leave-one-source-out simulation, scored on the held-out
cells of ``bench/predictor_loo.py`` (issue #16's band: 1-sd share in 0.58-0.78 and 2-sd share >= 0.90 per device
and K, each averaged over the trials).

For each held-out setting of ``predictor_loo.py`` (device held out, family held out, the cross-family split; its
pretrainings, from ``--cache``), every held-out device is adapted at K = 5, 10, 20 with the bench's trial seeds and
default selection, and per scored arch the error and the two parts of the predicted variance (head covariance,
noise) are kept. The same is simulated on the predictor's own source devices, each against a prior of the others
(the GCN as pretrained; K in ``SIM_SAMPLES``, ``SEEDS`` draws, ``SCORED`` archs each). Then it counts the cells in
band with:

- ``none``: the predictor's spread as it is;
- ``oracle``: one factor per (setting, K), the best on the held-out cells themselves (the bound of any calibration
  that knows K only);
- ``count``: per simulated K, the factor that puts the most sources in band in the simulation;
- ``median``: per simulated K, the factor that puts the sources' median 1-sd share at ``MEDIAN_TARGET``;
- ``two-term``: per simulated K, separate factors on the covariance and the noise part (most sources in band).

It also prints each fit's mean 1-sd share and its cells under 0.90 at 2 sd, and how the factor a source needs in the
simulation varies between sources and between draws of one source.

Fitted factors are interpolated in log K. ``--devices`` holds out only those devices.

    flock /work/scratch/bench.lock .venv/bin/python bench/calibration_sim.py --cache build/loo-cache
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np

from latfarm.predictor.calibration import COVERAGE_BAND, MIN_COVERAGE_2SD
from latfarm.predictor.evaluate import cached_pretrain, trial_seed
from latfarm.predictor.help_data import load_help
from latfarm.predictor.model import Predictor
from latfarm.predictor.nb201_structure import with_structure
from latfarm.predictor.prior import Posterior, posterior, prior_from_heads, source_heads
from latfarm.predictor.scores import GAUSSIAN_1SD
from latfarm.predictor.selection import select_by_variance

sys.path.insert(0, str(Path(__file__).resolve().parent))
from predictor_loo import SOURCE_FAMILIES, family  # noqa: E402

SIM_SAMPLES = (3, 5, 7, 10, 14, 20)
"""K of the simulated adaptations (one greedy selection per draw for the largest K; smaller K take its first picks)."""
SEEDS = 3
SCORED = 2000
BENCH_SAMPLES = (5, 10, 20)
TRIALS = 3
LOG_FACTORS = np.arange(-4.0, 2.0 + 1e-9, 0.02)
TWO_TERM_LOGS = np.arange(-3.0, 1.5 + 1e-9, 0.15)
TWO_TERM_ARCHS = 300
"""Archs per run the two-term fit scores (evenly spaced among the run's scored archs; its grid is 2-D)."""
MEDIAN_TARGET = 0.70


class Run(NamedTuple):
    """One adaptation: its device, K, per scored arch the |error|, head-covariance and noise variances (normalised
    units)."""

    device: str
    k: int
    err: np.ndarray
    var_head: np.ndarray
    noise: np.ndarray


Spread = Callable[[int, np.ndarray, np.ndarray], np.ndarray]
"""A calibrated std from (K, head variance [n], noise variance [n])."""


def _run(device: str, k: int, post: Posterior, phi: np.ndarray, lat: np.ndarray) -> Run:
    mu = phi @ post.mean
    err = np.abs(post.scale_ms * mu - lat) / post.scale_ms
    var_head = ((phi @ post.cov) * phi).sum(1)
    return Run(device, k, err.astype(np.float32), var_head.astype(np.float32), post.noise_at(mu).astype(np.float32))


def simulate(predictor: Predictor, sources: dict[str, np.ndarray]) -> list[Run]:
    """Nested leave-one-source-out adaptations on the predictor's sources (all archs measured)."""
    heads, noise = source_heads(predictor.phi[:, : len(predictor.checkpoint_prior.mean)], sources)
    runs = []
    for s, (name, lat) in enumerate(sources.items()):
        others = [d for d in sources if d != name]
        prior = with_structure(prior_from_heads([heads[d] for d in others], [noise[d] for d in others]))
        rng = np.random.default_rng(s)
        for seed in range(SEEDS):
            picks = select_by_variance(
                predictor.planning_phi, prior.planning_cov(), prior.typical_noise, max(SIM_SAMPLES), seed=seed,
                exclude=np.flatnonzero(np.isnan(lat)),
            )  # fmt: skip
            rest = np.setdiff1d(np.flatnonzero(~np.isnan(lat)), picks)
            scored = rng.choice(rest, min(SCORED, len(rest)), replace=False)
            for k in SIM_SAMPLES:
                idx = np.asarray(picks[:k])
                post = posterior(prior, predictor.phi[idx], lat[idx], 1.0)
                runs.append(_run(name, k, post, predictor.phi[scored], lat[scored]))
    return runs


def factor_spread(sim: list[Run]) -> dict[int, tuple[float, float]]:
    """Per simulated K: the sd across sources of their mean log ``std_factor`` (the 0.683 quantile of |error| / std)
    and the rms within a source (across its draws): how much a per-device signal would have to explain."""
    out = {}
    for k in SIM_SAMPLES:
        logs: dict[str, list[float]] = {}
        for r in (r for r in sim if r.k == k):
            z = r.err / np.sqrt(r.var_head + r.noise)
            logs.setdefault(r.device, []).append(float(np.log(np.quantile(z, GAUSSIAN_1SD))))
        between = float(np.std([np.mean(v) for v in logs.values()]))
        out[k] = (between, float(np.sqrt(np.mean([np.var(v) for v in logs.values()]))))
    return out


def held_out_runs(predictor: Predictor, targets: dict[str, np.ndarray]) -> list[Run]:
    """The bench's adaptations to the held-out devices (its trial seeds), scored on every arch not sampled."""
    runs = []
    for name, lat in targets.items():
        for k in BENCH_SAMPLES:
            for trial in range(TRIALS):
                seed = trial_seed(0, name, k, trial)
                idx = np.asarray(predictor.select_samples(k, seed=seed, exclude=np.flatnonzero(np.isnan(lat))))
                post = posterior(predictor.prior, predictor.phi[idx], lat[idx], predictor.meta["default_scale_ms"])
                rest = np.setdiff1d(np.flatnonzero(~np.isnan(lat)), idx)
                runs.append(_run(name, k, post, predictor.phi[rest], lat[rest]))
    return runs


def shares(runs: list[Run], spread: Spread) -> dict[tuple[str, int], tuple[float, float]]:
    """Per (device, K): the 1-sd and 2-sd shares under ``spread``, averaged over the device's runs at K."""
    by: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for r in runs:
        z = r.err / spread(r.k, r.var_head, r.noise)
        by.setdefault((r.device, r.k), []).append((float(np.mean(z <= 1)), float(np.mean(z <= 2))))
    return {key: (float(np.mean([a for a, _ in v])), float(np.mean([b for _, b in v]))) for key, v in by.items()}


def in_band(got: dict[tuple[str, int], tuple[float, float]]) -> int:
    """(device, K) cells whose trial-averaged shares (``shares``) are in issue #16's band."""
    return sum(COVERAGE_BAND[0] <= a <= COVERAGE_BAND[1] and b >= MIN_COVERAGE_2SD for a, b in got.values())


def scaled(factors: dict[int, tuple[float, float]]) -> Spread:
    """The spread with log factors (on the head part, on the noise part) per K, interpolated in log K."""
    ks = sorted(factors)

    def spread(k: int, var_head: np.ndarray, noise: np.ndarray) -> np.ndarray:
        a, b = (np.exp(2 * np.interp(np.log(k), np.log(ks), [factors[j][i] for j in ks])) for i in (0, 1))
        return np.sqrt(a * var_head + b * noise)

    return spread


def share_curves(runs: list[Run], logs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per device (runs averaged): 1-sd and 2-sd shares [devices, len(logs)] with the whole spread scaled by
    ``exp(logs)``."""
    by: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for r in runs:
        z = np.sort(r.err / np.sqrt(r.var_head + r.noise))
        c1 = np.searchsorted(z, np.exp(logs), side="right") / len(z)
        c2 = np.searchsorted(z, 2 * np.exp(logs), side="right") / len(z)
        by.setdefault(r.device, []).append((c1, c2))
    return (
        np.array([np.mean([c for c, _ in v], 0) for v in by.values()]),
        np.array([np.mean([c for _, c in v], 0) for v in by.values()]),
    )


def most_in_band(c1: np.ndarray, c2: np.ndarray) -> int:
    """The column with the most rows in band (ties: the smallest mean distance of the 1-sd shares from its centre)."""
    good = ((c1 >= COVERAGE_BAND[0]) & (c1 <= COVERAGE_BAND[1]) & (c2 >= MIN_COVERAGE_2SD)).sum(0)
    return int(np.lexsort((np.abs(c1 - np.mean(COVERAGE_BAND)).mean(0), -good))[0])


def fit_count(sim: list[Run]) -> dict[int, tuple[float, float]]:
    out = {}
    for k in SIM_SAMPLES:
        log = float(LOG_FACTORS[most_in_band(*share_curves([r for r in sim if r.k == k], LOG_FACTORS))])
        out[k] = (log, log)
    return out


def fit_median(sim: list[Run]) -> dict[int, tuple[float, float]]:
    out = {}
    for k in SIM_SAMPLES:
        c1, _ = share_curves([r for r in sim if r.k == k], LOG_FACTORS)
        log = float(LOG_FACTORS[np.argmin(np.abs(np.median(c1, 0) - MEDIAN_TARGET))])
        out[k] = (log, log)
    return out


def fit_two_term(sim: list[Run]) -> dict[int, tuple[float, float]]:
    a2, b2 = (np.exp(2 * g).ravel() for g in np.meshgrid(TWO_TERM_LOGS, TWO_TERM_LOGS, indexing="ij"))
    out = {}
    for k in SIM_SAMPLES:
        by: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
        for r in (r for r in sim if r.k == k):
            pick = np.linspace(0, len(r.err) - 1, TWO_TERM_ARCHS).astype(int)
            std = np.sqrt(a2[:, None] * r.var_head[pick] + b2[:, None] * r.noise[pick])
            by.setdefault(r.device, []).append(((r.err[pick] <= std).mean(1), (r.err[pick] <= 2 * std).mean(1)))
        c1 = np.array([np.mean([c for c, _ in v], 0) for v in by.values()])
        c2 = np.array([np.mean([c for _, c in v], 0) for v in by.values()])
        j = most_in_band(c1, c2)
        out[k] = (0.5 * float(np.log(a2[j])), 0.5 * float(np.log(b2[j])))
    return out


FITS = {"count": fit_count, "median": fit_median, "two-term": fit_two_term}


def settings(lat: dict[str, np.ndarray], held: list[str] | None):
    """(table, held-out devices, source devices) of every pretraining the loo bench scores."""
    for name in held or lat:
        yield "device held out", [name], {d: v for d, v in lat.items() if d != name}
    families: dict[str, list[str]] = {}
    for name in held or lat:
        families.setdefault(family(name), []).append(name)
    for names in families.values():
        yield "family held out", names, {d: v for d, v in lat.items() if family(d) != family(names[0])}
    sources = {d: v for d, v in lat.items() if family(d) in SOURCE_FAMILIES}
    if targets := [d for d in held or lat if d not in sources]:
        yield "cross-family", targets, sources


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/datasets/help-nb201")
    ap.add_argument("--cache", type=Path, default=None, help="pretrained-model cache (predictor_loo.py's --cache)")
    ap.add_argument("--devices", default=None, help="hold out only these devices (comma-separated) [all]")
    args = ap.parse_args()
    lat = load_help(args.data)
    held = args.devices.split(",") if args.devices else None
    counts: dict[str, dict[str, int]] = {}
    cells: dict[str, list[Run]] = {}
    factors: dict[str, dict[str, list[list[float]]]] = {}
    sim_s: list[float] = []
    spreads: list[dict[int, tuple[float, float]]] = []
    cell_shares: dict[tuple[str, str], list[tuple[int, float, float]]] = {}
    for table, names, sources in settings(lat, held):
        predictor = cached_pretrain(sources, cache_dir=args.cache)
        start = time.perf_counter()
        sim = simulate(predictor, sources)
        sim_s.append(time.perf_counter() - start)
        spreads.append(factor_spread(sim))
        runs = held_out_runs(predictor, {d: lat[d] for d in names})
        cells.setdefault(table, []).extend(runs)
        row = counts.setdefault(table, {})
        fitted_by = {"none": {k: (0.0, 0.0) for k in SIM_SAMPLES}} | {n: fit(sim) for n, fit in FITS.items()}
        for fit_name, fitted in fitted_by.items():
            got = shares(runs, scaled(fitted))
            row[fit_name] = row.get(fit_name, 0) + in_band(got)
            cell_shares.setdefault((table, fit_name), []).extend((k, a, b) for (_, k), (a, b) in got.items())
            if fit_name == "none":
                continue
            chosen = [float(np.exp(np.interp(np.log(k), np.log(SIM_SAMPLES), [fitted[j][0] for j in SIM_SAMPLES])))
                      for k in BENCH_SAMPLES]  # fmt: skip
            factors.setdefault(table, {}).setdefault(fit_name, []).append(chosen)
        print(f"  {table}: {', '.join(names)} done (simulation {sim_s[-1]:.1f} s)", flush=True)
    print(
        f"\n(device, K) cells in band (1-sd {COVERAGE_BAND[0]}-{COVERAGE_BAND[1]}, 2-sd >= {MIN_COVERAGE_2SD}),"
        f" {TRIALS} trials"
    )
    print(f"{'setting':16s} {'cells':>5s} {'none':>5s} {'oracle':>6s} " + " ".join(f"{n:>8s}" for n in FITS))
    for table, runs in cells.items():
        oracle = 0
        for k in BENCH_SAMPLES:
            at_k = [r for r in runs if r.k == k]
            flat = ({j: (log, log) for j in SIM_SAMPLES} for log in LOG_FACTORS[::2])
            oracle += max(in_band(shares(at_k, scaled(factors_k))) for factors_k in flat)
        total = len({(r.device, r.k) for r in runs})
        row = counts[table]
        print(f"{table:16s} {total:5d} {row['none']:5d} {oracle:6d} " + " ".join(f"{row[n]:8d}" for n in FITS))
    print("\nmedian fitted factor (head part) at K=" + "/".join(map(str, BENCH_SAMPLES)) + " per setting:")
    for table, by_fit in factors.items():
        print(f"  {table:16s} " + ", ".join(f"{n} {np.median(v, 0).round(2).tolist()}" for n, v in by_fit.items()))
    print("\nmean 1-sd share at K=" + "/".join(map(str, BENCH_SAMPLES)) + " | cells with 2-sd share under 0.90:")
    for (table, fit_name), by_cell in cell_shares.items():
        means = [np.mean([a for k, a, _ in by_cell if k == j]) for j in BENCH_SAMPLES]
        under = sum(b < MIN_COVERAGE_2SD for _, _, b in by_cell)
        print(f"  {table:16s} {fit_name:8s} {' '.join(f'{m:.2f}' for m in means)} | {under} of {len(by_cell)}")
    print("\nsimulated log std_factor, sd between sources / rms within a source (median over pretrainings):")
    between, within = ({k: np.median([s[k][i] for s in spreads]) for k in SIM_SAMPLES} for i in (0, 1))
    print("  " + ", ".join(f"K={k} {between[k]:.2f} / {within[k]:.2f}" for k in SIM_SAMPLES))
    print(f"simulation per pretraining: median {np.median(sim_s):.1f} s, max {max(sim_s):.1f} s")


if __name__ == "__main__":
    main()
