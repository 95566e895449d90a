"""Few-shot transfer evaluation: pretrain on some devices, adapt to unseen ones from K samples, score the rest."""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from latfarm.predictor.help_data import data_hash, load_help
from latfarm.predictor.model import Predictor
from latfarm.predictor.pretrain import DEFAULT_EPOCHS, MODEL_REVISION, pretrain
from latfarm.predictor.scores import score
from latfarm.predictor.selection import select_random

DEFAULT_CACHE = Path.home() / ".cache" / "latfarm" / "predictor"
METRICS = ("spearman", "kendall", "acc10")


def cached_pretrain(
    latencies: dict[str, np.ndarray],
    *,
    seed: int = 0,
    epochs: int = DEFAULT_EPOCHS,
    cache_dir: Path | None = None,
    progress: bool = False,
) -> Predictor:
    """Pretrain, or load the checkpoint cached for exactly these data, seed and epochs."""
    path = Path(cache_dir or DEFAULT_CACHE) / f"r{MODEL_REVISION}-{data_hash(latencies)}-s{seed}-e{epochs}.npz"
    if path.exists():
        return Predictor.load(path)
    predictor = pretrain(latencies, seed=seed, progress=progress, epochs=epochs)
    predictor.save(path)
    return predictor


def trial_seed(seed: int, device: str, k: int, trial: int) -> int:
    """A per-(device, K, trial) seed: trials differ, runs with the same --seed repeat."""
    return int(np.random.SeedSequence([seed, zlib.crc32(device.encode()), k, trial]).generate_state(1)[0])


def transfer_scores(
    predictor: Predictor,
    test: dict[str, np.ndarray],
    samples: Sequence[int],
    trials: int,
    *,
    seed: int = 0,
    strategy: str = "default",
    dump: Path | None = None,
    advance=None,
) -> dict:
    """Per K: mean and per-device (trial-averaged) Spearman, Kendall, ±10% share on every unmeasured arch."""
    if strategy not in ("default", "random"):
        raise ValueError(f"unknown selection strategy {strategy!r}; use 'default' or 'random'")
    if dump is not None:
        Path(dump).mkdir(parents=True, exist_ok=True)
    out: dict = {}
    for k in samples:
        per_device = {}
        for name, lat in test.items():
            runs = []
            unmeasured = np.flatnonzero(np.isnan(lat))
            for trial in range(trials):
                s = trial_seed(seed, name, k, trial)
                if strategy == "default":
                    idx = predictor.select_samples(k, seed=s, exclude=unmeasured)
                else:
                    idx = select_random(len(lat), k, seed=s, exclude=unmeasured)
                model = predictor.adapt(idx, lat[idx])
                mean, std = model.predict()
                rest = np.setdiff1d(np.flatnonzero(~np.isnan(lat)), idx)
                runs.append(score(mean[rest], lat[rest]))
                if dump is not None:
                    np.savez(
                        Path(dump) / f"{name}_k{k}_t{trial}.npz", samples=np.asarray(idx), pred_ms=mean, std_ms=std
                    )
                if advance is not None:
                    advance()
            per_device[name] = {m: float(np.mean([r[m] for r in runs])) for m in METRICS}
            per_device[name].update({f"{m}_std": float(np.std([r[m] for r in runs])) for m in METRICS})
        out[str(k)] = {f"mean_{m}": float(np.mean([v[m] for v in per_device.values()])) for m in METRICS}
        out[str(k)]["per_device"] = per_device
    return out


def eval_transfer(
    latencies: dict[str, np.ndarray],
    train: Sequence[str],
    test: Sequence[str],
    samples: Sequence[int] = (5, 10, 20),
    trials: int = 5,
    *,
    seed: int = 0,
    dump: Path | None = None,
    cache_dir: Path | None = None,
    epochs: int = DEFAULT_EPOCHS,
    strategy: str = "default",
    progress: bool = False,
) -> dict:
    """Pretrain on ``train`` only (cached), then score K-sample transfer to each ``test`` device."""
    missing = [d for d in [*train, *test] if d not in latencies]
    if missing:
        raise ValueError(f"unknown devices {missing}; available: {sorted(latencies)}")
    overlap = sorted(set(train) & set(test))
    if overlap:
        raise ValueError(f"devices in both --train and --test: {overlap}")
    if not samples or min(samples) < 1 or trials < 1:
        raise ValueError("need at least one K >= 1 and at least one trial")
    start = time.perf_counter()
    predictor = cached_pretrain(
        {d: latencies[d] for d in train}, seed=seed, epochs=epochs, cache_dir=cache_dir, progress=progress
    )
    test_lat = {d: latencies[d] for d in test}
    total = len(samples) * len(test) * trials
    if progress:
        from rich.progress import Progress

        with Progress(transient=True) as bar:
            task = bar.add_task("adapting and scoring", total=total)
            scores = transfer_scores(
                predictor, test_lat, samples, trials, seed=seed, strategy=strategy, dump=dump,
                advance=lambda: bar.advance(task),
            )  # fmt: skip
    else:
        scores = transfer_scores(predictor, test_lat, samples, trials, seed=seed, strategy=strategy, dump=dump)
    return {
        "samples": scores,
        "train": list(train),
        "test": list(test),
        "trials": trials,
        "seed": seed,
        "strategy": strategy,
        "predictor_version": predictor.version,
        "seconds": round(time.perf_counter() - start, 2),
    }


def eval_transfer_cli(
    data: Path,
    train: Sequence[str],
    test: Sequence[str],
    samples: Sequence[int],
    trials: int,
    seed: int,
    json_out: Path | None,
    dump: Path | None,
    *,
    cache_dir: Path | None = None,
    epochs: int = DEFAULT_EPOCHS,
) -> dict:
    """`latfarm eval transfer`: run ``eval_transfer`` on a HELP-layout folder, print a table, write JSON."""
    from rich.console import Console
    from rich.table import Table

    latencies = load_help(data, [*train, *test])
    result = eval_transfer(
        latencies, train, test, samples, trials, seed=seed, dump=dump, cache_dir=cache_dir, epochs=epochs,
        progress=True,
    )  # fmt: skip
    table = Table(title=f"transfer to unseen devices ({trials} trials, seed {seed})")
    for col in ("K", "device", "spearman", "kendall", "±10%"):
        table.add_column(col)
    for k, block in result["samples"].items():
        for name, s in block["per_device"].items():
            table.add_row(k, name, f"{s['spearman']:.4f}", f"{s['kendall']:.4f}", f"{s['acc10']:.3f}")
        table.add_row(k, "[b]mean", f"{block['mean_spearman']:.4f}", f"{block['mean_kendall']:.4f}",
                      f"{block['mean_acc10']:.3f}", end_section=True)  # fmt: skip
    Console().print(table)
    if json_out is not None:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps(result, indent=2) + "\n")
    return result
