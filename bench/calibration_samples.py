"""How many random measured archs calibrate the spread per device? Per split, K and R random archs besides the K.

Issue #16 asks the 1-sd coverage of ``std_ms`` within 0.58-0.78 on every held-out device; the K samples, chosen
where the prior is least sure, do not carry each adaptation's error level (``bench/loo_signal.py``). Here each
adaptation (the held-out splits of ``predictor_loo.py``, cached pretrainings only: run that bench first with the same
``--cache``) also gets R random other archs measured (seeded), two ways (``MODES``): ``fitted``, what
``Predictor.adapt(..., calibrating=...)``, the service and ``eval transfer --calibrate`` do
(``evaluate.adapt_calibrated``): fitted with the K samples, the spread factor set by the quantile of their
leave-one-out z (``predictor.calibration``); ``held``, not fitted: the K-sample model's factor replaced by the same
quantile of their z. Per mode and R: the (device, K) cells in the calibration band and the mean Spearman and share
within ±10%, on the archs neither fitted nor drawn. R = 0 is the predictor from its K samples.

    .venv/bin/python bench/calibration_samples.py --data ../shared/datasets/help-nb201 --cache build/loo-cache
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from loo_signal import draws, splits  # bench/ is the script's folder: on sys.path
from predictor_loo import band_summary
from transfer_args import transfer_parser

from latfarm.predictor.calibration import calibration_factor
from latfarm.predictor.evaluate import adapt_calibrated, calibration_order
from latfarm.predictor.help_data import load_help
from latfarm.predictor.scores import score

MODES = ("fitted", "held")


def rows(lat: dict, held: list, samples, extra: list[int], trials: int, seed: int, cache: Path) -> list[dict]:
    """One row per (device, K, trial, mode, R): coverage at 1 and 2 sd, Spearman and ±10% share on the rest."""
    out = []
    for draw in draws(lat, held, samples, trials, seed, cache):
        y, idx = draw.y, draw.idx
        drawn = calibration_order(y, idx, draw.seed)
        rest = drawn[max(extra) :]
        alone = draw.predictor.adapt(idx, y[idx])
        for r in extra:
            calib = drawn[:r]
            for mode in MODES if r else MODES[:1]:
                if mode == "fitted":
                    model, factor = adapt_calibrated(draw.predictor, y, idx, calib), 1.0
                else:
                    model = alone
                    mean, std = alone.predict(calib)
                    factor = calibration_factor(np.abs(mean - y[calib]) / std)
                mean, std = model.predict(rest)
                z = np.abs(mean - y[rest]) / (std * factor)
                row = {"device": draw.device, "k": draw.k, "mode": mode, "r": r, **score(mean, y[rest])}
                out.append(row | {"cov1": np.mean(z <= 1), "cov2": np.mean(z <= 2)})
    return out


def report(title: str, table: list[dict], samples, extra: list[int]) -> None:
    """Per mode and R: cells in band, and mean Spearman / ±10% / 1-sd / 2-sd coverage per K."""
    print(f"\n{title}")
    for mode in MODES:
        for r in extra:
            block = [row for row in table if row["r"] == r and (row["mode"] == mode or not r)]
            if not block or (not r and mode != MODES[0]):
                continue
            good, cells, per_k = band_summary(block, samples, "cov1", "cov2")
            print(f"  {mode if r else 'K only':7s} R={r:<3d} cells in band {good}/{cells}  ({per_k})")


def main() -> None:
    ap = transfer_parser(__doc__)
    ap.add_argument("--cache", type=Path, required=True, help="predictor_loo.py's pretrained-model cache")
    ap.add_argument("--extra", default="0,10,20,50", help="random archs R besides the K, comma-separated")
    args = ap.parse_args()
    lat = load_help(args.data)
    samples = args.samples
    extra = sorted(int(r) for r in args.extra.split(","))
    print("Spearman / ±10% / 1-sd / 2-sd coverage per K")
    for title, held in splits(lat).items():
        report(title, rows(lat, held, samples, extra, args.trials, args.seed, args.cache), samples, extra)


if __name__ == "__main__":
    main()
