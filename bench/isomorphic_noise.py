"""Measurement noise of each NB201 device, read off isomorphic cell pairs (no model involved).

Where edge 1->2 is ``none``, nodes 1 and 2 of a cell are interchangeable: swapping the ops of edges 0->1 and 0->2,
and of 1->3 and 2->3, gives another of the 15,625 archs that builds the same network (1,500 such pairs). Their
latency difference is measurement noise alone. Per device, the noise sd per measurement (ms; robust: 1.4826 times
the median absolute difference, over sqrt 2) in each quintile of latency, and the exponent ``p`` of a log-log fit
``sd ~ latency^p`` over the quintiles: 1 = noise relative to the latency (the predictor's model), 0 = the same
in ms at every latency. ``equal``: the share of pairs measured exactly equal (whole-ms devices: their robust sd is
a multiple of the 1 ms step, 0 where most pairs round alike).

    .venv/bin/python bench/isomorphic_noise.py --data ../shared/datasets/help-nb201
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from latfarm.predictor.help_data import load_help
from latfarm.predictor.nb201 import EDGES, official_index, official_ops_table

BINS = 5
MAD_TO_SD = 1.4826


def isomorphic_pairs() -> np.ndarray:
    """[P, 2] official indices of the cells that swapping nodes 1 and 2 maps onto another cell (P = 1,500)."""
    edge = {e: i for i, e in enumerate(EDGES)}
    swap = np.arange(len(EDGES))
    for a, b in (((0, 1), (0, 2)), ((1, 3), (2, 3))):
        swap[[edge[a], edge[b]]] = swap[[edge[b], edge[a]]]
    pairs = []
    for i, ops in enumerate(official_ops_table()):
        if ops[edge[(1, 2)]] == 0 and (j := official_index(tuple(int(op) for op in ops[swap]))) > i:
            pairs.append((i, j))
    return np.asarray(pairs)


def noise_profile(lat: np.ndarray, pairs: np.ndarray) -> tuple[list[tuple[float, float]], float, float]:
    """Per latency quintile of the measured ``pairs`` [P, 2] (mean ms, robust noise sd ms), the exponent of
    ``sd ~ latency^p`` fitted to them in log-log, and the share of pairs measured equal."""
    a, b = lat[pairs[:, 0]], lat[pairs[:, 1]]
    ok = ~np.isnan(a) & ~np.isnan(b)
    level, diff = (a[ok] + b[ok]) / 2, np.abs(a[ok] - b[ok])
    order = np.array_split(np.argsort(level), BINS)
    bins = [(float(level[i].mean()), float(MAD_TO_SD * np.median(diff[i]) / np.sqrt(2))) for i in order]
    means, sds = np.log([m for m, _ in bins]), np.log([max(sd, 1e-6) for _, sd in bins])
    return bins, float(np.polyfit(means, sds, 1)[0]), float(np.mean(diff == 0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="a HELP NB201 folder (latency per device)")
    args = ap.parse_args()
    pairs = isomorphic_pairs()
    print(f"{len(pairs)} isomorphic pairs; noise sd per measurement, ms @ mean latency of each quintile")
    print(f"{'device':16s} " + " ".join(f"{'quintile ' + str(t + 1):>14s}" for t in range(BINS)) + "      p  equal")
    for name, lat in load_help(args.data).items():
        bins, exponent, equal = noise_profile(lat, pairs)
        cells = " ".join(f"{sd:6.3f} @{mean:6.1f}" for mean, sd in bins)
        print(f"{name:16s} {cells}  {exponent:5.2f}  {equal:5.2f}")


if __name__ == "__main__":
    main()
