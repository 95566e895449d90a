"""HW-NAS-Bench importer: every NB201 ``<device>_latency`` table of its pickle, one device per (device, dataset).

Metric ``<device>_latency`` becomes device ``<device>`` for CIFAR-10 and ``<device>-<dataset>`` for its other
datasets (``edgegpu-cifar100``, ``edgegpu-ImageNet16-120``), since those networks differ in input size and classes.
HW-NAS-Bench measured the reference NB201 network; its rows get the device's conditions (batch size, precision).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session

from latfarm.predictor import nb201
from latfarm.predictor.spaces import ArchError, get_space
from latfarm.services.datasets.rows import (
    DatasetError,
    Imported,
    add_rows,
    arch_ids_by_index,
    checked_ms,
    ensure_device,
    load_pickle,
    take_turn,
)
from latfarm.services.domain.predictions import conditions_of

HWNASBENCH = "hw-nas-bench"
HWNAS_CIFAR10 = "cifar10"


def import_hwnasbench(session: Session, path: Path) -> Imported:
    """Import HW-NAS-Bench's pickle: every ``d['nasbench201'][dataset][<device>_latency][index]`` (ms); returns rows
    added and entries present (``rows.add_rows``).

    All-or-nothing: a file without such a table, or any bad table, raises ``DatasetError`` before a row is written.
    """
    path = Path(path)
    data = load_pickle(path, "hwnasbench")
    try:
        by_dataset = data["nasbench201"]
    except (KeyError, TypeError) as err:
        raise DatasetError(f"{path}: expected a dict with key 'nasbench201' (HW-NAS-Bench layout)") from err
    if not isinstance(by_dataset, Mapping) or not all(isinstance(m, Mapping) for m in by_dataset.values()):
        raise DatasetError(f"{path}: expected 'nasbench201' to map each dataset to a dict of metrics")
    tables: dict[str, tuple[tuple[int, ...], list[float]]] = {}  # device -> (indices, ms)
    for dataset, metrics in by_dataset.items():
        for metric, values in metrics.items():
            if not str(metric).endswith("_latency"):
                continue
            name = metric.removesuffix("_latency")
            name = name if dataset == HWNAS_CIFAR10 else f"{name}-{dataset}"
            tables[name] = _latency_table(values, f"{path}: {dataset}/{metric}")
    if not tables:
        raise DatasetError(f"{path}: no '<device>_latency' table under 'nasbench201' (HW-NAS-Bench layout)")
    take_turn(session)
    arch_ids = arch_ids_by_index(session, {i for indices, _ in tables.values() for i in indices})
    imported = Imported()
    for name, (indices, ms) in tables.items():
        latencies = dict(zip((arch_ids[i] for i in indices), ms, strict=True))
        device = ensure_device(session, name, HWNASBENCH)
        imported += add_rows(session, device, HWNASBENCH, latencies, conditions_of(device))
    return imported


def _latency_table(values: object, where: str) -> tuple[tuple[int, ...], list[float]]:
    """(NB201 indices, ms) of one ``<device>_latency`` metric: a list (position = index) or ``{index: ms}``.

    Raises ``DatasetError`` naming ``where`` for another type, an empty table, a non-integer or out-of-range index,
    or a latency that is not a number or breaks the rule (positive, finite).
    """
    if isinstance(values, Mapping):
        items = list(values.items())
    elif isinstance(values, list | tuple | np.ndarray):
        items = list(enumerate(values))
    else:
        raise DatasetError(f"{where}: expected a list or {{index: ms}} dict, found {type(values).__name__}")
    if not items:
        raise DatasetError(f"{where}: no latencies (an empty table)")
    raw_indices, raw_ms = zip(*items, strict=True)
    if bad := [i for i in raw_indices if not isinstance(i, int | np.integer) or isinstance(i, bool)]:
        raise DatasetError(f"{where}: index {bad[0]!r} is not an integer")
    indices = tuple(int(i) for i in raw_indices)
    space = get_space(nb201.SPACE)
    try:
        for index in indices:
            space.at(index)  # each an official index (a position of NB201's reference set)
    except ArchError as err:
        raise DatasetError(f"{where}: {err}") from err
    return indices, checked_ms(raw_ms, where)
