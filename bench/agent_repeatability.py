"""Repeatability and overhead of the agent's measurement procedure on NB201 ONNX models.

Measures the same archs in two separate sessions (fresh processes, batches of a lease's size, the agent's default
measurement settings), and prints the mean and worst relative difference of the headline latencies and Kendall's tau
between the sessions, for both headline statistics ("min", the default, and "median" of round medians, computed from the
same runs); then the agent procedure's wall time per model against a bare onnxruntime loop doing the same rounds,
and how quiet the machine was before and after (``bench/machine_noise.py``'s measure).

    .venv/bin/python bench/agent_repeatability.py [--archs 50] [--batch 16] [--seed 0] [--cache DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
QUIET_CHECK_S = 15.0  # machine noise timeline before and after the sessions


def export_archs(count: int, seed: int, cache: Path) -> list[tuple[str, Path]]:
    from latfarm.predictor import nb201
    from latfarm.services.domain.artifacts import ArtifactStore
    from latfarm.services.domain.conditions import Conditions

    store = ArtifactStore(cache)
    indices = random.Random(seed).sample(range(15625), count)
    archs = [nb201.to_string(nb201.from_official_index(i)) for i in indices]
    return [(arch, store.export_file(arch, "onnx", Conditions())[1]) for arch in archs]


def run_session(paths: list[Path], batch: int, mode: str) -> dict:
    """One session in a fresh process: ``agent`` (agents.measurement) or ``bare`` (a plain loop, same procedure)."""
    args = [sys.executable, __file__, "--session", mode, "--batch", str(batch), *map(str, paths)]
    return json.loads(subprocess.run(args, check=True, capture_output=True, text=True).stdout)


def agent_session(paths: list[Path], batch: int, retries: int | None = None) -> dict:
    from latfarm.agents.backends.onnx import OnnxBackend
    from latfarm.agents.measurement import BatchMeasurer, MeasureSettings, ModelTask

    settings = MeasureSettings() if retries is None else MeasureSettings(retries=retries)
    backend, latencies, medians, unstable = OnnxBackend(), [], [], 0
    start = time.perf_counter()
    for first in range(0, len(paths), batch):
        tasks = [ModelTask(str(i), p, [1, 3, 32, 32]) for i, p in enumerate(paths[first : first + batch], first)]
        for result in BatchMeasurer(backend, settings).measure(tasks):
            assert result.ok, result.error_message
            latencies.append(result.stats.latency_ms)
            medians.append(result.stats.median_ms)
            unstable += result.unstable
    wall_s = time.perf_counter() - start
    return {"min": latencies, "median": medians, "wall_s": wall_s, "unstable": unstable}


def bare_session(paths: list[Path], batch: int) -> dict:
    """The same busy warm-up, interleaved rounds and statistics, with nothing around the runs."""
    import numpy as np
    import onnxruntime as ort

    from latfarm.agents.measurement import MeasureSettings

    settings, latencies, medians = MeasureSettings(), [], []
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    start = time.perf_counter()
    for first in range(0, len(paths), batch):
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
        sessions = [ort.InferenceSession(str(p), options) for p in paths[first : first + batch]]
        feeds = [{s.get_inputs()[0].name: x} for s in sessions]
        end = time.perf_counter() + settings.busy_warmup_s
        while time.perf_counter() < end:
            for s, feed in zip(sessions, feeds, strict=True):
                s.run(None, feed)
        rounds = [[] for _ in sessions]
        for r in range(settings.rounds):
            order = list(range(len(sessions)))
            order = order[r % len(order) :] + order[: r % len(order)]
            for i in order:
                for _ in range(settings.warmup_runs):
                    sessions[i].run(None, feeds[i])
                times = []
                for _ in range(settings.runs_per_round):
                    t = time.perf_counter()
                    sessions[i].run(None, feeds[i])
                    times.append((time.perf_counter() - t) * 1000)
                rounds[i].append(times)
        latencies += [min(min(r) for r in model) for model in rounds]
        medians += [statistics.median(statistics.median(r) for r in model) for model in rounds]
    return {"min": latencies, "median": medians, "wall_s": time.perf_counter() - start, "unstable": 0}


def quietness(cache: Path) -> float:
    """How quiet the machine is now: ``bench/machine_noise.py``'s share of windows within 5% of the best."""
    from bench.machine_noise import DEFAULT_INDEX, model_path, share_within, window_stats

    medians, _ = window_stats(model_path(DEFAULT_INDEX, cache), QUIET_CHECK_S)
    return share_within(medians, 0.05)


