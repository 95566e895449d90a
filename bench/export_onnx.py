"""Export 20 random NB201 archs to ONNX and print the total and per-model time (goal: under 10 s in all)."""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path

from latfarm.predictor import nb201
from latfarm.services.domain.artifacts import ArtifactStore
from latfarm.services.domain.conditions import Conditions
from latfarm.services.domain.network_export import export_onnx


def main(n: int = 20, seed: int = 0) -> None:
    rng = random.Random(seed)
    archs = [nb201.to_string([rng.randrange(5) for _ in nb201.EDGES]) for _ in range(n)]
    export_onnx(archs[0])  # warm-up: imports and first-call setup
    start = time.perf_counter()
    sizes = [len(export_onnx(arch)) for arch in archs]
    total = time.perf_counter() - start
    per_model = f"{total / n * 1000:.0f} ms/model, {sum(sizes) / n / 1e6:.2f} MB avg"
    print(f"export_onnx: {n} archs in {total:.2f} s ({per_model})")
    with tempfile.TemporaryDirectory() as tmp:
        store = ArtifactStore(Path(tmp))
        start = time.perf_counter()
        for arch in archs:
            store.export_file(arch, "onnx", Conditions())
        cold = time.perf_counter() - start
        start = time.perf_counter()
        for arch in archs:
            store.export_file(arch, "onnx", Conditions())
        warm = time.perf_counter() - start
    print(f"ArtifactStore: {n} archs cold {cold:.2f} s, cached {warm * 1000:.1f} ms")


if __name__ == "__main__":
    main()
