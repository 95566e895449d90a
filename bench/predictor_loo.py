"""Leave-one-device-out (and leave-one-family-out) transfer table of the latency predictor, plus serving time.

For each device: pretrain on the others (cached by data hash), pick K archs with the default strategy, adapt,
score every other arch (Spearman, ±10% share, share within 1 and 2 predicted std). The family variant drops the
held-out device's whole family (``FAMILIES``: GPUs, server CPUs, phones, ...) from pretraining; the cross-family
split (issue #16's) pretrains once on desktop GPUs and server CPUs only and adapts to every other device. Each
table counts its (device, K) cells whose 1-sd coverage is in ``COVERAGE_BAND`` and 2-sd coverage at least
``MIN_COVERAGE_2SD`` (``predictor.calibration``),
prints per K the spread across devices of ``std_factor`` (the multiplier of a device's ``std_ms`` that would put its
1-sd coverage at 0.683: how far one calibration per K is from every device), and sets each device's K=20 Spearman
against its ``ceiling``. ``--before`` prints an earlier run's ``--json`` (e.g. from the previous commit) above each
row; ``--devices`` holds out only the listed devices (quick iterations; the counts then cover those only).
``--calibrate R`` scores calibrated adaptations: each run also draws R random measured archs besides its K, fitted
with them as calibrating archs (``evaluate.adapt_calibrated``, as ``latfarm adapt --calibrate`` does), scored on the
rest; with ``--before`` a K-only run's JSON, each row shows the spread from the K samples alone above it.

    .venv/bin/python bench/predictor_loo.py --data ../shared/datasets/help-nb201 --trials 3 --json loo.json
"""

from __future__ import annotations

import functools
import itertools
import json
import time
from pathlib import Path

import numpy as np
from transfer_args import transfer_parser  # bench/ is the script's folder: on sys.path

from latfarm.predictor.calibration import COVERAGE_BAND, MIN_COVERAGE_2SD, check_calibration_archs
from latfarm.predictor.evaluate import METRICS, cached_pretrain, transfer_scores
from latfarm.predictor.features import all_features
from latfarm.predictor.help_data import load_help
from latfarm.predictor.model import DeviceModel, Predictor
from latfarm.predictor.nb201 import EDGES, OPS, live_edges, official_ops_table
from latfarm.predictor.pretrain import DEFAULT_EPOCHS
from latfarm.predictor.scores import score

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
SOURCE_FAMILIES = ("gpu", "server_cpu")
"""The cross-family split's pretraining families; every device of another family is a target."""
CEILING_SHARE = 0.8
"""The ceiling fits this share of a device's measured archs (random, seeded) and scores the rest."""


def band_summary(block: list[dict], samples, cov1: str, cov2: str) -> tuple[int, int, str]:
    """Of ``block``'s rows (one per device, K and trial; coverage keys ``cov1``, ``cov2``): the (device, K) cells
    whose trial means are in the calibration band, the cells, and mean Spearman / ±10% / 1-sd / 2-sd per K."""
    cells: dict[tuple, list] = {}
    for row in block:
        cells.setdefault((row["device"], row["k"]), []).append((row[cov1], row[cov2]))
    means = [np.mean(v, 0) for v in cells.values()]
    good = sum(COVERAGE_BAND[0] <= c1 <= COVERAGE_BAND[1] and c2 >= MIN_COVERAGE_2SD for c1, c2 in means)
    columns = ("spearman", "acc10", cov1, cov2)
    per_k = " | ".join(
        "K={} {:.4f}/{:.3f}/{:.2f}/{:.2f}".format(
            k, *np.mean([[b[m] for m in columns] for b in block if b["k"] == k], 0)
        )
        for k in samples
    )
    return good, len(means), per_k


@functools.lru_cache(maxsize=1)
def _interaction_basis() -> np.ndarray:
    return interaction_features(official_ops_table())


def interaction_features(ops: np.ndarray) -> np.ndarray:
    """[n, 6] op vectors -> [n, F] second-order basis: one-hots of every edge's op and of every pair of edges' ops,
    both as built and as live (an op off every input-output path counted as ``none``), and a disconnected flag."""
    ops = np.asarray(ops, dtype=np.int64)
    live = np.array([live_edges(cell) for cell in ops])
    blocks = [np.ones((len(ops), 1)), (~live.any(1))[:, None].astype(float)]
    for variant in (ops, np.where(live, ops, 0)):
        hot = np.eye(len(OPS))[variant]  # [n, 6, 5]
        blocks.append(hot.reshape(len(ops), -1))
        for a, b in itertools.combinations(range(len(EDGES)), 2):
            blocks.append((hot[:, a, :, None] * hot[:, b, None, :]).reshape(len(ops), -1))
    return np.hstack(blocks)


