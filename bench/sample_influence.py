"""Each sample's influence on a device's predicted ranking, on HELP's split: is one sample dictating it?

Pretrained on HELP's training devices (``selection_criteria.HELP_TRAIN``, cached as that bench caches it), the
default's K samples of each trial (``evaluate.trial_seed``'s draws) adapted to with all of them and without each
one. Per trial: the full fit's Spearman on the unsampled archs, then per sample its arch, its influence (1 -
Spearman between the full fit's and the leave-one-out fit's predictions of all 15,625 archs), its leave-one-out z
(measured minus the leave-one-out fit's mean, over that fit's sd) and the leave-one-out fit's Spearman on the
unsampled archs.

    .venv/bin/python bench/sample_influence.py --device essential_ph_1 --samples 5 --trials 10 --cache build/loo-cache
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.stats import spearmanr
from selection_criteria import HELP_TEST, HELP_TRAIN  # bench/ is the script's folder: on sys.path
from transfer_args import transfer_parser

from latfarm.predictor.evaluate import cached_pretrain, trial_seed
from latfarm.predictor.help_data import load_help
from latfarm.predictor.pretrain import DEFAULT_EPOCHS


def main() -> None:
    ap = transfer_parser(__doc__)
    ap.add_argument("--device", required=True, choices=HELP_TEST, help="one of HELP's test devices")
    ap.add_argument("--cache", type=Path, default=None, help="pretrained-model cache [~/.cache/latfarm/predictor]")
    args = ap.parse_args()
    lat = load_help(args.data)
    p = cached_pretrain({d: lat[d] for d in HELP_TRAIN}, seed=args.seed, epochs=DEFAULT_EPOCHS, cache_dir=args.cache)
    y = lat[args.device]
    measured = ~np.isnan(y)
    for k in args.samples:
        for t in range(args.trials):
            idx = np.asarray(
                p.select_samples(k, seed=trial_seed(args.seed, args.device, k, t), exclude=np.flatnonzero(~measured))
            )
            rest = np.setdiff1d(np.flatnonzero(measured), idx)
            full = p.adapt(idx, y[idx]).predict()[0]
            cells = []
            for i in range(k):
                mean, std = p.adapt(np.delete(idx, i), np.delete(y[idx], i)).predict()
                z = (y[idx[i]] - mean[idx[i]]) / std[idx[i]]
                influence = 1 - spearmanr(full, mean)[0]
                cells.append(f"{idx[i]}: {influence:.3f} {z:+.1f} {spearmanr(mean[rest], y[rest])[0]:.3f}")
            print(
                f"K={k} t{t} rho {spearmanr(full[rest], y[rest])[0]:.3f} | arch: influence z rho_loo | "
                + " | ".join(cells)
            )


if __name__ == "__main__":
    main()
