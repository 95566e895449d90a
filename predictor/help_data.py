"""Load HELP-layout folders (the HELP NAS-Bench-201 latency release: ``latency/<device>.pt`` lists of 15,625 ms by
official index); services' HELP importer reads its files through ``read_latency_file`` too."""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from latfarm.common.pickles import PLAIN_PICKLE, RefusedGlobal, allowed
from latfarm.predictor.latencies import checked_latencies
from latfarm.predictor.nb201 import NUM_ARCHS


def available_devices(data_dir: Path) -> list[str]:
    """Device names in a HELP-layout folder, sorted."""
    folder = Path(data_dir) / "latency"
    if not folder.is_dir():
        raise FileNotFoundError(f"{data_dir}: no 'latency/' folder (expected HELP layout: latency/<device>.pt)")
    return sorted(p.stem for p in folder.glob("*.pt"))


def read_latency_file(path: Path, expected: int = NUM_ARCHS) -> np.ndarray:
    """One HELP ``latency/<device>.pt``: ``expected`` ms by position (NB201: 15,625 by official index; FBNet: the
    folder's archs) as float64, NaN = not measured.

    The one loader and validation rule for every reader of HELP folders (``latfarm import --format help``,
    ``pretrain``, ``eval transfer``): a list, tensor or numpy array of numbers (not bools or text) saved with
    ``torch.save`` and read as plain data (``load_torch``: a file naming any other global is refused
    unrun), measured entries within the latency rule (``predictor.latencies``). Raises ``ValueError`` naming the
    file and the problem.
    """
    raw = torch_file(path)
    try:
        values = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: expected {expected} latencies, found {type(raw).__name__}") from err
    if values.shape != (expected,):
        raise ValueError(f"{path}: expected {expected} latencies, found shape {values.shape}")
    if (kind := np.asarray(raw).dtype).kind not in "iuf":  # numbers, not bools or text that parse as numbers
        raise ValueError(f"{path}: expected {expected} latencies as numbers, found {kind} values")
    return checked_latencies(values, str(path), allow_nan=True)


def load_torch(path: Path) -> Any:
    """What ``torch.save`` wrote to ``path``: read by torch's ``weights_only`` loader (tensors and plain data), and a
    file it refuses for naming numpy read again with ``common.pickles.PLAIN_PICKLE`` (numpy's arrays rebuilt as
    plain data; tensors then refused).

    Raises ``RefusedGlobal`` for the first global outside both, else what ``torch.load`` raises for a file that is
    not its format.
    """
    import torch

    try:
        return torch.load(path, weights_only=True)
    except pickle.UnpicklingError as err:
        try:
            named = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:  # noqa: BLE001 - a file it cannot list: the load's own error stands
            raise err from None
        if refused := [name for name in named if name not in allowed()]:
            raise RefusedGlobal(refused[0]) from None
    return torch.load(path, weights_only=False, pickle_module=PLAIN_PICKLE)


def torch_file(path: Path) -> Any:
    """What ``torch.save`` wrote to a HELP folder's file, as plain data (``load_torch``); ``ValueError``
    naming ``path`` for a refused global, or when it is not such a file (torch raises many kinds)."""
    try:
        return load_torch(path)
    except RefusedGlobal as err:
        raise ValueError(f"{path}: {err}") from err
    except Exception as err:  # noqa: BLE001 - one refusal for every way a file is not torch's format
        raise ValueError(f"{path}: not a torch.save file ({type(err).__name__})") from err


def load_help(data_dir: Path, devices: Sequence[str] | None = None, expected: int = NUM_ARCHS) -> dict[str, np.ndarray]:
    """Latencies of the chosen devices (default: all), each as ``read_latency_file`` reads it (``expected``
    entries).

    Raises ``FileNotFoundError`` for a device without a file, ``ValueError`` for a bad file.
    """
    names = available_devices(data_dir) if devices is None else list(devices)
    out: dict[str, np.ndarray] = {}
    for name in names:
        path = Path(data_dir) / "latency" / f"{name}.pt"
        if not path.exists():
            raise FileNotFoundError(f"no latency file for device {name!r} at {path}")
        out[name] = read_latency_file(path, expected)
    return out


def data_hash(latencies: dict[str, np.ndarray]) -> str:
    """A short content hash of a device -> latencies mapping (cache key for pretrained models)."""
    digest = hashlib.sha256()
    for name in sorted(latencies):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(latencies[name], dtype=np.float64).tobytes())
    return digest.hexdigest()[:16]
