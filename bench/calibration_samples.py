"""How many extra measured archs would calibrate the spread per device? Per split, K and R calibration archs.

Issue #16 asks the 1-sd coverage of ``std_ms`` within 0.58-0.78 on every held-out device; the K samples, chosen
where the prior is least sure, do not carry each adaptation's error level (``bench/loo_signal.py``). Here each
adaptation (the held-out splits of ``predictor_loo.py``, cached pretrainings only: run that bench first with the same
``--cache``) also gets R random other archs measured, not fitted: their |error| / ``std_ms`` (z) rescale every
``std_ms`` by a factor (``RULES``: ``quantile``, the z's ``TARGET`` quantile, as split conformal prediction
calibrates; ``conjugate``, their root mean square shrunk toward 1), and the (device, K) cells in the calibration band
are counted on the archs neither fitted nor used for calibration. R = 0 is the predictor as it is.

    .venv/bin/python bench/calibration_samples.py --data ../shared/datasets/help-nb201 --cache build/loo-cache
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from loo_signal import splits  # bench/ is the script's folder: on sys.path
from predictor_loo import BAND, MIN_COVERAGE_2SD
from transfer_args import sample_sizes, transfer_parser

from latfarm.predictor.evaluate import cached_pretrain, trial_seed
from latfarm.predictor.help_data import load_help
from latfarm.predictor.pretrain import DEFAULT_EPOCHS

PRIOR_DOF = 2.0
"""Pseudo-measurements at factor 1 in the ``conjugate`` rule."""


def quantile(z: np.ndarray) -> float:
    """The ``TARGET`` quantile of the R z-scores (interpolated): the factor that puts their own 1-sd share there."""
    return float(np.quantile(z, TARGET))


def conjugate(z: np.ndarray) -> float:
    """``sqrt((PRIOR_DOF + sum z^2) / (PRIOR_DOF + R))``: the spread's scale updated from the R z-scores."""
    return float(np.sqrt((PRIOR_DOF + np.sum(z**2)) / (PRIOR_DOF + len(z))))


RULES = {"quantile": quantile, "conjugate": conjugate}
TARGET = 0.75
"""The 1-sd coverage the ``quantile`` rule aims at: inside the band, high enough that heavy tails leave 2 sd >= 0.90
(``prior.TAIL_MARGIN``'s aim)."""


def rows(lat: dict, held: list, samples, extra: list[int], trials: int, seed: int, cache: Path) -> list[dict]:
    """One row per (device, K, trial): z of the ``max(extra)`` calibration archs and of the rest."""
    out = []
    for name, sources in held:
        predictor = cached_pretrain(sources, seed=0, epochs=DEFAULT_EPOCHS, cache_dir=cache)
        y = lat[name]
        measured = np.flatnonzero(~np.isnan(y))
        for k in samples:
            for trial in range(trials):
                s = trial_seed(seed, name, k, trial)
                idx = np.asarray(predictor.select_samples(k, seed=s, exclude=np.flatnonzero(np.isnan(y))))
                mean, std = predictor.adapt(idx, y[idx]).predict()
                rest = np.random.default_rng(s).permutation(np.setdiff1d(measured, idx))
                z = np.abs(mean[rest] - y[rest]) / std[rest]
                out.append({"device": name, "k": k, "calib": z[: max(extra)], "rest": z[max(extra) :]})
    return out


def report(title: str, table: list[dict], samples, extra: list[int]) -> None:
    """Cells in band per rule and R, and the mean 1-sd / 2-sd coverage per K."""
    print(f"\n{title}")
    for rule, factor in RULES.items():
        for r in extra:
            cells: dict[tuple, list] = {}
            for row in table:
                z = row["rest"] / (factor(row["calib"][:r]) if r else 1.0)
                cells.setdefault((row["device"], row["k"]), []).append((np.mean(z <= 1), np.mean(z <= 2)))
            means = {key: np.mean(v, 0) for key, v in cells.items()}
            good = sum(BAND[0] <= c1 <= BAND[1] and c2 >= MIN_COVERAGE_2SD for c1, c2 in means.values())
            per_k = " | ".join(
                "K={} {:.2f}/{:.2f}".format(k, *np.mean([c for (_, kk), c in means.items() if kk == k], 0))
                for k in samples
            )
            print(f"  {rule:9s} R={r:<3d} cells in band {good}/{len(means)}  (mean 1-sd/2-sd: {per_k})")


def main() -> None:
    ap = transfer_parser(__doc__)
    ap.add_argument("--cache", type=Path, required=True, help="predictor_loo.py's pretrained-model cache")
    ap.add_argument("--extra", default="0,10,20,50,100", help="calibration archs R, comma-separated")
    args = ap.parse_args()
    lat = load_help(args.data)
    samples = sample_sizes(args.samples)
    extra = sorted(int(r) for r in args.extra.split(","))
    for title, held in splits(lat).items():
        report(title, rows(lat, held, samples, extra, args.trials, args.seed, args.cache), samples, extra)


if __name__ == "__main__":
    main()
