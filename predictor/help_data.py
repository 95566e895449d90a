"""Load the HELP NAS-Bench-201 latency release (``latency/<device>.pt`` lists of 15,625 ms by official index)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from latfarm.predictor.nb201 import NUM_ARCHS


def available_devices(data_dir: Path) -> list[str]:
    """Device names in a HELP-layout folder, sorted."""
    folder = Path(data_dir) / "latency"
    if not folder.is_dir():
        raise FileNotFoundError(f"{data_dir}: no 'latency/' folder (expected HELP layout: latency/<device>.pt)")
    return sorted(p.stem for p in folder.glob("*.pt"))


def load_help(data_dir: Path, devices: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Latencies (ms, float64 arrays of 15,625 by official NB201 index) of the chosen devices (default: all)."""
    import torch

    names = available_devices(data_dir) if devices is None else list(devices)
    out: dict[str, np.ndarray] = {}
    for name in names:
        path = Path(data_dir) / "latency" / f"{name}.pt"
        if not path.exists():
            raise FileNotFoundError(f"no latency file for device {name!r} at {path}")
        values = np.asarray(torch.load(path, weights_only=False), dtype=np.float64).reshape(-1)
        if values.shape != (NUM_ARCHS,):
            raise ValueError(f"{path}: expected {NUM_ARCHS} latencies, found {values.shape[0]}")
        out[name] = values
    return out


def data_hash(latencies: dict[str, np.ndarray]) -> str:
    """A short content hash of a device -> latencies mapping (cache key for pretrained models)."""
    digest = hashlib.sha256()
    for name in sorted(latencies):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(latencies[name], dtype=np.float64).tobytes())
    return digest.hexdigest()[:16]
