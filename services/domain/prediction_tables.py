"""Per-device prediction tables: a device's answer for every reference arch of a position-keyed space (NB201's
15,625), computed once and indexed by requests.

A ``Table`` is built from the device's measured rows and its model's estimates (``PredictionService.table``) and
stays valid while the cheap ``Marks`` query says nothing it was read from can have changed:

- a new measurement raises the largest measurement id (writers commit in id order on SQLite); when it rose, one
  range query over the new ids tells whether any is the device's;
- a quarantine, release or delete writes an audit entry (``domain.review``): a new one re-reads the device's row
  stamp (count, last id, sum of ids);
- the device's active adaptation is read by id; its conditions and the checkpoint version are in ``Head``.

On PostgreSQL ids are handed out before commit, so a row can appear later with an id below one already seen: a
table checked while writers were in flight stays *unsettled* and re-reads its row stamp once those writers are done
(the snapshot's oldest transaction passed them), or after ``RECHECK_S`` while an older transaction holds that back.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import ColumnElement, Select, bindparam, func, literal_column, select
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

from latfarm.predictor import nb201
from latfarm.predictor.spaces import get_space
from latfarm.services.store.models import Adaptation, AdaptState, AuditEntry, Device, Measurement, usable

if TYPE_CHECKING:
    from latfarm.services.domain.predictions import Measured

RECHECK_S = 0.25  # PostgreSQL: an unsettled table re-reads its row stamp at least this often

RowStamp = tuple[str, int, int | None, int | None]
"""(conditions key, row count, last row id, sum of row ids) of a device's usable rows under one conditions key."""

# The device columns a table and a predict answer depend on: a device object read earlier stands for its row while
# these are unchanged (a rename, a change of conditions, or a delete shows in them).
DEVICE_STAMP_COLUMNS = (
    Device.name,
    Device.created_at,
    Device.batch_size,
    Device.precision,
    Device.resolution,
    Device.classes,
)


@dataclass(frozen=True)
class Head:
    """What a table is a table of: device (id, creation time in µs), space, conditions key, checkpoint version."""

    device_id: int
    created_us: int
    space: str
    conditions_key: str
    version: str


@dataclass(frozen=True)
class Marks:
    """One cheap reading of what a table depends on: the largest measurement and audit ids (0: none), the device's
    active adaptation under its conditions, and on PostgreSQL the snapshot's oldest in-flight and next transaction
    ids (None elsewhere)."""

    last_measurement: int
    last_audit: int
    adaptation: str | None
    oldest_txid: int | None = None
    next_txid: int | None = None

    @property
    def ids(self) -> tuple[int, int]:
        """(largest measurement id, largest audit id)."""
        return self.last_measurement, self.last_audit

    @property
    def in_flight(self) -> int | None:
        """PostgreSQL: the next transaction id when writers were in flight at this reading (their rows may still
        appear below the ids read), else None."""
        if self.oldest_txid is None or self.next_txid is None or self.oldest_txid >= self.next_txid:
            return None
        return self.next_txid


def read_marks(session: Session, device_id: int, conditions_key: str) -> Marks:
    """``Marks`` for a device's table under ``conditions_key``, in one statement (index lookups only)."""
    statement = _marks_statement(session.get_bind().dialect.name, False)
    row = session.execute(statement, {"device_id": device_id, "conditions_key": conditions_key}).one()
    return _marks(row)


def read_device_marks(
    connection: Any, dialect: Dialect, device_id: int, conditions_key: str
) -> tuple[tuple, Marks] | None:
    """The device row's stamp (its ``DEVICE_STAMP_COLUMNS`` as the driver returns them: compare it only with another
    such stamp) and ``Marks`` for its table under ``conditions_key``, read together in one statement (one snapshot)
    on ``connection``, a DB-API connection of ``dialect`` (a pooled one, or a session's inside its transaction):
    no ORM or SQLAlchemy execution on the way, about a tenth of a session's cost. None when the device is gone."""
    sql, names, constants = _raw_marks_statement(dialect)
    values = constants | {"device_id": device_id, "conditions_key": conditions_key}
    cursor = connection.cursor()
    try:
        cursor.execute(sql, [values[name] for name in names] if names is not None else values)
        row = cursor.fetchone()
    finally:
        cursor.close()
    if row is None:
        return None
    columns = len(DEVICE_STAMP_COLUMNS)
    return tuple(row[-columns:]), _marks(row[:-columns])


