"""A device's measurements out of the store: one row per measurement, written as CSV or a LatBench pickle.

CSV rows carry their conditions and cold-start figures; a LatBench pickle has no room for conditions, so it holds
only the rows measured under the device's own conditions.
"""

from __future__ import annotations

import csv
import io
import pickle
import statistics
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from latfarm.predictor import nb201
from latfarm.services.datasets.rows import DatasetError
from latfarm.services.domain.conditions import Conditions
from latfarm.services.domain.predictions import conditions_of
from latfarm.services.domain.results import FIGURES, FIRST_USE, SETUP
from latfarm.services.store.crud import device_by_name
from latfarm.services.store.models import Arch, Device, Measurement, Source, usable

# latency_ms is the headline figure; statistic says how an agent computed it (empty for imported rows)
CONDITION_FIELDS = ("batch_size", "precision", "graph", "resolution", "classes")  # from the row's conditions
ROW_FIELDS = (
    *("arch", "nb201_index", "ops", "latency_ms", "statistic"),
    *FIGURES,
    *CONDITION_FIELDS,
    *("source", "dataset"),
    *SETUP,
    *FIRST_USE,
    *("agent_id", "job_id", "artifact_sha256", "created_at"),
)


def device_rows(session: Session, device_name: str, own_conditions: bool = False) -> list[dict]:
    """Every usable (not quarantined) measurement of a device (one row each, by NB201 index), with the arch, its op
    vector and the row's conditions; ``own_conditions``: only those measured under the device's own
    (``predictions.conditions_of``)."""
    device = device_by_name(session, device_name)
    if device is None:
        known = session.scalars(select(Device.name).order_by(Device.name).limit(21)).all()
        listed = ", ".join(known[:20]) + (", ..." if len(known) > 20 else "")
        raise DatasetError(f"unknown device {device_name!r}; known devices: {listed or 'none'}")
    derived = ("arch", "nb201_index", "ops", "statistic", *CONDITION_FIELDS)
    columns = [getattr(Measurement, name) for name in ROW_FIELDS if name not in derived]
    query = (
        select(Arch.arch, Arch.nb201_index, Measurement.protocol, Measurement.conditions, *columns)
        .join(Arch, Measurement.arch_id == Arch.id)
        .where(Measurement.device_id == device.id, usable())
        .order_by(Arch.nb201_index, Measurement.id)
    )
    if own_conditions:
        query = query.where(Measurement.conditions_key == conditions_of(device).key)
    rows = []
    for mapping in session.execute(query).mappings():
        row = dict(mapping)
        row.update(
            ops=nb201.parse(row["arch"]),
            statistic=(row["protocol"] or {}).get("statistic", ""),
            source=Source(row["source"]).value,
            created_at=row["created_at"].isoformat() if row["created_at"] else None,
        )
        conditions = Conditions.from_dict(row["conditions"]).to_dict()
        row.update({name: conditions[name] for name in CONDITION_FIELDS})
        rows.append({name: row[name] for name in ROW_FIELDS})
    return rows


def to_csv(rows: Iterable[dict]) -> str:
    """CSV with a header of ``ROW_FIELDS``; ``ops`` is written as its 6 digits (LatBench op ids)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=ROW_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "ops": "".join(str(o) for o in row["ops"])})
    return buf.getvalue()


def to_latbench_pickle(rows: Iterable[dict]) -> bytes:
    """LatBench layout ``{6-op tuple: seconds}``: per arch, the median of its rows' latencies (``latency_ms``).

    The layout has no room for conditions: pass rows of one set of conditions (``device_rows(...,
    own_conditions=True)``: the device's own)."""
    by_ops: dict[tuple[int, ...], list[float]] = {}
    for row in rows:
        by_ops.setdefault(tuple(row["ops"]), []).append(row["latency_ms"])
    return pickle.dumps({ops: statistics.median(ms) / 1000.0 for ops, ms in by_ops.items()}, protocol=4)
