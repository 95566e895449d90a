"""Reference vs pruned NB201 graph: onnxruntime latency of the same cells exported both ways, on this machine.

The reference graph (NB201's network, ``none`` edges as ``x * 0``) runs the zero ops a benchmark's network has; the
pruned graph drops them. Both compute the same outputs. For each cell, the two models run side by side, interleaved
round by round (one thread, batch 1, fp32), and the fastest run of each is kept, so machine noise hits both alike.

    .venv/bin/python bench/graph_variants.py [--cells 6] [--rounds 30] [--runs 20] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def pick_cells(count: int, seed: int) -> list[str]:
    """``count`` connected cells with at least 3 ``none`` edges and a convolution, drawn with ``seed``."""
    from latfarm.predictor import nb201

    rng = random.Random(seed)
    cells: list[str] = []
    while len(cells) < count:
        ops = [rng.randrange(len(nb201.OPS)) for _ in nb201.EDGES]
        convs = {nb201.OP_ID["nor_conv_1x1"], nb201.OP_ID["nor_conv_3x3"]}
        if ops.count(0) >= 3 and convs & set(ops) and not nb201.is_disconnected(ops):
            arch = nb201.to_string(ops)
            if arch not in cells:
                cells.append(arch)
    return cells


def session(data: bytes):
    """An onnxruntime CPU session on one thread, sequential execution, default graph optimizations."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def fastest_ms(sessions: list, rounds: int, runs: int) -> list[float]:
    """The fastest single run (ms) of each session, running them in turn ``runs`` times per round."""
    import numpy as np

    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    best = [float("inf")] * len(sessions)
    for s in sessions:  # warm-up
        for _ in range(5):
            s.run(None, {"input": x})
    for _ in range(rounds):
        for i, s in enumerate(sessions):
            for _ in range(runs):
                start = time.perf_counter()
                s.run(None, {"input": x})
                best[i] = min(best[i], (time.perf_counter() - start) * 1000)
    return best


def main() -> None:
    """Print one line per cell (reference ms, pruned ms, ratio) and the median ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import onnxruntime as ort

    from latfarm.predictor import nb201
    from latfarm.services.domain.network_export import ExportSettings, export_onnx

    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    print(f"onnxruntime {ort.__version__}, 1 thread, batch 1, fp32; fastest of {args.rounds}x{args.runs} runs each")
    ratios = []
    for arch in pick_cells(args.cells, args.seed):
        models = [export_onnx(arch, ExportSettings(graph=graph)) for graph in ("reference", "pruned")]
        reference, pruned = fastest_ms([session(m) for m in models], args.rounds, args.runs)
        ratios.append(reference / pruned)
        nones = nb201.parse(arch).count(0)
        print(f"{reference:7.3f} ms ref  {pruned:7.3f} ms pruned  x{reference / pruned:.2f}  ({nones} none) {arch}")
    ratios.sort()
    print(f"median reference/pruned: x{ratios[len(ratios) // 2]:.2f} (range x{ratios[0]:.2f}-x{ratios[-1]:.2f})")


if __name__ == "__main__":
    main()
