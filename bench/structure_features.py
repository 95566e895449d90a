"""Does the NB201 structure block (``nb201_structure``: node additions, critical path) help few-shot transfer? Adapts
predictors without GCN (additive features; the block's critical-path columns weighed by the structure hypothesis or
not; or the whole block as cross-device prior columns) on the 21 real devices (leave-one-device-out,
leave-one-family-out, cross-family split, as ``predictor_loo.py``) and on synthetic devices whose cell costs its
longest path (``synthetic.py``'s ``critical_path``) or a sum (``overhead``); also fits each device's 80% with either
basis and scores the other 20% (what the block can add with every arch measured).

Variants: ``additive`` (structure hypothesis off: ``STRUCTURE_MASS`` 0), ``hypothesis`` (the predictor as shipped),
``+structure`` (hypothesis off, the whole block in the cross-device prior; ``--broad`` also adds it to the broad
op-cost component, ``prior.BROAD_FEATURES``, which lets a device's samples switch it on where the sources lack it).

    .venv/bin/python bench/structure_features.py --trials 3 --skip-real
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from transfer_args import transfer_parser  # bench/ is the script's folder: on sys.path

from latfarm.predictor import nb201_structure
from latfarm.predictor import prior as prior_module
from latfarm.predictor.evaluate import transfer_scores
from latfarm.predictor.features import all_features
from latfarm.predictor.help_data import load_help
from latfarm.predictor.model import Predictor
from latfarm.predictor.nb201 import NUM_ARCHS, official_ops_table
from latfarm.predictor.nb201_costs import with_costs
from latfarm.predictor.nb201_structure import structure_features
from latfarm.predictor.prior import fit_prior
from latfarm.predictor.scores import score
from latfarm.predictor.synthetic import synthetic_device

sys.path.insert(0, str(Path(__file__).resolve().parent))
from predictor_loo import CEILING_SHARE, SOURCE_FAMILIES, family  # noqa: E402

SYNTHETIC = {f"critical_path_{s}": ("critical_path", s) for s in range(6)} | {
    f"overhead_{s}": ("overhead", s) for s in range(2)
}


def predictor(sources: dict[str, np.ndarray], extra: np.ndarray) -> Predictor:
    """A predictor over the additive features plus ``extra`` columns [15625, E] (and the network costs), pretrained
    without GCN."""
    prior = with_costs(fit_prior(np.hstack([all_features(), extra]), sources)[0])
    scale = float(np.median([np.nanmean(v) for v in sources.values()]))
    return Predictor(prior, extra, {"version": "structure-bench", "default_scale_ms": scale}, {})


def splits(lat: dict[str, np.ndarray], extra: np.ndarray, samples, trials: int, seed: int) -> dict:
    """Per split and K: per-device scores (leave-one-device-out, leave-one-family-out, cross-family)."""
    out: dict = {}
    for split in ("lodo", "lofo"):
        per: dict = {str(k): {} for k in samples}
        for name in lat:
            keep = {d: v for d, v in lat.items() if (family(d) != family(name) if split == "lofo" else d != name)}
            res = transfer_scores(predictor(keep, extra), {name: lat[name]}, samples, trials, seed=seed)
            for k in per:
                per[k][name] = res[k]["per_device"][name]
        out[split] = per
    sources = {d: v for d, v in lat.items() if family(d) in SOURCE_FAMILIES}
    targets = {d: v for d, v in lat.items() if d not in sources}
    res = transfer_scores(predictor(sources, extra), targets, samples, trials, seed=seed)
    out["cross"] = {k: block["per_device"] for k, block in res.items()}
    return out


def full_fits(lat: dict[str, np.ndarray], bases: dict[str, np.ndarray], seed: int) -> dict:
    """Per device and basis: Spearman of a least-squares fit to ``CEILING_SHARE`` of its archs on the rest."""
    order = np.random.default_rng(seed).permutation(NUM_ARCHS)
    cut = int(CEILING_SHARE * NUM_ARCHS)
    out = {}
    for name, y in lat.items():
        fit, held = order[:cut][~np.isnan(y[order[:cut]])], order[cut:][~np.isnan(y[order[cut:]])]
        out[name] = {
            b: score(x[held] @ np.linalg.lstsq(x[fit], y[fit], rcond=None)[0], y[held])["spearman"]
            for b, x in bases.items()
        }
    return out


def summary(label: str, table: dict) -> None:
    """One line per split: mean Spearman / ±10% share per K, and pixel3's Spearman."""
    for split, per in table.items():
        cells = []
        for k, devs in per.items():
            rho = np.mean([v["spearman"] for v in devs.values()])
            acc = np.mean([v["acc10"] for v in devs.values()])
            px3 = devs["pixel3"]["spearman"] if "pixel3" in devs else float("nan")
            cells.append(f"K={k} {rho:.4f} / {acc:.3f} (pixel3 {px3:.3f})")
        print(f"{label:22s} {split:5s} " + " | ".join(cells), flush=True)


def main() -> None:
    ap = transfer_parser(__doc__)
    ap.add_argument("--broad", action="store_true", help="the block also joins the broad op-cost component")
    ap.add_argument("--skip-real", action="store_true", help="synthetic devices and full fits only")
    args = ap.parse_args()
    started = time.perf_counter()
    samples = args.samples
    lat = load_help(args.data)
    block = structure_features(official_ops_table())
    none = np.zeros((NUM_ARCHS, 0))
    synthetic = {name: synthetic_device(kind, seed=s) for name, (kind, s) in SYNTHETIC.items()}
    bases = {"additive": all_features(), "+structure": np.hstack([all_features(), block])}
    fits = full_fits(lat | synthetic, bases, args.seed)
    print("full fit (80% fitted, 20% scored), Spearman:")
    for name, row in fits.items():
        print(f"  {name:18s} " + " ".join(f"{b} {v:.4f}" for b, v in row.items()))
    base_broad, mass = list(prior_module.BROAD_FEATURES), nb201_structure.STRUCTURE_MASS
    width = all_features().shape[1]
    for label, extra, hypothesis in (
        ("additive", none, False),
        ("hypothesis", none, True),
        ("+structure", block, False),
    ):
        broad = args.broad and extra.shape[1] > 0
        prior_module.BROAD_FEATURES = base_broad + (list(range(width, width + extra.shape[1])) if broad else [])
        nb201_structure.STRUCTURE_MASS = mass if hypothesis else 0.0
        try:
            with np.errstate(divide="ignore"):  # log of a hypothesis' mass 0: it never wins
                res = transfer_scores(predictor(lat, extra), synthetic, samples, args.trials, seed=args.seed)
                for k, b in res.items():
                    rho = {n: v["spearman"] for n, v in b["per_device"].items()}
                    cp = np.mean([v for n, v in rho.items() if n.startswith("critical_path")])
                    add = np.mean([v for n, v in rho.items() if n.startswith("overhead")])
                    print(f"{label:22s} synthetic K={k}: critical-path {cp:.4f}, additive {add:.4f}", flush=True)
                if not args.skip_real:
                    summary(label + (" (broad)" if broad else ""), splits(lat, extra, samples, args.trials, args.seed))
        finally:
            prior_module.BROAD_FEATURES, nb201_structure.STRUCTURE_MASS = base_broad, mass
    print(f"bench wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
