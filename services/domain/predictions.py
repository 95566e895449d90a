"""Latency estimates for archs of any search space on a device: the bridge between the store and the predictors.

A device has one model per space: its active adaptation of that space, else (with enough measured archs) a model
adapted on the fly from its measurements; each space's pretrained predictor is loaded on first use. An arch is
keyed by its reference position in a space that enumerates all its archs (NB201: the official index), else by
its canonical string (FBNet). For a position-keyed space a device's answers for every arch (measured figures over
the model's estimates) are kept as a ``prediction_tables.Table``: built once (ahead of requests at start-up and when
an adaptation activates, else by the first request, under a lock), checked by one cheap query per request, and
indexed; the estimates are also kept in the cache (Redis when configured, shared by replicas). Other spaces' archs
are predicted per request, their measured latencies kept in memory keyed by (conditions key, row count, last row
id, sum of row ids).

Conditions are never mixed: a device's measured figures of a space are only its rows measured under its own
conditions for that space (``conditions_of(device).for_space(space)``: its batch size and precision, the reference
graph), and an adaptation is used only while the device still has the conditions it was fitted under. Every cache
key names those conditions.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any, cast

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.orm import Session, sessionmaker

from latfarm.predictor import nb201
from latfarm.predictor.spaces import SPACES, get_space
from latfarm.services.core.errors import FailedPrecondition
from latfarm.services.domain.conditions import Conditions, device_conditions, space_of
from latfarm.services.domain.outliers import robust_adapt
from latfarm.services.domain.prediction_tables import (
    Head,
    Marks,
    RowStamp,
    Table,
    merged,
    read_device_marks,
    read_marks,
    row_stamp,
    rows_after,
)
from latfarm.services.domain.results import statistic_of
from latfarm.services.store.crud import active_adaptation, device_by_name
from latfarm.services.store.db import dbapi_connection
from latfarm.services.store.models import Adaptation, AdaptState, Arch, Device, Job, Measurement, Source, usable

log = logging.getLogger(__name__)
MIN_ARCHS_ON_THE_FLY = 5  # measured archs a device needs before it gets an on-the-fly model
MAX_ARCHS_ON_THE_FLY = 50  # keeps a cold fit well under a second (the posterior fit grows fast with n)
CACHE_TTL_S = 24 * 3600
SMALL_QUERY = 500  # up to this many archs are looked up directly rather than via the device's cached table
MEMORY_DEVICES = 64  # devices whose measured tables and models are kept in memory


ArchKey = int | str
"""An arch in a space's predictions: its reference position (``keyed_by_position``) or its canonical string."""


def keyed_by_position(space: str) -> bool:
    """Whether archs of ``space`` are keyed by reference position (``SearchSpace.enumerated``: its reference set
    holds all its archs) rather than by canonical string."""
    return get_space(space).enumerated


def fit_archs(predictor, keys: Sequence[ArchKey]) -> np.ndarray:
    """What a space's predictor fits and predicts on for ``keys``: positions as given, strings as encodings."""
    if keys and isinstance(keys[0], str):
        return predictor.encodings(keys)
    return np.asarray(keys, dtype=np.int64)


def model_state(model, space: str) -> dict:
    """What an adaptation stores of a device model: a position-keyed space's posterior (tens of kB); other spaces
    their samples only, and which of them calibrated the spread (FBNet's posterior is ~1 MB of JSON;
    ``model_from_state`` refits it in a fraction of a second)."""
    if keyed_by_position(space):
        return model.to_state()
    archs = [get_space(space).to_string(row) for row in np.asarray(model.indices).tolist()]
    samples = {"space": space, "archs": archs, "latencies_ms": [float(x) for x in model.latencies_ms]}
    return {**samples, **model.calibrating_state()}


def model_from_state(predictor, state: dict):
    """The device model ``model_state`` stored, for ``predictor`` (samples only: refitted)."""
    if "mean" not in state:
        return predictor.adapt(state["archs"], state["latencies_ms"], state.get("calibrating"))
    from latfarm.predictor.model import DeviceModel

    return DeviceModel.from_state(predictor, state)


class NoEstimate(FailedPrecondition):
    """No estimate is possible for a device; the message says why and what to do."""


