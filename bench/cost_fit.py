"""How well the NB201 network costs describe each device, with an average pool's window reads counted or not.

Per device of a HELP-layout folder: the op costs of its additive fit (all archs, the op-count features of
``features.FEATURE_NAMES``: a live 1x1 conv and a live pool relative to a live 3x3 conv), and the Spearman ρ of a
least-squares fit of latency on an intercept and the 6 network costs (``nb201_costs.all_costs``) over all archs,
with ``POOL_READS`` = 1 (a pool read like any elementwise kernel) and as shipped (its 3 x 3 window). A device whose
costs no combination fits needs the samples to pin its op costs one by one.

    .venv/bin/python bench/cost_fit.py --data ../shared/datasets/help-nb201
"""

from __future__ import annotations

import numpy as np
from scipy import stats
from transfer_args import transfer_parser  # bench/ is the script's folder: on sys.path

from latfarm.predictor import nb201_costs
from latfarm.predictor.features import FEATURE_NAMES, all_features
from latfarm.predictor.help_data import load_help


def costs_with_pool_reads(reads: int) -> np.ndarray:
    """[15625, 6] ``all_costs`` with ``POOL_READS`` = ``reads``."""
    shipped = nb201_costs.POOL_READS
    nb201_costs.POOL_READS = reads
    nb201_costs._fixed_and_stages.cache_clear()
    nb201_costs.all_costs.cache_clear()
    try:
        return np.array(nb201_costs.all_costs())
    finally:
        nb201_costs.POOL_READS = shipped
        nb201_costs._fixed_and_stages.cache_clear()
        nb201_costs.all_costs.cache_clear()


def cost_fit(costs: np.ndarray, lat: np.ndarray) -> float:
    """Spearman ρ of the least-squares fit of ``lat`` [n] on an intercept and ``costs`` [n, C] (measured archs)."""
    ok = ~np.isnan(lat)
    design = np.hstack([np.ones((ok.sum(), 1)), costs[ok]])
    weights = np.linalg.lstsq(design, lat[ok], rcond=None)[0]
    return float(stats.spearmanr(design @ weights, lat[ok])[0])


def op_ratios(lat: np.ndarray) -> tuple[float, float]:
    """(live 1x1 conv, live pool) costs over a live 3x3 conv's in the device's additive fit."""
    ok = ~np.isnan(lat)
    columns = [i for i, name in enumerate(FEATURE_NAMES) if not name.startswith("edge")]
    names = [FEATURE_NAMES[i] for i in columns]
    weights = np.linalg.lstsq(all_features()[ok][:, columns], lat[ok], rcond=None)[0]
    conv3 = weights[names.index("live_nor_conv_3x3")]
    return weights[names.index("live_nor_conv_1x1")] / conv3, weights[names.index("live_avg_pool_3x3")] / conv3


def main() -> None:
    args = transfer_parser(__doc__).parse_args()
    lat = load_help(args.data)
    one, window = costs_with_pool_reads(1), costs_with_pool_reads(nb201_costs.POOL_READS)
    print(f"{'device':16s} {'1x1/3x3':>8s} {'pool/3x3':>8s} {'costs, pool read once':>22s} {'with its window':>16s}")
    for name, values in lat.items():
        conv1, pool = op_ratios(values)
        print(f"{name:16s} {conv1:8.2f} {pool:8.2f} {cost_fit(one, values):22.3f} {cost_fit(window, values):16.3f}")


if __name__ == "__main__":
    main()
