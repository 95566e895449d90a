"""Leave-one-device-out (and leave-one-family-out) transfer table of the latency predictor, plus serving time.

For each device: pretrain on the others (cached by data hash), pick K archs with the default strategy, adapt,
score every other arch (Spearman, ±10% share, share within 1 and 2 predicted std). The family variant drops the
held-out device's whole family (``FAMILIES``: GPUs, server CPUs, phones, ...) from pretraining. ``--before`` prints
an earlier run's ``--json`` (e.g. from the previous commit) above each row.

    .venv/bin/python bench/predictor_loo.py --data ../shared/datasets/help-nb201 --trials 3 --json loo.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from latfarm.predictor.evaluate import METRICS, cached_pretrain, transfer_scores
from latfarm.predictor.features import all_features
from latfarm.predictor.help_data import load_help
from latfarm.predictor.model import DeviceModel, Predictor
from latfarm.predictor.pretrain import DEFAULT_EPOCHS

FAMILIES = {
    "gpu": ("1080ti", "2080ti", "titan"),
    "server_cpu": ("gold", "silver", "xeon"),
    "phone": ("essential", "pixel", "samsung"),
    "board": ("raspi", "jetson"),
    "fpga": ("fpga",),
    "asic": ("eyeriss", "asic", "edgetpu"),
}
"""Device families by name prefix (a device matching none is its own family)."""
PRINTED = (("spearman", "rho"), ("acc10", "±10%"), ("coverage_1sd", "cov1"), ("coverage_2sd", "cov2"))


def family(device: str) -> str:
    """The device's family: desktop GPUs (every batch size), server CPUs, phones, boards, FPGAs, ASICs."""
    for name, prefixes in FAMILIES.items():
        if device.startswith(prefixes):
            return name
    return device


def held_out_table(lat: dict, samples, trials, seed, epochs, cache, strategy, by_family: bool) -> dict:
    """Per K: per-device and mean scores with each device (or its family) held out of pretraining."""
    per_k: dict = {str(k): {} for k in samples}
    for name in lat:
        keep = {d: v for d, v in lat.items() if (family(d) != family(name) if by_family else d != name)}
        predictor = cached_pretrain(keep, seed=seed, epochs=epochs, cache_dir=cache)
        res = transfer_scores(predictor, {name: lat[name]}, samples, trials, seed=seed, strategy=strategy)
        for k in per_k:
            per_k[k][name] = res[k]["per_device"][name]
        print(f"  {'family' if by_family else 'device'} held out: {name} done", flush=True)
    return {
        k: {**{f"mean_{m}": float(np.mean([v[m] for v in devs.values()])) for m in METRICS}, "per_device": devs}
        for k, devs in per_k.items()
    }


def print_table(title: str, table: dict, before: dict | None = None) -> None:
    """Per device and K: Spearman, ±10% share, 1-sd and 2-sd coverage; with ``before``, its row above each."""
    ks = list(table)
    head = " ".join(f"{label:>5s}" for _, label in PRINTED)
    print(f"\n{title}")
    print(f"{'device':16s} {'':6s}" + "".join(f" | K={k:<3s} {head}" for k in ks))
    runs = {"before": before, "after": table} if before else {"": table}
    for name in [*next(iter(table.values()))["per_device"], "MEAN"]:
        for label, run in runs.items():
            cells = []
            for k in ks:
                block = run[k] if name == "MEAN" else run[k]["per_device"].get(name)
                keys = [f"mean_{m}" if name == "MEAN" else m for m, _ in PRINTED]
                cells.append(" ".join(f"{block[m]:5.3f}" for m in keys) if block else " n/a " * len(keys))
            print(f"{name:16s} {label:6s}" + "".join(f" | {'':5s} {c}" for c in cells))


def serving_times(checkpoint: Path | None, lat: np.ndarray) -> dict:
    """Seconds to load the checkpoint (arch features not yet computed in this process), then to rebuild a device
    model from its stored state and predict all archs (cold), to predict again (warm), and to adapt."""
    all_features.cache_clear()
    start = time.perf_counter()
    predictor = Predictor.load(checkpoint)
    load_s = time.perf_counter() - start
    idx = predictor.select_samples(20, seed=0)
    state = predictor.adapt(idx, lat[idx]).to_state()
    start = time.perf_counter()
    model = DeviceModel.from_state(predictor, state)
    model.predict()
    cold_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(10):
        model.predict()
    warm_s = (time.perf_counter() - start) / 10
    start = time.perf_counter()
    predictor.adapt(idx, lat[idx])
    adapt_s = time.perf_counter() - start
    return {"load_s": load_s, "cold_predict_s": cold_s, "warm_predict_s": warm_s, "adapt_s": adapt_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/datasets/help-nb201")
    ap.add_argument("--samples", default="5,10,20")
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help="GCN epochs (0 = additive features only)")
    ap.add_argument("--strategy", default="default", choices=["default", "random"])
    ap.add_argument("--cache", type=Path, default=None, help="pretrained-model cache [~/.cache/latfarm/predictor]")
    ap.add_argument("--skip-family", action="store_true")
    ap.add_argument("--json", type=Path, default=None, help="write all numbers here")
    ap.add_argument("--before", type=Path, default=None, help="a --json of an earlier run: print its rows too")
    ap.add_argument("--write-metrics", type=Path, default=None, help="store the tables in this checkpoint")
    args = ap.parse_args()
    lat = load_help(args.data)
    samples = [int(k) for k in args.samples.split(",")]
    common = dict(samples=samples, trials=args.trials, seed=args.seed, epochs=args.epochs, cache=args.cache)
    started = time.perf_counter()
    result = {"settings": {**vars(args), "data": str(args.data), "cache": str(args.cache)}}
    before = json.loads(args.before.read_text()) if args.before else {}
    result["leave_one_device_out"] = held_out_table(lat, **common, strategy=args.strategy, by_family=False)
    print_table(
        f"leave-one-device-out ({args.trials} trials, strategy {args.strategy})",
        result["leave_one_device_out"],
        before.get("leave_one_device_out"),
    )
    if not args.skip_family:
        result["leave_one_family_out"] = held_out_table(lat, **common, strategy=args.strategy, by_family=True)
        print_table(
            "leave-one-family-out (the held-out device's whole family left out of pretraining)",
            result["leave_one_family_out"],
            before.get("leave_one_family_out"),
        )
    result["serving"] = serving_times(args.write_metrics, lat["pixel3"])
    print("\nserving 15,625 archs: " + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in result["serving"].items()))
    print(f"bench wall time {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
    if args.write_metrics:
        predictor = Predictor.load(args.write_metrics)
        metrics = predictor.metrics
        for key in ("leave_one_device_out", "leave_one_family_out"):
            if key in result:
                metrics[key] = {
                    k: {m: v for m, v in block.items() if m != "per_device"} for k, block in result[key].items()
                }
                metrics[key]["trials"] = args.trials
        predictor.save(args.write_metrics, metrics=metrics)


if __name__ == "__main__":
    main()
