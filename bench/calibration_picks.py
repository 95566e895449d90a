"""Which measured archs may calibrate the spread? R random archs against R a search would measure next.

``Predictor.adapt(..., calibrating=...)`` sets the spread factor of ``std_ms`` from the leave-one-out z of its
calibrating archs (split conformal prediction: they must be exchangeable with the archs it predicts). Each adaptation
of ``predictor_loo.py``'s held-out splits (cached pretrainings only: run that bench first with the same ``--cache``)
is fitted on its K samples and R other archs of the device chosen by one rule (``PICKS``): ``random``; a search's
next measurements under the K-sample model, the R predicted ``fastest``, the R nearest the median predicted
latency (``budget``: a latency budget's frontier) or the R ``slowest``; ``none`` fits the K samples alone. Per split
and rule: the (device, K) cells in the calibration band, and mean Spearman / ±10% / 1-sd / 2-sd coverage, on the
archs no rule picked.

    .venv/bin/python bench/calibration_picks.py --data ../shared/datasets/help-nb201 --cache build/loo-cache
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from loo_signal import draws, splits  # bench/ is the script's folder: on sys.path
from predictor_loo import band_summary
from transfer_args import transfer_parser

from latfarm.predictor.evaluate import adapt_calibrated
from latfarm.predictor.help_data import load_help
from latfarm.predictor.scores import coverage, score

PICKS = ("none", "random", "fastest", "budget", "slowest")


def picks(predicted_ms: np.ndarray, pool: np.ndarray, r: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per rule of ``PICKS``: R positions of ``pool`` [n] under the K-sample model's ``predicted_ms`` [all archs]."""
    at = predicted_ms[pool]
    return {
        "none": pool[:0],
        "random": rng.choice(pool, r, replace=False),
        "fastest": pool[np.argsort(at)[:r]],
        "budget": pool[np.argsort(np.abs(at - np.median(predicted_ms)))[:r]],
        "slowest": pool[np.argsort(-at)[:r]],
    }


def rows(lat: dict, held: list, samples, r: int, trials: int, seed: int, cache: Path) -> list[dict]:
    """One row per (device, K, trial, rule): scores and coverage on the archs no rule picked."""
    out = []
    for draw in draws(lat, held, samples, trials, seed, cache):
        y, idx = draw.y, draw.idx
        predicted, _ = draw.predictor.adapt(idx, y[idx]).predict()
        chosen = picks(predicted, np.setdiff1d(np.arange(len(y)), idx), r, np.random.default_rng(draw.seed))
        rest = np.setdiff1d(np.arange(len(y)), np.concatenate([idx, *chosen.values()]))
        for rule, calib in chosen.items():
            mean, std = adapt_calibrated(draw.predictor, y, idx, calib).predict(rest)
            row = score(mean, y[rest]) | coverage(mean, std, y[rest])
            out.append({"device": draw.device, "k": draw.k, "rule": rule, **row})
    return out


def report(title: str, table: list[dict], samples) -> None:
    """Per rule: cells in band, and mean Spearman / ±10% / 1-sd / 2-sd coverage per K."""
    print(f"\n{title}")
    for rule in PICKS:
        block = [row for row in table if row["rule"] == rule]
        good, cells, per_k = band_summary(block, samples, "coverage_1sd", "coverage_2sd")
        print(f"  {rule:8s} cells in band {good:2d}/{cells}  ({per_k})")


def main() -> None:
    ap = transfer_parser(__doc__)
    ap.add_argument("--cache", type=Path, required=True, help="predictor_loo.py's pretrained-model cache")
    ap.add_argument("--extra", type=int, default=50, help="archs R each rule picks besides the K")
    args = ap.parse_args()
    lat = load_help(args.data)
    samples = args.samples
    print(f"R = {args.extra}: Spearman / ±10% / 1-sd / 2-sd coverage per K")
    for title, held in splits(lat).items():
        report(title, rows(lat, held, samples, args.extra, args.trials, args.seed, args.cache), samples)


if __name__ == "__main__":
    main()
