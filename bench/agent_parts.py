"""When a leased batch's results reach the server: the agent's measurement in parts (``BatchMeasurer.part_s``,
``agents/loop.py``'s ``PART_S``) against one part, on NB201 ONNX models under the agent's default settings. Prints,
per run, the seconds from the start at which each part's results were ready (how many), the total, and how many
results were unstable (each part re-measures its own unsteady models after a pause).

    .venv/bin/python bench/agent_parts.py [--archs 8] [--seed 0] [--cache DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.agent_repeatability import export_archs  # noqa: E402


def main() -> None:
    from latfarm.agents.backends.onnx import OnnxBackend
    from latfarm.agents.loop import PART_S
    from latfarm.agents.measurement import BatchMeasurer, MeasureSettings, ModelTask

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=ROOT / "build" / "bench-artifacts")
    args = parser.parse_args()
    tasks = [ModelTask(str(i), path) for i, (_, path) in enumerate(export_archs(args.archs, args.seed, args.cache))]
    for part_s in (PART_S, 0.0):
        start, ready = time.monotonic(), []
        results = BatchMeasurer(OnnxBackend(), MeasureSettings(), part_s=part_s).measure(
            tasks,
            on_part=lambda done: ready.append(f"{time.monotonic() - start:.1f} s ({len(done)})"),  # noqa: B023
        )
        unstable = sum(r.unstable for r in results)
        print(f"part_s {part_s:g}: ready at {', '.join(ready)}; {unstable}/{len(results)} unstable")


if __name__ == "__main__":
    main()
