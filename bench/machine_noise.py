"""How quiet is this machine for latency measurement? Runs one NB201 ONNX model back to back (one thread) for a
while and prints, per 0.5 s window, the window's median and fastest run as a percentage of the best window: a quiet
machine stays near 100; a shared one shows bursts of interference (seconds long, tens of percent).

    .venv/bin/python bench/machine_noise.py [--seconds 30] [--index 4242] [--cache DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WINDOW_S = 0.5
DEFAULT_INDEX = 4242  # a small model (0.5 ms here): many runs per window


def timeline(path: Path, seconds: float) -> dict[int, list[float]]:
    """Run times (ms) of back-to-back inferences, grouped by 0.5 s window."""
    from latfarm.agents.backends.onnx import OnnxBackend

    model = OnnxBackend().load(path, threads=1, input_shape=[1, 3, 32, 32])
    windows: dict[int, list[float]] = {}
    start = time.perf_counter()
    while (now := time.perf_counter()) - start < seconds:
        model.run()
        windows.setdefault(int((now - start) / WINDOW_S), []).append((time.perf_counter() - now) * 1000)
    model.close()
    return windows


def window_stats(path: Path, seconds: float) -> tuple[list[float], list[float]]:
    """Per 0.5 s window (of at least 3 runs): the median and the fastest run, ms."""
    windows = [runs for _, runs in sorted(timeline(path, seconds).items()) if len(runs) >= 3]
    return [statistics.median(w) for w in windows], [min(w) for w in windows]


def share_within(values: list[float], tolerance: float) -> float:
    """The share of values within ``tolerance`` (0.05 = 5%) of the smallest."""
    best = min(values)
    return sum(v <= best * (1 + tolerance) for v in values) / len(values)


def model_path(index: int, cache: Path) -> Path:
    from latfarm.predictor import nb201
    from latfarm.services.domain.artifacts import ArtifactStore
    from latfarm.services.domain.conditions import Conditions

    arch = nb201.to_string(nb201.from_official_index(index))
    return ArtifactStore(cache).export_file(arch, "onnx", Conditions())[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--index", type=int, default=DEFAULT_INDEX, help="official NB201 index of the model to run")
    parser.add_argument("--cache", type=Path, default=Path("latfarm-data/bench-artifacts"))
    args = parser.parse_args()

    from latfarm.predictor import nb201

    medians, fastest = window_stats(model_path(args.index, args.cache), args.seconds)
    best_median, best_fastest = min(medians), min(fastest)
    arch = nb201.to_string(nb201.from_official_index(args.index))
    print(f"NB201 #{args.index} {arch}: best window median {best_median:.3f} ms, fastest run {best_fastest:.3f} ms")
    print("window medians, % of the best:", " ".join(f"{100 * m / best_median:.0f}" for m in medians))
    print("window fastest, % of the best:", " ".join(f"{100 * m / best_fastest:.0f}" for m in fastest))
    for name, values in (("medians", medians), ("fastest runs", fastest)):
        shares = [share_within(values, tol) for tol in (0.02, 0.05, 0.10)]
        print(
            f"windows whose {name} are within 2% / 5% / 10% of the best: "
            + " / ".join(f"{share:.0%}" for share in shares)
        )


if __name__ == "__main__":
    main()