@dataclass(frozen=True)
class Measured:
    """The latency a device's measurements give one arch."""

    latency_ms: float
    std_ms: float | None
    origin: str  # "agent", or the dataset it was imported from
    unstable: bool = False  # an agent measurement whose repeatability check failed
    statistic: str | None = None  # agent measurements: "min" or "median"

    def item_fields(self) -> dict:
        """The fields of a ``PredictItem`` this measurement gives (std null when not known)."""
        std = self.std_ms if self.std_ms is not None and math.isfinite(self.std_ms) else None
        fields = {"latency_ms": self.latency_ms, "std_ms": std, "source": "measured", "origin": self.origin}
        if self.statistic:
            fields["statistic"] = self.statistic
        if self.unstable:
            fields["unstable"] = True
        return fields


def conditions_of(device: Device) -> Conditions:
    """A device's conditions (``device_conditions`` of its batch size, precision and input variant): the only rows
    its predictions, rankings, adaptations and LatBench export read are those with this ``conditions_key``
    (``for_space`` of it for archs of another space)."""
    return _device_conditions(device.batch_size, device.precision, device.resolution, device.classes)


_device_conditions = lru_cache(maxsize=256)(device_conditions)  # Conditions are immutable; building checks them


def device_statistic(session: Session, device_id: int, conditions_key: str) -> str:
    """The statistic a device's agent measurements under ``conditions_key`` are read in: that of its latest one
    ("median" for agents that predate headline statistics), so one device's figures never mix the fastest run with
    a median."""
    protocol = session.scalars(
        select(Measurement.protocol)
        .where(
            Measurement.device_id == device_id,
            Measurement.conditions_key == conditions_key,
            Measurement.source == Source.measured,
            usable(),
        )
        .order_by(Measurement.id.desc())
        .limit(1)
    ).first()
    return statistic_of(protocol) or "median"


def agent_latency(statistic: str):
    """The SQL column giving agent measurements in ``statistic``: their fastest run or their median of round
    medians (both stored with every row, whichever headline the agent reported)."""
    if statistic == "min":
        return func.coalesce(Measurement.min_ms, Measurement.latency_ms)
    return Measurement.median_ms


def measured_latencies(
    session: Session,
    device_id: int,
    conditions_key: str,
    indices: Sequence[ArchKey] | None = None,
    *,
    unchosen: bool = False,
) -> dict[ArchKey, Measured]:
    """Per arch key of the conditions' space (``keyed_by_position``), among the device's usable (not quarantined) rows
    measured under ``conditions_key`` only: the latest stable agent measurement, else the latest imported one, else
    the latest unstable agent measurement (flagged: still better evidence than a prediction). Agent measurements are
    read in the ``device_statistic``. ``unchosen``: only the archs with such a row that no one chose, imported or of
    a job drawn at random (``Job.drawn_at_random``), each still with the latency above over all its rows."""
    statistic = device_statistic(session, device_id, conditions_key)
    key = Arch.reference_index if keyed_by_position(space_of(conditions_key)) else Arch.arch
    columns = [
        key,
        Measurement.source,
        Measurement.dataset,
        Measurement.latency_ms,
        agent_latency(statistic),
        Measurement.std_ms,
        Measurement.unstable,
    ]
    if unchosen:
        columns.append(((Measurement.source == Source.imported) | Job.drawn_at_random).label("no_one_chose"))
    query = (
        select(*columns)
        .join(Arch, Arch.id == Measurement.arch_id)
        .where(
            Measurement.device_id == device_id,
            Measurement.conditions_key == conditions_key,
            key.is_not(None),
            usable(),
        )
        .order_by(Measurement.id)
    )
    if unchosen:
        query = query.outerjoin(Job, Job.id == Measurement.job_id)
    if indices is not None:
        query = query.where(key.in_(set(indices)))
    agent: dict[ArchKey, Measured] = {}
    imported: dict[ArchKey, Measured] = {}
    unstable: dict[ArchKey, Measured] = {}
    kept: set[ArchKey] = set()
    for row in session.execute(query):
        index, source, dataset, latency_ms, agent_ms, std_ms, flagged = row[:7]
        if source == Source.imported:
            imported[index] = Measured(latency_ms, std_ms, dataset or "imported")
        else:
            (unstable if flagged else agent)[index] = Measured(agent_ms, std_ms, "agent", flagged, statistic)
        if unchosen and row.no_one_chose:
            kept.add(index)
    merged = unstable | imported | agent
    return {index: measured for index, measured in merged.items() if index in kept} if unchosen else merged


