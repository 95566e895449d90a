"""Latency estimates for every NB201 arch on a device, cached: the bridge between the store and the predictor.

A device's model is its active adaptation, else (with enough measured archs) a model adapted on the fly from its
measurements. Its predictions for all 15,625 archs are computed once per model and kept in the cache (Redis when
configured), so later requests only index into them. A device's measured latencies are kept in memory too, keyed
by (conditions key, row count, last row id), so a request for thousands of archs does not re-read them.

Conditions are never mixed: a device's measured figures are only its rows measured under its own conditions
(``conditions_of``: its batch size and precision, the reference graph), and an adaptation is used only while
the device still has the conditions it was fitted under. Every cache key names those conditions.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from latfarm.predictor import nb201
from latfarm.services.core.errors import FailedPrecondition
from latfarm.services.domain.conditions import Conditions, device_conditions
from latfarm.services.domain.outliers import robust_adapt
from latfarm.services.store.crud import active_adaptation
from latfarm.services.store.models import Adaptation, Arch, Device, Measurement, Source, usable

log = logging.getLogger(__name__)
MIN_ARCHS_ON_THE_FLY = 5  # measured archs a device needs before it gets an on-the-fly model
MAX_ARCHS_ON_THE_FLY = 50  # keeps a cold fit well under a second (the posterior fit grows fast with n)
CACHE_TTL_S = 24 * 3600
SMALL_QUERY = 500  # up to this many archs are looked up directly rather than via the device's cached table
MEMORY_DEVICES = 64  # devices whose measured tables and models are kept in memory


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


def conditions_of(device: Device) -> Conditions:
    """A device's conditions (``device_conditions`` of its batch size, precision and input variant): the only rows
    its predictions, rankings, adaptations and LatBench export read are those with this ``conditions_key``."""
    return device_conditions(device.batch_size, device.precision, device.resolution, device.classes)


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
    return (protocol or {}).get("statistic") or "median"


def agent_latency(statistic: str):
    """The SQL column giving agent measurements in ``statistic``: their fastest run or their median of round
    medians (both stored with every row, whichever headline the agent reported)."""
    if statistic == "min":
        return func.coalesce(Measurement.min_ms, Measurement.latency_ms)
    return Measurement.median_ms


def measured_latencies(
    session: Session, device_id: int, conditions_key: str, indices: Sequence[int] | None = None
) -> dict[int, Measured]:
    """Per NB201 index, among the device's usable (not quarantined) rows measured under ``conditions_key`` only: the
    latest stable agent measurement, else the latest imported one, else the latest unstable agent measurement
    (flagged: still better evidence than a prediction). Agent measurements are read in the ``device_statistic``."""
    statistic = device_statistic(session, device_id, conditions_key)
    query = (
        select(
            Arch.nb201_index,
            Measurement.source,
            Measurement.dataset,
            Measurement.latency_ms,
            agent_latency(statistic),
            Measurement.std_ms,
            Measurement.unstable,
        )
        .join(Arch, Arch.id == Measurement.arch_id)
        .where(
            Measurement.device_id == device_id,
            Measurement.conditions_key == conditions_key,
            Arch.nb201_index.is_not(None),
            usable(),
        )
        .order_by(Measurement.id)
    )
    if indices is not None:
        query = query.where(Arch.nb201_index.in_(set(indices)))
    agent: dict[int, Measured] = {}
    imported: dict[int, Measured] = {}
    unstable: dict[int, Measured] = {}
    for index, source, dataset, latency_ms, agent_ms, std_ms, flagged in session.execute(query):
        if source == Source.imported:
            imported[index] = Measured(latency_ms, std_ms, dataset or "imported")
        else:
            (unstable if flagged else agent)[index] = Measured(agent_ms, std_ms, "agent", flagged, statistic)
    return unstable | imported | agent


@lru_cache(maxsize=1)
def load_default_predictor():
    """The shipped pretrained predictor, loaded once per process."""
    from latfarm.predictor.model import Predictor

    return Predictor.load()


class PredictionService:
    """Measured latencies, device models and their cached predictions for all 15,625 NB201 archs."""

    def __init__(self, sessions: sessionmaker[Session], cache, predictor_loader: Callable[[], object]) -> None:
        """Read through ``sessions``, cache predictions in ``cache``; ``predictor_loader`` gives the pretrained
        predictor on first use."""
        self.sessions = sessions
        self.cache = cache
        self.predictor_loader = predictor_loader
        self._measured: OrderedDict[int, tuple[tuple, dict[int, Measured]]] = OrderedDict()
        self._models: OrderedDict[int, tuple[str, object]] = OrderedDict()  # device id -> (model key, model)
        self._lock = threading.Lock()  # guards the two memory tables
        self._fit_lock = threading.Lock()  # one fit at a time, even under concurrent cold requests

    def warm(self) -> None:
        """Load the predictor now (server start) so the first request does not pay for it."""
        try:
            self.predictor_loader()
        except Exception:  # noqa: BLE001 - predictions then fail with a message; the server still runs
            log.exception("could not load the latency predictor")

    # --- measurements ----------------------------------------------------------------------------------------
    def measured(self, session: Session, device: Device, indices: Sequence[int] | None = None) -> dict[int, Measured]:
        """``measured_latencies`` of a device under its conditions (all archs, or at least ``indices``), from memory
        when unchanged."""
        if indices is not None and len(indices) <= SMALL_QUERY:
            return measured_latencies(session, device.id, conditions_of(device).key, indices)
        return self._measured_table(session, device)[1]

    def _measured_table(self, session: Session, device: Device) -> tuple[tuple, dict[int, Measured]]:
        """(stamp, table): ``stamp`` = (conditions key, row count, last row id, sum of row ids) of the usable rows the
        table was read from (the sum changes when a row is quarantined or released)."""
        key = conditions_of(device).key
        count, last_id, id_sum = session.execute(
            select(func.count(Measurement.id), func.max(Measurement.id), func.sum(Measurement.id)).where(
                Measurement.device_id == device.id, Measurement.conditions_key == key, usable()
            )
        ).one()
        stamp = (key, count, last_id, id_sum)
        with self._lock:
            hit = self._measured.get(device.id)
        if hit is not None and hit[0] == stamp:
            return hit
        table = measured_latencies(session, device.id, key)
        with self._lock:
            _remember(self._measured, device.id, (stamp, table))
        return stamp, table

    # --- device models ---------------------------------------------------------------------------------------
    def _model_key(self, session: Session, device: Device) -> tuple[str, Adaptation | None]:
        """A cache key naming the device's current model (and that model's adaptation, if any).

        Raises NoEstimate when the device has neither an active adaptation nor enough measured archs.
        """
        active = active_adaptation(session, device, conditions_of(device).key)
        if active is not None:
            return f"{self._key_prefix(device)}:adapt-{active.id}", active
        (_key, count, last_id, id_sum), table = self._measured_table(session, device)
        archs = len(table)
        if archs < MIN_ARCHS_ON_THE_FLY:  # checked before loading the predictor
            raise NoEstimate(
                f"no estimate for device {device.name!r} yet: it has {archs} measured arch(s) under its "
                f"conditions {conditions_of(device).key}; an estimate needs {MIN_ARCHS_ON_THE_FLY}, or an adapted "
                f"predictor (POST /v1/devices/{device.name}/adapt)"
            )
        return f"{self._key_prefix(device)}:fly-{count}-{last_id}-{id_sum}", None

    def _key_prefix(self, device: Device) -> str:
        """Device id and creation time (unique even across databases sharing one Redis), its conditions, checkpoint
        version."""
        created = int(device.created_at.timestamp() * 1e6)
        version = getattr(self._predictor(), "version", "0")
        return f"pred:{device.id}-{created}:{conditions_of(device).key}:{version}"

    def _predictor(self):
        try:
            return self.predictor_loader()
        except Exception as err:  # noqa: BLE001
            log.exception("could not load the latency predictor")
            raise NoEstimate(f"the latency predictor is unavailable: {err}") from err

    def _build(self, session: Session, device: Device, active: Adaptation | None):
        from latfarm.predictor.model import DeviceModel

        predictor = self._predictor()
        if active is not None:
            return DeviceModel.from_state(predictor, active.params)
        measured = self.measured(session, device)
        indices = np.array(sorted(measured), dtype=np.int64)
        if len(indices) > MAX_ARCHS_ON_THE_FLY:
            indices = np.sort(np.random.default_rng(device.id).choice(indices, MAX_ARCHS_ON_THE_FLY, replace=False))
        try:
            return robust_adapt(predictor, indices, [measured[int(i)].latency_ms for i in indices])[0]
        except Exception as err:  # noqa: BLE001
            log.exception("on-the-fly adaptation for %s failed", device.name)
            raise NoEstimate(f"could not fit the predictor to device {device.name!r}: {err}") from err

    def _model(self, session: Session, device: Device, key: str, active: Adaptation | None):
        with self._fit_lock:
            hit = self._models.get(device.id)
            if hit is not None and hit[0] == key:
                return hit[1]
            model = self._build(session, device, active)
            with self._lock:
                _remember(self._models, device.id, (key, model))
            return model

    def for_device(self, session: Session, device: Device):
        """The device's ``DeviceModel``, or None when it has neither an adaptation nor enough measurements."""
        try:
            return self._model(session, device, *self._model_key(session, device))
        except NoEstimate:
            return None

    def predict(self, session: Session, device: Device, indices) -> tuple[np.ndarray, np.ndarray]:
        """(mean_ms, std_ms) for NB201 ``indices``; raises NoEstimate (with a message) when none is possible."""
        key, active = self._model_key(session, device)
        blob = self.cache.get(key)
        if blob is None:
            mean, std = self._model(session, device, key, active).predict(None)
            table = np.stack([np.asarray(mean, np.float32), np.asarray(std, np.float32)])
            if table.shape != (2, nb201.NUM_ARCHS):
                raise NoEstimate(f"the predictor returned {table.shape[1]} estimates, expected {nb201.NUM_ARCHS}")
            self.cache.set(key, table.tobytes(), CACHE_TTL_S)
        else:
            table = np.frombuffer(blob, dtype=np.float32).reshape(2, nb201.NUM_ARCHS)
        indices = np.asarray(indices, dtype=np.int64)
        return table[0, indices].astype(np.float64), table[1, indices].astype(np.float64)


def _remember(store: OrderedDict, key, value) -> None:
    store[key] = value
    store.move_to_end(key)
    while len(store) > MEMORY_DEVICES:
        store.popitem(last=False)
