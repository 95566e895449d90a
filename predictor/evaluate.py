"""Few-shot transfer evaluation: pretrain on some devices, adapt to unseen ones from K samples, score the rest."""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from latfarm.common.ranges import out_of_range
from latfarm.predictor.calibration import check_calibration_archs
from latfarm.predictor.help_data import available_devices, data_hash, load_help
from latfarm.predictor.model import Predictor
from latfarm.predictor.pretrain import DEFAULT_EPOCHS, MODEL_REVISION, pretrain
from latfarm.predictor.scores import coverage, score
from latfarm.predictor.selection import select_random

DEFAULT_CACHE = Path.home() / ".cache" / "latfarm" / "predictor"
METRICS = ("spearman", "kendall", "acc10", "coverage_1sd", "coverage_2sd", "std_factor")
MIN_SCORED = 3  # a (device, K) is scored on at least this many measured archs beyond its K samples, else skipped


class TransferInputError(ValueError):
    """``eval transfer`` was given input it cannot run on (devices, K values, trials, a HELP file); the message is
    one line saying what."""


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


class ReferencePredictor:
    """A space predictor seen through a dataset's reference set: archs are positions 0..n-1 in it, ``predict()``
    covers all n (what ``transfer_scores`` and ``--dump`` need for spaces too large to enumerate)."""

    def __init__(self, predictor, reference: np.ndarray) -> None:
        """``predictor`` with ``rows``/``select_rows``/``adapt`` over encodings; ``reference`` [n, length]."""
        self.predictor = predictor
        self.reference = np.asarray(reference)
        self.phi = predictor.rows(self.reference)

    @property
    def version(self) -> str:
        """The wrapped predictor's version."""
        return str(self.predictor.version)

    def select_samples(self, k: int, *, seed: int = 0, exclude=()) -> list[int]:
        """K positions to measure (max prior variance over the reference set)."""
        return self.predictor.select_rows(self.phi, k, seed=seed, exclude=exclude)

    def adapt(self, positions, latencies_ms, calibrating=None):
        """The device model from measured positions, predicting all positions by default; ``calibrating`` [K] as
        the wrapped predictor's ``adapt`` takes it."""
        model = self.predictor.adapt(self.reference[np.asarray(positions, dtype=np.int64)], latencies_ms, calibrating)
        return _ReferenceModel(model, self.reference)


class _ReferenceModel:
    def __init__(self, model, reference: np.ndarray) -> None:
        self.model, self.reference = model, reference

    def predict(self, positions=None) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) ms of the given positions; None = all."""
        return self.model.predict(self.reference if positions is None else self.reference[positions])


def trial_seed(seed: int, device: str, k: int, trial: int) -> int:
    """A per-(device, K, trial) seed: trials differ, runs with the same --seed repeat."""
    return int(np.random.SeedSequence([seed, zlib.crc32(device.encode()), k, trial]).generate_state(1)[0])


def calibration_order(latencies: np.ndarray, samples, seed: int) -> np.ndarray:
    """The archs measured in ``latencies`` [n] (not NaN) and not among ``samples``, in a random order seeded by
    ``seed``: the first R are a run's calibrating archs."""
    measured = np.flatnonzero(~np.isnan(latencies))
    return np.random.default_rng(seed).permutation(np.setdiff1d(measured, samples))


def adapt_calibrated(predictor, latencies: np.ndarray, samples, calibrating):
    """``predictor`` adapted to ``latencies`` [n] at ``samples`` and ``calibrating`` (positions), the latter fitted
    too and calibrating the spread (``calibration``: fewer than ``MIN_CALIBRATION_ARCHS`` leave the samples'
    leave-one-out factor)."""
    both = np.r_[np.asarray(samples, dtype=np.int64), np.asarray(calibrating, dtype=np.int64)]
    return predictor.adapt(both, latencies[both], [False] * len(samples) + [True] * len(calibrating))