@cache
def load_default_predictor(space: str = nb201.SPACE):
    """The pretrained predictor shipped for ``space``, loaded once per process."""
    from latfarm.predictor.model import Predictor

    return Predictor.load(space=space)


class PredictionService:
    """Measured latencies, device models per space, their predictions, and per-device tables of every arch of a
    position-keyed space (``prediction_tables``)."""

    def __init__(
        self, engine: Engine, sessions: sessionmaker[Session], cache, predictor_loader: Callable[..., object]
    ) -> None:
        """``engine``: the database (``current_table`` reads on its pooled DB-API connections); ``sessions``:
        read-only sessions on it (``prepare`` reads through them); cache predictions in ``cache``;
        ``predictor_loader(space)`` gives a space's pretrained predictor on first use (no argument: NB201's)."""
        self.engine = engine
        self.sessions = sessions
        self.cache = cache
        self.predictor_loader = predictor_loader
        self._measured: OrderedDict[tuple[int, str], tuple[RowStamp, dict[ArchKey, Measured]]] = OrderedDict()
        self._models: OrderedDict[tuple[int, str], tuple[str, object]] = OrderedDict()  # (device, space): (key, model)
        self._tables: OrderedDict[tuple[int, str], Table] = OrderedDict()
        self._versions: dict[str, str] = {}  # space -> the version of its predictor, once loaded
        # name -> the device object last read and its row's stamp then (``table_by_name``)
        self._devices: OrderedDict[str, tuple[Device, tuple]] = OrderedDict()
        self._lock = threading.Lock()  # guards the memory tables
        self._fit_lock = threading.Lock()  # one fit at a time, even under concurrent cold requests
        self._load_lock = threading.Lock()  # one predictor load at a time
        self._table_locks: dict[tuple[int, str], threading.Lock] = {}  # one build or check per (device, space)

    def warm(self, loaded: Callable[[], object] = lambda: None) -> None:
        """Load NB201's predictor, call ``loaded`` (also when it cannot be loaded), and build the tables of devices
        with an active adaptation (server start, in the background: a request that comes first builds its table
        itself), then log them ready."""
        start = time.monotonic()
        try:
            self.predictor()
        except NoEstimate:  # predictions then fail with a message; the server still runs
            return
        finally:
            loaded()
        ready = self.prepare()
        log.info("prediction tables ready for %d device(s) in %.2f s", ready, time.monotonic() - start)

    def prepare(self) -> int:
        """Build (or check) the tables of the devices with an active adaptation of a position-keyed space under
        their current conditions, the ``MEMORY_DEVICES`` activated last, each device known by name
        (``table_by_name``); returns how many are ready. Failures are
        logged, never raised."""
        ready = 0
        try:
            with self.sessions() as session:
                devices = session.scalars(
                    select(Device)
                    .join(Adaptation, Adaptation.device_id == Device.id)
                    .where(Adaptation.state == AdaptState.active)
                    .order_by(Adaptation.activated_at.desc())
                    .limit(MEMORY_DEVICES)
                ).unique()
                for device in devices.all():
                    for space in _position_keyed_spaces():
                        key = conditions_of(device).for_space(space).key
                        if active_adaptation(session, device, key) is None:
                            continue
                        # known by name, so that a first request needs only ``current_table``'s one statement
                        if (found := self.table_by_name(session, device.name, space)) is not None:
                            found[1].every_json()  # encoded before it is asked for
                            ready += 1
        except Exception:  # noqa: BLE001 - the first request builds what failed here, and reports why
            log.exception("could not build the prediction tables")
        return ready

    # --- measurements ----------------------------------------------------------------------------------------
    def measured(
        self, session: Session, device: Device, indices: Sequence[ArchKey] | None = None, space: str = nb201.SPACE
    ) -> dict[ArchKey, Measured]:
        """``measured_latencies`` of a device's archs of ``space`` under its conditions (all archs, or at least
        ``indices``: keys of ``space``), from memory when unchanged."""
        if indices is not None and len(indices) <= SMALL_QUERY:
            return measured_latencies(session, device.id, conditions_of(device).for_space(space).key, indices)
        return self._measured_table(session, device, space)[1]

    def _measured_table(self, session: Session, device: Device, space: str) -> tuple[RowStamp, dict[ArchKey, Measured]]:
        """(stamp, table): the table read after its ``row_stamp`` (a row committed in between only makes the stamp
        look older)."""
        stamp = row_stamp(session, device.id, conditions_of(device).for_space(space).key)
        with self._lock:
            hit = self._measured.get((device.id, space))
        if hit is not None and hit[0] == stamp:
            return hit
        table = measured_latencies(session, device.id, stamp[0])
        with self._lock:
            _remember(self._measured, (device.id, space), (stamp, table))
        return stamp, table

    # --- device models ---------------------------------------------------------------------------------------
    def _model_key(self, session: Session, device: Device, space: str) -> tuple[str, Adaptation | None]:
        """A cache key naming the device's current model of ``space`` (and that model's adaptation, if any).

        Raises NoEstimate when the device has neither an active adaptation nor enough measured archs of ``space``.
        """
        active = active_adaptation(session, device, conditions_of(device).for_space(space).key)
        if active is not None:
            return self._adapted_key(device, space, active.id), active
        stamp, table = self._measured_table(session, device, space)
        return self._fly_key(device, space, stamp, len(table)), None

    def _adapted_key(self, device: Device, space: str, adaptation_id: str) -> str:
        return f"{self._key_prefix(device, space)}:adapt-{adaptation_id}"

    def _fly_key(self, device: Device, space: str, stamp: RowStamp, archs: int) -> str:
        """The key of the on-the-fly model of the rows ``stamp`` names (``archs`` of them measured); NoEstimate when
        too few."""
        if archs < MIN_ARCHS_ON_THE_FLY:  # checked before loading the predictor
            conditions = stamp[0]
            raise NoEstimate(
                f"no estimate for device {device.name!r} yet: it has {archs} measured {space} arch(s) under its "
                f"conditions {conditions}; an estimate needs {MIN_ARCHS_ON_THE_FLY}, or an adapted "
                f"{space} predictor (POST /v1/devices/{device.name}/adapt)"
            )
        _key, count, last_id, id_sum = stamp
        return f"{self._key_prefix(device, space)}:fly-{count}-{last_id}-{id_sum}"

    def _key_prefix(self, device: Device, space: str) -> str:
        """Device id and creation time (unique even across databases sharing one Redis), its conditions for
        ``space``, the space's checkpoint version (NoEstimate when the predictor cannot be loaded)."""
        created = int(device.created_at.timestamp() * 1e6)
        version = getattr(self.predictor(space), "version", "0")
        return f"pred:{device.id}-{created}:{conditions_of(device).for_space(space).key}:{version}"

    def _head(self, device: Device, space: str) -> Head:
        """What the device's table of ``space`` must be a table of; the version is empty while the predictor cannot
        be loaded (that table gives the measured figures, and why there is no estimate)."""
        version = self._versions.get(space)  # once loaded, read without the load lock (the event loop checks heads)
        if version is None:
            try:
                version = self._versions.setdefault(space, str(getattr(self.predictor(space), "version", "0")))
            except NoEstimate:
                version = ""
        created = int(device.created_at.timestamp() * 1e6)
        return Head(device.id, created, space, conditions_of(device).for_space(space).key, version)

    def predictor(self, space: str = nb201.SPACE):
        """The pretrained predictor of ``space``; NoEstimate (with the reason) when it cannot be loaded."""
        try:
            with self._load_lock:
                return self.predictor_loader(space)
        except Exception as err:  # noqa: BLE001
            log.exception("could not load the %s latency predictor", space)
            raise NoEstimate(f"the {space} latency predictor is unavailable: {err}") from err

    def _build(self, session: Session, device: Device, space: str, active: Adaptation | None):
        predictor = self.predictor(space)
        if active is not None:
            return model_from_state(predictor, active.params)
        measured = self.measured(session, device, space=space)
        keys = sorted(measured)
        if len(keys) > MAX_ARCHS_ON_THE_FLY:
            chosen = np.random.default_rng(device.id).choice(len(keys), MAX_ARCHS_ON_THE_FLY, replace=False)
            keys = [keys[i] for i in sorted(chosen)]
        try:
            return robust_adapt(predictor, fit_archs(predictor, keys), [measured[k].latency_ms for k in keys])[0]
        except Exception as err:  # noqa: BLE001
            log.exception("on-the-fly adaptation for %s failed", device.name)
            raise NoEstimate(f"could not fit the predictor to device {device.name!r}: {err}") from err

    def _model(self, session: Session, device: Device, space: str, key: str, active: Adaptation | None):
        with self._fit_lock:
            hit = self._models.get((device.id, space))
            if hit is not None and hit[0] == key:
                return hit[1]
            model = self._build(session, device, space, active)
            with self._lock:
                _remember(self._models, (device.id, space), (key, model))
            return model

    def for_device(self, session: Session, device: Device, space: str = nb201.SPACE):
        """The device's ``DeviceModel`` of ``space``, or None when it has neither an adaptation nor enough
        measurements of it."""
        try:
            return self._model(session, device, space, *self._model_key(session, device, space))
        except NoEstimate:
            return None

    def predict(
        self, session: Session, device: Device, indices: Sequence[ArchKey], space: str = nb201.SPACE
    ) -> tuple[np.ndarray, np.ndarray]:
        """(mean_ms, std_ms) for arch keys of ``space`` (positions index the device's ``table``); raises NoEstimate
        (with a message) when none is possible."""
        if keyed_by_position(space):
            predicted = estimates(self.table(session, device, space))
            positions = np.asarray(indices, dtype=np.int64)
            return predicted[0, positions].astype(np.float64), predicted[1, positions].astype(np.float64)
        model = self._model(session, device, space, *self._model_key(session, device, space))
        return model.predict(fit_archs(model.predictor, indices))

    def _estimates(self, session: Session, device: Device, space: str, key: str, active: Adaptation | None):
        """The model's (mean, std) of every reference arch of position-keyed ``space`` as a 2 x size float32 array,
        from the cache when there (no fit), else computed and cached."""
        size = len(get_space(space).reference_set() or ())
        blob = self.cache.get(key)
        if blob is not None:
            return np.frombuffer(blob, dtype=np.float32).reshape(2, size)
        mean, std = self._model(session, device, space, key, active).predict(None)
        table = np.stack([np.asarray(mean, np.float32), np.asarray(std, np.float32)])
        if table.shape != (2, size):
            raise NoEstimate(f"the predictor returned {table.shape[1]} estimates, expected {size}")
        self.cache.set(key, table.tobytes(), CACHE_TTL_S)
        return table

    # --- tables of every arch --------------------------------------------------------------------------------
    def table(self, session: Session, device: Device, space: str = nb201.SPACE) -> Table:
        """The device's ``Table`` of position-keyed ``space``, current as of this call: one ``read_marks`` query
        when nothing changed, else a check of the device's rows, else a rebuild (once, under a lock, whoever asks
        first: a request or ``prepare``)."""
        head = self._head(device, space)
        return self._table(session, device, space, head, read_marks(session, device.id, head.conditions_key))

    def table_by_name(self, session: Session, name: str, space: str = nb201.SPACE) -> tuple[Device, Table] | None:
        """The device called ``name`` and its ``table`` of ``space``; None when there is no such device. The device
        object read last under ``name`` is reused (detached) while its row's stamp is unchanged: then one statement
        reads the stamp and the table's ``Marks`` together (``read_device_marks``)."""
        connection, dialect = session.connection().connection, session.get_bind().dialect
        with self._lock:
            known = self._devices.get(name)
        if known is not None and (unchanged := self._unchanged(known, space, connection, dialect)) is not None:
            return known[0], self._table(session, known[0], space, *unchanged)
        device = device_by_name(session, name)
        if device is None:
            with self._lock:
                self._devices.pop(name, None)
            return None
        session.expunge(device)  # shared read-only by later requests, never written through
        head = self._head(device, space)
        found = read_device_marks(connection, dialect, device.id, head.conditions_key)  # the object's snapshot
        assert found is not None  # read in the transaction that just read the device
        with self._lock:
            _remember(self._devices, name, (device, found[0]))
        return device, self._table(session, device, space, head, found[1])

    def current_table(self, name: str, space: str = nb201.SPACE, connection: Any = None) -> tuple[Device, Table] | None:
        """``table_by_name`` without a session when it needs nothing but its one statement: the device and table
        known under ``name`` found unchanged by ``read_device_marks`` on ``connection`` (a DB-API connection of the
        engine's; None: a pooled one). None when either is not in memory or anything changed (``table_by_name``
        then checks or rebuilds). Takes no lock held longer than a dictionary lookup."""
        with self._lock:
            known = self._devices.get(name)
            table = self._tables.get((known[0].id, space)) if known is not None else None
        if known is None or table is None:
            return None
        if connection is not None:
            found = self._unchanged(known, space, connection, self.engine.dialect)
        else:
            with dbapi_connection(self.engine) as pooled:
                found = self._unchanged(known, space, pooled, self.engine.dialect)
        if found is None or not table.current(*found):
            return None
        return known[0], table

    def _unchanged(
        self, known: tuple[Device, tuple], space: str, connection: Any, dialect: Dialect
    ) -> tuple[Head, Marks] | None:
        """The ``Head`` and ``Marks`` of ``known`` (a device object and its row's stamp when read) for its table of
        ``space``, by one ``read_device_marks`` on ``connection`` (a DB-API connection of ``dialect``); None when
        the row changed or is gone."""
        device, stamp = known
        head = self._head(device, space)
        found = read_device_marks(connection, dialect, device.id, head.conditions_key)
        if found is None or found[0] != stamp:
            return None
        return head, found[1]

    def _table(self, session: Session, device: Device, space: str, head: Head, marks: Marks) -> Table:
        with self._lock:
            table = self._tables.get((device.id, space))
            lock = self._table_locks.setdefault((device.id, space), threading.Lock())
        if table is not None and table.current(head, marks):
            return table
        with lock:
            marks = read_marks(session, device.id, head.conditions_key)  # another caller may have refreshed it
            with self._lock:
                table = self._tables.get((device.id, space))
            if table is not None and table.current(head, marks):
                return table
            if table is not None and head == table.head and marks.adaptation == table.adaptation:
                full = table.needs_row_stamp(marks)
                if full:
                    unchanged = row_stamp(session, device.id, head.conditions_key) == table.rows
                else:
                    unchanged = not rows_after(session, device.id, head.conditions_key, table.marks.last_measurement)
                if unchanged:
                    table.checked(marks, full)
                    return table
            table = self._new_table(session, device, space, head, marks)
            with self._lock:
                _remember(self._tables, (device.id, space), table)
            return table

    def _new_table(self, session: Session, device: Device, space: str, head: Head, marks: Marks) -> Table:
        rows, by_key = self._measured_table(session, device, space)
        measured = cast("dict[int, Measured]", by_key)  # a position-keyed space's keys are positions
        size = len(get_space(space).reference_set() or ())
        predicted, reason, key = None, None, None
        try:
            if marks.adaptation is not None:
                key = self._adapted_key(device, space, marks.adaptation)
                active = session.get(Adaptation, marks.adaptation)
            else:
                key, active = self._fly_key(device, space, rows, len(measured)), None
            predicted = self._estimates(session, device, space, key, active)
        except NoEstimate as err:
            reason = str(err)
        latency, std = merged(size, measured, predicted)
        settle = marks.in_flight
        return Table(head, marks.adaptation, rows, measured, predicted, reason, key, latency, std, marks, settle)

    def rank_means(self, session: Session, device: Device, space: str, table: Table) -> np.ndarray:
        """The model's float64 mean of every arch of ``table`` (what ``DeviceModel.rank`` orders by), computed once
        per table; NoEstimate when the table has no model."""
        if table.rank_mean is None:
            estimates(table)
            assert table.model_key is not None
            active = session.get(Adaptation, table.adaptation) if table.adaptation is not None else None
            model = self._model(session, device, space, table.model_key, active)
            table.rank_mean = np.asarray(model.predict(None)[0], dtype=np.float64)
        return table.rank_mean


def estimates(table: Table) -> np.ndarray:
    """The table's model estimates (2 x size float32: mean, std ms); NoEstimate with its reason when none."""
    if table.predicted is None:
        raise NoEstimate(table.reason or "no estimate")
    return table.predicted


def _position_keyed_spaces() -> list[str]:
    return [name for name in SPACES if keyed_by_position(name)]


def _remember(store: OrderedDict, key, value) -> None:
    store[key] = value
    store.move_to_end(key)
    while len(store) > MEMORY_DEVICES:
        store.popitem(last=False)
