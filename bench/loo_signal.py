"""Does the leave-one-out spread factor see each device's miscalibration? Per split, K and (device, trial).

For the held-out splits of ``predictor_loo.py`` (cached pretrainings only: run that bench first with the same
``--cache``), every adaptation's leave-one-out z-scores and residual degrees of freedom (``prior.LeaveOneOut``) are
caught, and its ``std_factor`` measured on the unsampled archs with the factor taken out: per K, the correlation of
log ``s`` (0.683 quantile of |z|) with log ``std_factor`` and the least-squares slope of the latter on the former
(the weight an ideal shrinkage would give ``s``), and the (device, K) cells in the calibration band with no factor,
the margin alone, the shrunk ``s`` alone, both (what ``prior.loo_std_factor`` does) and ``oracle``: each adaptation's
own factor putting its 1-sd coverage at ``ORACLE_COVERAGE`` (the bound of any per-adaptation calibration: what
is left out of band then is the errors' shape, not their level). ``--seed`` sets the
sample draws (0: ``predictor_loo.py``'s), ``--pretrain-seed`` the cached pretrainings: other draws on the same
pretrainings check constants chosen on one set of draws.

    .venv/bin/python bench/loo_signal.py --data ../shared/datasets/help-nb201 --cache build/loo-cache --seed 1
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
from predictor_loo import SOURCE_FAMILIES, family
from transfer_args import transfer_parser

from latfarm.predictor import prior
from latfarm.predictor.calibration import COVERAGE_BAND, MIN_COVERAGE_2SD
from latfarm.predictor.evaluate import cached_pretrain, trial_seed
from latfarm.predictor.help_data import load_help
from latfarm.predictor.model import Predictor
from latfarm.predictor.pretrain import DEFAULT_EPOCHS
from latfarm.predictor.scores import GAUSSIAN_1SD

RULES = {
    "none": lambda z, dof: 1.0,
    "margin": lambda z, dof: prior.TAIL_MARGIN,
    "loo": lambda z, dof: prior.loo_std_factor(z, dof, 1.0),
    "both": lambda z, dof: prior.loo_std_factor(z, dof),
}
ORACLE_COVERAGE = 0.75


def splits(lat: dict) -> dict[str, list[tuple[str, dict]]]:
    """Per split: (held-out device, its sources) pairs, as ``predictor_loo.py`` pretrains them."""
    cross = {d: v for d, v in lat.items() if family(d) in SOURCE_FAMILIES}
    return {
        "device held out": [(n, {d: v for d, v in lat.items() if d != n}) for n in lat],
        "family held out": [(n, {d: v for d, v in lat.items() if family(d) != family(n)}) for n in lat],
        "cross-family": [(n, cross) for n in lat if n not in cross],
    }


class Draw(NamedTuple):
    """One adaptation's inputs: a held-out device's K samples of one trial."""

    device: str
    k: int
    seed: int  # the trial's seed (``trial_seed``): the K samples' draw; benches seed their own draws with it too
    predictor: Predictor  # pretrained without the device (its split's sources)
    y: np.ndarray  # the device's latencies [archs], ms, NaN where unmeasured
    idx: np.ndarray  # the K samples: positions in ``y`` that ``select_samples`` picks among its measured archs


def draws(
    lat: dict, held: list, samples, trials: int, seed: int, cache: Path, pretrain_seed: int = 0
) -> Iterator[Draw]:
    """Per (held-out device, its sources) of ``held``, K of ``samples`` and trial: the ``Draw``, its predictor the
    cached pretraining on the sources (``pretrain_seed``, ``DEFAULT_EPOCHS``: ``predictor_loo.py``'s), its samples
    seeded by ``trial_seed(seed, device, K, trial)``."""
    for name, sources in held:
        predictor = cached_pretrain(sources, seed=pretrain_seed, epochs=DEFAULT_EPOCHS, cache_dir=cache)
        y = lat[name]
        for k in samples:
            for trial in range(trials):
                s = trial_seed(seed, name, k, trial)
                idx = np.asarray(predictor.select_samples(k, seed=s, exclude=np.flatnonzero(np.isnan(y))))
                yield Draw(name, k, s, predictor, y, idx)


def runs(lat: dict, held: list, samples, trials: int, seed: int, pretrain_seed: int, cache: Path) -> list[dict]:
    """One row per (device, K, trial): K, device, LOO z [K], dof and |error| / sd (factor 1) on the unsampled archs."""
    caught: list[tuple[np.ndarray, float]] = []
    loo_std_factor = prior.loo_std_factor

    def catch(z: np.ndarray, dof: float, margin: float = prior.TAIL_MARGIN) -> float:
        caught.append((z, dof))
        return loo_std_factor(z, dof, margin)

    prior.loo_std_factor = catch  # type: ignore[assignment]  # LeaveOneOut.add looks it up at call time
    rows = []
    try:
        for draw in draws(lat, held, samples, trials, seed, cache, pretrain_seed):
            y, idx = draw.y, draw.idx
            model = draw.predictor.adapt(idx, y[idx])
            mean, std = model.predict()
            rest = np.setdiff1d(np.flatnonzero(~np.isnan(y)), idx)
            ratio = np.abs(mean[rest] - y[rest]) / (std[rest] / model.posterior.std_factor)
            z, dof = caught[-1]
            rows.append({"k": draw.k, "device": draw.device, "z": z, "dof": dof, "ratio": ratio})
    finally:
        prior.loo_std_factor = loo_std_factor  # type: ignore[assignment]
    return rows


def report(title: str, rows: list[dict], samples) -> None:
    """Per K: correlation of log s with log std_factor, the slope of the latter on the former and median dof; cells
    in band per rule and for the oracle."""
    print(f"\n{title}")
    for k in samples:
        block = [r for r in rows if r["k"] == k]
        s = np.log([np.quantile(np.abs(r["z"]), GAUSSIAN_1SD) for r in block])
        need = np.log([np.quantile(r["ratio"], GAUSSIAN_1SD) for r in block])
        dof = np.median([r["dof"] for r in block])
        slope = np.polyfit(s, need, 1)[0]
        print(
            f"  K={k}: corr(log s, log std_factor) {np.corrcoef(s, need)[0, 1]:+.2f}, slope {slope:.2f},"
            f" median dof {dof:.1f}"
        )
    counts = []
    rules = {
        **{rule: lambda r, factor=factor: factor(r["z"], r["dof"]) for rule, factor in RULES.items()},
        "oracle": lambda r: np.quantile(r["ratio"], ORACLE_COVERAGE),
    }
    for rule, factor in rules.items():
        cells: dict[tuple, list] = {}
        for r in rows:
            f = factor(r)
            cells.setdefault((r["device"], r["k"]), []).append((np.mean(r["ratio"] <= f), np.mean(r["ratio"] <= 2 * f)))
        good = [
            COVERAGE_BAND[0] <= c1 <= COVERAGE_BAND[1] and c2 >= MIN_COVERAGE_2SD
            for c1, c2 in (np.mean(v, 0) for v in cells.values())
        ]
        counts.append(f"{rule} {sum(good)}/{len(good)}")
    print("  cells in band: " + ", ".join(counts))


def main() -> None:
    ap = transfer_parser(__doc__)
    ap.add_argument("--cache", type=Path, required=True, help="predictor_loo.py's pretrained-model cache")
    ap.add_argument("--pretrain-seed", type=int, default=0, help="the cached pretrainings' seed")
    args = ap.parse_args()
    lat = load_help(args.data)
    samples = args.samples
    for title, held in splits(lat).items():
        report(title, runs(lat, held, samples, args.trials, args.seed, args.pretrain_seed, args.cache), samples)


if __name__ == "__main__":
    main()