def transfer_scores(
    predictor: Predictor | ReferencePredictor,
    test: dict[str, np.ndarray],
    samples: Sequence[int],
    trials: int,
    *,
    seed: int = 0,
    strategy: str = "default",
    calibration: int = 0,
    dump: Path | None = None,
    advance=None,
) -> dict:
    """Per K: mean and per-device (trial-averaged) Spearman, Kendall, ±10% share, 1/2-sd coverage of the
    predicted ``std_ms`` and the factor that would calibrate it (``scores.coverage``) on every measured arch
    neither sampled nor calibrating.

    ``calibration`` R (``check_calibration_archs``; else ``ValueError``): each run also draws R random measured
    archs besides its K (``calibration_order``, seeded by ``trial_seed``) and adapts with them as calibrating
    archs (``adapt_calibrated``). A device with fewer than K + R + ``MIN_SCORED`` measured archs is left out of
    that K only, with the reason under the K's ``skipped`` (``{device: reason}``); a K no device could be scored on
    has ``None`` means.
    """
    if strategy not in ("default", "random"):
        raise ValueError(f"unknown selection strategy {strategy!r}; use 'default' or 'random'")
    check_calibration_archs(calibration)
    if dump is not None:
        Path(dump).mkdir(parents=True, exist_ok=True)
    out: dict = {}
    for k in samples:
        per_device, skipped = {}, {}
        for name, lat in test.items():
            measured = int(np.count_nonzero(~np.isnan(lat)))
            needed = k + calibration + MIN_SCORED
            if measured < needed:
                with_r = f" and R={calibration}" if calibration else ""
                skipped[name] = f"{measured} measured archs; K={k}{with_r} needs at least {needed}"
                continue
            runs = []
            unmeasured = np.flatnonzero(np.isnan(lat))
            for trial in range(trials):
                s = trial_seed(seed, name, k, trial)
                if strategy == "default":
                    idx = predictor.select_samples(k, seed=s, exclude=unmeasured)
                else:
                    idx = select_random(len(lat), k, seed=s, exclude=unmeasured)
                order = calibration_order(lat, idx, s)
                calib, rest = order[:calibration], np.sort(order[calibration:])
                mean, std = adapt_calibrated(predictor, lat, idx, calib).predict()
                runs.append(score(mean[rest], lat[rest]) | coverage(mean[rest], std[rest], lat[rest]))
                if dump is not None:
                    np.savez(
                        Path(dump) / f"{name}_k{k}_t{trial}.npz",
                        samples=np.asarray(idx), calibrating=calib, pred_ms=mean, std_ms=std,
                    )  # fmt: skip
                if advance is not None:
                    advance()
            per_device[name] = {m: float(np.mean([r[m] for r in runs])) for m in METRICS}
            per_device[name].update({f"{m}_std": float(np.std([r[m] for r in runs])) for m in METRICS})
        out[str(k)] = {
            f"mean_{m}": float(np.mean([v[m] for v in per_device.values()])) if per_device else None for m in METRICS
        }
        out[str(k)]["per_device"] = per_device
        out[str(k)]["skipped"] = skipped
    return out


