"""Where an adapted NB201 predictor's spread comes from: head variance, noise and the actual squared error.

For each listed device held out of pretraining (alone, or with ``--family`` its whole family; pretrainings cached
as ``bench/predictor_loo.py`` caches them), per K and trial with the default sample selection: the medians over the
archs not sampled of the posterior head variance, the noise variance and the squared error (normalised units: ms
over the posterior's scale), the leave-one-out factor, the 1-sd coverage and the factor that would make it 0.683.
A spread too wide with small errors shows which part of the variance is in excess.

    .venv/bin/python bench/spread_parts.py --devices titanxp_256,2080ti_256 --cache build/loo-cache
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from predictor_loo import family
from transfer_args import transfer_parser  # bench/ is the script's folder: on sys.path

from latfarm.predictor.evaluate import cached_pretrain, trial_seed
from latfarm.predictor.help_data import load_help
from latfarm.predictor.nb201 import NUM_ARCHS
from latfarm.predictor.scores import GAUSSIAN_1SD


def main() -> None:
    ap = transfer_parser(__doc__)
    ap.add_argument("--devices", required=True, help="comma-separated devices to hold out")
    ap.add_argument("--family", action="store_true", help="hold out each device's whole family")
    ap.add_argument("--cache", type=Path, default=None, help="pretrained-checkpoint cache folder")
    args = ap.parse_args()
    lat = load_help(args.data)
    print(f"{'device':14s} {'K':>3s} {'trial':>5s} {'head var':>9s} {'noise':>9s} {'sq error':>9s} "
          f"{'factor':>6s} {'cov1':>5s} {'needs':>5s}")  # fmt: skip
    for name in args.devices.split(","):
        keep = {d: v for d, v in lat.items() if (family(d) != family(name) if args.family else d != name)}
        predictor = cached_pretrain(keep, seed=args.seed, cache_dir=args.cache)
        for k in args.samples:
            for trial in range(args.trials):
                idx = np.asarray(predictor.select_samples(k, seed=trial_seed(args.seed, name, k, trial)))
                post = predictor.adapt(idx, lat[name][idx]).posterior
                rest = np.setdiff1d(np.arange(NUM_ARCHS), idx)
                phi, truth = predictor.phi[rest], lat[name][rest] / post.scale_ms
                mu = phi @ post.mean
                head, noise = ((phi @ post.cov) * phi).sum(1), post.noise_at(mu)
                z = np.abs(truth - mu) / np.sqrt(head + noise)  # before the leave-one-out factor
                print(
                    f"{name:14s} {k:3d} {trial:5d} {np.median(head):9.1e} {np.median(noise):9.1e} "
                    f"{np.median((truth - mu) ** 2):9.1e} {post.std_factor:6.2f} "
                    f"{np.mean(z * post.std_factor <= 1):5.2f} {np.quantile(z, GAUSSIAN_1SD):5.2f}"
                )


if __name__ == "__main__":
    main()