def ceilings(lat: dict[str, np.ndarray], seed: int) -> dict[str, dict[str, float]]:
    """Each device's ceiling: Spearman and ±10% share of a least-squares fit to a random ``CEILING_SHARE`` of its
    measured archs, scored on the rest (what noise leaves reachable with every arch measured): the better (by
    Spearman) of a fit of ``interaction_features`` and one of the additive op features alone (which the second-order
    fit overfits on noisy devices); ``additive_*``: the additive fit's scores. Devices measured on the same archs
    share one split and one factorisation."""
    groups: dict[bytes, list[str]] = {}
    for name, v in lat.items():
        groups.setdefault(np.isnan(v).tobytes(), []).append(name)
    out = {}
    for names in groups.values():
        ok = np.flatnonzero(~np.isnan(lat[names[0]]))
        order = np.random.default_rng(seed).permutation(ok)
        fit, held = order[: int(CEILING_SHARE * len(ok))], order[int(CEILING_SHARE * len(ok)) :]
        y = np.stack([lat[n] for n in names], 1)
        fits = []
        for x in (_interaction_basis(), all_features()):
            pred = x[held] @ np.linalg.lstsq(x[fit], y[fit], rcond=None)[0]
            fits.append([score(pred[:, j], y[held, j]) for j in range(len(names))])
        for j, name in enumerate(names):
            best = max((f[j] for f in fits), key=lambda f: f["spearman"])
            out[name] = {m: best[m] for m in ("spearman", "acc10")}
            out[name] |= {f"additive_{m}": fits[1][j][m] for m in ("spearman", "acc10")}
    return out


def family(device: str) -> str:
    """The device's family: desktop GPUs (every batch size), server CPUs, phones, boards, FPGAs, ASICs."""
    for name, prefixes in FAMILIES.items():
        if device.startswith(prefixes):
            return name
    return device


def held_out_table(
    lat: dict, samples, trials, seed, epochs, cache, strategy, by_family: bool, held=None, calibration: int = 0
) -> dict:
    """Per K: per-device and mean scores with each device (or its family) held out of pretraining; ``held``: the
    devices to hold out (None = all); ``calibration``: R random calibrating archs per run (``transfer_scores``)."""
    per_k: dict = {str(k): {} for k in samples}
    for name in held or lat:
        keep = {d: v for d, v in lat.items() if (family(d) != family(name) if by_family else d != name)}
        predictor = cached_pretrain(keep, seed=seed, epochs=epochs, cache_dir=cache)
        res = transfer_scores(
            predictor, {name: lat[name]}, samples, trials, seed=seed, strategy=strategy, calibration=calibration
        )
        for k in per_k:
            per_k[k][name] = res[k]["per_device"][name]
        print(f"  {'family' if by_family else 'device'} held out: {name} done", flush=True)
    return {k: _with_means(devs) for k, devs in per_k.items()}


def cross_family_table(
    lat: dict, samples, trials, seed, epochs, cache, strategy, held=None, calibration: int = 0
) -> dict:
    """Per K: per-device and mean scores of every device outside ``SOURCE_FAMILIES`` (and in ``held`` if given),
    pretrained on those only; ``calibration`` as in ``held_out_table``."""
    sources = {d: v for d, v in lat.items() if family(d) in SOURCE_FAMILIES}
    targets = {d: v for d, v in lat.items() if d not in sources and (held is None or d in held)}
    if not targets:
        return {}
    predictor = cached_pretrain(sources, seed=seed, epochs=epochs, cache_dir=cache)
    res = transfer_scores(predictor, targets, samples, trials, seed=seed, strategy=strategy, calibration=calibration)
    return {k: _with_means(block["per_device"]) for k, block in res.items()}


def _with_means(devs: dict) -> dict:
    return {**{f"mean_{m}": float(np.mean([v[m] for v in devs.values()])) for m in METRICS}, "per_device": devs}


def in_band(table: dict) -> tuple[int, int]:
    """(cells in the calibration band, all cells): (device, K) whose 1-sd coverage is in ``COVERAGE_BAND`` and whose
    2-sd coverage is at least ``MIN_COVERAGE_2SD``."""
    cells = [v for block in table.values() for v in block["per_device"].values()]
    good = [
        COVERAGE_BAND[0] <= v["coverage_1sd"] <= COVERAGE_BAND[1] and v["coverage_2sd"] >= MIN_COVERAGE_2SD
        for v in cells
    ]
    return sum(good), len(good)


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
    for label, run in runs.items():
        print(f"{label + ': ' if label else ''}std_factor across devices: " + factor_spread(run))
    for label, run in runs.items():
        good, total = in_band(run)
        print(
            f"{label + ': ' if label else ''}{good}/{total} (device, K) cells with 1-sd coverage in"
            f" {COVERAGE_BAND[0]}-{COVERAGE_BAND[1]}"
            f" and 2-sd >= {MIN_COVERAGE_2SD}"
        )


