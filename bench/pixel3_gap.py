"""Where a device's K=20 gap to its ceiling goes (issue #16's pixel3): basis, sample noise, prior, noise shape.

For one device held out of pretraining (cached like ``bench/predictor_loo.py``), prints: the least-squares fits to
80% of its archs scored on the rest (additive op features, the pruned-op directions of the cost-only hypothesis,
the second-order basis); adaptation at K = 5 / 10 / 20 / 40 / 80 as shipped, with the samples' latencies replaced by
the additive full-data fit (no sample noise), and with the prior centred on the device's own full-data head; the
residual of the additive fit by latency level (absolute or relative noise); and the share of the held-out residual
variance of the additive fit that each block of second-order terms (per-edge one-hots of the ops as built, as used
by a runtime that drops dead ops, as live; pairs of edges) explains.

    .venv/bin/python bench/pixel3_gap.py --cache build/loo-cache [--device pixel3]
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import numpy as np
from predictor_loo import CEILING_SHARE, interaction_features  # bench/ is the script's folder: on sys.path
from transfer_args import transfer_parser

from latfarm.predictor.evaluate import cached_pretrain, trial_seed
from latfarm.predictor.features import FEATURE_NAMES, all_features
from latfarm.predictor.help_data import load_help
from latfarm.predictor.nb201 import EDGES, OPS, live_edges, official_ops_table, output_edges
from latfarm.predictor.nb201_costs import pruned_op_basis
from latfarm.predictor.pretrain import DEFAULT_EPOCHS
from latfarm.predictor.prior import ridge_head
from latfarm.predictor.scores import score

KS = (5, 10, 20, 40, 80)


def split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit, held) positions: ``CEILING_SHARE`` of ``n`` at random, the rest."""
    order = np.random.default_rng(seed).permutation(n)
    cut = int(CEILING_SHARE * n)
    return order[:cut], order[cut:]


def held_out_rho(basis: np.ndarray, y: np.ndarray, fit: np.ndarray, held: np.ndarray) -> float:
    """Spearman on ``held`` of the least-squares fit of ``y`` on ``basis`` over ``fit``."""
    w = np.linalg.lstsq(basis[fit], y[fit], rcond=None)[0]
    return score(basis[held] @ w, y[held])["spearman"]


def adaptation(predictor, y: np.ndarray, device: str, trials: int, seed: int, targets: np.ndarray) -> list[float]:
    """Mean Spearman on the unsampled archs per K of ``KS``: default selection, adapted to ``targets`` at the
    samples, scored against ``y``."""
    out = []
    for k in KS:
        rhos = []
        for trial in range(trials):
            idx = np.asarray(predictor.select_samples(k, seed=trial_seed(seed, device, k, trial)))
            mean, _ = predictor.adapt(idx, targets[idx]).predict()
            rest = np.setdiff1d(np.arange(len(y)), idx)
            rhos.append(score(mean[rest], y[rest])["spearman"])
        out.append(float(np.mean(rhos)))
    return out


def block_gains(y: np.ndarray, fit: np.ndarray, held: np.ndarray, top: int) -> list[tuple[float, str]]:
    """(share of the additive fit's held-out residual variance explained, block name), largest first."""
    ops = official_ops_table().astype(np.int64)
    views = {
        "built": ops,
        "used": ops * np.array([output_edges(c) for c in ops]),
        "live": ops * np.array([live_edges(c) for c in ops]),
    }
    base = all_features()
    w = np.linalg.lstsq(base[fit], y[fit], rcond=None)[0]
    before = np.mean((y[held] - base[held] @ w) ** 2)
    gains = []
    for view, v in views.items():
        hot = np.eye(len(OPS))[v]  # [n, 6, 5]
        blocks = {f"{view} one-hots": hot.reshape(len(ops), -1)}
        for a, b in itertools.combinations(range(len(EDGES)), 2):
            pair = hot[:, a, :, None] * hot[:, b, None, :]
            blocks[f"{view} pair {EDGES[a]}x{EDGES[b]}"] = pair.reshape(len(ops), -1)
        for name, block in blocks.items():
            x = np.hstack([base, block])
            w = np.linalg.lstsq(x[fit], y[fit], rcond=None)[0]
            gains.append((1 - np.mean((y[held] - x[held] @ w) ** 2) / before, name))
    return sorted(gains, reverse=True)[:top]


def main() -> None:
    ap = transfer_parser(__doc__)
    ap.add_argument("--device", default="pixel3")
    ap.add_argument("--cache", type=Path, default=None, help="pretrained-model cache [~/.cache/latfarm/predictor]")
    args = ap.parse_args()
    lat = load_help(args.data)
    y = lat[args.device]
    fit, held = split(len(y), args.seed)
    x = all_features()
    print(f"{args.device}: least squares on {CEILING_SHARE:.0%} of its archs, Spearman on the rest")
    for name, basis in (
        ("additive op features", x),
        ("pruned-op directions", x @ pruned_op_basis(len(FEATURE_NAMES))),
        ("second-order basis", interaction_features(official_ops_table())),
    ):
        print(f"  {name:24s} {held_out_rho(basis, y, fit, held):.4f}")

    predictor = cached_pretrain(
        {d: v for d, v in lat.items() if d != args.device}, seed=args.seed, epochs=DEFAULT_EPOCHS, cache_dir=args.cache
    )
    smooth = np.maximum(x @ np.linalg.lstsq(x, y, rcond=None)[0], 1e-3)
    print(f"\nadaptation, {args.device} held out, {args.trials} trials: Spearman at K = " + " / ".join(map(str, KS)))
    rows = {"as shipped": adaptation(predictor, y, args.device, args.trials, args.seed, y)}
    rows["samples without noise"] = adaptation(predictor, y, args.device, args.trials, args.seed, smooth)
    own = ridge_head(predictor.phi, y / np.mean(y))
    predictor.prior = dataclasses.replace(predictor.prior, mean=own)
    rows["prior centred on its head"] = adaptation(predictor, y, args.device, args.trials, args.seed, y)
    for name, rhos in rows.items():
        print(f"  {name:26s} " + " / ".join(f"{r:.3f}" for r in rhos))

    level = x @ np.linalg.lstsq(x, y, rcond=None)[0]
    resid = y - level
    edges = np.quantile(level, np.linspace(0, 1, 7))
    print("\nadditive fit's residual by predicted level (mean ms: residual sd ms, share of the level)")
    parts = []
    for lo, hi in itertools.pairwise(edges):
        m = (level >= lo) & (level <= hi)
        parts.append(f"{np.mean(y[m]):.1f}: {np.std(resid[m]):.2f} ({np.std(resid[m]) / np.mean(y[m]):.2f})")
    print("  " + ", ".join(parts))
    print("\nsecond-order blocks: share of the additive fit's held-out residual variance they explain")
    for gain, name in block_gains(y, fit, held, top=8):
        print(f"  {name:32s} {gain:6.3f}")


if __name__ == "__main__":
    main()
