"""Does an arch the additive head misfits on the source devices misfit on a new device too? HELP's split.

Each device's misfit of an arch is its squared residual from a least-squares head over all its archs (``prior.
source_heads``: latency over the device's mean, the pretrained predictor's features) relative to the device's mean
squared residual. Printed: per test device, the Spearman correlation over all archs between its misfit and the
source devices' mean misfit (what a selection could know before measuring), the share of its archs with misfit
above 10 and 30; then, for each ``--archs``, its source misfit (mean, rank of 15,625) and each test device's.

    .venv/bin/python bench/source_misfit.py --cache build/loo-cache --archs 11187,15476
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.stats import spearmanr
from selection_criteria import HELP_TEST, HELP_TRAIN  # bench/ is the script's folder: on sys.path
from transfer_args import transfer_parser

from latfarm.predictor.evaluate import cached_pretrain
from latfarm.predictor.help_data import load_help
from latfarm.predictor.pretrain import DEFAULT_EPOCHS
from latfarm.predictor.prior import source_heads


def misfit(phi: np.ndarray, lat: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each device's [15625] squared normalised residual over its mean (NaN where not measured)."""
    heads, noise = source_heads(phi, lat)
    return {d: (v / np.nanmean(v) - phi @ heads[d]) ** 2 / noise[d] for d, v in lat.items()}


def main() -> None:
    ap = transfer_parser(__doc__)
    ap.add_argument("--cache", type=Path, default=None, help="pretrained-model cache [~/.cache/latfarm/predictor]")
    ap.add_argument("--archs", default="", help="comma-separated NB201 indices to show")
    args = ap.parse_args()
    lat = load_help(args.data)
    p = cached_pretrain({d: lat[d] for d in HELP_TRAIN}, seed=args.seed, epochs=DEFAULT_EPOCHS, cache_dir=args.cache)
    source = np.nanmean(np.stack(list(misfit(p.phi, {d: lat[d] for d in HELP_TRAIN}).values())), 0)
    test = misfit(p.phi, {d: lat[d] for d in HELP_TEST})
    print(f"{'test device':16s} {'rho':>6s} {'> 10':>7s} {'> 30':>7s}  (rho: Spearman of its misfit and the sources')")
    for d, m in test.items():
        ok = ~np.isnan(m)
        rho = spearmanr(source[ok], m[ok]).statistic
        print(f"{d:16s} {rho:6.3f} {np.mean(m[ok] > 10):7.4f} {np.mean(m[ok] > 30):7.4f}")
    for a in [int(x) for x in args.archs.split(",") if x]:
        shown = " ".join(f"{d} {m[a]:.1f}" for d, m in test.items())
        print(f"arch {a}: source misfit {source[a]:.2f} (rank {int((source > source[a]).sum()) + 1}); {shown}")


if __name__ == "__main__":
    main()
