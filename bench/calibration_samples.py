"""How many random measured archs calibrate the spread per device, and by which rule? Per split, K, R and rule.

Issue #16 asks the 1-sd coverage of ``std_ms`` within 0.58-0.78 on every held-out device; the K samples, chosen
where the prior is least sure, do not carry each adaptation's error level (``bench/loo_signal.py``). Here each
adaptation (the held-out splits of ``predictor_loo.py``, cached pretrainings only: run that bench first with the same
``--cache``) also gets R random other archs measured (seeded), two ways (``MODES``): ``fitted``, what
``Predictor.adapt(..., calibrating=...)``, the service and ``eval transfer --calibrate`` do
(``evaluate.adapt_calibrated``): fitted with the K samples, the spread factor set from their leave-one-out z;
``held``, not fitted: the K-sample model's factor replaced by one set from their z. Each ``RULES`` entry turns the R
archs' |z| into the factor (``calibration_factor`` is what the predictor uses). Per mode, rule and R: the (device, K)
cells in the calibration band (trial means), the cells out of it by cause (too wide: 1-sd over the band; too
narrow: under it; tails: 1-sd in band, 2-sd under ``MIN_COVERAGE_2SD``), the single adaptations in band, and mean
Spearman / ±10% / 1-sd / 2-sd per K on the archs neither fitted nor drawn. R = 0 is the predictor from its K samples.
``--space fbnet``: ``fbnet_transfer.py``'s splits (device and family held out, pretrained in the run; the FBNet
predictor calibrates by the same ``prior.LeaveOneOut``). One BLAS thread: on a loaded machine OpenBLAS's threads
made an adaptation fitting 50 archs take 30 times the CPU time.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/calibration_samples.py --cache build/loo-cache
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import numpy as np
from fbnet_transfer import family as fbnet_family  # bench/ is the script's folder: on sys.path
from loo_signal import Draw, draws, splits
from predictor_loo import band_summary
from transfer_args import DATASETS, transfer_parser

from latfarm.predictor import prior
from latfarm.predictor.calibration import COVERAGE_BAND, MIN_COVERAGE_2SD, calibration_factor, check_calibration_archs
from latfarm.predictor.evaluate import ReferencePredictor, adapt_calibrated, calibration_order, trial_seed
from latfarm.predictor.fbnet_model import pretrain_fbnet
from latfarm.predictor.help_data import load_help
from latfarm.predictor.scores import score
from latfarm.predictor.spaces.fbnet import load_reference

MODES = ("fitted", "held")


def _quantile(q: float, method: str = "linear") -> Callable[[np.ndarray], float]:
    return lambda z: float(np.quantile(z, q, method=method))


def _two_sided(q1: float, q2: float, method: str = "linear") -> Callable[[np.ndarray], float]:
    """The smallest factor covering ``q1`` of the archs within 1 sd and ``q2`` within 2 sd."""
    return lambda z: max(float(np.quantile(z, q1, method=method)), float(np.quantile(z, q2, method=method)) / 2)


RULES: dict[str, Callable[[np.ndarray], float]] = {
    "predictor (band middle)": calibration_factor,
    "q0.75": _quantile(0.75),
    "q0.70": _quantile(0.70),
    "q0.72": _quantile(0.72),
    "conformal q0.70": _quantile(0.70, "weibull"),
    "q0.70|q0.92/2": _two_sided(0.70, 0.92),
    "q0.68|q0.93/2": _two_sided(0.68, 0.93),
    "conformal q0.68|q0.93/2": _two_sided(0.68, 0.93, "weibull"),
}
"""|z| [R] of the calibrating archs -> spread factor (``q0.75``: the predictor's rule before the band's middle).
``conformal``: the order statistic at rank (R + 1) q (interpolated, numpy's ``weibull``), whose coverage of an
exchangeable arch averages q at every R; ``a|b/2``: the larger of the 1-sd factor and half the 2-sd one."""


@contextmanager
def caught_z() -> Iterator[list[tuple[np.ndarray, float]]]:
    """The calibrating archs' leave-one-out |z| and the factor ``calibration_factor`` made of them, of every fitted
    adaptation meanwhile, last last (``prior.LeaveOneOut`` looks it up at call time)."""
    caught: list[tuple[np.ndarray, float]] = []
    original = prior.calibration_factor

    def catch(z: np.ndarray) -> float:
        caught.append((np.abs(np.asarray(z, dtype=np.float64)), original(z)))
        return caught[-1][1]

    prior.calibration_factor = catch  # type: ignore[assignment]
    try:
        yield caught
    finally:
        prior.calibration_factor = original  # type: ignore[assignment]


class Adaptation(NamedTuple):
    """One adaptation's calibration inputs: the calibrating archs' |z| [R] (None at R = 0) and the rest's |error| in
    units of the uncalibrated predictive sd [n], with its Spearman and ±10% share."""

    device: str
    k: int
    mode: str
    r: int
    z: np.ndarray | None
    ratio: np.ndarray
    scores: dict


def adaptations(runs: Iterable[Draw], extra: list[int]) -> Iterator[Adaptation]:
    """Per draw of ``runs``, R of ``extra`` and mode: the ``Adaptation``, scored on the archs no R drew."""
    with caught_z() as caught:
        for draw in runs:
            y, idx = draw.y, draw.idx
            drawn = calibration_order(y, idx, draw.seed)
            rest = drawn[max(extra) :]
            alone = draw.predictor.adapt(idx, y[idx])
            for r in extra:
                calib = drawn[:r]
                for mode in MODES if r else MODES[:1]:
                    z: np.ndarray | None = None
                    if mode == "fitted" and r:
                        model = adapt_calibrated(draw.predictor, y, idx, calib)
                        z, base = caught[-1]
                    else:
                        model, base = alone, 1.0
                        if r:
                            mean, std = alone.predict(calib)
                            z = np.abs(mean - y[calib]) / std
                    mean, std = model.predict(rest)
                    ratio = np.abs(mean - y[rest]) / (std / base)
                    yield Adaptation(draw.device, draw.k, mode, r, z, ratio, score(mean, y[rest]))


def rows(runs: Iterable[Draw], extra: list[int]) -> list[dict]:
    """One row per (device, K, trial, mode, R, rule): coverage at 1 and 2 sd, Spearman and ±10% share on the rest."""
    out = []
    for a in adaptations(runs, extra):
        row = {"device": a.device, "k": a.k, "mode": a.mode, "r": a.r, **a.scores}
        for rule, factor in RULES.items():
            f = 1.0 if a.z is None else factor(a.z)
            out.append(row | {"rule": rule, "cov1": np.mean(a.ratio <= f), "cov2": np.mean(a.ratio <= 2 * f)})
            if a.z is None:
                break
    return out


def causes(block: list[dict]) -> tuple[int, int, int, float]:
    """Of ``block``'s (device, K) cells (trial means), those too wide, too narrow and with heavy tails, and the
    share of its single adaptations in band."""
    cells: dict[tuple, list] = {}
    for row in block:
        cells.setdefault((row["device"], row["k"]), []).append((row["cov1"], row["cov2"]))
    means = [np.mean(v, 0) for v in cells.values()]
    wide = sum(c1 > COVERAGE_BAND[1] for c1, _ in means)
    narrow = sum(c1 < COVERAGE_BAND[0] for c1, _ in means)
    tails = sum(COVERAGE_BAND[0] <= c1 <= COVERAGE_BAND[1] and c2 < MIN_COVERAGE_2SD for c1, c2 in means)
    single = np.mean(
        [COVERAGE_BAND[0] <= r["cov1"] <= COVERAGE_BAND[1] and r["cov2"] >= MIN_COVERAGE_2SD for r in block]
    )
    return wide, narrow, tails, float(single)


def report(title: str, table: list[dict], samples, extra: list[int]) -> None:
    """Per mode, rule and R: cells in band, out of it by cause, single adaptations in band, and mean Spearman /
    ±10% / 1-sd / 2-sd coverage per K."""
    print(f"\n{title}")
    for mode in MODES:
        for rule in RULES:
            for r in extra:
                if not r and (mode, rule) != (MODES[0], next(iter(RULES))):
                    continue
                block = [
                    row for row in table if row["r"] == r and (not r or (row["mode"], row["rule"]) == (mode, rule))
                ]
                good, cells, per_k = band_summary(block, samples, "cov1", "cov2")
                wide, narrow, tails, single = causes(block)
                label = f"{mode} {rule}" if r else "K only"
                print(
                    f"  {label:32s} R={r:<3d} cells in band {good}/{cells} (wide {wide}, narrow {narrow},"
                    f" tails {tails}; runs {single:.2f})  ({per_k})"
                )


def fbnet_draws(lat: dict, reference: np.ndarray, by_family: bool, samples, trials: int, seed: int) -> Iterator[Draw]:
    """``fbnet_transfer.py``'s adaptations: per device, pretrained on the others (``by_family``: the other
    families), K samples of ``trials`` trials seeded as ``evaluate.transfer_scores`` seeds them."""
    for name, y in lat.items():
        train = {
            d: v for d, v in lat.items() if d != name and not (by_family and fbnet_family(d) == fbnet_family(name))
        }
        predictor = ReferencePredictor(pretrain_fbnet(reference, train), reference)
        for k in samples:
            for trial in range(trials):
                s = trial_seed(seed, name, k, trial)
                idx = np.asarray(predictor.select_samples(k, seed=s, exclude=np.flatnonzero(np.isnan(y))))
                yield Draw(name, k, s, predictor, y, idx)


def main() -> None:
    ap = transfer_parser(__doc__)
    ap.add_argument("--space", choices=("nb201", "fbnet"), default="nb201", help="NB201 (--cache) or FBNet [nb201]")
    ap.add_argument("--cache", type=Path, help="predictor_loo.py's pretrained-model cache (NB201)")
    ap.add_argument("--extra", default="0,10,20,50,100", help="random archs R besides the K, comma-separated")
    args = ap.parse_args()
    if args.space == "nb201" and args.cache is None:
        ap.error("NB201 needs --cache: predictor_loo.py's pretrained-model cache")
    extra = sorted(int(r) for r in args.extra.split(","))
    for r in extra:
        try:
            check_calibration_archs(r)
        except ValueError as err:
            ap.error(f"--extra: {err}")
    samples, trials, seed = args.samples, args.trials, args.seed
    if args.space == "nb201":
        lat = load_help(args.data)
        runs = {title: draws(lat, held, samples, trials, seed, args.cache) for title, held in splits(lat).items()}
    else:
        data = DATASETS / "help-fbnet" if args.data == DATASETS / "help-nb201" else args.data
        reference = np.asarray(load_reference(data), dtype=np.int64)
        lat = load_help(data, None, len(reference))
        runs = {
            f"{title} (FBNet)": fbnet_draws(lat, reference, by_family, samples, trials, seed)
            for title, by_family in (("device held out", False), ("family held out", True))
        }
    print("Spearman / ±10% / 1-sd / 2-sd coverage per K")
    for title, run in runs.items():
        report(title, rows(run, extra), samples, extra)


if __name__ == "__main__":
    main()
