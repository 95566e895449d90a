"""Few-shot adaptation on devices unlike the pretraining ones: the original method against the predictor's own.

Synthetic devices (``predictor.synthetic.stress_set``: conv-heavy, pooling-heavy, memory-bound, critical-path and
overhead-dominated devices, clean and whole-ms quantised) are adapted from the pretrained checkpoint (all real
devices); ``--real`` adds leave-one-device-out on the real devices (cached pretraining). Columns per K: Spearman,
Kendall, ±10% share and the share of archs within 2 predicted std (calibration; 0.95 is ideal).

    .venv/bin/python bench/predictor_ood.py --real --cache /tmp/exp/cache
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from transfer_args import transfer_parser  # bench/ is the script's folder: on sys.path

from latfarm.predictor.evaluate import cached_pretrain, trial_seed
from latfarm.predictor.help_data import load_help
from latfarm.predictor.model import DeviceModel, Predictor
from latfarm.predictor.pretrain import DEFAULT_EPOCHS
from latfarm.predictor.prior import posterior
from latfarm.predictor.scores import score
from latfarm.predictor.synthetic import stress_set

METHODS = ("original", "robust")
"""``original``: the non-robust posterior (``prior.posterior(robust=False)``); ``robust``: ``Predictor.adapt``."""
COLUMNS = ("spearman", "kendall", "acc10", "cover2")


def evaluate(predictor: Predictor, lat: np.ndarray, name: str, ks, trials: int, seed: int) -> dict:
    """Per method and K: trial-averaged scores on the archs not sampled."""
    out: dict = {m: {} for m in METHODS}
    default_scale = float(predictor.meta["default_scale_ms"])
    for k in ks:
        runs: dict = {m: [] for m in METHODS}
        for trial in range(trials):
            idx = np.asarray(predictor.select_samples(k, seed=trial_seed(seed, name, k, trial)))
            rest = np.setdiff1d(np.arange(len(lat)), idx)
            for method in METHODS:
                if method == "original":
                    post = posterior(predictor.prior, predictor.phi[idx], lat[idx], default_scale, robust=False)
                    model = DeviceModel(predictor, post, idx, lat[idx])
                else:
                    model = predictor.adapt(idx, lat[idx])
                mean, std = model.predict(rest)
                s = score(mean, lat[rest])
                s["cover2"] = float(np.mean(np.abs(mean - lat[rest]) <= 2 * std))
                runs[method].append(s)
        for method in METHODS:
            out[method][str(k)] = {c: float(np.mean([r[c] for r in runs[method]])) for c in COLUMNS}
    return out


def print_table(title: str, rows: dict, ks) -> None:
    print(f"\n{title}")
    print(f"{'device':20s} {'method':8s}" + "".join(f" | K={k:<3} rho   tau   ±10%  cov2" for k in ks))
    for name, res in rows.items():
        for method in METHODS:
            cells = "".join(" |     " + " ".join(f"{res[method][str(k)][c]:.3f}" for c in COLUMNS) for k in ks)
            print(f"{name:20s} {method:8s}{cells}")


def group_means(rows: dict, group) -> dict:
    """Mean scores over devices sharing ``group(name)``."""
    groups: dict = {}
    for name, res in rows.items():
        groups.setdefault(group(name), []).append(res)
    return {
        g: {m: {k: {c: float(np.mean([r[m][k][c] for r in members])) for c in COLUMNS} for k in members[0][m]}
            for m in METHODS}
        for g, members in groups.items()
    }  # fmt: skip


def main() -> None:
    ap = transfer_parser(__doc__)
    ap.add_argument("--copies", type=int, default=2, help="synthetic devices per kind (each clean and quantised)")
    ap.add_argument("--checkpoint", type=Path, default=None, help="predictor for the synthetic devices [shipped]")
    ap.add_argument("--real", action="store_true", help="also leave-one-device-out on the real devices")
    ap.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    ks = args.samples
    started = time.perf_counter()
    predictor = Predictor.load(args.checkpoint)
    synth = {
        name: evaluate(predictor, lat, name, ks, args.trials, args.seed)
        for name, lat in stress_set(args.seed, args.copies).items()
    }
    print_table("synthetic devices (pretrained on all real devices)", synth, ks)
    kinds = group_means(synth, lambda n: "_".join(part for part in n.split("_") if not part.isdigit()))
    print_table("synthetic, mean per kind (_q = 5% noise, whole ms)", kinds, ks)
    print_table("synthetic, MEAN", group_means(synth, lambda n: "MEAN"), ks)
    result = {"synthetic": synth, "synthetic_kinds": kinds}
    if args.real:
        lat = load_help(args.data)
        real = {}
        for name in lat:
            keep = {d: v for d, v in lat.items() if d != name}
            held = cached_pretrain(keep, seed=args.seed, epochs=args.epochs, cache_dir=args.cache)
            real[name] = evaluate(held, lat[name], name, ks, args.trials, args.seed)
        print_table("real devices, leave-one-device-out", real, ks)
        print_table("real, MEAN", group_means(real, lambda n: "MEAN"), ks)
        result["real_loo"] = real
    print(f"\nbench wall time {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
