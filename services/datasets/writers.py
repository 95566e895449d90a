"""A device's measurements out of the store: one row per measurement, written as CSV or a LatBench pickle.

An export is of one search space (the arch's ``<space>_index`` column is its reference position; ``ops`` its
encoding). CSV rows carry their conditions and cold-start figures; a LatBench pickle has no room for conditions, so
it holds only the rows measured under the device's own conditions for that space.
"""

from __future__ import annotations

import csv
import io
import pickle
import statistics
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from latfarm.predictor.spaces import get_space, index_column
from latfarm.services.core.clock import iso_utc
from latfarm.services.datasets.rows import DatasetError
from latfarm.services.domain.conditions import Conditions
from latfarm.services.domain.names import unknown_device
from latfarm.services.domain.predictions import conditions_of
from latfarm.services.domain.results import FIGURES, FIRST_USE, SETUP
from latfarm.services.store.crud import device_by_name
from latfarm.services.store.models import Arch, Device, Measurement, Source, usable

# latency_ms is the headline figure; statistic says how an agent computed it (empty for imported rows)
CONDITION_FIELDS = ("batch_size", "precision", "graph", "resolution", "classes")  # from the row's conditions


def row_fields(space: str = "nb201") -> tuple[str, ...]:
    """The columns of an export of ``space``'s rows (``index_column``: the reference position)."""
    return (
        *("arch", index_column(space), "ops", "latency_ms", "statistic"),
        *FIGURES,
        *CONDITION_FIELDS,
        *("source", "dataset"),
        *SETUP,
        *FIRST_USE,
        *("agent_id", "job_id", "artifact_sha256", "created_at"),
    )


ROW_FIELDS = row_fields()


def device_rows(session: Session, device_name: str, own_conditions: bool = False, space: str = "nb201") -> list[dict]:
    """Every usable (not quarantined) measurement of a device's archs of ``space`` (one row each, by reference
    position), with the arch, its encoding (``ops``) and the row's conditions; ``own_conditions``: only those
    measured under the device's own for that space (``predictions.conditions_of(...).for_space(space)``).
    ``DatasetError`` naming ``space`` when the device has measurements of other spaces only."""
    device = device_by_name(session, device_name)
    if device is None:
        raise DatasetError(unknown_device(session, device_name))
    searched, fields, index = get_space(space), row_fields(space), index_column(space)
    derived = ("arch", index, "ops", "statistic", *CONDITION_FIELDS)
    columns = [getattr(Measurement, name) for name in fields if name not in derived]
    query = (
        select(Arch.arch, Arch.reference_index.label(index), Measurement.protocol, Measurement.conditions, *columns)
        .join(Arch, Measurement.arch_id == Arch.id)
        .where(Measurement.device_id == device.id, Arch.space == space, usable())
        .order_by(Arch.reference_index, Measurement.id)
    )
    if own_conditions:
        query = query.where(Measurement.conditions_key == conditions_of(device).for_space(space).key)
    rows = []
    for mapping in session.execute(query).mappings():
        row = dict(mapping)
        row.update(
            ops=searched.parse(row["arch"]),
            statistic=(row["protocol"] or {}).get("statistic", ""),
            source=Source(row["source"]).value,
            created_at=iso_utc(row["created_at"]),
        )
        conditions = Conditions.from_dict(row["conditions"]).to_dict()
        row.update({name: conditions[name] for name in CONDITION_FIELDS})
        rows.append({name: row[name] for name in fields})
    if not rows:
        _check_space_has_rows(session, device, space)
    return rows


def _check_space_has_rows(session: Session, device: Device, space: str) -> None:
    """``DatasetError`` naming ``space`` when the device's measurements are all of other spaces."""
    others = session.scalars(
        select(Arch.space)
        .join(Measurement, Measurement.arch_id == Arch.id)
        .where(Measurement.device_id == device.id, Arch.space != space)
        .distinct()
    ).all()
    if others:
        raise DatasetError(
            f"space: device {device.name!r} has no {space} measurements; its measurements are of {sorted(others)}",
            field="space",
        )


def ops_cell(encoding: Iterable[int]) -> str:
    """An arch's encoding as a CSV's ``ops`` cell: one digit per position (NB201: its 6 LatBench op ids; FBNet: its
    22 block indices)."""
    return "".join(str(o) for o in encoding)


def to_csv(rows: Iterable[dict], space: str = "nb201") -> str:
    """CSV with a header of ``row_fields(space)``; ``ops`` as ``ops_cell`` writes it."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=row_fields(space), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "ops": ops_cell(row["ops"])})
    return buf.getvalue()


def to_latbench(rows: Iterable[dict]) -> dict[tuple[int, ...], float]:
    """LatBench layout ``{encoding tuple: seconds}`` (NB201: the 6-op tuple; FBNet: the 22 block indices): per arch,
    the median of its rows' latencies (``latency_ms``).

    The layout has no room for conditions: pass rows of one set of conditions (``device_rows(...,
    own_conditions=True)``: the device's own)."""
    by_ops: dict[tuple[int, ...], list[float]] = {}
    for row in rows:
        by_ops.setdefault(tuple(row["ops"]), []).append(row["latency_ms"])
    return {ops: statistics.median(ms) / 1000.0 for ops, ms in by_ops.items()}


def export_file(rows: list[dict], fmt: str, space: str) -> tuple[bytes, int]:
    """``rows`` as a file of export format ``fmt`` (csv | latbench), and how many entries it holds: CSV one line per
    measurement (``to_csv``), a LatBench pickle one entry per arch (``to_latbench``: the median of its rows)."""
    if fmt == "csv":
        return to_csv(rows, space).encode(), len(rows)
    entries = to_latbench(rows)
    return pickle.dumps(entries, protocol=4), len(entries)