def kendall_tau(a: list[float], b: list[float]) -> float:
    pairs = [(i, j) for i in range(len(a)) for j in range(i + 1, len(a))]
    score = sum((a[i] - a[j]) * (b[i] - b[j]) > 0 for i, j in pairs) - sum(
        (a[i] - a[j]) * (b[i] - b[j]) < 0 for i, j in pairs
    )
    return score / len(pairs)


def compare(name: str, one: dict, two: dict, statistic: str = "min") -> None:
    """Relative differences of one statistic; also after dividing out a session-wide speed factor (a VM's clock
    drifting between sessions moves every model alike)."""
    pairs = list(zip(one[statistic], two[statistic], strict=True))
    factor = statistics.geometric_mean([y / x for x, y in pairs])
    diffs = [abs(x - y) / ((x + y) / 2) for x, y in pairs]
    scaled = [abs(x * factor - y) / ((x * factor + y) / 2) for x, y in pairs]
    print(
        f"{name:<36} mean |diff| {statistics.mean(diffs):6.2%}   worst {max(diffs):6.2%}   "
        f"Kendall tau {kendall_tau(one[statistic], two[statistic]):.3f}   "
        f"unstable {one['unstable']}+{two['unstable']}   "
        f"[session factor {factor:.3f}: mean {statistics.mean(scaled):.2%}, worst {max(scaled):.2%}]"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", type=int, default=50)
    parser.add_argument("--batch", type=int, default=16, help="models per lease (the server's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=Path("latfarm-data/bench-artifacts"))
    parser.add_argument("--session", choices=["agent", "agent-no-retry", "bare"], help=argparse.SUPPRESS)
    parser.add_argument("paths", nargs="*", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.session:
        sessions = {
            "agent": agent_session,
            "agent-no-retry": lambda paths, batch: agent_session(paths, batch, retries=0),
            "bare": bare_session,
        }
        print(json.dumps(sessions[args.session](args.paths, args.batch)))
        return

    from latfarm.agents.measurement import MeasureSettings

    settings = MeasureSettings()
    models = export_archs(args.archs, args.seed, args.cache)
    paths = [path for _, path in models]
    print(
        f"{len(paths)} NB201 archs (ONNX, 1x3x32x32), batches of {args.batch}; measurement settings: "
        f"{settings.busy_warmup_s:g} s busy warm-up, {settings.rounds} rounds x ({settings.warmup_runs} warm-up + "
        f"{settings.runs_per_round} timed) runs, "
        f"{settings.threads} thread, headline {settings.statistic!r}, {settings.retries} re-measurement(s) after "
        f"{settings.retry_pause_s:g} s of models whose round medians spread > {settings.spread_threshold:.0%}"
    )
    print("load average before: {:.2f} {:.2f} {:.2f} (compare timings on a quiet machine)".format(*os.getloadavg()))
    quiet_before = quietness(args.cache)
    first, second = run_session(paths, args.batch, "agent"), run_session(paths, args.batch, "agent")
    compare("agent session 1 vs 2, min", first, second)
    compare("agent session 1 vs 2, median", first, second, "median")
    single = run_session(paths, args.batch, "agent-no-retry")
    compare("agent session 1 vs no-retry, min", first, single)
    compare("agent session 1 vs no-retry, median", first, single, "median")
    bare = run_session(paths, args.batch, "bare")
    compare("agent no-retry vs bare loop, min", single, bare)
    medians = sorted(first["min"])
    print(f"latencies (min): {medians[0]:.3f} .. {medians[-1]:.3f} ms (median {statistics.median(medians):.3f} ms)")
    agent_wall = (first["wall_s"] + second["wall_s"]) / 2 / len(paths)
    single_wall, bare_wall = single["wall_s"] / len(paths), bare["wall_s"] / len(paths)
    print(
        f"wall time per model (session creation included): bare onnxruntime loop {bare_wall * 1000:.0f} ms; "
        f"agent procedure without re-measurement {single_wall * 1000:.0f} ms ({single_wall / bare_wall - 1:+.1%}); "
        f"with re-measurement of unstable models {agent_wall * 1000:.0f} ms ({agent_wall / bare_wall - 1:+.1%})"
    )
    print("load average after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    print(
        f"machine quietness (bench/machine_noise.py, {QUIET_CHECK_S:g} s): 0.5 s windows whose median run is within "
        f"5% of the best window: {quiet_before:.0%} before, {quietness(args.cache):.0%} after (a quiet machine: 80%+)"
    )


if __name__ == "__main__":
    main()