@lru_cache(maxsize=16)
def _raw_marks_statement(dialect: Dialect) -> tuple[str, tuple[str, ...] | None, dict[str, Any]]:
    """``_marks_statement(..., True)`` compiled for ``dialect`` once: its SQL, its parameter names in order (None:
    the driver takes them by name) and the values of its constant parameters, as the driver takes them."""
    compiled = _marks_statement(dialect.name, True).compile(dialect=dialect)
    constants = {}
    for name, value in compiled.construct_params({"device_id": 0, "conditions_key": ""}).items():
        process = compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
        constants[name] = process(value) if process is not None else value
    names = tuple(compiled.positiontup) if compiled.positiontup is not None else None
    return compiled.string, names, constants


def _marks(row: Any) -> Marks:
    return Marks(row[0] or 0, row[1] or 0, row[2], *row[3:])


@cache
def _marks_statement(dialect: str, with_device: bool) -> Select:
    """``read_marks``'s statement (``with_device``: and the device row's stamp columns, no row when it is gone;
    ``read_device_marks``),
    built once per dialect (a statement reused skips SQLAlchemy's compile)."""
    adaptation = (
        select(Adaptation.id)
        .where(
            Adaptation.device_id == bindparam("device_id"),
            Adaptation.state == AdaptState.active,
            Adaptation.conditions_key == bindparam("conditions_key"),
        )
        .order_by(Adaptation.activated_at.desc())
        .limit(1)
        .scalar_subquery()
    )
    columns: list[ColumnElement[Any]] = [
        select(func.max(Measurement.id)).scalar_subquery(),
        select(func.max(AuditEntry.id)).scalar_subquery(),
        adaptation,
    ]
    if dialect == "postgresql":
        columns += [
            literal_column("pg_snapshot_xmin(pg_current_snapshot())::text::bigint"),
            literal_column("pg_snapshot_xmax(pg_current_snapshot())::text::bigint"),
        ]
    if not with_device:
        return select(*columns)
    return select(*columns, *DEVICE_STAMP_COLUMNS).where(Device.id == bindparam("device_id"))


def row_stamp(session: Session, device_id: int, conditions_key: str) -> RowStamp:
    """The ``RowStamp`` of a device's usable rows under ``conditions_key`` (reads every such row's id)."""
    count, last_id, id_sum = session.execute(
        select(func.count(Measurement.id), func.max(Measurement.id), func.sum(Measurement.id)).where(
            Measurement.device_id == device_id, Measurement.conditions_key == conditions_key, usable()
        )
    ).one()
    return conditions_key, int(count), last_id, None if id_sum is None else int(id_sum)


def rows_after(session: Session, device_id: int, conditions_key: str, after_id: int) -> bool:
    """Whether the device has a usable row under ``conditions_key`` with an id above ``after_id`` (a range over the
    newest ids)."""
    return (
        session.scalars(
            select(Measurement.id)
            .where(
                Measurement.id > after_id,
                Measurement.device_id == device_id,
                Measurement.conditions_key == conditions_key,
                usable(),
            )
            .limit(1)
        ).first()
        is not None
    )


