"""Few-shot fits with one bogus sample: the service's outlier filter (services/domain/outliers.py) against a
plain fit, on every HELP device, and how often the filter drops a sound sample.

For each device and trial: K random measured archs; one of them is replaced by a bogus figure (x1000, /1000); the
predictor adapts on all K (plain) or on the filter's inliers (robust); both are scored on every arch.

    .venv/bin/python bench/outlier_fit.py --data ../shared/datasets/help-nb201 --trials 5 --samples 10
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from latfarm.predictor.help_data import load_help
from latfarm.predictor.model import Predictor
from latfarm.predictor.scores import score
from latfarm.services.domain.outliers import MAX_FACTOR, inliers, robust_adapt

BOGUS = {"x1000": 1000.0, "/1000": 1e-3}


def main() -> None:
    """Print the drop rate on clean samples and the plain vs robust scores with one bogus sample."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--samples", type=int, default=10)
    args = parser.parse_args()
    predictor = Predictor.load()
    lat = load_help(args.data)
    rng = np.random.default_rng(0)
    clean_drops = clean_sets = 0
    rows: dict[str, dict[str, list[float]]] = {name: {"plain": [], "robust": [], "caught": []} for name in BOGUS}
    for truth in lat.values():
        for _ in range(args.trials):
            idx = rng.choice(len(truth), args.samples, replace=False)
            values = truth[idx].copy()
            clean_sets += 1
            clean_drops += int((~inliers(predictor, idx, values)).sum())
            for name, factor in BOGUS.items():
                bad = values.copy()
                bad[0] *= factor
                plain, _ = predictor.adapt(idx, bad).predict(None)
                model, dropped = robust_adapt(predictor, idx, bad)
                robust, _ = model.predict(None)
                rows[name]["plain"].append(score(plain, truth)["spearman"])
                rows[name]["robust"].append(score(robust, truth)["spearman"])
                rows[name]["caught"].append(float(int(idx[0]) in dropped))
    print(f"{len(lat)} devices x {args.trials} trials, K={args.samples}, MAX_FACTOR={MAX_FACTOR:g}")
    print(f"sound samples dropped: {clean_drops} of {clean_sets * args.samples}")
    for name, row in rows.items():
        print(
            f"bogus {name:6s}: caught {np.mean(row['caught']):.1%}; spearman plain {np.mean(row['plain']):.3f} "
            f"robust {np.mean(row['robust']):.3f}"
        )


if __name__ == "__main__":
    main()