def json_safe(value: object) -> object:
    """``value`` with every non-finite float (a constant device's undefined correlation) as ``None``: JSON has no
    NaN, so ``--json`` writes ``null``."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def check_runs(samples: Sequence[int], trials: int) -> None:
    """Refuse no K, a K under 1 and no trial (``TransferInputError``, in ``common.ranges``' wording)."""
    if not samples:
        raise TransferInputError("need at least one K (--samples)")
    if (least := min(samples)) < 1:
        raise TransferInputError(f"--samples: each K {out_of_range(least, {'ge': 1})}")
    if trials < 1:
        raise TransferInputError(f"--trials {out_of_range(trials, {'ge': 1})}")


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
    calibration: int = 0,
    progress: bool = False,
    reference: np.ndarray | None = None,
) -> dict:
    """Pretrain on ``train`` only (cached), then score K-sample transfer to each ``test`` device, each run
    calibrated on ``calibration`` R random measured archs besides its K (``transfer_scores``).

    ``reference`` (FBNet: the dataset's archs [n, 22] by position): the latencies are of these archs and the
    FBNet predictor is pretrained and scored on them; None = NB201 by official index.
    Raises ``TransferInputError`` for unknown or overlapping devices, K values or trials ``check_runs`` refuses or
    an R ``check_calibration_archs`` refuses.
    """
    missing = [d for d in [*train, *test] if d not in latencies]
    if missing:
        raise TransferInputError(f"unknown devices {missing}; available: {sorted(latencies)}")
    overlap = sorted(set(train) & set(test))
    if overlap:
        raise TransferInputError(f"devices in both --train and --test: {overlap}")
    check_runs(samples, trials)
    try:
        check_calibration_archs(calibration)
    except ValueError as err:
        raise TransferInputError(str(err)) from err
    start = time.perf_counter()
    if reference is not None:
        from latfarm.predictor.fbnet_model import pretrain_fbnet

        fbnet = pretrain_fbnet(reference, {d: latencies[d] for d in train}, seed=seed)
        predictor: Predictor | ReferencePredictor = ReferencePredictor(fbnet, reference)
    else:
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
                predictor, test_lat, samples, trials, seed=seed, strategy=strategy, calibration=calibration,
                dump=dump, advance=lambda: bar.advance(task),
            )  # fmt: skip
    else:
        scores = transfer_scores(
            predictor, test_lat, samples, trials, seed=seed, strategy=strategy, calibration=calibration, dump=dump
        )
    return {
        "samples": scores,
        "train": list(train),
        "test": list(test),
        "trials": trials,
        "seed": seed,
        "strategy": strategy,
        "calibration": calibration,
        "space": "nb201" if reference is None else "fbnet",
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
    space: str = "nb201",
    calibration: int = 0,
) -> dict:
    """`latfarm eval transfer`: run ``eval_transfer`` on a HELP-layout folder of ``space`` (each run calibrated on
    ``calibration`` R random archs), print a table, write JSON (NaN as ``null``). Raises ``TransferInputError``
    for bad input, including a device the folder lacks or a bad file."""
    from rich.console import Console
    from rich.table import Table

    check_runs(samples, trials)
    if space not in ("nb201", "fbnet"):
        raise TransferInputError(f"--space must be nb201 or fbnet, got {space!r}")
    try:
        known = available_devices(data)
    except FileNotFoundError as err:
        raise TransferInputError(str(err)) from err
    if unknown := sorted({*train, *test} - set(known)):
        raise TransferInputError(f"unknown devices {unknown} in {data}; available: {known}")
    reference = _reference(data, space)
    try:
        latencies = load_help(data, [*train, *test], *(() if reference is None else (len(reference),)))
    except ValueError as err:  # a bad file: read_latency_file names it
        raise TransferInputError(str(err)) from err
    result = eval_transfer(
        latencies, train, test, samples, trials, seed=seed, dump=dump, cache_dir=cache_dir, epochs=epochs,
        calibration=calibration, progress=True, reference=reference,
    )  # fmt: skip
    console = Console()
    calibrated = f"calibrated on {calibration} random archs" if calibration else "no calibrating archs"
    table = Table(title=f"transfer to unseen devices ({trials} trials, seed {seed}, {calibrated})")
    for col in ("K", "device", "spearman", "kendall", "±10%", "within 1 std", "within 2 std"):
        table.add_column(col)
    shown = (
        ("spearman", ".4f"),
        ("kendall", ".4f"),
        ("acc10", ".3f"),
        ("coverage_1sd", ".3f"),
        ("coverage_2sd", ".3f"),
    )
    for k, block in result["samples"].items():
        for name, s in block["per_device"].items():
            table.add_row(k, name, *(_shown(s[m], spec) for m, spec in shown))
        table.add_row(k, "[b]mean", *(_shown(block[f"mean_{m}"], spec) for m, spec in shown), end_section=True)
    console.print(table)
    for k, block in result["samples"].items():
        for name, reason in block["skipped"].items():
            console.print(f"K={k}: {name} skipped ({reason})")
    if json_out is not None:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps(json_safe(result), indent=2, allow_nan=False) + "\n")
    return result


def _reference(data: Path, space: str) -> np.ndarray | None:
    """The folder's archs for a space without official indices (FBNet); None for NB201."""
    if space == "nb201":
        return None
    from latfarm.predictor.spaces.fbnet import load_reference

    try:
        return np.asarray(load_reference(data), dtype=np.int64)
    except (FileNotFoundError, ValueError) as err:
        raise TransferInputError(str(err)) from err


def _shown(value: float | None, spec: str) -> str:
    """A score for the table; ``n/a`` where it is undefined (NaN) or nothing was scored (None)."""
    return "n/a" if value is None or not np.isfinite(value) else format(value, spec)
