"""LatBench importer: one pickle ``{6-op tuple: seconds}`` per device, named after the file unless given.

LatBench measured the reference NB201 network; its rows get the device's conditions (batch size, precision).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path

from sqlalchemy.orm import Session

from latfarm.predictor import nb201
from latfarm.services.datasets.rows import DatasetError, add_rows, checked_ms, ensure_device, load_pickle
from latfarm.services.domain.predictions import conditions_of
from latfarm.services.store.crud import ensure_archs

LATBENCH = "latbench"


def import_latbench(session: Session, path: Path, device: str | None = None) -> int:
    """Import one LatBench pickle ``{6-op tuple: seconds (or a list of runs: their median)}`` for ``device``."""
    path = Path(path)
    data = load_pickle(path)
    if not isinstance(data, Mapping):
        raise DatasetError(f"{path}: expected a dict {{6-op tuple: seconds}}, found {type(data).__name__}")
    latencies_by_arch: dict[str, float] = {}
    for ops, seconds in data.items():
        try:
            arch = nb201.to_string(ops)
        except nb201.ArchError as err:
            raise DatasetError(f"{path}: key {ops!r}: {err}") from err
        runs = seconds if isinstance(seconds, Sequence) and not isinstance(seconds, str) else [seconds]
        latencies_by_arch[arch] = statistics.median(checked_ms(runs, f"{path}[{ops!r}]", scale=1000.0))
    ids = ensure_archs(session, latencies_by_arch)
    target = ensure_device(session, device or path.stem, LATBENCH)
    latencies = {ids[a]: ms for a, ms in latencies_by_arch.items()}
    return add_rows(session, target, LATBENCH, latencies, conditions_of(target))