@dataclass(eq=False)
class Table:
    """A device's answers for all ``size`` reference archs of a space: arrays indexed by reference position.

    ``latency_ms`` / ``std_ms`` (float64, NaN = none): the measured figure where the arch is measured, else the
    estimate; ``predicted`` (2 x size float32: mean, std ms) the model's estimates, None with ``reason`` when the
    device has no model. ``marks`` / ``settle_after`` / ``checked_at`` record the last freshness check.
    """

    head: Head
    adaptation: str | None
    rows: RowStamp
    measured: dict[int, Measured]
    predicted: np.ndarray | None
    reason: str | None
    model_key: str | None
    latency_ms: np.ndarray
    std_ms: np.ndarray
    marks: Marks
    settle_after: int | None
    checked_at: float = field(default_factory=time.monotonic)
    rank_mean: np.ndarray | None = None  # the model's float64 means of every arch (its ranking), on first use
    _items: list[bytes] | None = None
    _every_json: bytes | None = None

    def current(self, head: Head, marks: Marks) -> bool:
        """Whether the table answers for ``head`` as of ``marks`` without reading any row."""
        if head != self.head or marks.adaptation != self.adaptation or marks.ids != self.marks.ids:
            return False
        return self.settle_after is None or not self._recheck_due(marks)

    def needs_row_stamp(self, marks: Marks) -> bool:
        """Whether a check at ``marks`` must re-read the row stamp (an audited change, or unsettled and due) rather
        than look only at ids above the last one seen."""
        return marks.last_audit != self.marks.last_audit or (self.settle_after is not None and self._recheck_due(marks))

    def checked(self, marks: Marks, full: bool) -> None:
        """Record a check at ``marks`` that found the table unchanged (``full``: by its row stamp)."""
        pending = marks.in_flight
        if not full and self.settle_after is not None:
            pending = max(pending or 0, self.settle_after)
        self.marks, self.settle_after = marks, pending
        if full:
            self.checked_at = time.monotonic()

    def items_json(self, keys: list[int]) -> bytes:
        """The JSON array of the ``PredictItem`` of each of ``keys`` (reference positions; the same values as
        encoding each item's dict): the measured figures, else the estimates, else the ``reason``."""
        items = self.encoded_items()
        if len(keys) == len(items) and keys == list(range(len(items))):
            return self.every_json()
        return b"[" + b",".join(map(items.__getitem__, keys)) + b"]"

    def every_json(self) -> bytes:
        """``items_json`` of every arch in order, encoded once per table."""
        if self._every_json is None:
            self._every_json = b"[" + b",".join(self.encoded_items()) + b"]"
        return self._every_json

    def encoded_items(self) -> list[bytes]:
        """Each reference arch's ``PredictItem`` as a JSON object by position, encoded once per table (a request
        only joins its archs')."""
        if self._items is None:
            openings = item_openings(self.head.space)
            none = f',"latency_ms":null,"std_ms":null,"source":null,"message":{json.dumps(self.reason)}}}'
            items = []
            for key, (mean, spread) in enumerate(zip(self.latency_ms.tolist(), self.std_ms.tolist(), strict=True)):
                if (hit := self.measured.get(key)) is not None:
                    item = openings[key] + "," + json.dumps(hit.item_fields(), separators=(",", ":"))[1:]
                elif self.predicted is None:
                    item = openings[key] + none
                else:
                    figures = f'"latency_ms":{json_number(mean)},"std_ms":{json_number(spread)},"source":"predicted"}}'
                    item = f"{openings[key]},{figures}"
                items.append(item.encode())
            self._items = items  # computed twice at worst (two first requests at once): the same bytes
        return self._items

    def _recheck_due(self, marks: Marks) -> bool:
        assert self.settle_after is not None
        oldest = marks.oldest_txid if marks.oldest_txid is not None else self.settle_after
        return oldest >= self.settle_after or time.monotonic() - self.checked_at >= RECHECK_S


def merged(size: int, measured: dict[int, Measured], predicted: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(latency_ms, std_ms) of every position: measured figures over the estimates (NaN: none, or std not known)."""
    if predicted is None:
        latency, std = np.full(size, np.nan), np.full(size, np.nan)
    else:
        latency, std = predicted[0].astype(np.float64), predicted[1].astype(np.float64)
    if measured:
        positions = np.fromiter(measured, dtype=np.int64, count=len(measured))
        hits = list(measured.values())
        latency[positions] = [hit.latency_ms for hit in hits]
        std[positions] = [np.nan if hit.std_ms is None else hit.std_ms for hit in hits]
    return latency, std


@cache
def item_openings(space: str) -> tuple[str, ...]:
    """The opening of each reference arch's ``PredictItem`` by position, as JSON without its closing brace:
    ``{"arch":...,"index":n`` and, for NB201, ``,"nb201_index":n``."""
    searched = get_space(space)
    strings = (searched.to_string(arch) for arch in searched.reference_set() or ())
    extra = space == nb201.SPACE
    return tuple(
        f'{{"arch":{json.dumps(arch)},"index":{n}' + (f',"nb201_index":{n}' if extra else "")
        for n, arch in enumerate(strings)
    )


def json_number(value: float) -> str:
    """A JSON number (as ``json.dumps`` writes a float: its ``repr``), null when not finite."""
    number = float(value)
    return repr(number) if math.isfinite(number) else "null"
