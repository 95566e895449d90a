"""FBNet few-shot transfer to unseen devices: leave-one-device-out and leave-one-family-out on the HELP FBNet data.

For every device: pretrain the FBNet predictor on the others (LODO) or on the other families only (LOFO), choose K
archs by max prior variance, adapt, score Spearman, the ±10% share and the 1-sd / 2-sd coverage of the predicted
``std_ms`` (share of archs within 1 / 2 std; a right spread covers 0.68 / 0.95) on the rest (trial-averaged).
``ceiling``: the same features fitted on 4,000 of the device's own archs, scored on the other 1,000 (what noise
leaves reachable, e.g. phones measured in whole ms), by least squares and by a robust (Student-t) fit. Last, the
adaptation time per K (median of ``TIMING_REPEATS``) on a device with continuous latencies and on one measured in
whole ms (Student-t EM).

    .venv/bin/python bench/fbnet_transfer.py --data ../shared/datasets/help-fbnet --trials 3 --json OUT
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from transfer_args import transfer_parser  # bench/ is the script's folder: on sys.path

from latfarm.predictor.blr import T_DOF
from latfarm.predictor.evaluate import ReferencePredictor, transfer_scores
from latfarm.predictor.fbnet_model import features, pretrain_fbnet
from latfarm.predictor.help_data import load_help
from latfarm.predictor.scores import score
from latfarm.predictor.spaces.fbnet import load_reference

FAMILIES = {
    "cpu": ("gold_6240", "silver_4114", "silver_4210r"),
    "mobile": ("essential_ph_1", "pixel3", "samsung_a50", "samsung_s7"),
}
"""Every other device (1080ti, 2080ti, titan_rtx, titanx, titanxp at any batch size) is a GPU."""
SPLITS = ("lodo", "lofo")
MEASURES = ("spearman", "acc10", "coverage_1sd", "coverage_2sd")
ROBUST_STEPS = 20
TIMED_DEVICES = ("1080ti_1", "samsung_s7")
"""Adaptation is timed on these: continuous latencies, and whole ms."""
TIMING_REPEATS = 3


def family(device: str) -> str:
    """The device's family: cpu, mobile or gpu."""
    return next((name for name, members in FAMILIES.items() if device in members), "gpu")


def ceiling(phi: np.ndarray, lat: np.ndarray, seed: int) -> dict[str, float]:
    """Scores of a fit on 4,000 random archs of the device itself, on the other 1,000: least squares, and
    (``robust_*``) a Student-t fit with the predictor's ``T_DOF`` (iteratively reweighted least squares), which
    the spikes of whole-ms phones pull less."""
    order = np.random.default_rng(seed).permutation(len(lat))
    fit, held = order[:4000], order[4000:]
    a, y = phi[fit], lat[fit]
    weights = np.ones(len(fit))
    for step in range(ROBUST_STEPS):
        w = np.linalg.lstsq(a * np.sqrt(weights)[:, None], y * np.sqrt(weights), rcond=None)[0]
        if step == 0:
            plain = score(phi[held] @ w, lat[held])
        resid2 = (y - a @ w) ** 2
        weights = (T_DOF + 1) / (T_DOF + resid2 / np.mean(weights * resid2))
    robust = score(phi[held] @ w, lat[held])
    return plain | {f"robust_{m}": v for m, v in robust.items()}


def run(data: Path, ks: list[int], trials: int, seed: int, splits: tuple[str, ...] = SPLITS) -> dict:
    """Per split (``lodo``, ``lofo``) and device: ceiling and per-K scores."""
    reference = np.asarray(load_reference(data), dtype=np.int64)
    lat = load_help(data, None, len(reference))
    phi = features(reference)
    out: dict = {split: {} for split in splits}
    for split in out:
        for device in lat:
            train = [d for d in lat if d != device and (split == "lodo" or family(d) != family(device))]
            predictor = ReferencePredictor(pretrain_fbnet(reference, {d: lat[d] for d in train}), reference)
            scores = transfer_scores(predictor, {device: lat[device]}, ks, trials, seed=seed)
            out[split][device] = {
                "family": family(device),
                "ceiling": ceiling(phi, lat[device], seed),
                **{k: scores[k]["per_device"][device] for k in map(str, ks)},
            }
    return out


def adaptation_seconds(data: Path, ks: list[int]) -> dict[str, dict[int, float]]:
    """Median seconds of ``adapt`` per timed device and K (pretrained on the other devices, samples as chosen)."""
    reference = np.asarray(load_reference(data), dtype=np.int64)
    lat = load_help(data, None, len(reference))
    out: dict[str, dict[int, float]] = {}
    for device in TIMED_DEVICES:
        train = {d: lat[d] for d in lat if d != device}
        predictor = ReferencePredictor(pretrain_fbnet(reference, train), reference)
        out[device] = {}
        for k in ks:
            idx = predictor.select_samples(k, seed=0)
            times = []
            for _ in range(TIMING_REPEATS):
                start = time.perf_counter()
                predictor.adapt(idx, lat[device][idx])
                times.append(time.perf_counter() - start)
            out[device][k] = float(np.median(times))
    return out


def main() -> None:
    """Print the LODO and LOFO tables (and write them as JSON with --json)."""
    parser = transfer_parser(__doc__, "help-fbnet")
    parser.add_argument("--splits", default=",".join(SPLITS), help="lodo, lofo or both (comma-separated)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    ks = args.samples
    splits = tuple(args.splits.split(","))
    if not splits or not set(splits) <= set(SPLITS):
        parser.error(f"--splits: choose from {', '.join(SPLITS)}, got {args.splits!r}")
    start = time.perf_counter()
    result = run(args.data, ks, args.trials, args.seed, splits)
    width = 6 * len(MEASURES) + len(MEASURES) - 1
    for split, rows in result.items():
        print(f"\n{split} ({args.trials} trials): Spearman / ±10% share / 1-sd / 2-sd coverage per K; the ceilings")
        print(
            f"{'device':16s} {'family':7s}"
            + "".join(f" {'K=' + str(k):>{width}s}" for k in ks)
            + f" {'ceiling':>13s} {'robust':>13s}"
        )
        for device, r in rows.items():
            cells = "".join(" " + "/".join(f"{r[str(k)][m]:.3f}" for m in MEASURES) for k in ks)
            ceil = r["ceiling"]
            ceils = " ".join(f"{ceil[p + 'spearman']:6.3f}/{ceil[p + 'acc10']:6.3f}" for p in ("", "robust_"))
            print(f"{device:16s} {r['family']:7s}{cells} {ceils}")
        means = ["/".join(f"{np.mean([r[str(k)][m] for r in rows.values()]):.3f}" for m in MEASURES) for k in ks]
        keys = ("spearman", "acc10", "robust_spearman", "robust_acc10")
        ceil_means = [np.mean([r["ceiling"][m] for r in rows.values()]) for m in keys]
        print(
            f"{'mean':24s}"
            + "".join(f" {cell}" for cell in means)
            + " {:6.3f}/{:6.3f} {:6.3f}/{:6.3f}".format(*ceil_means)
        )
    for device, by_k in adaptation_seconds(args.data, ks).items():
        print(f"adapt {device}: " + ", ".join(f"K={k} {sec:.2f} s" for k, sec in by_k.items()))
    print(f"\n{time.perf_counter() - start:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