def factor_spread(table: dict) -> str:
    """Per K: the geometric mean of the devices' ``std_factor`` and the factor (x/÷) of their geometric spread
    (``n/a`` for a run from before the factor was scored)."""
    parts = []
    for k, block in table.items():
        if any("std_factor" not in v for v in block["per_device"].values()):
            return "n/a"
        logs = np.log([v["std_factor"] for v in block["per_device"].values()])
        parts.append(f"K={k} {np.exp(logs.mean()):.2f} x/÷ {np.exp(logs.std()):.2f}")
    return ", ".join(parts)


def print_ceilings(title: str, table: dict, ceiling_of: dict) -> None:
    """Per device: its ceiling (Spearman / ±10%), the additive op features fitted the same way, and the gap of the
    largest K's Spearman to the ceiling."""
    k = list(table)[-1]
    print(f"\n{title}: K={k} against each device's ceiling (Spearman / ±10%)")
    print(f"{'device':16s} {'K=' + k:>13s} {'ceiling':>13s} {'additive fit':>13s} {'gap':>6s}")
    gaps = []
    for name, v in table[k]["per_device"].items():
        c = ceiling_of[name]
        gaps.append(c["spearman"] - v["spearman"])
        print(
            f"{name:16s} {v['spearman']:6.3f} {v['acc10']:6.3f} {c['spearman']:6.3f} {c['acc10']:6.3f}"
            f" {c['additive_spearman']:6.3f} {c['additive_acc10']:6.3f} {gaps[-1]:6.3f}"
        )
    print(f"{'MEAN':16s} {'':13s} {'':13s} {'':13s} {np.mean(gaps):6.3f}  (max {max(gaps):.3f})")


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
    ap = transfer_parser(__doc__)
    ap.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help="GCN epochs (0 = additive features only)")
    ap.add_argument("--strategy", default="default", choices=["default", "random"])
    ap.add_argument("--cache", type=Path, default=None, help="pretrained-model cache [~/.cache/latfarm/predictor]")
    ap.add_argument("--skip-family", action="store_true")
    ap.add_argument("--devices", default=None, help="hold out only these devices (comma-separated) [all]")
    ap.add_argument("--json", type=Path, default=None, help="write all numbers here")
    ap.add_argument("--before", type=Path, default=None, help="a --json of an earlier run: print its rows too")
    ap.add_argument("--write-metrics", type=Path, default=None, help="store the tables in this checkpoint")
    ap.add_argument(
        "--calibrate",
        type=int,
        default=0,
        metavar="R",
        help="R random measured archs per run besides its K, fitted and calibrating std_ms: 0 or 10-200 [0]",
    )
    args = ap.parse_args()
    try:
        check_calibration_archs(args.calibrate)
    except ValueError as err:
        ap.error(str(err))
    if args.calibrate and args.write_metrics:
        ap.error("--write-metrics stores the K-only tables: not with --calibrate")
    lat = load_help(args.data)
    samples = args.samples
    held = args.devices.split(",") if args.devices else None
    if unknown := sorted(set(held or ()) - set(lat)):
        ap.error(f"unknown devices {unknown}; available: {sorted(lat)}")
    common = dict(
        samples=samples,
        trials=args.trials,
        seed=args.seed,
        epochs=args.epochs,
        cache=args.cache,
        held=held,
        calibration=args.calibrate,
    )
    started = time.perf_counter()
    result = {"settings": {**vars(args), "data": str(args.data), "cache": str(args.cache)}}
    calibrated = f", calibrated on {args.calibrate} random archs" if args.calibrate else ""
    before = json.loads(args.before.read_text()) if args.before else {}
    result["leave_one_device_out"] = held_out_table(lat, **common, strategy=args.strategy, by_family=False)
    print_table(
        f"leave-one-device-out ({args.trials} trials, strategy {args.strategy}{calibrated})",
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
        if cross := cross_family_table(lat, **common, strategy=args.strategy):
            result["cross_family"] = cross
            print_table(
                f"cross-family split (pretrained on {' and '.join(SOURCE_FAMILIES)} only)",
                cross,
                before.get("cross_family"),
            )
    result["ceiling"] = ceilings(lat, args.seed)
    for key in ("leave_one_device_out", "leave_one_family_out", "cross_family"):
        if key in result:
            print_ceilings(key.replace("_", "-"), result[key], result["ceiling"])
    result["serving"] = serving_times(args.write_metrics, lat["pixel3"])
    print("\nserving 15,625 archs: " + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in result["serving"].items()))
    print(f"bench wall time {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
    if args.write_metrics:
        predictor = Predictor.load(args.write_metrics)
        metrics = predictor.metrics
        for key in ("leave_one_device_out", "leave_one_family_out", "cross_family"):
            if key in result:
                metrics[key] = {
                    k: {m: v for m, v in block.items() if m != "per_device"} for k, block in result[key].items()
                }
                metrics[key]["trials"] = args.trials
        predictor.save(args.write_metrics, metrics=metrics)


if __name__ == "__main__":
    main()
